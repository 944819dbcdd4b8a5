"""The control-flow graph of a program, as the kernel's ``check_subprogs``/``check_cfg`` see it.

Everything here is pure graph work on decoded instructions, indexed by pc (slot index; an
``lddw`` occupies two slots, and its second slot is never an instruction of its own). No
checking happens here: :mod:`pybpf.verifier.structure` turns the facts into verdicts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum

from pybpf.isa.insn import (
    CallLocal,
    Exit,
    Goto,
    Instruction,
    Jump,
    LabeledInsn,
    LoadImm64,
    MayGoto,
    slot_count,
)
from pybpf.isa.opcodes import PseudoSrc
from pybpf.verifier.values import value_class


class EdgeKind(Enum):
    """Why control may go from one pc to another."""

    FALLTHROUGH = "fallthrough"
    BRANCH = "branch"  # a taken jump (conditional, goto, may_goto)
    CALL = "call"  # a bpf-to-bpf call, or a callback address taken by lddw FUNC


# (Enum members read through their class are slow on Python 3.11: see pybpf.verifier.state.)
_FALLTHROUGH, _BRANCH, _CALL = EdgeKind.FALLTHROUGH, EdgeKind.BRANCH, EdgeKind.CALL
_FUNC = PseudoSrc.FUNC


@value_class  # one per edge walked, several walks per verification
class Edge:
    source: int
    target: int
    kind: EdgeKind


@dataclass(frozen=True, slots=True)
class Subprog:
    """One function: the slots ``[start, end)``."""

    start: int
    end: int

    def __contains__(self, pc: object) -> bool:
        return isinstance(pc, int) and self.start <= pc < self.end


def slot_total(insns: Sequence[LabeledInsn]) -> int:
    """The program's length in slots."""
    if not insns:
        return 0
    last = insns[-1]
    return last.pc + slot_count(last.insn)


def by_pc(insns: Sequence[LabeledInsn]) -> dict[int, LabeledInsn]:
    return {labeled.pc: labeled for labeled in insns}


def call_target(pc: int, insn: Instruction) -> int | None:
    """The first pc of a function that ``insn`` calls or takes the address of, if any."""
    if isinstance(insn, CallLocal):
        return pc + 1 + insn.off
    if isinstance(insn, LoadImm64) and insn.src == _FUNC:
        # lddw FUNC's immediate counts from the slot after the instruction's first slot.
        return pc + 1 + insn.imm
    return None


def branch_target(pc: int, insn: Instruction) -> int | None:
    """Where a jump at ``pc`` goes when taken (None for anything that is not a jump)."""
    if isinstance(insn, (Jump, Goto, MayGoto)):
        return pc + 1 + insn.off
    return None


def edges_from(pc: int, insn: Instruction) -> list[Edge]:
    """The intra- and inter-procedural edges leaving ``insn``, in the kernel's visiting order."""
    return [Edge(pc, target, kind) for target, kind in _out_edges(pc, insn)]


def _out_edges(pc: int, insn: Instruction) -> list[tuple[int, EdgeKind]]:
    """:func:`edges_from` as (target, kind) pairs.

    slot_count, branch_target and call_target, unrolled into one test per instruction class:
    this runs for every instruction of every program verified, and most only fall through."""
    if not isinstance(insn, _FLOW_CLASSES):
        return [(pc + 1, _FALLTHROUGH)]
    if isinstance(insn, (Jump, MayGoto)):
        return [(pc + 1, _FALLTHROUGH), (pc + 1 + insn.off, _BRANCH)]
    if isinstance(insn, Exit):
        return []
    if isinstance(insn, Goto):
        return [(pc + 1 + insn.off, _BRANCH)]
    if isinstance(insn, CallLocal):
        return [(pc + 1, _FALLTHROUGH), (pc + 1 + insn.off, _CALL)]
    if isinstance(insn, LoadImm64) and insn.src == _FUNC:
        return [(pc + 2, _FALLTHROUGH), (pc + 1 + insn.imm, _CALL)]
    return [(pc + 2, _FALLTHROUGH)]  # any other lddw: two slots


_FLOW_CLASSES = (Jump, MayGoto, Exit, Goto, CallLocal, LoadImm64)
"""The instruction classes that do anything but fall through to the next slot."""
_FLOW_TYPES = frozenset(_FLOW_CLASSES)


@dataclass(frozen=True, slots=True)
class Cfg:
    """The result of one depth-first walk from pc 0.

    ``visited`` holds every pc the walk reached (possibly the second slot of an lddw when
    something jumps there); ``back_edges`` every (from, to) edge that closes a loop, in discovery
    order; ``first_out_of_range`` the first edge whose target lies outside the program.
    """

    visited: frozenset[int]
    back_edges: tuple[tuple[int, int], ...]
    first_out_of_range: Edge | None = None
    order: tuple[int, ...] = field(default=())


def walk(insns: Sequence[LabeledInsn]) -> Cfg:
    """Iterative DFS in the kernel's order (fall-through first), classifying back-edges.

    A target already on the DFS stack is a back-edge (a loop); call edges are followed but never
    counted as loops, since recursion is diagnosed elsewhere, by stack-depth analysis.
    """
    total = slot_total(insns)
    at: list[Instruction | None] = [None] * total
    for labeled in insns:
        at[labeled.pc] = labeled.insn
    return walk_slots(at)


def walk_slots(at: Sequence[Instruction | None]) -> Cfg:
    """:func:`walk` over the program's slots (None: the second slot of an ``lddw``)."""
    total = len(at)
    if total == 0:
        return Cfg(frozenset(), ())
    visited = bytearray(total)
    on_stack = bytearray(total)
    order: list[int] = []
    back_edges: list[tuple[int, int]] = []
    out_of_range: Edge | None = None
    # The DFS stack holds runs: slots ``first..last`` entered one after the other by falling
    # through (each had that one edge), then the edges of ``last`` still to visit, last first.
    # Most instructions only fall through, so a run costs one frame, not one per instruction
    # (this walk runs for every program verified).
    runs: list[tuple[int, int, list[tuple[int, EdgeKind]]]] = []
    pc = 0
    while True:
        # Enter pc, then follow fall-through-only slots while they lead somewhere new.
        first = pc
        while True:
            visited[pc] = on_stack[pc] = 1
            order.append(pc)
            # A pc without an instruction is the second slot of an lddw; the kernel decodes it
            # as a plain (non-jump) slot and falls through.
            insn = at[pc]
            if insn is not None and type(insn) in _FLOW_TYPES:
                pending = _out_edges(pc, insn)
                pending.reverse()
                break
            pending = []
            target = pc + 1
            if target >= total:
                if out_of_range is None:
                    out_of_range = Edge(pc, target, _FALLTHROUGH)
                break
            if on_stack[target]:
                back_edges.append((pc, target))
                break
            if visited[target]:
                break
            pc = target
        runs.append((first, pc, pending))
        # Visit the next edge of the innermost run that has one, leaving the finished runs.
        while runs:
            first, last, pending = runs[-1]
            if not pending:
                runs.pop()
                on_stack[first:last + 1] = bytes(last + 1 - first)
                continue
            target, kind = pending.pop()
            if not 0 <= target < total:
                if out_of_range is None:
                    out_of_range = Edge(last, target, kind)
                continue
            if on_stack[target] and kind is not _CALL:
                back_edges.append((last, target))
            elif not visited[target]:
                break
        else:
            return Cfg(frozenset(order), tuple(back_edges), out_of_range, tuple(order))
        pc = target


def subprog_starts(insns: Sequence[LabeledInsn]) -> list[int]:
    """Sorted first pcs of every function: 0, each CallLocal target, each lddw FUNC target.

    Targets are returned even when out of range; the caller checks them.
    """
    starts = {0}
    for labeled in insns:
        target = call_target(labeled.pc, labeled.insn)
        if target is not None:
            starts.add(target)
    return sorted(starts)


def subprogs(starts: Sequence[int], total: int) -> tuple[Subprog, ...]:
    """Split ``[0, total)`` at ``starts`` (which must be in range and sorted)."""
    bounds = [*starts, total]
    return tuple(Subprog(bounds[i], bounds[i + 1]) for i in range(len(starts)))
