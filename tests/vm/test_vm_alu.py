"""ALU semantics: tables of edge cases and property tests against RFC 9669 definitions written here.

The reference below is deliberately independent of pybpf.isa.semantics: it follows the RFC's
wording (truncating signed division, modulo keeping the dividend's sign, shift amounts masked
to the width, 32-bit results zero-extended) with its own formulation.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from vm_build import U32, U64, const, run

from pybpf.isa import Bin, BinOp, Endian, EndianOrder, Exit, Imm, Neg, Reg, semantics
from pybpf.vm.alu_ops import build_bin


def _signed(value: int, bits: int) -> int:
    value %= 1 << bits
    return value - (1 << bits) if value >= 1 << (bits - 1) else value


def _toward_zero(a: int, b: int) -> int:
    quotient = a // b  # floors; step back toward zero when inexact and negative
    if quotient < 0 and quotient * b != a:
        quotient += 1
    return quotient


def reference(op: BinOp, is64: bool, dst: int, src: int) -> int:
    """The value the destination register holds afterwards (64-bit, zero-extended for ALU32)."""
    bits = 64 if is64 else 32
    modulus = 1 << bits
    a, b = dst % modulus, src % modulus
    sa, sb = _signed(a, bits), _signed(b, bits)
    if op is BinOp.ADD:
        out = a + b
    elif op is BinOp.SUB:
        out = a - b
    elif op is BinOp.MUL:
        out = a * b
    elif op is BinOp.DIV:
        out = a // b if b else 0
    elif op is BinOp.SDIV:
        out = _toward_zero(sa, sb) if sb else 0
    elif op is BinOp.MOD:
        out = a % b if b else a
    elif op is BinOp.SMOD:
        out = sa - sb * _toward_zero(sa, sb) if sb else a
    elif op is BinOp.OR:
        out = a | b
    elif op is BinOp.AND:
        out = a & b
    elif op is BinOp.XOR:
        out = a ^ b
    elif op is BinOp.LSH:
        out = a << (b % bits)
    elif op is BinOp.RSH:
        out = a >> (b % bits)
    elif op is BinOp.ARSH:
        out = sa >> (b % bits)
    elif op is BinOp.MOV:
        out = b
    else:
        width = {BinOp.MOVSX8: 8, BinOp.MOVSX16: 16, BinOp.MOVSX32: 32}[op]
        out = _signed(src, width)
    return out % modulus


def run_bin(op: BinOp, is64: bool, dst: int, src: int, use_imm: bool) -> int:
    """Execute ``r1 op= r2`` (or ``r1 op= imm``) and return r1."""
    operand: Reg | Imm = Imm(_signed(src, 32)) if use_imm else Reg.R2
    program = [const(Reg.R1, dst), const(Reg.R2, src), Bin(op, Reg.R1, operand, is64), *_r0_from(Reg.R1)]
    return run(program).r0


def _r0_from(reg: Reg) -> list[Bin | Exit]:
    return [Bin(BinOp.MOV, Reg.R0, reg, True), Exit()]


ALL_OPS = [op for op in BinOp if op not in (BinOp.MOVSX8, BinOp.MOVSX16, BinOp.MOVSX32)]
INT64_MIN = 1 << 63
INT32_MIN = 1 << 31

EDGE_CASES = [
    # (op, is64, dst, src, expected)
    (BinOp.SDIV, True, INT64_MIN, U64, INT64_MIN),  # INT_MIN / -1 wraps
    (BinOp.SDIV, False, INT32_MIN, U32, INT32_MIN),
    (BinOp.SMOD, True, INT64_MIN, U64, 0),
    (BinOp.SMOD, False, INT32_MIN, U32, 0),
    (BinOp.DIV, True, 7, 0, 0),  # division by zero gives 0
    (BinOp.DIV, False, 7, 0, 0),
    (BinOp.SDIV, True, 7, 0, 0),
    (BinOp.MOD, True, 7, 0, 7),  # modulo by zero leaves dst
    (BinOp.MOD, False, (5 << 32) | 7, 0, 7),  # ... zero-extended in 32-bit
    (BinOp.SMOD, True, U64 - 6, 0, U64 - 6),
    (BinOp.SDIV, True, U64 - 6, 2, U64 - 2),  # -7 / 2 = -3 (toward zero)
    (BinOp.SMOD, True, U64 - 6, 2, U64),  # -7 % 2 = -1 (sign of the dividend)
    (BinOp.SMOD, True, 7, U64 - 1, 1),  # 7 % -2 = 1
    (BinOp.SMOD, False, U32 - 6, 2, U32),
    (BinOp.LSH, True, 1, 65, 2),  # shift amounts masked to the width
    (BinOp.LSH, False, 1, 33, 2),
    (BinOp.RSH, True, 4, 66, 1),
    (BinOp.ARSH, True, INT64_MIN, 63, U64),
    (BinOp.ARSH, False, INT32_MIN, 31, U32),
    (BinOp.ARSH, False, (1 << 63) | 0x40, 4, 4),  # the upper half does not leak into 32-bit results
    (BinOp.ADD, False, U32, 1, 0),
    (BinOp.ADD, True, U64, 1, 0),
    (BinOp.SUB, False, 0, 1, U32),
    (BinOp.MUL, True, 1 << 32, 1 << 32, 0),
    (BinOp.MOV, False, U64, U64, U32),
    (BinOp.MOVSX8, True, 0, 0x80, U64 - 0x7F),
    (BinOp.MOVSX8, False, 0, 0x1FF, U32),  # only the low byte counts
    (BinOp.MOVSX16, True, 0, 0x8000, U64 - 0x7FFF),
    (BinOp.MOVSX16, False, 0, 0x7FFF, 0x7FFF),
    (BinOp.MOVSX32, True, 0, 0x80000000, U64 - 0x7FFFFFFF),
]


@pytest.mark.parametrize(("op", "is64", "dst", "src", "expected"), EDGE_CASES, ids=lambda v: getattr(v, "name", None))
def test_edge_cases_register_operand(op: BinOp, is64: bool, dst: int, src: int, expected: int) -> None:
    assert run_bin(op, is64, dst, src, use_imm=False) == expected


@pytest.mark.parametrize(
    ("op", "is64", "dst", "imm", "expected"),
    [
        (BinOp.ADD, True, 5, -1, 4),  # immediates are sign-extended to 64 bits
        (BinOp.MOV, True, 0, -1, U64),
        (BinOp.MOV, False, 0, -1, U32),
        (BinOp.AND, True, U64, -2, U64 - 1),
        (BinOp.SDIV, True, INT64_MIN, -1, INT64_MIN),
        (BinOp.DIV, True, 10, -1, 0),  # unsigned: -1 is 2**64 - 1
        (BinOp.DIV, False, 10, -1, 0),
        (BinOp.MOD, False, 10, 0, 10),
        (BinOp.LSH, True, 1, 64, 1),
        (BinOp.RSH, False, 0x80000000, 63, 1),
        (BinOp.XOR, False, U64, 1, U32 - 1),
    ],
)
def test_edge_cases_immediate_operand(op: BinOp, is64: bool, dst: int, imm: int, expected: int) -> None:
    assert run_bin(op, is64, dst, imm & U64, use_imm=True) == expected


@settings(max_examples=400, deadline=None)
@given(
    op=st.sampled_from(ALL_OPS),
    is64=st.booleans(),
    dst=st.integers(0, U64) | st.sampled_from([0, 1, U64, U32, INT64_MIN, INT32_MIN, INT64_MIN - 1]),
    src=st.integers(0, U64) | st.sampled_from([0, 1, U64, U32, INT32_MIN, 31, 32, 63, 64]),
)
def test_register_operand_matches_reference(op: BinOp, is64: bool, dst: int, src: int) -> None:
    assert run_bin(op, is64, dst, src, use_imm=False) == reference(op, is64, dst, src)


@settings(max_examples=400, deadline=None)
@given(
    op=st.sampled_from(ALL_OPS),
    is64=st.booleans(),
    dst=st.integers(0, U64),
    imm=st.integers(-(1 << 31), (1 << 31) - 1) | st.sampled_from([0, -1, 1, 31, 32, 63, -(1 << 31)]),
)
def test_immediate_operand_matches_reference(op: BinOp, is64: bool, dst: int, imm: int) -> None:
    assert run_bin(op, is64, dst, imm & U64, use_imm=True) == reference(op, is64, dst, imm & U64)


@settings(max_examples=300, deadline=None)
@given(
    op=st.sampled_from([BinOp.MOVSX8, BinOp.MOVSX16, BinOp.MOVSX32]),
    is64=st.booleans(),
    src=st.integers(0, U64),
)
def test_sign_extending_moves_match_reference(op: BinOp, is64: bool, src: int) -> None:
    if op is BinOp.MOVSX32 and not is64:
        return  # not an instruction: 32-bit movsx has only 8 and 16
    assert run_bin(op, is64, 0, src, use_imm=False) == reference(op, is64, 0, src)


@settings(max_examples=300, deadline=None)
@given(op=st.sampled_from(list(BinOp)), is64=st.booleans(), dst=st.integers(0, U64), src=st.integers(0, U64))
def test_inline_fast_paths_equal_semantics_tables(op: BinOp, is64: bool, dst: int, src: int) -> None:
    """The specialised closures and the semantics-table closures compute the same thing."""
    for operand in (Reg.R2, Imm(_signed(src, 32))):
        insn = Bin(op, Reg.R1, operand, is64)
        fast, generic = build_bin(insn, 0), build_bin(insn, 0, fast=False)
        regs_fast, regs_generic = [0, dst, src, *[0] * 8], [0, dst, src, *[0] * 8]
        assert fast(regs_fast, None) == generic(regs_generic, None) == 1  # type: ignore[arg-type]
        assert regs_fast == regs_generic
        operand_value = src if isinstance(operand, Reg) else _signed(src, 32) & U64
        table = semantics.ALU64 if is64 else semantics.ALU32
        assert regs_fast[1] == table[op](dst, operand_value)


@pytest.mark.parametrize(
    ("is64", "value", "expected"),
    [(True, 5, U64 - 4), (False, 5, U32 - 4), (True, 0, 0), (False, (7 << 32), 0), (True, INT64_MIN, INT64_MIN)],
)
def test_neg(is64: bool, value: int, expected: int) -> None:
    assert run([const(Reg.R0, value), Neg(Reg.R0, is64), Exit()]).r0 == expected


VALUE = 0x0123456789ABCDEF


@pytest.mark.parametrize(
    ("width", "order", "expected"),
    [
        (16, EndianOrder.LE, 0xCDEF),
        (32, EndianOrder.LE, 0x89ABCDEF),
        (64, EndianOrder.LE, VALUE),
        (16, EndianOrder.BE, 0xEFCD),
        (32, EndianOrder.BE, 0xEFCDAB89),
        (64, EndianOrder.BE, 0xEFCDAB8967452301),
        (16, EndianOrder.SWAP, 0xEFCD),
        (32, EndianOrder.SWAP, 0xEFCDAB89),
        (64, EndianOrder.SWAP, 0xEFCDAB8967452301),
    ],
)
def test_byte_order(width: int, order: EndianOrder, expected: int) -> None:
    assert run([const(Reg.R0, VALUE), Endian(Reg.R0, width, order), Exit()]).r0 == expected
