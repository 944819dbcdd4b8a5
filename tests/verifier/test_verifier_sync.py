"""The flat ``sync_full`` (the verifier's hottest function) equals the step-by-step specification."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from pybpf.verifier.scalar import Scalar, sync_full
from pybpf.verifier.scalar_reference import sync_reference
from pybpf.verifier.tnum import Tnum

from .strategies import scalar_and_members, tnums

_EDGES = [0, 1, (1 << 31) - 1, 1 << 31, (1 << 32) - 1, 1 << 32, (1 << 63) - 1, 1 << 63, (1 << 64) - 1]


def _u64() -> st.SearchStrategy[int]:
    return st.one_of(st.integers(0, (1 << 64) - 1), st.sampled_from(_EDGES))


def _s64() -> st.SearchStrategy[int]:
    return st.one_of(st.integers(-(1 << 63), (1 << 63) - 1), st.sampled_from([e - (1 << 63) for e in _EDGES[:8]]))


@settings(max_examples=1500, deadline=None)
@given(t=tnums(), a=_s64(), b=_s64(), c=_u64(), d=_u64(), e=st.integers(-(1 << 31), (1 << 31) - 1),
       f=st.integers(-(1 << 31), (1 << 31) - 1), g=st.integers(0, (1 << 32) - 1), h=st.integers(0, (1 << 32) - 1))
def test_flat_sync_equals_reference_on_arbitrary_bounds(*, t: Tnum, a: int, b: int, c: int, d: int,
                                                         e: int, f: int, g: int, h: int) -> None:
    # Unsynced and possibly empty (bottom) combinations: both versions must agree on all of them.
    s = Scalar(t, min(a, b), max(a, b), min(c, d), max(c, d), min(e, f), max(e, f), min(g, h), max(g, h))
    assert sync_full(s) == sync_reference(s)
    crossed = Scalar(t, max(a, b), min(a, b), max(c, d), min(c, d), max(e, f), min(e, f), max(g, h), min(g, h))
    assert sync_full(crossed) == sync_reference(crossed)


@settings(max_examples=500, deadline=None)
@given(scalar_and_members())
def test_flat_sync_equals_reference_on_reachable_scalars(pair: tuple[Scalar, list[int]]) -> None:
    scalar, _members = pair
    assert sync_full(scalar) == sync_reference(scalar)
