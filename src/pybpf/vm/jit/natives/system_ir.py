"""``bpf_get_smp_processor_id`` and ``bpf_ktime_get_ns`` in native code.

Served natively when the run's ``Slot.NATIVE`` bit says so: the CPU comes from ``Slot.CPU``, the
time from libc's ``clock_gettime(CLOCK_MONOTONIC)`` through ``Slot.CLOCK_FN`` (only when the
run's services read the host's clock, so a manual test clock is still read in Python).
``bpf_get_prandom_u32`` and the current-task helpers are in :mod:`.tracing` (the generator's
state is native memory both engines step).
"""

from __future__ import annotations

import ctypes
from typing import TYPE_CHECKING

from pybpf.errors import NotSupportedError
from pybpf.platform.uapi_generated import HelperId
from pybpf.vm.jit.state import NativeHelper, Slot

if TYPE_CHECKING:
    from pybpf.vm.jit.codegen import _FunctionEmitter

CLOCK_MONOTONIC = 1
"""<linux/time.h>'s clock id."""
NS_PER_SEC = 1_000_000_000
SYSTEM_BITS: dict[int, NativeHelper] = {
    HelperId.GET_SMP_PROCESSOR_ID: NativeHelper.SMP_PROCESSOR_ID,
    HelperId.KTIME_GET_NS: NativeHelper.KTIME_GET_NS,
}
NATIVE_SYSTEM_HELPERS = frozenset(SYSTEM_BITS)


def emit_system_helper(builder_of: _FunctionEmitter, pc: int, helper: int) -> None:
    """``call`` of a :data:`NATIVE_SYSTEM_HELPERS` helper: native when ``Slot.NATIVE`` allows, else the trampoline."""
    fb = builder_of
    builder = fb.builder
    bit = SYSTEM_BITS[HelperId(helper)]
    _, slow, done = fb.native_or_trampoline(fb.native_bit_allows(bit), f"helper{helper}", pc)
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
    fb.finish_native_call(pc, helper, slow, done)


def clock_gettime_address() -> int:
    """libc's ``clock_gettime`` (the process's own symbols: Python links libc)."""
    address = ctypes.cast(ctypes.CDLL(None).clock_gettime, ctypes.c_void_p).value
    if address is None:
        raise NotSupportedError("libc's clock_gettime has no address")
    return address
