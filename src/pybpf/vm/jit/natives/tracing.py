"""Tracing helpers in native code: get_current_pid_tgid/uid_gid/comm, get_prandom_u32, ring buffers.

A tracing program (kprobe, tracepoint, uprobe...) typically asks who is running and draws random
numbers for sampling; through the trampoline each of those is a Python call of microseconds.

* The task's answers are constant for a run: :func:`fill_tracing_slots` copies them from the
  run's :class:`~pybpf.vm.native_tracing.TracingRunSupport` into ``Slot.TASK_PID_TGID``,
  ``Slot.TASK_UID_GID`` and ``Slot.TASK_COMM`` (16 bytes in two slots) before native code
  starts; the helpers are then one load. ``bpf_get_current_comm(buf, size)`` copies like the
  kernel's ``strscpy_pad``: at most ``size - 1`` bytes of the name, then zeros up to ``size``;
  0, or -EINVAL for a zero size. ``buf`` is checked like a program write (hot range, range
  table, fault handler), so a bad buffer raises the interpreter's MemoryAccessError at the
  helper's pc.
* ``bpf_get_prandom_u32`` steps the run's CPU's generator at ``Slot.PRANDOM_STATE`` with the
  Tausworthe recurrence of :data:`~pybpf.vm.native_tracing.TAUSWORTHE_STEPS`, which the Python
  helper applies to the same memory: both engines draw one stream.
* ``bpf_ringbuf_reserve/submit/discard/output`` follow the ring's cross-process protocol on its
  native descriptor (:mod:`.ringbuf_ir`); the ring table (``Slot.RING_TABLE``) comes from the
  run's ``native_ring_table()``.

Each call site tests its ``Slot.NATIVE`` bit (:class:`~pybpf.vm.jit.state.NativeHelper`), set by
:func:`~pybpf.vm.jit.native_helpers.native_run_setup` only for the runtime's own helper
functions; a test's replacement, or a run whose ``user`` is no ``TracingRunSupport``, keeps the
trampoline.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pybpf.platform.uapi_generated import HelperId
from pybpf.vm.jit.natives.ringbuf_ir import emit_ringbuf_commit, emit_ringbuf_output, emit_ringbuf_reserve
from pybpf.vm.jit.state import NativeHelper, Slot
from pybpf.vm.native_tracing import TASK_COMM_LEN, TAUSWORTHE_STEPS, TracingRunSupport

if TYPE_CHECKING:
    from pybpf.vm.jit.codegen import _FunctionEmitter

U32 = 0xFFFF_FFFF
U64 = (1 << 64) - 1
EINVAL = -22 & U64
TRACING_BITS: dict[int, NativeHelper] = {
    HelperId.GET_CURRENT_PID_TGID: NativeHelper.GET_CURRENT_PID_TGID,
    HelperId.GET_CURRENT_UID_GID: NativeHelper.GET_CURRENT_UID_GID,
    HelperId.GET_CURRENT_COMM: NativeHelper.GET_CURRENT_COMM,
    HelperId.GET_PRANDOM_U32: NativeHelper.GET_PRANDOM_U32,
    HelperId.RINGBUF_RESERVE: NativeHelper.RINGBUF_RESERVE,
    HelperId.RINGBUF_SUBMIT: NativeHelper.RINGBUF_SUBMIT,
    HelperId.RINGBUF_DISCARD: NativeHelper.RINGBUF_DISCARD,
    HelperId.RINGBUF_OUTPUT: NativeHelper.RINGBUF_OUTPUT,
}
NATIVE_TRACING_HELPERS = frozenset(TRACING_BITS)
"""Helper ids :func:`emit_tracing_helper` translates."""
_TASK_MASK = NativeHelper.GET_CURRENT_PID_TGID | NativeHelper.GET_CURRENT_UID_GID | NativeHelper.GET_CURRENT_COMM
_RING_MASK = (
    NativeHelper.RINGBUF_RESERVE
    | NativeHelper.RINGBUF_SUBMIT
    | NativeHelper.RINGBUF_DISCARD
    | NativeHelper.RINGBUF_OUTPUT
)
_TRACING_MASK = _TASK_MASK | NativeHelper.GET_PRANDOM_U32 | _RING_MASK


# -- run setup (Python side) ------------------------------------------------------------------------


def fill_tracing_slots(state: Any, user: object) -> None:
    """Fill the task and generator slots for a run whose ``Slot.NATIVE`` is already set.

    Clears the bits native code cannot honour (no :class:`TracingRunSupport`, no generator
    state for the run's CPU): those calls then go through the trampoline.
    """
    bits = int(state[Slot.NATIVE])
    if not bits & _TRACING_MASK:
        return
    if not isinstance(user, TracingRunSupport):
        state[Slot.NATIVE] = bits & ~_TRACING_MASK
        return
    if bits & _TASK_MASK:
        task = user.native_task()
        low, high = task.comm_words()
        state[Slot.TASK_PID_TGID : Slot.TASK_COMM_HIGH + 1] = [task.pid_tgid & U64, task.uid_gid & U64, low, high]
    if bits & NativeHelper.GET_PRANDOM_U32:
        address = user.native_prandom_state()
        state[Slot.PRANDOM_STATE] = address
        if not address:
            bits &= ~NativeHelper.GET_PRANDOM_U32
            state[Slot.NATIVE] = bits
    if bits & _RING_MASK:
        state[Slot.RING_TABLE], state[Slot.RING_COUNT] = user.native_ring_table()


# -- code generation --------------------------------------------------------------------------------


def emit_tracing_helper(fb: _FunctionEmitter, pc: int, helper: int) -> None:
    """A call of a :data:`NATIVE_TRACING_HELPERS` helper: native when ``Slot.NATIVE`` allows, else the trampoline."""
    builder = fb.builder
    bit = TRACING_BITS[helper]
    native, slow, done = fb.native_or_trampoline(fb.native_bit_allows(bit), f"tracing{helper}", pc)
    match bit:
        case NativeHelper.GET_CURRENT_PID_TGID:
            fb._set(0, fb._load_slot(Slot.TASK_PID_TGID))
        case NativeHelper.GET_CURRENT_UID_GID:
            fb._set(0, fb._load_slot(Slot.TASK_UID_GID))
        case NativeHelper.GET_CURRENT_COMM:
            _current_comm(fb, pc)
        case NativeHelper.GET_PRANDOM_U32:
            fb._set(0, _prandom_u32(fb))
        case NativeHelper.RINGBUF_RESERVE:
            emit_ringbuf_reserve(fb, native, slow, done)
        case NativeHelper.RINGBUF_OUTPUT:
            emit_ringbuf_output(fb, pc, native, slow, done)
        case _:
            emit_ringbuf_commit(fb, native, slow, done, discard=bit is NativeHelper.RINGBUF_DISCARD)
    if not bit & _RING_MASK:  # the ring emitters end their own blocks (some paths go to the trampoline)
        builder.branch(done)
    fb.finish_native_call(pc, helper, slow, done)


def _prandom_u32(fb: _FunctionEmitter) -> Any:
    """Step the four components at ``Slot.PRANDOM_STATE``; their XOR, zero-extended."""
    ir, builder = fb.ir, fb.builder
    i32 = ir.IntType(32)
    words = builder.inttoptr(fb._load_slot(Slot.PRANDOM_STATE), i32.as_pointer())
    output = ir.Constant(i32, 0)
    for index, step in enumerate(TAUSWORTHE_STEPS):
        pointer = builder.gep(words, [ir.Constant(i32, index)])
        value = fb.parent.tag(builder.load(pointer, align=4), "tables")
        masked = builder.shl(builder.and_(value, ir.Constant(i32, step.mask)), ir.Constant(i32, step.left))
        shifted = builder.xor(builder.shl(value, ir.Constant(i32, step.shift)), value)
        mixed = builder.lshr(shifted, ir.Constant(i32, step.right))
        value = builder.xor(masked, mixed)
        fb.parent.tag(builder.store(value, pointer, align=4), "tables")
        output = builder.xor(output, value)
    return builder.zext(output, fb.i64)


def _current_comm(fb: _FunctionEmitter, pc: int) -> None:
    """bpf_get_current_comm(buf, size): strscpy_pad of the name into ``size`` bytes; 0 or -EINVAL."""
    from pybpf.vm.jit.native_packet import _Emit  # native_packet imports the emitters of this package

    ir, builder = fb.ir, fb.builder
    i8, i1 = ir.IntType(8), ir.IntType(1)
    i8p = i8.as_pointer()
    target, size = fb._get(1), builder.and_(fb._get(2), fb._const(U32))
    empty = builder.icmp_unsigned("==", size, fb._const(0))
    copy, done = fb._new_block(f"comm_copy_{pc}"), fb._new_block(f"comm_done_{pc}")
    fb._set(0, fb._const(EINVAL))
    builder.cbranch(empty, done, copy)
    builder.position_at_end(copy)
    _Emit(fb, pc).check_range(target, size, True)
    module = fb.parent.module
    memset = module.declare_intrinsic("llvm.memset", [i8p, fb.i64])
    memcpy = module.declare_intrinsic("llvm.memcpy", [i8p, i8p, fb.i64])
    destination = builder.inttoptr(target, i8p)
    builder.call(memset, [destination, ir.Constant(i8, 0), size, ir.Constant(i1, 0)])
    limit = fb._const(TASK_COMM_LEN - 1)
    wanted = builder.sub(size, fb._const(1))
    length = builder.select(builder.icmp_unsigned("<", wanted, limit), wanted, limit)
    name = builder.bitcast(fb._slot(Slot.TASK_COMM), i8p)
    builder.call(memcpy, [destination, name, length, ir.Constant(i1, 0)])
    fb._set(0, fb._const(0))
    builder.branch(done)
    builder.position_at_end(done)
