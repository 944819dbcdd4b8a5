"""Hypothesis strategies shared by the verifier domain tests."""

from __future__ import annotations

from hypothesis import strategies as st

from pybpf.verifier.tnum import U64, Tnum

# Bias towards values near the interesting edges (0, sign bits, all ones) as well as uniform ones.
edge_u64 = st.sampled_from([0, 1, 2, 7, 0x7F, 0xFF, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF, 1 << 32,
                            (1 << 63) - 1, 1 << 63, U64 - 1, U64])
u64 = st.one_of(edge_u64, st.integers(0, U64), st.integers(0, 64), st.integers(U64 - 64, U64))


@st.composite
def tnums(draw: st.DrawFn) -> Tnum:
    value = draw(u64)
    mask = draw(st.one_of(st.just(0), st.integers(0, 0xFF), st.integers(0, U64), edge_u64,
                          st.integers(0, 63).map(lambda b: ((1 << b) - 1))))
    return Tnum(value & ~mask & U64, mask)


@st.composite
def tnum_and_member(draw: st.DrawFn) -> tuple[Tnum, int]:
    t = draw(tnums())
    return t, t.value | (draw(st.integers(0, U64)) & t.mask)
