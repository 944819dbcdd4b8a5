"""Soundness and precision of the scalar domain, its ALU transfer functions and branch refinement."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pybpf.isa import semantics
from pybpf.isa.insn import BinOp, Cond
from pybpf.isa.opcodes import EndianOrder
from pybpf.verifier.branch import branch_outcomes, refine
from pybpf.verifier.scalar import Scalar, sync, sync_full
from pybpf.verifier.scalar_ops import alu, endian, neg
from pybpf.verifier.tnum import U32, U64, Tnum

from .strategies import scalar_and_members

Abstract = tuple[Scalar, list[int]]


@given(a=scalar_and_members())
def test_construction_and_sync_keep_members(a: Abstract) -> None:
    scalar, members = a
    assert not scalar.is_bottom()
    for x in members:
        assert scalar.contains(x), f"{x:#x} not in {scalar}"
        assert sync(scalar).contains(x)


@pytest.mark.parametrize("kernel_compatible", [True, False], ids=["kernel", "precise"])
@pytest.mark.parametrize("is64", [True, False], ids=["alu64", "alu32"])
@pytest.mark.parametrize("op", list(BinOp), ids=lambda op: op.name)
@settings(max_examples=100)
@given(a=scalar_and_members(), b=scalar_and_members())
def test_alu_is_sound(op: BinOp, is64: bool, kernel_compatible: bool, a: Abstract, b: Abstract) -> None:
    table = semantics.ALU64 if is64 else semantics.ALU32
    result = alu(op, a[0], b[0], is64, kernel_compatible=kernel_compatible)
    for x in a[1]:
        for y in b[1]:
            expected = table[op](x, y)
            assert result.contains(expected), f"{x:#x} {op.value} {y:#x} = {expected:#x} not in {result}"


@given(a=scalar_and_members(), is64=st.booleans())
def test_neg_is_sound(a: Abstract, is64: bool) -> None:
    result = neg(a[0], is64)
    for x in a[1]:
        assert result.contains(semantics.neg(x, is64))


@pytest.mark.parametrize("order", list(EndianOrder), ids=lambda o: o.name)
@pytest.mark.parametrize("width", [16, 32, 64])
@given(a=scalar_and_members())
def test_endian_is_sound(order: EndianOrder, width: int, a: Abstract) -> None:
    result = endian(a[0], width, order)
    for x in a[1]:
        expected = semantics.to_le(x, width) if order == EndianOrder.LE else semantics.byte_swap(x, width)
        assert result.contains(expected)


@pytest.mark.parametrize("is32", [False, True], ids=["jmp64", "jmp32"])
@pytest.mark.parametrize("cond", list(Cond), ids=lambda c: c.name)
@settings(max_examples=150)
@given(a=scalar_and_members(), b=scalar_and_members())
def test_branch_refinement_keeps_satisfying_pairs(cond: Cond, is32: bool, a: Abstract, b: Abstract) -> None:
    table = semantics.JMP32 if is32 else semantics.JMP64
    outcomes = branch_outcomes(cond, a[0], b[0], is32)
    for x in a[1]:
        for y in b[1]:
            taken = table[cond](x, y)
            side = outcomes[0] if taken else outcomes[1]
            assert side is not None, f"{x:#x} {cond.value} {y:#x} is {taken} but that edge was pruned"
            assert side[0].contains(x) and side[1].contains(y), f"{x:#x},{y:#x} lost: {side[0]} / {side[1]}"


# -- precision: the domain must actually learn things (these fail for a domain that returns top) --


def test_constants_fold() -> None:
    assert alu(BinOp.ADD, Scalar.const(3), Scalar.const(4), True) == Scalar.const(7)
    assert alu(BinOp.SUB, Scalar.const(0), Scalar.const(1), False) == Scalar.const(U32)
    assert alu(BinOp.SDIV, Scalar.const(-7 & U64), Scalar.const(2), True, kernel_compatible=False) == Scalar.const(
        -3 & U64)
    # The kernel does not track division at all, not even of constants.
    assert alu(BinOp.DIV, Scalar.const(10), Scalar.const(3), True) == Scalar.unknown()
    assert neg(Scalar.const(1), True) == Scalar.const(U64)


def test_and_mask_bounds_the_result() -> None:
    r = alu(BinOp.AND, Scalar.unknown(), Scalar.const(0xFF), True)
    assert (r.umin, r.umax, r.smin, r.smax) == (0, 0xFF, 0, 0xFF)
    assert r.var_off == Tnum(0, 0xFF)


def test_alu32_zero_extends() -> None:
    r = alu(BinOp.ADD, Scalar.unknown(), Scalar.const(1), False)
    assert r.umax == U32 and r.smin == 0 and r.var_off.mask == U32


def test_range_add_and_shift() -> None:
    r = alu(BinOp.ADD, Scalar.from_urange(0, 10), Scalar.from_urange(5, 6), True)
    assert (r.umin, r.umax) == (5, 16)
    r = alu(BinOp.LSH, Scalar.from_urange(0, 15), Scalar.const(4), True)
    assert (r.umin, r.umax) == (0, 0xF0) and r.var_off == Tnum(0, 0xF0)
    r = alu(BinOp.RSH, Scalar.unknown(), Scalar.const(56), True)
    assert r.umax == 0xFF


def test_movsx_bounds() -> None:
    r = alu(BinOp.MOVSX8, Scalar.unknown(), Scalar.unknown(), True)
    assert (r.smin, r.smax) == (-128, 127)


def test_unsigned_compare_narrows_both() -> None:
    taken = refine(Cond.JGT, Scalar.unknown(), Scalar.const(10), False, True)
    assert taken is not None and taken[0].umin == 11
    fallthrough = refine(Cond.JGT, Scalar.unknown(), Scalar.const(10), False, False)
    assert fallthrough is not None and fallthrough[0].umax == 10
    ranges = refine(Cond.JLT, Scalar.from_urange(0, 100), Scalar.from_urange(20, 30), False, True)
    assert ranges is not None and ranges[0].umax == 29 and ranges[1].umin == 20


def test_equality_makes_constants_and_prunes() -> None:
    taken = refine(Cond.JEQ, Scalar.unknown(), Scalar.const(42), False, True)
    assert taken is not None and taken[0] == Scalar.const(42)
    assert refine(Cond.JEQ, Scalar.const(1), Scalar.const(2), False, True) is None
    assert refine(Cond.JNE, Scalar.const(2), Scalar.const(2), False, True) is None
    assert refine(Cond.JGT, Scalar.from_urange(0, 5), Scalar.const(5), False, True) is None
    jne = refine(Cond.JNE, Scalar.from_urange(0, 5), Scalar.const(0), False, True)
    assert jne is not None and jne[0].umin == 1


def test_signed_and_32bit_refinement() -> None:
    s = refine(Cond.JSLT, Scalar.unknown(), Scalar.const(0), False, False)
    assert s is not None and s[0].smin == 0
    w = refine(Cond.JLE, Scalar.unknown(), Scalar.const(7), True, True)
    assert w is not None and w[0].u32_max == 7 and w[0].umax == (U64 & ~U32) | 7
    bit = refine(Cond.JSET, Scalar.unknown(), Scalar.const(4), False, False)
    assert bit is not None and bit[0].var_off.value == 0 and not bit[0].var_off.mask & 4


def test_includes_and_join() -> None:
    small, big = Scalar.from_urange(4, 8), Scalar.from_urange(0, 100)
    assert big.includes(small) and not small.includes(big)
    joined = Scalar.const(3).join(Scalar.const(9))
    assert joined.includes(Scalar.const(3)) and joined.includes(Scalar.const(9))


@settings(max_examples=300, deadline=None)
@given(value=st.one_of(st.integers(0, (1 << 64) - 1), st.sampled_from([0, 1, (1 << 31), (1 << 63), (1 << 64) - 1])),
       a=st.integers(-(1 << 63), (1 << 63) - 1), b=st.integers(-(1 << 63), (1 << 63) - 1),
       c=st.integers(0, (1 << 64) - 1), d=st.integers(0, (1 << 64) - 1),
       e=st.integers(-(1 << 31), (1 << 31) - 1), f=st.integers(0, (1 << 32) - 1),
       loose=st.booleans())
def test_sync_constant_shortcut_matches_full_deduction(*, value: int, a: int, b: int, c: int, d: int,
                                                        e: int, f: int, loose: bool) -> None:
    exact = Scalar.const(value)
    if loose:
        # Bounds that admit the constant: the shortcut must agree with every deduction step.
        s = Scalar(Tnum.const(value), min(a, exact.smin), max(b, exact.smax), min(c, exact.umin),
                   max(d, exact.umax), min(e, exact.s32_min), max(e, exact.s32_max),
                   min(f, exact.u32_min), max(f, exact.u32_max))
    else:
        s = Scalar(Tnum.const(value), min(a, b), max(a, b), min(c, d), max(c, d), e, e, f, f)
    assert sync(s) == sync_full(s)
