"""Differential tests: random operation sequences on our maps and on the kernel's, compared result by result.

Every update, lookup, delete, get_next_key (and pop, push...) must give the same value or the
same errno. Hash maps iterate in a different order than the kernel's, so for them the key
*sets* are compared after each step instead of get_next_key results.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from maps_oracle import KERNEL_OK, KERNEL_REASON, Pair, create_outcomes, possible_cpus

from pybpf.platform.uapi_generated import BpfMapFlag, BpfMapType
from pybpf.runtime.maps import MapDef

pytestmark = [
    pytest.mark.kernel,
    pytest.mark.skipif(not KERNEL_OK, reason=f"bpf() unavailable: {KERNEL_REASON}"),
]

SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FLAGS = st.sampled_from([0, 1, 2, 3, 4, 5, 8])


def ops(key_space: st.SearchStrategy[bytes], value_size: int) -> st.SearchStrategy[list[tuple[Any, ...]]]:
    value = st.binary(min_size=value_size, max_size=value_size)
    op = st.one_of(
        st.tuples(st.just("update"), key_space, value, FLAGS),
        st.tuples(st.just("lookup"), key_space),
        st.tuples(st.just("delete"), key_space),
        st.tuples(st.just("next"), st.none() | key_space),
        st.tuples(st.just("lookup_and_delete"), key_space),
    )
    return st.lists(op, min_size=1, max_size=40)


def run(pair: Pair, sequence: list[tuple[Any, ...]], ordered: bool) -> None:
    for step, operation in enumerate(sequence):
        name = operation[0]
        if name == "update":
            ours, kernel = pair.update(operation[1], operation[2], operation[3])
        elif name == "lookup":
            ours, kernel = pair.lookup(operation[1])
        elif name == "delete":
            ours, kernel = pair.delete(operation[1])
        elif name == "lookup_and_delete":
            ours, kernel = pair.lookup_and_delete(operation[1])
        else:
            ours, kernel = pair.next_key(operation[1])
            if not ordered and ours[0] == kernel[0] == "ok":
                # Orders differ; only "is there a next key at all" is comparable from a NULL key.
                if operation[1] is None:
                    assert (ours[1] is None) == (kernel[1] is None), f"step {step}: {operation}"
                continue
        assert ours == kernel, f"step {step}: {operation}: ours {ours} kernel {kernel}"
        if not ordered:
            mine, theirs = pair.key_sets()
            assert mine == theirs, f"step {step}: {operation}: key sets differ"


def u32_keys(limit: int) -> st.SearchStrategy[bytes]:
    return st.integers(0, limit).map(lambda i: i.to_bytes(4, "little"))


@SETTINGS
@given(sequence=ops(u32_keys(6), 12))
def test_array_matches_kernel(sequence: list[tuple[Any, ...]]) -> None:
    pair = Pair(MapDef(BpfMapType.ARRAY, 4, 12, 5))
    try:
        run(pair, sequence, ordered=True)
    finally:
        pair.close()


@SETTINGS
@given(sequence=ops(u32_keys(4), 5))
def test_percpu_array_matches_kernel(sequence: list[tuple[Any, ...]]) -> None:
    ncpus = possible_cpus()
    pair = Pair(MapDef(BpfMapType.PERCPU_ARRAY, 4, 5, 4), ncpus)
    # Per-CPU values on the wire hold every CPU's padded copy.
    widened = [(op[0], op[1], (op[2] * 8 * ncpus)[: 8 * ncpus], op[3]) if op[0] == "update" else op for op in sequence]
    try:
        run(pair, widened, ordered=True)
    finally:
        pair.close()


@SETTINGS
@given(sequence=ops(st.sampled_from([bytes([i, 0, 0]) for i in range(8)]), 6))
def test_hash_matches_kernel(sequence: list[tuple[Any, ...]]) -> None:
    pair = Pair(MapDef(BpfMapType.HASH, 3, 6, 5))
    try:
        run(pair, sequence, ordered=False)
    finally:
        pair.close()


@SETTINGS
@given(sequence=ops(st.sampled_from([bytes([i]) * 8 for i in range(8)]), 4))
def test_hash_no_prealloc_matches_kernel(sequence: list[tuple[Any, ...]]) -> None:
    pair = Pair(MapDef(BpfMapType.HASH, 8, 4, 4, map_flags=BpfMapFlag.NO_PREALLOC))
    try:
        run(pair, sequence, ordered=False)
    finally:
        pair.close()


@SETTINGS
@given(sequence=ops(st.sampled_from([bytes([i, 1, 2, 3]) for i in range(6)]), 16))
def test_percpu_hash_matches_kernel(sequence: list[tuple[Any, ...]]) -> None:
    ncpus = possible_cpus()
    pair = Pair(MapDef(BpfMapType.PERCPU_HASH, 4, 12, 4), ncpus)
    widened = [(op[0], op[1], (op[2] * ncpus)[: 16 * ncpus], op[3]) if op[0] == "update" else op for op in sequence]
    try:
        run(pair, widened, ordered=False)
    finally:
        pair.close()


@SETTINGS
@given(sequence=ops(st.sampled_from([bytes([i, 7]) for i in range(10)]), 8))
def test_lru_hash_without_eviction_matches_kernel(sequence: list[tuple[Any, ...]]) -> None:
    # With far more room than keys, neither LRU evicts, and the kernel's behaves as a hash.
    pair = Pair(MapDef(BpfMapType.LRU_HASH, 2, 8, 1024))
    try:
        run(pair, sequence, ordered=False)
    finally:
        pair.close()


@SETTINGS
@given(sequence=ops(st.sampled_from([bytes([i, 7]) for i in range(10)]), 8))
def test_lru_percpu_hash_without_eviction_matches_kernel(sequence: list[tuple[Any, ...]]) -> None:
    ncpus = possible_cpus()
    pair = Pair(MapDef(BpfMapType.LRU_PERCPU_HASH, 2, 8, 1024), ncpus)
    widened = [(op[0], op[1], (op[2] * ncpus), op[3]) if op[0] == "update" else op for op in sequence]
    try:
        run(pair, widened, ordered=False)
    finally:
        pair.close()


CREATE_CASES = [
    MapDef(BpfMapType.ARRAY, 4, 8, 0),
    MapDef(BpfMapType.ARRAY, 8, 8, 4),
    MapDef(BpfMapType.ARRAY, 4, 0, 4),
    MapDef(BpfMapType.ARRAY, 4, 8, 4, map_flags=BpfMapFlag.NO_PREALLOC),
    MapDef(BpfMapType.ARRAY, 4, 8, 4, map_flags=BpfMapFlag.MMAPABLE),
    MapDef(BpfMapType.ARRAY, 4, 8, 4, map_flags=BpfMapFlag.RDONLY | BpfMapFlag.WRONLY),
    MapDef(BpfMapType.ARRAY, 4, 8, 4, map_flags=BpfMapFlag.PRESERVE_ELEMS),
    MapDef(BpfMapType.PERCPU_ARRAY, 4, 8, 4, map_flags=BpfMapFlag.MMAPABLE),
    MapDef(BpfMapType.PERCPU_ARRAY, 4, 40000, 4),
    MapDef(BpfMapType.HASH, 0, 8, 4),
    MapDef(BpfMapType.RINGBUF, 0, 0, 4096),
    MapDef(BpfMapType.PROG_ARRAY, 4, 4, 4),
    MapDef(BpfMapType.DEVMAP, 4, 8, 4),
    MapDef(BpfMapType.HASH, 4, 0, 4),
    MapDef(BpfMapType.HASH, 4, 8, 0),
    MapDef(BpfMapType.HASH, 4, 8, 4, map_flags=BpfMapFlag.NO_COMMON_LRU),
    MapDef(BpfMapType.HASH, 4, 8, 4, map_flags=BpfMapFlag.MMAPABLE),
    MapDef(BpfMapType.LRU_HASH, 4, 8, 4, map_flags=BpfMapFlag.NO_PREALLOC),
    MapDef(BpfMapType.LRU_HASH, 4, 8, 4, map_flags=BpfMapFlag.NO_COMMON_LRU),
    MapDef(BpfMapType.PERCPU_HASH, 4, 40000, 4),
    MapDef(BpfMapType.HASH, 4, 8, 4, map_flags=BpfMapFlag.ZERO_SEED),
    MapDef(BpfMapType.HASH, 4, 8, 4, map_flags=1 << 20),
    MapDef(BpfMapType.ARRAY, 4, 8, 4, map_flags=1 << 20),
    MapDef(BpfMapType.PROG_ARRAY, 4, 8, 4),
    MapDef(BpfMapType.PROG_ARRAY, 4, 4, 4, map_flags=BpfMapFlag.MMAPABLE),
    MapDef(BpfMapType.PERF_EVENT_ARRAY, 4, 4, 4, map_flags=BpfMapFlag.PRESERVE_ELEMS),
    MapDef(BpfMapType.RINGBUF, 0, 0, 4096 * 3),
    MapDef(BpfMapType.RINGBUF, 4, 0, 4096),
    MapDef(BpfMapType.RINGBUF, 0, 0, 4096, map_flags=BpfMapFlag.NO_PREALLOC),
    MapDef(BpfMapType.DEVMAP, 4, 6, 4),
    MapDef(BpfMapType.DEVMAP_HASH, 4, 8, 0),
    MapDef(BpfMapType.CPUMAP, 4, 4, 100000),
]


@pytest.mark.parametrize(
    "definition",
    CREATE_CASES,
    ids=lambda d: f"{d.type.name}-{d.key_size}-{d.value_size}-{d.max_entries}-{d.map_flags:#x}",
)
def test_create_errors_match_kernel(definition: MapDef) -> None:
    ours, kernel = create_outcomes(definition, possible_cpus())
    assert ours == kernel
