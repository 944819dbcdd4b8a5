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

The state after the call thus covers every number of iterations. Iterating converges the
kernel's way (``widen_imprecise_scalars`` in ``prepare_func_exit``): when a callback returns, each
scalar in any frame (register or spilled) that is *imprecise* in the iteration in progress at the
call site and differs from it there becomes unknown, so a counter nothing relies on converges
after two iterations. A scalar some continuation needed exactly (precision tracking, see
:mod:`pybpf.verifier.precision`, which backtracks through callback entries and exits) is kept:
``bpf_loop`` then unrolls up to ``nr_loops`` iterations, and a callback whose precise values never
repeat runs into the complexity limit, as in the kernel. A frame's ``callback_depth`` takes part
in pruning (an old state that queued more iterations does not cover a new one); the state's
``callback_unroll_depth`` keeps iterations from looking like an infinite loop.

An *asynchronous* callback (``bpf_timer_set_callback``) runs later, on a stack of its own: it
is verified as a separate entry point (``push_async_cb``) with r1 = the timer's map, r2 = key,
r3 = value, and must return 0.
"""

from __future__ import annotations

from dataclasses import dataclass

from pybpf.platform import HelperId
from pybpf.verifier.machine import MAX_CALL_FRAMES, Frame, State, reject_fatal
from pybpf.verifier.state import RegState, RegType, StackState

SYNC_CALLBACK_HELPERS = frozenset({HelperId.LOOP, HelperId.FOR_EACH_MAP_ELEM, HelperId.FIND_VMA,
                                   HelperId.USER_RINGBUF_DRAIN})
"""Helpers whose callback runs before they return (``is_sync_callback_calling_function``)."""
ASYNC_CALLBACK_HELPERS = frozenset({HelperId.TIMER_SET_CALLBACK})
CALLBACK_HELPERS = SYNC_CALLBACK_HELPERS | ASYNC_CALLBACK_HELPERS

KFUNC_CALLBACK = -1
"""The callback-site marker of a kfunc that calls back synchronously (``bpf_rbtree_add``'s less())."""

SYNC_RETURN_RANGE = (0, 1)
ASYNC_RETURN_RANGE = (0, 0)


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
    forked.callback_unroll_depth += 1
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


def returning(state: State) -> bool:
    """Whether a state at a callback call site is one returning from the callback (its frame
    queued iterations on this path), to be widened against the iteration in progress."""
    return state.frame.callback_depth > 0


def same_chain(old: State, cur: State) -> bool:
    """Whether two states are in the same call chain (so one can be widened against the other)."""
    return len(old.frames) == len(cur.frames) and all(
        a.callsite == b.callsite and a.subprog == b.subprog for a, b in zip(old.frames, cur.frames, strict=True))


__all__ = [
    "ASYNC_CALLBACK_HELPERS",
    "ASYNC_RETURN_RANGE",
    "CALLBACK_HELPERS",
    "KFUNC_CALLBACK",
    "SYNC_CALLBACK_HELPERS",
    "SYNC_RETURN_RANGE",
    "CallbackEntry",
    "after_callback",
    "enter_async",
    "enter_sync",
    "is_async_entry",
    "returning",
    "same_chain",
    "should_iterate",
]
