"""Fuzzing load_spec (cilium's contract): random bytes, truncations and bit flips of real objects
may only ever raise pybpf errors; anything else (IndexError, struct.error...) is a bug."""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pybpf.errors import PybpfError
from pybpf.obj import ObjectSpec, load_spec

PROGS = Path(__file__).resolve().parent.parent / "progs"
OBJECTS = [(PROGS / name).read_bytes() for name in ("bpf2bpf.o", "tail_calls.o", "global_data.o", "legacy_maps.o")]
# PYBPF_FUZZ_EXAMPLES=5000 for a long local run; the default keeps the suite fast.
EXAMPLES = int(os.environ.get("PYBPF_FUZZ_EXAMPLES", "150"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check(data: bytes) -> None:
    try:
        spec = load_spec(data, name="fuzz.o")
    except PybpfError:
        return
    assert isinstance(spec, ObjectSpec)


@FUZZ
@given(st.binary(max_size=512))
def test_random_bytes(data: bytes) -> None:
    check(data)


@FUZZ
@given(st.binary(max_size=256))
def test_random_bytes_after_an_elf_magic(tail: bytes) -> None:
    check(b"\x7fELF\x02\x01\x01" + tail)


@FUZZ
@given(st.sampled_from(OBJECTS), st.floats(min_value=0.0, max_value=1.0))
def test_truncations(data: bytes, fraction: float) -> None:
    check(data[: int(len(data) * fraction)])


@FUZZ
@given(st.sampled_from(OBJECTS), st.lists(st.tuples(st.floats(0.0, 1.0), st.integers(0, 7)), min_size=1, max_size=8))
def test_bit_flips(data: bytes, flips: list[tuple[float, int]]) -> None:
    mutated = bytearray(data)
    for where, bit in flips:
        mutated[min(int(where * len(data)), len(data) - 1)] ^= 1 << bit
    check(bytes(mutated))


@FUZZ
@given(st.sampled_from(OBJECTS), st.integers(0, 10_000), st.binary(min_size=1, max_size=16))
def test_overwrites(data: bytes, where: int, junk: bytes) -> None:
    mutated = bytearray(data)
    where %= len(data)
    mutated[where : where + len(junk)] = junk
    check(bytes(mutated[: len(data)]))
