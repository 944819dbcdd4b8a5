"""Small hand-built programs for the structural tests: (name, instructions, kernel's verdict).

``expected`` is None for a program the kernel accepts, else the line its verifier log ends with
(which our structural pass must report as its reason).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pybpf.isa.insn import (
    Bin,
    BinOp,
    Call,
    CallLocal,
    CallReg,
    Cond,
    Exit,
    Goto,
    Imm,
    Instruction,
    Jump,
    LabeledInsn,
    LoadImm64,
    Reg,
    slot_count,
)


def label(insns: Sequence[Instruction]) -> list[LabeledInsn]:
    labeled: list[LabeledInsn] = []
    pc = 0
    for insn in insns:
        labeled.append(LabeledInsn(pc, insn))
        pc += slot_count(insn)
    return labeled


def mov(dst: Reg, value: int) -> Bin:
    return Bin(BinOp.MOV, dst, Imm(value), True)


@dataclass(frozen=True, slots=True)
class Case:
    name: str
    insns: tuple[Instruction, ...]
    expected: str | None


R0, R1, R10 = Reg.R0, Reg.R1, Reg.R10

CASES: tuple[Case, ...] = (
    Case("return-zero", (mov(R0, 0), Exit()), None),
    Case("bounded-loop", (mov(R0, 0), Bin(BinOp.ADD, R0, Imm(1), True), Jump(Cond.JLT, R0, Imm(10), -2, False),
                          Exit()), None),
    Case("local-call", (mov(R0, 0), CallLocal(1), Exit(), mov(R0, 1), Exit()), None),
    Case("lddw", (LoadImm64.constant(R0, 1 << 40), Exit()), None),
    Case("forward-branch", (mov(R0, 0), Jump(Cond.JEQ, R1, Imm(0), 1, False), mov(R0, 1), Exit()), None),
    Case("goto-over-dead-code", (mov(R0, 0), Goto(1), mov(R0, 1), Exit()), "unreachable insn 2"),
    Case("unreachable", (mov(R0, 0), Exit(), mov(R0, 1), Exit()), "unreachable insn 2"),
    Case("jump-out-of-range", (mov(R0, 0), Goto(7), Exit()), "jump out of range from insn 1 to 9"),
    Case("backwards-out-of-range", (mov(R0, 0), Jump(Cond.JEQ, R1, Imm(0), -5, False), Exit()),
         "jump out of range from insn 1 to -3"),
    Case("no-exit", (mov(R0, 0),), "last insn is not an exit or jmp"),
    Case("ends-with-lddw", (mov(R0, 0), Jump(Cond.JEQ, R1, Imm(0), 1, False), Exit(), LoadImm64.constant(R0, 1)),
         "last insn is not an exit or jmp"),
    Case("fp-write", (mov(R10, 0), mov(R0, 0), Exit()), "frame pointer is read only"),
    Case("fp-alu", (mov(R0, 0), Bin(BinOp.ADD, R10, Imm(8), True), Exit()), "frame pointer is read only"),
    Case("into-lddw", (mov(R0, 0), Jump(Cond.JEQ, R1, Imm(0), 1, False), LoadImm64.constant(R0, 7), Exit()),
         "jump into the middle of ldimm64 insn 2"),
    Case("jump-into-callee", (mov(R0, 0), CallLocal(1), Goto(1), Exit(), mov(R0, 1), Exit()),
         "jump out of range from insn 2 to 4"),
    Case("callee-jumps-back", (CallLocal(2), mov(R0, 0), Exit(), Goto(-3)), "jump out of range from insn 3 to 1"),
    Case("falls-into-callee", (mov(R0, 0), CallLocal(1), mov(R0, 1), Exit()), "last insn is not an exit or jmp"),
    Case("call-out-of-range", (mov(R0, 0), CallLocal(100), Exit()), "call to invalid destination"),
    Case("gotol-forward", (mov(R0, 0), Goto(1, long=True), mov(R0, 1), Exit()), "unreachable insn 2"),
    Case("gotol-ends-function", (mov(R0, 0), Jump(Cond.JEQ, R1, Imm(0), 1, False), Goto(0, long=True), Exit()), None),
    Case("helper-call", (Call(7), mov(R0, 0), Exit()), None),
    Case("unreachable-function", (mov(R0, 0), Exit(), mov(R0, 1), Exit()), "unreachable insn 2"),
    Case("callx", (mov(R1, 0), CallReg(R1), mov(R0, 0), Exit()), "unknown opcode 8d"),
    # The opcode check comes before the walk: a callx no path reaches is refused too.
    Case("unreachable-callx", (mov(R0, 0), Exit(), CallReg(R1), Exit()), "unknown opcode 8d"),
    # ...but after check_subprogs: a jump out of range is reported first.
    Case("callx-after-bad-jump", (Goto(7), CallReg(R1), Exit()), "jump out of range from insn 0 to 8"),
)
