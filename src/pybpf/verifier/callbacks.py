"""Callbacks: helper-invoked functions verified the way the kernel verifies them.

A *synchronous* callback (``bpf_loop``, ``bpf_for_each_map_elem``, ``bpf_find_vma``,
``bpf_user_ringbuf_drain``) may run any number of times, 0 included, before the helper returns.
The kernel (``push_callback_call``) therefore treats the helper call as a loop head:

* the path that executes the call continues after it at once (the callback ran 0 times), and
  a copy of the state *before* the call's clobbers is queued entering the callback
  (:func:`enter_sync`), with the calling frame's ``callback_depth`` incremented;
* when the callback exits, execution goes back to the *call instruction itself*
  (``return_from_callee``), which re-checks the arguments and queues one more iteration;
* at the call site a state still being explored (a loop in progress) prunes an equal-or-wider
  new one (``calls_callback`` in ``is_state_visited``), so iterating stops once states
  converge, and ``bpf_loop`` stops queueing iterations after ``nr_loops``'s maximum.

The state after the call thus covers every number of iterations. The kernel converges on
counters kept in the caller's stack because an imprecise scalar matches any scalar; we compare
scalars exactly, so from the first iteration on :func:`widen` joins what changed since the
iteration in progress at the call site with its value there (a counter cycling through a few
values converges), and after :data:`WIDEN_AFTER` iterations forgets it. A ``bpf_loop`` of at
most :data:`LOOP_UNROLL_LIMIT` iterations is unrolled exactly instead, as the kernel would.
Widening only loses information: it can reject a program the kernel accepts (a longer
``bpf_loop`` whose callback needs a counter's exact value on every iteration), never the reverse.

An *asynchronous* callback (``bpf_timer_set_callback``) runs later, on a stack of its own: it
is verified as a separate entry point (``push_async_cb``) with r1 = the timer's map, r2 = key,
r3 = value, and must return 0.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from pybpf.platform import HelperId
from pybpf.verifier.machine import MAX_CALL_FRAMES, Frame, State, reject_fatal
from pybpf.verifier.scalar import Scalar
from pybpf.verifier.state import IdMap, RegState, RegType, SlotByte, StackSlot, StackState, regsafe

SYNC_CALLBACK_HELPERS = frozenset({HelperId.LOOP, HelperId.FOR_EACH_MAP_ELEM, HelperId.FIND_VMA,
                                   HelperId.USER_RINGBUF_DRAIN})
"""Helpers whose callback runs before they return (``is_sync_callback_calling_function``)."""
ASYNC_CALLBACK_HELPERS = frozenset({HelperId.TIMER_SET_CALLBACK})
CALLBACK_HELPERS = SYNC_CALLBACK_HELPERS | ASYNC_CALLBACK_HELPERS

SYNC_RETURN_RANGE = (0, 1)
ASYNC_RETURN_RANGE = (0, 0)

WIDEN_AFTER = 2
"""Iterations of a callback after which changed values are forgotten, not joined (module docstring)."""
LOOP_UNROLL_LIMIT = 8
"""A ``bpf_loop`` whose ``nr_loops`` is at most this is unrolled exactly, never widened."""


@dataclass(frozen=True, slots=True)
class CallbackEntry:
    """A path to explore into a callback: its first pc and the state entering it."""

    pc: int
    state: State
    is_async: bool


def _callee_frame(callsite: int, start: int, args: dict[int, RegState], frameno: int, *, callback: bool) -> Frame:
    regs = [RegState.not_init() for _ in range(11)]
    for number, value in args.items():
        regs[number] = value
    regs[10] = RegState.pointer(RegType.PTR_TO_STACK, frameno=frameno)
    return Frame(regs, StackState(), callsite, start, frameno, callback)


def should_iterate(state: State, helper: int) -> bool:
    """Whether one more iteration is queued: ``bpf_loop`` stops at ``nr_loops``'s maximum."""
    if helper != HelperId.LOOP:
        return True
    nr_loops = state.regs[1]
    limit = nr_loops.var_off.umax if nr_loops.type is RegType.SCALAR_VALUE else 1 << 64
    return state.frame.callback_depth < limit


def enter_sync(state: State, pc: int, start: int, args: dict[int, RegState]) -> CallbackEntry:
    """The path entering a synchronous callback, from the state before the call's clobbers.

    The calling frame's registers keep the helper's arguments: the callback's exit returns to
    the call instruction, which checks them again and queues the next iteration."""
    if len(state.frames) >= MAX_CALL_FRAMES:
        raise reject_fatal(f"the call stack of {len(state.frames) + 1} frames is too deep")  # E2BIG
    forked = state.copy()
    forked.frame.callback_depth += 1
    forked.frames.append(_callee_frame(pc, start, args, len(state.frames), callback=True))
    return CallbackEntry(start, forked, is_async=False)


def enter_async(start: int, args: dict[int, RegState]) -> CallbackEntry:
    """A timer callback: a fresh state whose only frame is the callback's (no caller, no refs;
    its call site is the main program's, as ``push_async_cb`` sets it)."""
    frame = _callee_frame(-1, start, args, 0, callback=False)
    return CallbackEntry(start, State([frame]), is_async=True)


def is_async_entry(state: State) -> bool:
    """Whether the outermost frame is an asynchronous callback rather than the main program
    (or a global function, whose entry frame's call site is -2: see global_funcs)."""
    return state.frames[0].subprog != 0 and state.frames[0].callsite == -1


def after_callback(state: State) -> None:
    """The continuing path (the callback ran for the last time): ``callback_depth`` restarts."""
    state.frame.callback_depth = 0


def wants_widening(state: State, helper: int) -> bool:
    """Whether a state returning from a callback to its call site should be widened."""
    if state.frame.callback_depth == 0:
        return False
    if helper == HelperId.LOOP:
        nr_loops = state.regs[1]
        return nr_loops.type is not RegType.SCALAR_VALUE or nr_loops.var_off.umax > LOOP_UNROLL_LIMIT
    return True


# -- widening ------------------------------------------------------------------------------------


def _widen_reg(old: RegState, cur: RegState, forget: bool) -> RegState:
    if regsafe(old, cur, IdMap()):
        return cur
    if old.type is not cur.type:
        return RegState.not_init()
    if cur.type is RegType.SCALAR_VALUE:
        return RegState.scalar() if forget else RegState.scalar(old.var_off.join(cur.var_off))
    if old.off != cur.off or old.map_uid != cur.map_uid or old.frameno != cur.frameno \
            or old.maybe_null != cur.maybe_null or old.mem_size != cur.mem_size:
        return RegState.not_init()
    # Same kind of pointer whose variable offset or checked range moved: keep the kind, lose
    # the offset (any access through it is then refused) and keep the smaller checked range.
    if old.var_off.includes(cur.var_off):
        var_off = cur.var_off
    else:
        var_off = Scalar.unknown() if forget else old.var_off.join(cur.var_off)
    return replace(cur, var_off=var_off, range=min(old.range, cur.range))


def _widen_byte(old: SlotByte, cur: SlotByte) -> SlotByte:
    if old is cur and old is not SlotByte.STACK_SPILL:
        return cur
    if SlotByte.STACK_INVALID in (old, cur):
        return SlotByte.STACK_INVALID  # maybe never written on some iteration
    return SlotByte.STACK_MISC


def _widen_slot(old: StackSlot, cur: StackSlot, forget: bool) -> StackSlot:
    if old == cur:
        return cur
    if old.is_spilled_register() and cur.is_spilled_register():
        widened = _widen_reg(old.spilled_ptr, cur.spilled_ptr, forget)
        if widened.type is not RegType.NOT_INIT:
            return StackSlot.spill(widened)
        # Two registers with nothing in common: the slot holds some unknown bytes.
        return StackSlot.filled(SlotByte.STACK_MISC)
    return StackSlot(tuple(_widen_byte(o, c) for o, c in zip(old.slot_type, cur.slot_type, strict=True)))


def _widen_stack(old: StackState, cur: StackState, forget: bool) -> StackState:
    size = max(len(old.slots), len(cur.slots))
    return StackState(tuple(_widen_slot(old.slot(index), cur.slot(index), forget) for index in range(size)))


def widen(state: State, old: State) -> None:
    """Widen ``state`` in place against ``old`` (same call chain): whatever differs is joined
    with ``old``'s value, or forgotten once the callback has run :data:`WIDEN_AFTER` times."""
    forget = state.frame.callback_depth >= WIDEN_AFTER
    for old_frame, frame in zip(old.frames, state.frames, strict=True):
        frame.regs = [_widen_reg(o, c, forget) for o, c in zip(old_frame.regs, frame.regs, strict=True)]
        frame.stack = _widen_stack(old_frame.stack, frame.stack, forget)


def same_chain(old: State, cur: State) -> bool:
    """Whether two states are in the same call chain (so one can be widened against the other)."""
    return len(old.frames) == len(cur.frames) and all(
        a.callsite == b.callsite and a.subprog == b.subprog for a, b in zip(old.frames, cur.frames, strict=True))


__all__ = [
    "ASYNC_CALLBACK_HELPERS",
    "ASYNC_RETURN_RANGE",
    "CALLBACK_HELPERS",
    "LOOP_UNROLL_LIMIT",
    "SYNC_CALLBACK_HELPERS",
    "SYNC_RETURN_RANGE",
    "WIDEN_AFTER",
    "CallbackEntry",
    "after_callback",
    "enter_async",
    "enter_sync",
    "is_async_entry",
    "same_chain",
    "should_iterate",
    "wants_widening",
    "widen",
]
