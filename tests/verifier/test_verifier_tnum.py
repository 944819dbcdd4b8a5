"""Soundness of the tnum domain against concrete 64-bit arithmetic."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pybpf.verifier.tnum import U32, U64, Tnum

from .strategies import tnum_and_member, tnums

BINARY: dict[str, tuple[Callable[[Tnum, Tnum], Tnum], Callable[[int, int], int]]] = {
    "add": (Tnum.add, lambda x, y: (x + y) & U64),
    "sub": (Tnum.sub, lambda x, y: (x - y) & U64),
    "mul": (Tnum.mul, lambda x, y: (x * y) & U64),
    "and": (Tnum.and_, lambda x, y: x & y),
    "or": (Tnum.or_, lambda x, y: x | y),
    "xor": (Tnum.xor, lambda x, y: x ^ y),
}


@pytest.mark.parametrize("name", sorted(BINARY))
@given(a=tnum_and_member(), b=tnum_and_member())
def test_binary_ops_are_sound(name: str, a: tuple[Tnum, int], b: tuple[Tnum, int]) -> None:
    abstract, concrete = BINARY[name]
    (ta, x), (tb, y) = a, b
    result = abstract(ta, tb)
    assert result.contains(concrete(x, y)), f"{name}: {x:#x},{y:#x} -> {concrete(x, y):#x} not in {result}"


@given(a=tnum_and_member(), shift=st.integers(0, 63))
def test_shifts_are_sound(a: tuple[Tnum, int], shift: int) -> None:
    t, x = a
    assert t.lshift(shift).contains((x << shift) & U64)
    assert t.rshift(shift).contains(x >> shift)
    signed = x - (1 << 64) if x >> 63 else x
    assert t.arshift(shift).contains((signed >> shift) & U64)
    if shift < 32:
        low = x & U32
        signed32 = low - (1 << 32) if low >> 31 else low
        assert t.subreg().arshift(shift, 32).contains((signed32 >> shift) & U32)


@given(a=tnum_and_member())
def test_neg_cast_subreg_are_sound(a: tuple[Tnum, int]) -> None:
    t, x = a
    assert t.neg().contains(-x & U64)
    for size in (1, 2, 4, 8):
        assert t.cast(size).contains(x & ((1 << (size * 8)) - 1))
    assert t.clear_subreg().contains(x & ~U32 & U64)
    assert t.const_subreg(0x1234).contains((x & ~U32 & U64) | 0x1234)


@given(lo=st.integers(0, U64), hi=st.integers(0, U64), pick=st.integers(0, U64))
def test_range_holds_every_value_between(lo: int, hi: int, pick: int) -> None:
    lo, hi = min(lo, hi), max(lo, hi)
    t = Tnum.range(lo, hi)
    assert t.contains(lo) and t.contains(hi)
    assert t.contains(lo + pick % (hi - lo + 1))


@given(a=tnum_and_member(), b=tnums())
def test_union_and_includes(a: tuple[Tnum, int], b: Tnum) -> None:
    t, x = a
    joined = t.union(b)
    assert joined.contains(x)
    assert joined.contains(b.value | b.mask)
    assert joined.includes(t) and joined.includes(b)


@given(a=tnum_and_member(), b=tnums())
def test_intersect_keeps_common_members(a: tuple[Tnum, int], b: Tnum) -> None:
    t, x = a
    if b.contains(x):
        assert t.intersect(b).contains(x)


def test_includes_is_not_trivially_true() -> None:
    assert Tnum.unknown().includes(Tnum.const(5))
    assert not Tnum.const(5).includes(Tnum.unknown())
    assert not Tnum(4, 3).includes(Tnum(8, 0))
    assert Tnum(4, 3).includes(Tnum(6, 1))


def test_kernel_examples() -> None:
    # tnum_range(0, 5) covers 0..7; a constant plus a constant stays constant.
    assert Tnum.range(0, 5) == Tnum(0, 7)
    assert Tnum.const(3).add(Tnum.const(4)) == Tnum.const(7)
    assert Tnum.const(6).mul(Tnum.const(7)) == Tnum.const(42)
    assert Tnum.range(0, 1 << 63) == Tnum.unknown()
    # (x & 0xf0) with x unknown has the low nibble known zero.
    assert Tnum.unknown().and_(Tnum.const(0xF0)) == Tnum(0, 0xF0)
    assert Tnum(0x80, 0).arshift(4, 8 * 4) == Tnum.const(0x8)
    assert Tnum.const(0x8000_0000).arshift(4, 32) == Tnum.const(0xF800_0000)


def test_malformed_tnum_is_refused() -> None:
    from pybpf.errors import VerifierError

    with pytest.raises(VerifierError):
        Tnum(1, 1)
