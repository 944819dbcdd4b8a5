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

``bpf_get_smp_processor_id`` and ``bpf_ktime_get_ns`` are served natively when the run's
``Slot.NATIVE`` bit says so: the CPU comes from ``Slot.CPU``, the time from libc's
``clock_gettime(CLOCK_MONOTONIC)`` through ``Slot.CLOCK_FN`` (only when the runtime's clock is the
host's, so a manual test clock is still read in Python). ``bpf_get_prandom_u32`` stays in Python:
its generator's state lives there, and both engines must draw the same stream.
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from pybpf.errors import NotSupportedError
from pybpf.platform.uapi_generated import BpfMapType, HelperId
from pybpf.vm.jit.state import MAP_FIELDS, NativeHelper, Slot

if TYPE_CHECKING:
    from pybpf.vm.execution import HelperFn
    from pybpf.vm.jit.codegen import _FunctionEmitter

NATIVE_ARRAY_TYPES = frozenset({BpfMapType.ARRAY, BpfMapType.PERCPU_ARRAY})
_RUNTIME_LOOKUP = ("pybpf.runtime.helpers.maps", "map_lookup_elem")
"""The helper whose semantics the native lookup reproduces: any other registered for id 1 keeps the trampoline."""
_RUNTIME_SYSTEM: dict[int, tuple[str, str]] = {
    HelperId.GET_SMP_PROCESSOR_ID: ("pybpf.runtime.helpers.system", "get_smp_processor_id"),
    HelperId.KTIME_GET_NS: ("pybpf.runtime.helpers.system", "ktime_get_ns"),
}
_HOST_CLOCK = ("pybpf.runtime.helpers.services", "SystemClock")
CLOCK_MONOTONIC = 1
"""<linux/time.h>'s clock id."""
NS_PER_SEC = 1_000_000_000
NATIVE_SYSTEM_HELPERS = frozenset(_RUNTIME_SYSTEM)


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


def _names(thing: object) -> tuple[str, str]:
    return getattr(thing, "__module__", ""), getattr(thing, "__qualname__", "")


def native_lookup_enabled(helpers: Mapping[int, HelperFn]) -> bool:
    """Whether the program's lookup helper is the runtime's (the only one the native path mirrors)."""
    fn = helpers.get(HelperId.MAP_LOOKUP_ELEM)
    return fn is not None and _names(fn) == _RUNTIME_LOOKUP


def emit_system_helper(builder_of: _FunctionEmitter, pc: int, helper: int) -> None:
    """``call`` of a :data:`NATIVE_SYSTEM_HELPERS` helper: native when ``Slot.NATIVE`` allows, else the trampoline."""
    fb = builder_of
    builder = fb.builder
    bit = NativeHelper.SMP_PROCESSOR_ID if helper == HelperId.GET_SMP_PROCESSOR_ID else NativeHelper.KTIME_GET_NS
    allowed = builder.and_(fb._load_slot(Slot.NATIVE), fb._const(bit))
    native, slow, done = (fb._new_block(f"helper{helper}_{what}_{pc}") for what in ("native", "slow", "done"))
    builder.cbranch(builder.icmp_unsigned("!=", allowed, fb._const(0)), native, slow)
    builder.position_at_end(native)
    if bit is NativeHelper.SMP_PROCESSOR_ID:
        fb._set(0, builder.and_(fb._load_slot(Slot.CPU), fb._const(0xFFFF_FFFF)))
    else:
        ir = fb.ir
        clock_type = ir.FunctionType(ir.IntType(32), [ir.IntType(32), fb.parent.state_type])
        clock = builder.inttoptr(fb._load_slot(Slot.CLOCK_FN), clock_type.as_pointer())
        # CLOCK_MONOTONIC cannot fail for a valid timespec: the result code is not looked at.
        builder.call(clock, [ir.Constant(ir.IntType(32), CLOCK_MONOTONIC), fb._slot(Slot.TIMESPEC)])
        seconds = fb._load_slot(Slot.TIMESPEC)
        nanoseconds = fb._load_slot(Slot.TIMESPEC_NSEC)
        fb._set(0, builder.add(builder.mul(seconds, fb._const(NS_PER_SEC)), nanoseconds))
    builder.branch(done)
    builder.position_at_end(slow)
    fb._call_helper(pc, fb._const(helper))
    builder.branch(done)
    builder.position_at_end(done)


def clock_gettime_address() -> int:
    """libc's ``clock_gettime`` (the process's own symbols: Python links libc)."""
    address = ctypes.cast(ctypes.CDLL(None).clock_gettime, ctypes.c_void_p).value
    if address is None:
        raise NotSupportedError("libc's clock_gettime has no address")
    return address


def native_system_bits(helpers: Mapping[int, HelperFn], called: Iterable[int], user: object) -> tuple[int, int]:
    """(:class:`NativeHelper` bits, CPU) for a run: which called system helpers native code may serve.

    ``user`` is the run's runtime state, duck-typed as in :func:`array_map_entries`.
    """
    bits, cpu = 0, 0
    for helper in called:
        fn = helpers.get(helper)
        if fn is None or _names(fn) != _RUNTIME_SYSTEM.get(helper):
            continue
        if helper == HelperId.GET_SMP_PROCESSOR_ID:
            current = getattr(user, "current_cpu", None)
            if isinstance(current, int):
                bits, cpu = bits | NativeHelper.SMP_PROCESSOR_ID, current
        elif _names(type(getattr(getattr(user, "services", None), "clock", None))) == _HOST_CLOCK:
            bits |= NativeHelper.KTIME_GET_NS
    return bits, cpu


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
