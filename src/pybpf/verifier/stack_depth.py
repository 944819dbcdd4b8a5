"""The combined stack-depth check over static call chains (the kernel's ``check_max_stack_depth``).

After exploration, every function's deepest stack access is known. The kernel then walks the
static call graph depth-first from each root (the main program and every timer callback, which
runs on a stack of its own) and refuses:

* a chain whose frames together exceed 512 bytes ("combined stack size of N calls is M. Too
  large"); a frame counts rounded up to 16 bytes (the JIT's granularity);
* a chain deeper than 8 frames ("the call stack of N frames is too deep !");
* a tail call from a subprogram whose callers' frames already take 256 bytes or more ("tail_calls
  are not allowed when call stack of previous frames is N bytes. Too large"): a tail call unwinds
  only the frame of the function making it, so with up to 33 chained tail calls the frames left
  below could otherwise add up to far more than the kernel stack holds.

Taking a function's address (``lddw`` of a function, for a callback) counts as calling it,
except for an asynchronous callback, which is a root of its own.

**Private stacks** (Linux 6.14+, x86-64 JIT): kprobe, tracepoint, perf_event, raw_tracepoint and
BTF tracing programs run where the kernel prevents recursion, so the JIT may give a function its
own per-CPU stack (``bpf_enable_priv_stack``). Walking from the main program, every function whose
rounded frame is at least 64 bytes gets one (``PRIV_STACK_ADAPTIVE``): its frame no longer adds to
the chain's combined size (it alone must fit in 512 bytes, "stack size of subprog N is M. Too
large"). Smaller frames still count. Not when any function makes a tail call, and never for a
function an asynchronous callback reaches (those are walked first and keep the normal stack).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

from pybpf.errors import VerifierError
from pybpf.isa.insn import Call, CallLocal, LabeledInsn, LoadImm64
from pybpf.isa.opcodes import PseudoSrc
from pybpf.platform import HelperId
from pybpf.verifier.machine import MAX_CALL_FRAMES
from pybpf.verifier.state import MAX_BPF_STACK
from pybpf.verifier.structure import ProgramStructure

TAIL_CALL_STACK_LIMIT = 256
"""Bytes the callers of a subprogram making a tail call may use together."""
STACK_GRANULARITY = 16
"""A frame's size is rounded up to this (``round_up_stack_depth`` for JIT-compiled programs)."""
BPF_PRIV_STACK_MIN_SIZE = 64
"""Smallest rounded frame the JIT moves to a private stack (smaller ones are not worth it)."""


def frame_size(depth: int) -> int:
    return (depth + STACK_GRANULARITY - 1) // STACK_GRANULARITY * STACK_GRANULARITY


def check_stack_depth(insns: Sequence[LabeledInsn], structure: ProgramStructure, depths: Mapping[int, int],
                      async_callbacks: Collection[int] = (), *, private_stack: bool = False) -> tuple[int, ...]:
    """Raise :class:`VerifierError` as the kernel would; else each function's stack depth (pc order).

    ``private_stack``: the program type may use private stacks (see the module doc)."""
    # Per function (by first pc): its call sites in pc order, as (callee, is a direct call).
    calls: dict[int, list[tuple[int, bool]]] = {sub.start: [] for sub in structure.subprogs}
    tail_calls: set[int] = set()
    for labeled in insns:
        # The owning function is looked up only for the few instructions that need it (a
        # search over the functions, for every instruction of every program verified).
        insn = labeled.insn
        if isinstance(insn, CallLocal):
            calls[structure.subprog_of(labeled.pc).start].append((labeled.pc + 1 + insn.off, True))
        elif isinstance(insn, LoadImm64) and insn.src == PseudoSrc.FUNC:
            calls[structure.subprog_of(labeled.pc).start].append((labeled.pc + 1 + insn.imm, False))
        elif isinstance(insn, Call) and insn.helper == HelperId.TAIL_CALL:
            tail_calls.add(structure.subprog_of(labeled.pc).start)

    # Per function: True once it has a private stack, False once it must keep the normal one
    # (the kernel's priv_stack_mode; absent: not decided yet). Decisions stick across roots.
    private: dict[int, bool] = {}
    index = {sub.start: number for number, sub in enumerate(structure.subprogs)}

    def walk(start: int, depth: int, frame: int, supported: bool) -> None:
        if not supported:
            private[start] = False
        if start and start in tail_calls and depth >= TAIL_CALL_STACK_LIMIT:
            raise VerifierError(None, f"tail_calls are not allowed when call stack of previous frames is {depth} "
                                      "bytes. Too large")
        size = frame_size(depths.get(start, 0))
        if supported and start not in private and size >= BPF_PRIV_STACK_MIN_SIZE:
            private[start] = True
        if private.get(start, False):
            if size > MAX_BPF_STACK:
                raise VerifierError(None, f"stack size of subprog {index[start]} is {size}. Too large")
        else:
            depth += size
            if depth > MAX_BPF_STACK:
                raise VerifierError(None, f"combined stack size of {frame + 1} calls is {depth}. Too large")
        for callee, direct in calls.get(start, ()):
            if callee in async_callbacks and not direct:
                continue  # runs later on a stack of its own: a root, walked separately
            if frame + 1 >= MAX_CALL_FRAMES:
                raise VerifierError(None, f"the call stack of {frame + 1} frames is too deep !")
            walk(callee, depth, frame + 1, supported)

    # A tail call anywhere keeps every function on the normal stack. The kernel walks the
    # asynchronous roots first (highest subprogram first, never private), then main.
    enabled = private_stack and not tail_calls
    for root in (*sorted(async_callbacks, reverse=True), 0):
        walk(root, 0, 0, enabled and root == 0)
    return tuple(depths.get(sub.start, 0) for sub in structure.subprogs)
