"""Differential tests against the kernel for the LPM trie, queue, stack and bloom filter."""

from __future__ import annotations

from functools import partial
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from maps_oracle import KERNEL_OK, KERNEL_REASON, Pair, create_outcomes, kernel_bloom_peek, outcome
from test_maps_differential import run

from pybpf.platform.uapi_generated import BpfMapFlag, BpfMapType
from pybpf.runtime.maps import BloomFilterMap, MapDef

pytestmark = [
    pytest.mark.kernel,
    pytest.mark.skipif(not KERNEL_OK, reason=f"bpf() unavailable: {KERNEL_REASON}"),
]

SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FLAGS = st.sampled_from([0, 1, 2, 3, 4])

# Prefixes over 2 data bytes drawn from a few values, so that they nest and branch often.
lpm_keys = st.builds(
    lambda plen, data: plen.to_bytes(4, "little") + data,
    st.sampled_from([0, 1, 3, 4, 8, 9, 12, 16, 17]),
    st.sampled_from([b"\x00\x00", b"\x80\x00", b"\xc0\xa8", b"\xc0\xa9", b"\xc0\x00", b"\x0f\xff", b"\xff\xff"]),
)


def lpm_ops() -> st.SearchStrategy[list[tuple[Any, ...]]]:
    op = st.one_of(
        st.tuples(st.just("update"), lpm_keys, st.binary(min_size=3, max_size=3), FLAGS),
        st.tuples(st.just("lookup"), lpm_keys),
        st.tuples(st.just("delete"), lpm_keys),
        st.tuples(st.just("next"), st.none() | lpm_keys),
        st.tuples(st.just("lookup_and_delete"), lpm_keys),
    )
    return st.lists(op, min_size=1, max_size=50)


@SETTINGS
@given(sequence=lpm_ops())
def test_lpm_trie_matches_kernel(sequence: list[tuple[Any, ...]]) -> None:
    pair = Pair(MapDef(BpfMapType.LPM_TRIE, 6, 3, 5, map_flags=BpfMapFlag.NO_PREALLOC))
    try:
        run(pair, sequence, ordered=True)
        # And the whole walk, in the kernel's postorder.
        ours, kernel = list(pair.ours.raw_keys()), []
        key = None
        while (found := pair.next_key(key)[1])[0] == "ok" and found[1] is not None:
            kernel.append(found[1])
            key = found[1]
        assert ours == kernel
    finally:
        pair.close()


def queue_ops(value_size: int) -> st.SearchStrategy[list[tuple[Any, ...]]]:
    value = st.binary(min_size=value_size, max_size=value_size)
    op = st.one_of(
        st.tuples(st.just("push"), value, FLAGS),
        st.tuples(st.just("peek")),
        st.tuples(st.just("pop"), st.sampled_from([0, 4])),
        st.tuples(st.just("delete")),
        st.tuples(st.just("next")),
    )
    return st.lists(op, min_size=1, max_size=40)


@pytest.mark.parametrize("map_type", [BpfMapType.QUEUE, BpfMapType.STACK])
@SETTINGS
@given(sequence=queue_ops(5))
def test_queue_and_stack_match_kernel(map_type: BpfMapType, sequence: list[tuple[Any, ...]]) -> None:
    pair = Pair(MapDef(map_type, 0, 5, 3))
    try:
        for step, operation in enumerate(sequence):
            name = operation[0]
            if name == "push":
                ours, kernel = pair.update(b"", operation[1], operation[2])
            elif name == "peek":
                ours, kernel = pair.lookup(b"")
            elif name == "pop":
                ours, kernel = pair.lookup_and_delete(None, operation[1])
            elif name == "delete":
                ours, kernel = pair.delete(b"")
            else:
                ours, kernel = pair.next_key(None)
            assert ours == kernel, f"step {step}: {operation}"
    finally:
        pair.close()


@SETTINGS
@given(
    pushed=st.lists(st.binary(min_size=4, max_size=4), max_size=6),
    probes=st.lists(st.binary(min_size=4, max_size=4), min_size=20, max_size=20),
    value_size=st.sampled_from([4, 5]),
    nr_hash=st.sampled_from([0, 1, 3]),
)
def test_bloom_filter_matches_kernel_with_zero_seed(
    pushed: list[bytes], probes: list[bytes], value_size: int, nr_hash: int
) -> None:
    # A tiny filter (64 bits) so that false positives are common; with BPF_F_ZERO_SEED they must agree.
    definition = MapDef(BpfMapType.BLOOM_FILTER, 0, value_size, 2, map_flags=BpfMapFlag.ZERO_SEED, map_extra=nr_hash)
    pair = Pair(definition)
    ours = pair.ours
    assert isinstance(ours, BloomFilterMap)
    try:
        for value in pushed:
            ours_result, kernel_result = pair.update(b"", value.ljust(value_size, b"\x5a"), 0)
            assert ours_result == kernel_result == ("ok", None)
        for probe in [*pushed, *probes]:
            padded = probe.ljust(value_size, b"\x5a")
            assert outcome(partial(ours.peek_raw, padded)) == kernel_bloom_peek(pair.fd, padded)
        for ours_result, kernel_result in (
            pair.update(b"", b"\0" * value_size, 1),
            pair.delete(b""),
            pair.next_key(None),
            pair.lookup_and_delete(None),
        ):
            assert ours_result == kernel_result
    finally:
        pair.close()


CREATE_CASES = [
    MapDef(BpfMapType.LPM_TRIE, 8, 4, 4),
    MapDef(BpfMapType.LPM_TRIE, 4, 4, 4, map_flags=BpfMapFlag.NO_PREALLOC),
    MapDef(BpfMapType.LPM_TRIE, 261, 4, 4, map_flags=BpfMapFlag.NO_PREALLOC),
    MapDef(BpfMapType.LPM_TRIE, 260, 4, 4, map_flags=BpfMapFlag.NO_PREALLOC),
    MapDef(BpfMapType.LPM_TRIE, 8, 0, 4, map_flags=BpfMapFlag.NO_PREALLOC),
    MapDef(BpfMapType.QUEUE, 4, 4, 4),
    MapDef(BpfMapType.QUEUE, 0, 0, 4),
    MapDef(BpfMapType.STACK, 0, 4, 0),
    MapDef(BpfMapType.STACK, 0, 4, 4, map_flags=BpfMapFlag.NO_PREALLOC),
    MapDef(BpfMapType.BLOOM_FILTER, 4, 4, 4),
    MapDef(BpfMapType.BLOOM_FILTER, 0, 4, 4, map_extra=16),
    MapDef(BpfMapType.BLOOM_FILTER, 0, 4, 4, map_flags=BpfMapFlag.NO_PREALLOC),
    MapDef(BpfMapType.BLOOM_FILTER, 0, 4, 4, map_extra=15),
]


@pytest.mark.parametrize("definition", CREATE_CASES, ids=str)
def test_create_errors_match_kernel(definition: MapDef) -> None:
    ours, kernel = create_outcomes(definition)
    assert ours == kernel


def devmap_ops() -> st.SearchStrategy[list[tuple[Any, ...]]]:
    # ifindex 1 is the loopback device, which every machine has; 0 names no device. Storing a device in a
    # devmap attaches nothing to it.
    keys = st.sampled_from([0, 1, 2, 3, 7]).map(lambda i: i.to_bytes(4, "little"))
    values = st.sampled_from([0, 1]).map(lambda i: i.to_bytes(4, "little"))
    op = st.one_of(
        st.tuples(st.just("update"), keys, values, FLAGS),
        st.tuples(st.just("lookup"), keys),
        st.tuples(st.just("delete"), keys),
        st.tuples(st.just("next"), st.none() | keys),
    )
    return st.lists(op, min_size=1, max_size=30)


@pytest.mark.parametrize("map_type", [BpfMapType.DEVMAP, BpfMapType.DEVMAP_HASH])
@SETTINGS
@given(sequence=devmap_ops())
def test_devmaps_match_kernel(map_type: BpfMapType, sequence: list[tuple[Any, ...]]) -> None:
    pair = Pair(MapDef(map_type, 4, 4, 3))
    try:
        run(pair, sequence, ordered=map_type == BpfMapType.DEVMAP)
    finally:
        pair.close()
