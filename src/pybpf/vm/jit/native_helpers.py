"""Helpers served by native code, without a Python call: map lookups and updates, CPU id, clock.

A helper call through the ctypes trampoline costs microseconds; a map lookup in native code
costs nanoseconds. What native code may do is decided per run, through the explicit interface
of :mod:`pybpf.vm.native_maps`: when the run's ``user`` object is a
:class:`~pybpf.vm.native_maps.NativeRunSupport` (the runtime's ``RunState``), it names the
helper ids whose implementation is the runtime's own (a test's replacement keeps the
trampoline), the run's CPU, and for each map pointer of the program the map's native
descriptor. :func:`native_run_setup` turns that into the ``Slot.NATIVE`` bits and the map
table (pointer, descriptor, CPU offset) before native code starts; any other ``user`` gets no
native helper at all.

* ``bpf_map_lookup_elem``: ARRAY/PERCPU_ARRAY inline, HASH/PERCPU_HASH and LPM_TRIE through
  the maps' index tables (:mod:`pybpf.vm.jit.natives.map_ir`). LRU hashes keep the trampoline:
  their lookup must refresh the element's recency, which lives in Python.
* ``bpf_map_update_elem`` of an existing element with BPF_ANY/BPF_EXIST (ARRAY, HASH and their
  per-CPU kinds): the value copied in place; everything else (new keys, deletes, flags, spin
  locks, read-only maps) goes through the trampoline.
* ``bpf_get_smp_processor_id`` and ``bpf_ktime_get_ns`` (:mod:`pybpf.vm.jit.natives.system_ir`).
* ``bpf_get_current_pid_tgid``/``uid_gid``/``comm`` and ``bpf_get_prandom_u32``
  (:mod:`pybpf.vm.jit.natives.tracing`; :func:`fill_tracing_slots` completes the run setup).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from pybpf.platform.uapi_generated import HelperId
from pybpf.vm.jit.natives.map_ir import emit_map_lookup, emit_map_update
from pybpf.vm.jit.natives.system_ir import (
    NATIVE_SYSTEM_HELPERS,
    SYSTEM_BITS,
    clock_gettime_address,
    emit_system_helper,
)
from pybpf.vm.jit.natives.tracing import NATIVE_TRACING_HELPERS, TRACING_BITS, emit_tracing_helper, fill_tracing_slots
from pybpf.vm.jit.state import NativeHelper
from pybpf.vm.native_maps import NativeRunSupport

if TYPE_CHECKING:
    from pybpf.vm.execution import HelperFn

__all__ = [
    "NATIVE_HELPERS",
    "NATIVE_MAP_HELPERS",
    "NATIVE_SYSTEM_HELPERS",
    "NATIVE_TRACING_HELPERS",
    "clock_gettime_address",
    "emit_map_lookup",
    "emit_map_update",
    "emit_system_helper",
    "emit_tracing_helper",
    "fill_tracing_slots",
    "native_run_setup",
]

MAP_BITS: dict[int, NativeHelper] = {
    HelperId.MAP_LOOKUP_ELEM: NativeHelper.MAP_LOOKUP_ELEM,
    HelperId.MAP_UPDATE_ELEM: NativeHelper.MAP_UPDATE_ELEM,
}
NATIVE_MAP_HELPERS = frozenset(MAP_BITS)
_BITS: dict[int, NativeHelper] = {**MAP_BITS, **SYSTEM_BITS, **TRACING_BITS}
NATIVE_HELPERS = frozenset(_BITS)
"""Every helper id native code may serve itself."""


def native_run_setup(
    helpers: Mapping[int, HelperFn], called: frozenset[int], pointers: Iterable[int], user: object
) -> tuple[int, int, list[int]]:
    """(``Slot.NATIVE`` bits, the run's CPU, the map table's fields) for a run of a program.

    ``called`` are the :data:`NATIVE_HELPERS` the program calls, ``pointers`` the map pointers
    its ``lddw`` instructions load.
    """
    if not called or not isinstance(user, NativeRunSupport):
        return 0, 0, []
    allowed = user.native_helpers(helpers) & called
    bits = 0
    for helper in allowed:
        bits |= _BITS[helper]
    cpu = user.native_cpu()
    fields: list[int] = []
    if allowed & NATIVE_MAP_HELPERS:
        for pointer in pointers:
            descriptor = user.native_map(pointer)
            if descriptor is None:
                continue
            offset = descriptor.cpu_offset(cpu)
            if offset is None:
                continue  # a CPU the map has no copy for: the Python helper decides
            fields += (pointer, descriptor.address, offset)
    return bits, cpu, fields
