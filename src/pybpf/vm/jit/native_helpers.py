"""Helpers served by native code: ``bpf_map_lookup_elem`` on array maps, without a Python call.

A helper call through the ctypes trampoline costs microseconds; an array lookup is an index
check and a multiply. For every ``lddw`` map pointer of the program that names an ARRAY or
PERCPU_ARRAY map, Python writes one entry into the run's array-map table (``Slot.MAP_TABLE``,
:data:`~pybpf.vm.jit.state.MAP_FIELDS` slots each) before native code starts: the map pointer,
the values' base address, the slot size, ``max_entries`` and this run's CPU offset within a
slot. The generated lookup scans the table for r1; a hit computes the value address inline
(NULL for a key at or past ``max_entries``, as ``ArrayMap.lookup_address`` answers), a miss (any
other map, a map-in-map's inner map) calls the trampoline as before. The table is rebuilt every
run, so a map whose storage moved between runs is found at its new address.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from pybpf.platform.uapi_generated import BpfMapType, HelperId
from pybpf.vm.jit.state import MAP_FIELDS, Slot

if TYPE_CHECKING:
    from pybpf.vm.execution import HelperFn
    from pybpf.vm.jit.codegen import _FunctionEmitter

NATIVE_ARRAY_TYPES = frozenset({BpfMapType.ARRAY, BpfMapType.PERCPU_ARRAY})
_RUNTIME_LOOKUP = ("pybpf.runtime.helpers.maps", "map_lookup_elem")
"""The helper whose semantics the native lookup reproduces: any other registered for id 1 keeps the trampoline."""


def emit_map_lookup(builder_of: _FunctionEmitter, pc: int) -> None:
    """``call bpf_map_lookup_elem`` at ``pc``: inline for a tabled array map, else the trampoline."""
    fb = builder_of
    builder, i64 = fb.builder, fb.i64
    pointer = fb._get(1)
    count = fb._load_slot(Slot.MAP_COUNT)
    table = builder.inttoptr(fb._load_slot(Slot.MAP_TABLE), fb.parent.state_type)
    start = builder.block
    head, check, step, hit, slow, done = (
        fb._new_block(f"lookup_{what}_{pc}") for what in ("head", "check", "step", "hit", "slow", "done")
    )
    builder.branch(head)
    builder.position_at_end(head)
    index = builder.phi(i64)
    index.add_incoming(fb._const(0), start)
    builder.cbranch(builder.icmp_unsigned("<", index, count), check, slow)
    builder.position_at_end(check)
    entry = builder.mul(index, fb._const(MAP_FIELDS))

    def field(number: int) -> Any:
        return fb.parent.tag(builder.load(builder.gep(table, [builder.add(entry, fb._const(number))])), "tables")

    builder.cbranch(builder.icmp_unsigned("==", field(0), pointer), hit, step)
    builder.position_at_end(step)
    index.add_incoming(builder.add(index, fb._const(1)), step)
    builder.branch(head)
    builder.position_at_end(hit)
    base, slot_size, max_entries, cpu_offset = (field(number) for number in range(1, 5))
    # The key is read as the Python helper reads it: a 4-byte load that faults like any access.
    key_pointer = fb._checked_pointer(pc, fb._get(2), 4, False)
    key = builder.zext(fb.parent.tag(builder.load(key_pointer, align=1), "memory"), i64)
    address = builder.add(builder.add(base, builder.mul(key, slot_size)), cpu_offset)
    inside = builder.icmp_unsigned("<", key, max_entries)
    fb._set(0, builder.select(inside, address, fb._const(0)))
    builder.branch(done)
    builder.position_at_end(slow)
    fb._call_helper(pc, fb._const(HelperId.MAP_LOOKUP_ELEM))
    builder.branch(done)
    builder.position_at_end(done)


def native_lookup_enabled(helpers: Mapping[int, HelperFn]) -> bool:
    """Whether the program's lookup helper is the runtime's (the only one the native path mirrors)."""
    fn = helpers.get(HelperId.MAP_LOOKUP_ELEM)
    return fn is not None and (getattr(fn, "__module__", ""), getattr(fn, "__qualname__", "")) == _RUNTIME_LOOKUP


def array_map_entries(pointers: Iterable[int], user: object) -> list[int]:
    """The array-map table's fields for the maps among ``pointers`` that ``user``'s registry knows.

    ``user`` is the run's runtime state (duck-typed: the VM layer does not import the runtime):
    ``user.services.maps.find(pointer)`` gives the map and ``user.current_cpu`` the run's CPU.
    """
    registry = getattr(getattr(user, "services", None), "maps", None)
    find = getattr(registry, "find", None)
    if find is None:
        return []
    cpu = getattr(user, "current_cpu", 0)
    fields: list[int] = []
    for pointer in pointers:
        found = find(pointer)
        if found is None or getattr(found, "type", None) not in NATIVE_ARRAY_TYPES:
            continue
        slab = getattr(found, "slab", None)
        regions = getattr(slab, "regions", None)
        if not regions:
            continue
        stride = int(getattr(found, "cpu_stride", 0))
        if stride and not 0 <= cpu < int(getattr(found, "ncpus", 1)):
            continue  # a CPU the map has no copy for: let the Python helper decide
        base = int(regions[0].address)
        fields += [pointer, base, int(found.slot_size), int(found.max_entries), cpu * stride]
    return fields
