"""Conditional jumps: every condition, 32 and 64 bits, register and immediate, at the boundaries."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from vm_build import U32, U64, const, ret, run

from pybpf.isa import Bin, BinOp, Cond, Exit, Goto, Imm, Instruction, Jump, Reg


def _signed(value: int, bits: int) -> int:
    value %= 1 << bits
    return value - (1 << bits) if value >> (bits - 1) else value


def reference(cond: Cond, is32: bool, a: int, b: int) -> bool:
    bits = 32 if is32 else 64
    ua, ub = a % (1 << bits), b % (1 << bits)
    sa, sb = _signed(a, bits), _signed(b, bits)
    return {
        Cond.JEQ: ua == ub,
        Cond.JNE: ua != ub,
        Cond.JGT: ua > ub,
        Cond.JGE: ua >= ub,
        Cond.JLT: ua < ub,
        Cond.JLE: ua <= ub,
        Cond.JSET: (ua & ub) != 0,
        Cond.JSGT: sa > sb,
        Cond.JSGE: sa >= sb,
        Cond.JSLT: sa < sb,
        Cond.JSLE: sa <= sb,
    }[cond]


def taken(cond: Cond, is32: bool, a: int, b: int, use_imm: bool) -> bool:
    operand: Reg | Imm = Imm(_signed(b, 32)) if use_imm else Reg.R2
    program = [const(Reg.R1, a), const(Reg.R2, b), Jump(cond, Reg.R1, operand, 2, is32), *ret(0), *ret(1)]
    return bool(run(program).r0)


BOUNDARIES = [0, 1, 2, 0x7FFFFFFF, 0x80000000, U32, 1 << 32, (1 << 63) - 1, 1 << 63, U64 - 1, U64]


@pytest.mark.parametrize("cond", list(Cond), ids=lambda c: c.name)
@pytest.mark.parametrize("is32", [False, True], ids=["jmp64", "jmp32"])
def test_register_boundaries(cond: Cond, is32: bool) -> None:
    for a, b in itertools.product(BOUNDARIES, repeat=2):
        assert taken(cond, is32, a, b, use_imm=False) == reference(cond, is32, a, b), (hex(a), hex(b))


IMM_BOUNDARIES = [0, 1, U64, U64 - 1, 0x7FFFFFFF, U64 - 0x7FFFFFFF]  # immediates sign-extended to 64 bits


@pytest.mark.parametrize("cond", list(Cond), ids=lambda c: c.name)
@pytest.mark.parametrize("is32", [False, True], ids=["jmp64", "jmp32"])
def test_immediate_boundaries(cond: Cond, is32: bool) -> None:
    for a, b in itertools.product(BOUNDARIES, IMM_BOUNDARIES):
        assert taken(cond, is32, a, b, use_imm=True) == reference(cond, is32, a, b), (hex(a), hex(b))


def test_concrete_signed_and_unsigned_disagree() -> None:
    # -1 > 1 unsigned, -1 < 1 signed; and in 32 bits only the low half counts.
    assert taken(Cond.JGT, False, U64, 1, use_imm=False)
    assert not taken(Cond.JSGT, False, U64, 1, use_imm=False)
    assert taken(Cond.JSLT, True, 0x1_FFFFFFFF, 0, use_imm=True)
    assert not taken(Cond.JSLT, False, 0x1_FFFFFFFF, 0, use_imm=True)


@settings(max_examples=300, deadline=None)
@given(
    cond=st.sampled_from(list(Cond)),
    is32=st.booleans(),
    a=st.integers(0, U64) | st.sampled_from(BOUNDARIES),
    b=st.integers(0, U64) | st.sampled_from(BOUNDARIES),
    use_imm=st.booleans(),
)
def test_matches_reference(cond: Cond, is32: bool, a: int, b: int, use_imm: bool) -> None:
    if use_imm:
        b = _signed(b, 32) & U64  # what an immediate can express
    assert taken(cond, is32, a, b, use_imm) == reference(cond, is32, a, b)


def test_goto_and_backward_jump_loop() -> None:
    # r0 = 0; r1 = 10; loop: r0 += 3; r1 -= 1; if r1 != 0 goto loop; goto +1; r0 = 99; exit
    program: list[Instruction] = [
        const(Reg.R0, 0),
        const(Reg.R1, 10),
        Bin(BinOp.ADD, Reg.R0, Imm(3), True),
        Bin(BinOp.SUB, Reg.R1, Imm(1), True),
        Jump(Cond.JNE, Reg.R1, Imm(0), -3, False),
        Goto(1),
        Bin(BinOp.MOV, Reg.R0, Imm(99), True),
        Exit(),
    ]
    result = run(program)
    assert result.r0 == 30
    assert result.instructions == 2 + 3 * 10 + 2
    assert run([*program[:5], Goto(1, long=True), *program[6:]]).r0 == 30
