"""Collecting instructions and labels, then resolving label references to pc-relative offsets.

Both parsers feed a ``ProgramBuilder``: it counts pcs (``lddw`` takes two slots), records
labels, and at the end patches every instruction that named a label with
``target - (pc + 1)``, checking that the offset fits the field it goes into.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from pybpf.asm._scan import INT16_MAX, INT16_MIN, INT32_MAX, INT32_MIN
from pybpf.errors import AssemblerError
from pybpf.isa.insn import (
    CallLocal,
    Exit,
    Goto,
    Instruction,
    Jump,
    LabeledInsn,
    LoadImm64,
    MayGoto,
    SourceLine,
    slot_count,
)
from pybpf.isa.opcodes import PseudoSrc


@dataclass(frozen=True, slots=True)
class LabelRef:
    """A use of a label as a jump or call target, with where it was written."""

    name: str
    line: int
    column: int


@dataclass(frozen=True, slots=True)
class _Pending:
    pc: int
    insn: Instruction
    target: LabelRef | None
    source: SourceLine | None


class ProgramBuilder:
    """Accumulates one program. ``exit_label``: the conformance suite's implicit ``exit`` label.

    The bpf_conformance assembler lets a jump name ``exit`` without defining it: the label then
    means the first ``exit`` instruction (``lock_cmpxchg.data`` relies on this).
    """

    def __init__(self, *, exit_label: bool = False) -> None:
        self._items: list[_Pending] = []
        self._labels: dict[str, tuple[int, int]] = {}  # name -> (pc, line where defined)
        self._pc = 0
        self._exit_label = exit_label
        self._first_exit: int | None = None

    @property
    def pc(self) -> int:
        return self._pc

    def label(self, name: str, line: int, column: int) -> None:
        if name in self._labels:
            previous = self._labels[name][1]
            raise AssemblerError(line, column, f"duplicate label '{name}' (first defined on line {previous})")
        self._labels[name] = (self._pc, line)

    def add(self, insn: Instruction, target: LabelRef | None = None, source: SourceLine | None = None) -> None:
        if isinstance(insn, Exit) and self._first_exit is None:
            self._first_exit = self._pc
        self._items.append(_Pending(self._pc, insn, target, source))
        self._pc += slot_count(insn)

    def _target_pc(self, ref: LabelRef) -> int:
        if ref.name in self._labels:
            return self._labels[ref.name][0]
        if self._exit_label and ref.name == "exit" and self._first_exit is not None:
            return self._first_exit
        known = ", ".join(sorted(self._labels)) or "none"
        raise AssemblerError(ref.line, ref.column, f"undefined label '{ref.name}' (defined labels: {known})")

    def build(self) -> list[LabeledInsn]:
        out: list[LabeledInsn] = []
        for item in self._items:
            insn = item.insn
            if item.target is not None:
                insn = _patch(insn, self._target_pc(item.target) - item.pc - 1, item.target)
            out.append(LabeledInsn(item.pc, insn, item.source))
        return out


def _patch(insn: Instruction, offset: int, ref: LabelRef) -> Instruction:
    """Put a resolved pc-relative offset into the field that holds it, checking its width."""
    if isinstance(insn, Jump | MayGoto) or (isinstance(insn, Goto) and not insn.long):
        low, high, bits = INT16_MIN, INT16_MAX, 16
    else:
        low, high, bits = INT32_MIN, INT32_MAX, 32
    if not low <= offset <= high:
        raise AssemblerError(
            ref.line, ref.column, f"label '{ref.name}' is {offset} instructions away: too far for a {bits}-bit offset"
        )
    if isinstance(insn, Jump | Goto | MayGoto | CallLocal):
        return dataclasses.replace(insn, off=offset)
    if isinstance(insn, LoadImm64) and insn.src is PseudoSrc.FUNC:
        return dataclasses.replace(insn, imm=offset)
    raise AssemblerError(ref.line, ref.column, f"label '{ref.name}' used by an instruction that takes no target")
