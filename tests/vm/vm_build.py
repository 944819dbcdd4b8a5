"""Shared builders for the vm tests: programs from semantic instructions, run in one call."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pybpf.isa import Bin, BinOp, Exit, Imm, Instruction, LabeledInsn, LoadImm64, Reg
from pybpf.vm import HelperFn, Interpreter, Region, RegionKind, RunResult

U32 = (1 << 32) - 1
U64 = (1 << 64) - 1


def labeled(insns: Sequence[Instruction]) -> list[LabeledInsn]:
    """Number instructions by pc (lddw takes two slots)."""
    out: list[LabeledInsn] = []
    pc = 0
    for insn in insns:
        out.append(LabeledInsn(pc, insn))
        pc += 2 if isinstance(insn, LoadImm64) else 1
    return out


def prepare(insns: Sequence[Instruction], **options: Any) -> Interpreter:
    return Interpreter(labeled(insns), **options)


def run(
    insns: Sequence[Instruction],
    *,
    memory: bytes | bytearray | None = None,
    helpers: Mapping[int, HelperFn] | None = None,
    **run_options: Any,
) -> RunResult:
    """Run ``insns`` with r1/r2 = a writable copy of ``memory`` (when given)."""
    interpreter = prepare(insns, helpers=helpers)
    region = Region.from_bytes(RegionKind.INPUT, "input", bytes(memory)) if memory else None
    return interpreter.run(region, **run_options)


def const(reg: Reg, value: int) -> LoadImm64:
    return LoadImm64.constant(reg, value)


def mov(reg: Reg, value: int) -> Bin:
    return Bin(BinOp.MOV, reg, Imm(value), True)


def ret(value: int) -> list[Instruction]:
    return [mov(Reg.R0, value), Exit()]
