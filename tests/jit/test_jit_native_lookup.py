"""Native ``bpf_map_lookup_elem`` on ARRAY and PERCPU_ARRAY maps against the interpreter.

A small XDP program (compiled here with clang) looks up the u32 key at the start of the packet in
an array, a per-CPU array and an LRU hash map (whose lookups stay in Python: they refresh
recency) and bumps what it finds; a hypothesis-drawn key sequence
(out-of-range keys included) runs under both engines on separately loaded objects, comparing
every verdict and the maps after each run, and the array lookups must never reach Python.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jit_build import build_object, trampoline_calls

from pybpf.platform.uapi_generated import HelperId
from pybpf.runtime.loader import load

SOURCE = r"""
#include "bpf_helpers.h"

#define U32_KEYED_MAP(kind, n, vtype, name) \
	struct { __uint(type, kind); __uint(max_entries, n); __type(key, __u32); __type(value, vtype); } name SEC(".maps")
U32_KEYED_MAP(BPF_MAP_TYPE_ARRAY, 7, __u64, arr);
U32_KEYED_MAP(BPF_MAP_TYPE_PERCPU_ARRAY, 5, __u32, pcpu);
U32_KEYED_MAP(BPF_MAP_TYPE_LRU_HASH, 4, __u32, other);

SEC("xdp")
int lookups(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 key, verdict = 0;
	if (data + 4 > data_end)
		return 99;
	key = *(__u32 *)data;
	__u64 *a = bpf_map_lookup_elem(&arr, &key);
	if (a) { *a += key + 1; verdict |= 1; }
	__u32 *p = bpf_map_lookup_elem(&pcpu, &key);
	if (p) { *p += 3; verdict |= 2; }
	__u32 *h = bpf_map_lookup_elem(&other, &key);
	if (h) verdict |= 4;
	return verdict;
}
"""


@pytest.fixture(scope="module")
def lookups_object(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_object(SOURCE, tmp_path_factory.mktemp("native_lookup"))


@pytest.fixture
def lookup_calls() -> Iterator[list[int]]:
    """Map pointers of every bpf_map_lookup_elem that reached the Python trampoline."""
    with trampoline_calls(HelperId.MAP_LOOKUP_ELEM) as seen:
        yield seen


def _maps(obj: Any) -> dict[str, list[Any]]:
    return {name: sorted((entry.key, entry.value) for entry in obj.map_entries(name)) for name in obj.maps}


KEYS = st.lists(st.one_of(st.integers(0, 9), st.integers(0, 2**32 - 1)), min_size=1, max_size=12)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(keys=KEYS, cpu=st.integers(0, 1))
def test_array_lookups_match_the_interpreter_and_stay_native(
    lookups_object: Path, lookup_calls: list[int], keys: list[int], cpu: int
) -> None:
    with load(lookups_object, engine="interp") as reference, load(lookups_object, engine="jit") as native:
        for obj in (reference, native):
            obj.services.cpu = cpu
        native_arrays = {native.maps[name].address for name in ("arr", "pcpu")}
        lookup_calls.clear()
        for key in keys:
            packet = key.to_bytes(4, "little") + bytes(60)
            expected = reference.program("lookups").test_run(packet)
            got = native.program("lookups").test_run(packet)
            assert got.retval == expected.retval
            assert _maps(native) == _maps(reference)
        assert lookup_calls, "the LRU hash map's lookups go through the trampoline"
        assert not native_arrays & set(lookup_calls), "array lookups reached Python"
