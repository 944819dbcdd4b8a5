"""The shape of a program before code generation: its functions, their blocks and loop headers.

A function starts at pc 0 (the main function), at every bpf-to-bpf call target and at every
function address an ``lddw`` (``PseudoSrc.FUNC``) takes. Its body is what control flow reaches
from its entry without following calls, so a function is found by reachability, not by layout
(jumps may go backwards and functions need not be contiguous). Within a function, a basic block
starts at the entry, at every jump target and after every conditional jump.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from pybpf.errors import InvalidInstructionError
from pybpf.isa.insn import (
    CallLocal,
    CallReg,
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


@dataclass(frozen=True, slots=True)
class FunctionPlan:
    """One eBPF function: its entry pc, the pcs it reaches, where its blocks start, its loop headers."""

    entry: int
    pcs: tuple[int, ...]
    leaders: frozenset[int]
    loop_headers: frozenset[int]


@dataclass(frozen=True, slots=True)
class ProgramPlan:
    """The instructions by pc, the program's length in slots, and its functions (main first)."""

    insns: Mapping[int, Instruction]
    slot_total: int
    functions: tuple[FunctionPlan, ...]

    @property
    def makes_calls(self) -> bool:
        """Whether any frame beyond the main one can exist (a local call or a callx)."""
        return len(self.functions) > 1 or any(isinstance(insn, CallReg) for insn in self.insns.values())


def successors(pc: int, insn: Instruction) -> tuple[int, ...]:
    """The pcs control may reach next from ``insn`` at ``pc`` within its function (calls return)."""
    match insn:
        case Jump(off=off) | MayGoto(off=off):
            return (pc + 1 + off, pc + 1)
        case Goto(off=off):
            return (pc + 1 + off,)
        case Exit():
            return ()
    return (pc + slot_count(insn),)


def function_entries(insns: Iterable[LabeledInsn]) -> list[int]:
    """Entry pcs: 0, then local call targets and lddw function addresses in pc order."""
    entries = {0}
    for item in insns:
        if isinstance(item.insn, CallLocal):
            entries.add(item.pc + 1 + item.insn.off)
        elif isinstance(item.insn, LoadImm64) and item.insn.src is PseudoSrc.FUNC:
            entries.add(item.pc + 1 + item.insn.imm)
    return sorted(entries)


def plan_function(insns: Mapping[int, Instruction], slot_total: int, entry: int) -> FunctionPlan:
    """Explore the function at ``entry``; ``slot_total`` (falling off the end) is not an instruction."""
    seen: set[int] = set()
    leaders = {entry}
    headers: set[int] = set()
    work = [entry]
    while work:
        pc = work.pop()
        if pc in seen or pc == slot_total:
            continue
        insn = insns.get(pc)
        if insn is None:
            raise InvalidInstructionError(pc, "control flow reaches the second slot of an lddw")
        seen.add(pc)
        nexts = successors(pc, insn)
        if isinstance(insn, Jump | Goto | MayGoto):
            leaders.update(nexts)
            target = nexts[0]
            if target <= pc:
                headers.add(target)
        work.extend(nexts)
    return FunctionPlan(entry, tuple(sorted(seen)), frozenset(leaders - {slot_total}), frozenset(headers))


def plan_program(insns: tuple[LabeledInsn, ...], slot_total: int) -> ProgramPlan:
    """Split a (jump-checked) program into functions."""
    by_pc = {item.pc: item.insn for item in insns}
    functions = tuple(plan_function(by_pc, slot_total, entry) for entry in function_entries(insns))
    return ProgramPlan(by_pc, slot_total, functions)
