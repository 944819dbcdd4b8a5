"""Open-coded iterators (``bpf_iter_<type>_new/next/destroy``) on the stack, as the kernel tracks them.

An iterator lives in ``STACK_ITER`` slots of some frame's stack (:class:`~pybpf.verifier.state.IterSlot`):
``_new()`` needs slots that hold no iterator, writes them and acquires a reference (so an
iterator never destroyed is a leak at exit); ``_next()`` and ``_destroy()`` need an
initialised one of the right type; ``_destroy()`` releases the reference and leaves the slots
uninitialised. A plain store over the slots destroys the iterator without releasing it.

``_next()`` is a loop head (``process_iter_next_call``): the path goes on with the iterator
DRAINED and r0 = NULL, and a copy with the iterator ACTIVE one level deeper and r0 non-NULL is
queued at the next instruction. Before it is queued, the copy's scalars that changed since the
previous visit of this ``_next()`` on the same path and that nothing needed exactly are
forgotten (``widen_imprecise_scalars``), so the loop's states converge. At the ``_next()``
call, a state covered by one still being explored there with the iterator ACTIVE is a loop
that has converged (see :mod:`pybpf.verifier.explore`); the depth keeps that test apart from the
infinite-loop test, which only looks at identical states.
"""

from __future__ import annotations

from pybpf.platform.kfunc_types import KfuncArg, KfuncProto
from pybpf.verifier.machine import Env, Frame, Rejection, State, reject
from pybpf.verifier.memory import helper_memory
from pybpf.verifier.state import (
    BPF_REG_SIZE,
    IterSlot,
    IterState,
    RegState,
    RegType,
    SlotByte,
    StackSlot,
)

_ITER_SLOT_TYPE = (SlotByte.STACK_ITER,) * BPF_REG_SIZE


def _spi(reg: RegState, nr_slots: int) -> int:
    """``stack_slot_obj_get_spi``: the slot index of the iterator's first (lowest) slot."""
    if not reg.var_off.is_const():
        raise reject("iter has to be at a constant offset")
    offset = _stack_offset(reg)
    if offset % BPF_REG_SIZE:
        raise reject(f"cannot pass in iter at an offset={offset}")
    spi = _get_spi(offset)
    if spi + 1 < nr_slots:
        raise reject(f"cannot pass in iter at an offset={offset}")
    return spi


def _get_spi(offset: int) -> int:
    """``__get_spi``: ``(-off - 1) / BPF_REG_SIZE`` in C, whose division truncates toward zero,
    so that fp+0 names slot 0 (fp-8) too: an iterator passed as r10 itself is the one at fp-8."""
    spi = (-offset - 1) // BPF_REG_SIZE
    return 0 if offset == 0 else spi


def _stack_offset(reg: RegState) -> int:
    """A stack pointer's constant offset from its frame pointer (negative inside the frame)."""
    constant = reg.var_off.const_value() or 0
    return reg.off + (constant - (1 << 64) if constant >> 63 else constant)


def _frame(state: State, reg: RegState) -> Frame:
    return state.frames[reg.frameno]


def check_iter_pointer(regno: int, reg: RegState) -> None:
    if reg.type is not RegType.PTR_TO_STACK:
        raise reject(f"arg#{regno - 1} expected pointer to an iterator on stack")


def iter_new(env: Env, state: State, pc: int, regno: int, arg: KfuncArg) -> None:
    """``bpf_iter_<type>_new()``: the uninitialised slots r<regno> points to become an ACTIVE
    iterator holding a reference."""
    reg = state.regs[regno]
    try:
        spi = _spi(reg, arg.iter_slots)
    except Rejection:
        # The kernel logs why (stack_slot_obj_get_spi), then this.
        raise reject(f"expected uninitialized iter_{arg.iter_type} as arg #{regno - 1}") from None
    frame = _frame(state, reg)
    for index in range(spi, spi - arg.iter_slots, -1):
        if SlotByte.STACK_ITER in frame.stack.slot(index).slot_type:
            raise reject(f"expected uninitialized iter_{arg.iter_type} as arg #{regno - 1}")
    # check_mem_access for each slot: bounds, stack depth, and any spilled value destroyed.
    helper_memory(env, state, regno, reg, arg.iter_slots * BPF_REG_SIZE, write=True)
    ref = env.new_id()
    state.refs[ref] = pc
    for position, index in enumerate(range(spi, spi - arg.iter_slots, -1)):
        slot = IterSlot(arg.iter_type, IterState.ACTIVE, 0, ref if position == 0 else 0)
        frame.stack = frame.stack.with_slot(index, StackSlot(_ITER_SLOT_TYPE, RegState.not_init(), slot))


def _check_initialised(state: State, regno: int, reg: RegState, arg: KfuncArg) -> tuple[Frame, int]:
    """``is_iter_reg_valid_init``: every slot a live iterator of ``arg``'s type."""
    try:
        spi = _spi(reg, arg.iter_slots)
    except Rejection:
        raise reject(f"expected an initialized iter_{arg.iter_type} as arg #{regno - 1}") from None
    frame = _frame(state, reg)
    for position, index in enumerate(range(spi, spi - arg.iter_slots, -1)):
        slot = frame.stack.slot(index)
        found = slot.iter
        valid = (slot.slot_type == _ITER_SLOT_TYPE and found is not None and found.iter_type == arg.iter_type
                 and (found.ref_obj_id != 0) == (position == 0))
        if not valid:
            raise reject(f"expected an initialized iter_{arg.iter_type} as arg #{regno - 1}")
    return frame, spi


def iter_use(state: State, regno: int, reg: RegState, proto: KfuncProto) -> None:
    """An initialised iterator passed to ``_next()``, ``_destroy()`` or another iterator kfunc;
    ``_destroy()`` releases it."""
    arg = proto.args[regno - 1]
    frame, spi = _check_initialised(state, regno, reg, arg)
    if proto.has(proto.flags.ITER_DESTROY):
        first = frame.stack.slot(spi).iter
        if first is not None:
            state.refs.pop(first.ref_obj_id, None)
        for index in range(spi, spi - arg.iter_slots, -1):
            frame.stack = frame.stack.with_slot(index, StackSlot())


def iter_slot_of(state: State, reg: RegState) -> IterSlot | None:
    """The iterator a (stack) pointer argument points to, if any."""
    if reg.type is not RegType.PTR_TO_STACK or not reg.var_off.is_const():
        return None
    offset = _stack_offset(reg)
    if offset > 0 or offset % BPF_REG_SIZE:
        return None
    return _frame(state, reg).stack.slot(_get_spi(offset)).iter


def _set_iter(state: State, reg: RegState, slot: IterSlot) -> None:
    offset = _stack_offset(reg)
    frame = _frame(state, reg)
    index = _get_spi(offset)
    old = frame.stack.slot(index)
    frame.stack = frame.stack.with_slot(index, StackSlot(old.slot_type, old.spilled_ptr, slot))


def iter_next(state: State, iter_reg: RegState) -> State | None:
    """``process_iter_next_call``, after r0 was set from the prototype: the path goes on
    DRAINED with r0 = NULL; for an ACTIVE iterator the returned copy (to queue at the next
    instruction) is ACTIVE one level deeper, with r0 not NULL."""
    current = iter_slot_of(state, iter_reg)
    if current is None:
        raise reject("verifier internal error: iterator slot disappeared")
    queued: State | None = None
    if current.state is IterState.ACTIVE:
        queued = state.copy()
        _set_iter(queued, iter_reg, IterSlot(current.iter_type, IterState.ACTIVE, current.depth + 1,
                                             current.ref_obj_id))
        queued.regs[0] = queued.regs[0].not_null()
    _set_iter(state, iter_reg, IterSlot(current.iter_type, IterState.DRAINED, current.depth, current.ref_obj_id))
    state.regs[0] = RegState.const(0)
    return queued


