"""Hypothesis strategies shared by the verifier domain tests."""

from __future__ import annotations

from hypothesis import strategies as st

from pybpf.isa.semantics import s64
from pybpf.verifier.scalar import Scalar
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


def _near(base: int) -> st.SearchStrategy[int]:
    return st.integers(-300, 300).map(lambda d: (base + d) & U64)


concrete = st.one_of(u64, _near(0), _near(1 << 31), _near(1 << 32), _near(1 << 63), _near(U64 & ~0xFFFF_FFFF))


@st.composite
def scalar_and_members(draw: st.DrawFn) -> tuple[Scalar, list[int]]:
    """An abstract scalar and concrete members of it (the values it was built from, or drawn from its range)."""
    kind = draw(st.sampled_from(["values", "urange", "srange", "tnum", "unknown"]))
    if kind == "values":
        values = draw(st.lists(concrete, min_size=1, max_size=4))
        return Scalar.from_values(values), values
    if kind == "urange":
        lo, hi = sorted((draw(concrete), draw(concrete)))
        picks = [lo, hi] + [lo + draw(st.integers(0, hi - lo)) for _ in range(2)]
        return Scalar.from_urange(lo, hi), picks
    if kind == "srange":
        lo, hi = sorted((s64(draw(concrete)), s64(draw(concrete))))
        picks = [lo, hi] + [lo + draw(st.integers(0, hi - lo)) for _ in range(2)]
        return Scalar.from_srange(lo, hi), [p & U64 for p in picks]
    if kind == "tnum":
        t, x = draw(tnum_and_member())
        return Scalar.from_tnum(t), [x, t.value, t.value | t.mask]
    return Scalar.unknown(), [draw(concrete), draw(concrete)]
