"""Native map helpers (pybpf.vm.native_maps): hash, per-CPU hash, LPM trie and array, against the interpreter.

One XDP program (compiled here with clang) reads an operation from the packet: a lookup, an
update with the packet's flags, a delete or a lookup-and-increment, on one of four maps. A
hypothesis-drawn sequence of such operations, interleaved with user-space updates and deletes
(which rebuild the native indexes as they grow), runs on two separately loaded objects, one
under the interpreter and one under the JIT, on CPU 0 or 1: every verdict and every map must
agree after every step. Another test proves the fast path (lookups, and updates of existing
elements with BPF_ANY/BPF_EXIST) never calls Python, and that what must stay in Python does.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jit_build import build_object, trampoline_calls

from pybpf.errors import MapError, MemoryAccessError, PybpfError
from pybpf.platform.uapi_generated import HelperId
from pybpf.runtime.loader import load

SOURCE = r"""
#include "bpf_helpers.h"

struct key6 { __u8 b[6]; };                                /* the hash's tail bytes alone */
struct key12 { __u8 b[12]; };                              /* a whole word, then tail bytes */
struct lpm_key { __u32 prefixlen; __u8 data[5]; } __attribute__((packed));   /* 40-bit prefixes */
struct lpm6_key { __u32 prefixlen; __u8 data[16]; };                           /* IPv6-sized */

#define MAP(kind, n, ktype, vtype, flags, name) struct { \
	__uint(type, kind); __uint(max_entries, n); __type(key, ktype); __type(value, vtype); \
	__uint(map_flags, flags); } name SEC(".maps")
MAP(BPF_MAP_TYPE_HASH, 40, struct key6, __u64, 0, h);
MAP(BPF_MAP_TYPE_PERCPU_HASH, 40, __u32, __u32, 0, ph);
MAP(BPF_MAP_TYPE_LPM_TRIE, 40, struct lpm_key, __u32, BPF_F_NO_PREALLOC, lpm);
MAP(BPF_MAP_TYPE_ARRAY, 6, __u32, __u64, 0, arr);
MAP(BPF_MAP_TYPE_HASH, 40, struct key12, __u32, 0, h12);
MAP(BPF_MAP_TYPE_LPM_TRIE, 40, struct lpm6_key, __u64, BPF_F_NO_PREALLOC, lpm6);

struct op { __u8 code, map, flags, prefixlen; __u8 key[16]; __u64 value; };

#define DO(MAP, KEY, CAN_DELETE)						\
	if (code == 0) {							\
		__u32 *p = bpf_map_lookup_elem(&MAP, KEY);			\
		return p ? *p + 1 : 0;						\
	}									\
	if (code == 1)								\
		return (__u32)bpf_map_update_elem(&MAP, KEY, &value, flags);	\
	if (CAN_DELETE && code == 2)						\
		return (__u32)bpf_map_delete_elem(&MAP, KEY);			\
	{									\
		__u32 *p = bpf_map_lookup_elem(&MAP, KEY);			\
		if (!p)								\
			return 0;						\
		*p += 7;							\
		return *p;							\
	}

SEC("xdp")
int ops(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct op *op = data;
	if ((void *)(op + 1) > data_end)
		return 0xdead;
	__u64 value = op->value;
	__u32 code = op->code, flags = op->flags;
	switch (op->map) {
	case 0: { struct key6 k; __builtin_memcpy(&k, op->key, 6); DO(h, &k, 1) }
	case 1: { __u32 k; __builtin_memcpy(&k, op->key, 4); DO(ph, &k, 1) }
	case 2: { struct lpm_key k; k.prefixlen = op->prefixlen; __builtin_memcpy(k.data, op->key, 5); DO(lpm, &k, 1) }
	case 4: { struct key12 k; __builtin_memcpy(&k, op->key, 12); DO(h12, &k, 1) }
	case 5: { struct lpm6_key k; k.prefixlen = op->prefixlen; __builtin_memcpy(k.data, op->key, 16); DO(lpm6, &k, 1) }
	default: { __u32 k; __builtin_memcpy(&k, op->key, 4); DO(arr, &k, 0) }
	}
}
"""
MAPS = ("h", "ph", "lpm", "arr", "h12", "lpm6")
LPM_MAPS = (2, 5)
LOOKUP, UPDATE, DELETE, BUMP = range(4)
BPF_ANY, BPF_NOEXIST, BPF_EXIST = 0, 1, 2


@pytest.fixture(scope="module")
def ops_object(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_object(SOURCE, tmp_path_factory.mktemp("native_maps"))


@pytest.fixture
def map_calls() -> Iterator[dict[int, list[int]]]:
    """Map pointers of every lookup and update that reached the Python trampoline, by helper id."""
    with (
        trampoline_calls(HelperId.MAP_LOOKUP_ELEM) as lookups,
        trampoline_calls(HelperId.MAP_UPDATE_ELEM) as updates,
    ):
        yield {HelperId.MAP_LOOKUP_ELEM: lookups, HelperId.MAP_UPDATE_ELEM: updates}


def packet(code: int, map_number: int, key: bytes, value: int = 0, *, flags: int = 0, prefixlen: int = 0) -> bytes:
    return struct.pack("<BBBB16s4xQ", code, map_number, flags, prefixlen, key.ljust(16, b"\0"), value) + bytes(32)


def user_key(map_number: int, key: bytes, prefixlen: int) -> bytes:
    """The key as bpf(2) takes it for map ``map_number`` (what the program builds from the packet)."""
    if map_number == 0:
        return key[:6]
    if map_number == 2:
        return prefixlen.to_bytes(4, "little") + key[:5]
    if map_number == 4:
        return key[:12]
    if map_number == 5:
        return prefixlen.to_bytes(4, "little") + key[:16]
    return key[:4]


def snapshot(obj: Any) -> dict[str, list[Any]]:
    return {name: sorted((entry.key, entry.value) for entry in obj.map_entries(name)) for name in MAPS}


# Keys from a few patterns, so that operations meet the same elements and LPM prefixes nest.
KEY = st.builds(
    lambda head, low: bytes([0xC0, head, 0x10 | low, low, low ^ 0x5A, 0, 0, 0, 0x20, 1, low, 0, 0, 0, 0, low]),
    st.sampled_from([0xA8, 0xA9, 0x28]),
    st.integers(0, 5),
)
PROGRAM_OP = st.tuples(
    st.just("program"),
    st.integers(0, 3),  # code
    st.integers(0, 5),  # map
    KEY,
    st.integers(0, 2**64 - 1),
    st.sampled_from([BPF_ANY, BPF_ANY, BPF_EXIST, BPF_EXIST, BPF_NOEXIST, 3, 4]),
    st.sampled_from([0, 8, 12, 16, 17, 24, 31, 33, 40, 41, 64, 66, 72, 128, 129]),
)
USER_OP = st.tuples(
    st.sampled_from(["update", "delete"]),
    st.integers(0, 5),
    KEY,
    st.integers(0, 2**32 - 1),
    st.just(0),
    st.sampled_from([0, 8, 16, 20, 24, 32, 40, 64, 72, 128]),
)


def _user_step(obj: Any, step: tuple[Any, ...]) -> str:
    kind, map_number, key, value, _, prefixlen = step
    found = obj.maps[MAPS[map_number]]
    raw_key = user_key(map_number, key, prefixlen)
    size = found.user_value_size
    try:
        if kind == "update":
            found.update_raw(raw_key, value.to_bytes(8, "little")[:size].ljust(size, b"\1"))
        else:
            found.delete_raw(raw_key)
    except MapError as error:
        return type(error).__name__
    return "ok"


@pytest.mark.parametrize("checks", [False, True], ids=["unchecked", "bounds_checks"])
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(st.one_of(PROGRAM_OP, PROGRAM_OP, USER_OP), min_size=1, max_size=40), cpu=st.integers(0, 1))
def test_native_map_helpers_match_the_interpreter(
    ops_object: Path, checks: bool, steps: list[tuple[Any, ...]], cpu: int
) -> None:
    native_object = load(ops_object, engine="jit", jit_bounds_checks=checks)
    with load(ops_object, engine="interp") as reference, native_object as native:
        for obj in (reference, native):
            obj.services.cpu = cpu
        for step in steps:
            if step[0] == "program":
                _, code, map_number, key, value, flags, prefixlen = step
                data = packet(code, map_number, key, value, flags=flags, prefixlen=prefixlen)
                expected = reference.program("ops").test_run(data).retval
                assert native.program("ops").test_run(data).retval == expected, step
            else:
                assert _user_step(native, step) == _user_step(reference, step)
            assert snapshot(native) == snapshot(reference), step


@pytest.mark.parametrize("checks", [False, True], ids=["unchecked", "bounds_checks"])
def test_the_fast_path_never_calls_python(ops_object: Path, checks: bool, map_calls: dict[int, list[int]]) -> None:
    """Lookups (hits and misses) and updates of existing elements with BPF_ANY/BPF_EXIST stay native.

    With bounds checks the key and value are range-checked first (native code reads them): the
    stack and the packet are in the range table, so that costs no Python call either.
    """
    keys = [bytes([0xC0, 0xA8, n, 1, 2, 3, 0, 0, 0x20, 1, 0xD, 0xB8, n, 0, 0, 1]) for n in range(30)]  # 30: rebuilds
    native_object = load(ops_object, engine="jit", jit_bounds_checks=checks)
    with load(ops_object, engine="interp") as reference, native_object as native:
        for obj in (reference, native):
            for number, key in enumerate(keys):
                obj.maps["h"].update_raw(key[:6], number.to_bytes(8, "little"))
                obj.maps["ph"].update_raw(key[:4], bytes(8 * obj.maps["ph"].ncpus))
                obj.maps["lpm"].update_raw(user_key(2, key, 24), number.to_bytes(4, "little"))
                obj.maps["h12"].update_raw(key[:12], number.to_bytes(4, "little"))
                obj.maps["lpm6"].update_raw(user_key(5, key, 104), number.to_bytes(8, "little"))
            obj.maps["lpm"].update_raw(user_key(2, keys[0], 16), b"\x63\0\0\0")
            obj.maps["lpm6"].update_raw(user_key(5, keys[0], 60), bytes(8))
        absent = [bytes([0xC0, 0xA8, 99, 1, 2, 3, 0, 0, 0x20]), bytes([0x0A] * 16)]

        def key_of(map_number: int, index: int, key: bytes) -> bytes:
            return (index % 6).to_bytes(4, "little") if map_number == 3 else key  # arr: indices in range

        fast = [
            packet(code, map_number, key_of(map_number, index, key), 5 + index, flags=flags, prefixlen=prefixlen)
            for index, key in enumerate([*keys, *absent])
            for map_number, prefixlen in ((0, 0), (1, 0), (2, 40), (3, 0), (4, 0), (5, 128))
            for code, flags in ((LOOKUP, 0), (UPDATE, BPF_ANY), (BUMP, 0), (UPDATE, BPF_EXIST), (LOOKUP, 0))
            # Not here: LPM updates and updates of absent keys (Python's work).
            if not (code == UPDATE and (map_number in LPM_MAPS or (index >= len(keys) and map_number != 3)))
        ]
        hits: set[int] = set()
        for data in fast:
            expected = reference.program("ops").test_run(data).retval
            assert native.program("ops").test_run(data).retval == expected
            if data[0] == LOOKUP and expected:
                hits.add(data[1])
        assert hits == set(range(len(MAPS))), "every map had lookups that found an element"
        assert snapshot(native) == snapshot(reference)
        names = {native.maps[name].address: name for name in MAPS}
        called = {helper: [names.get(pointer) for pointer in pointers] for helper, pointers in map_calls.items()}
        assert called == {HelperId.MAP_LOOKUP_ELEM: [], HelperId.MAP_UPDATE_ELEM: []}
        # What must stay in Python does: a new key, BPF_NOEXIST, BPF_F_LOCK without a lock, an index past the array.
        slow = [
            packet(UPDATE, 0, bytes([9] * 8), 1, flags=BPF_ANY),
            packet(UPDATE, 0, keys[0], 1, flags=BPF_NOEXIST),
            packet(UPDATE, 1, keys[1], 1, flags=4),
            packet(UPDATE, 3, (6).to_bytes(4, "little"), 1, flags=BPF_ANY),
            packet(UPDATE, 2, keys[2], 1, flags=BPF_ANY, prefixlen=24),
        ]
        for data in slow:
            expected = reference.program("ops").test_run(data).retval
            assert native.program("ops").test_run(data).retval == expected
        assert len(map_calls[HelperId.MAP_UPDATE_ELEM]) == len(slow)
        assert snapshot(native) == snapshot(reference)


def test_a_long_lived_program_sees_python_changes_between_runs(ops_object: Path) -> None:
    """Deletes, re-inserts and index rebuilds done from Python between runs are what native code probes next."""
    with load(ops_object, engine="jit") as native:
        program, table = native.program("ops"), native.maps["h"]
        key = bytes([1, 2, 3, 4, 5, 6, 0, 0])
        assert program.test_run(packet(LOOKUP, 0, key)).retval == 0
        table.update_raw(key[:6], (41).to_bytes(8, "little"))
        assert program.test_run(packet(LOOKUP, 0, key)).retval == 42
        for number in range(35):  # grow: the index is rebuilt (moved) several times
            table.update_raw(bytes([number, 9, 9, 9, 9, 9]), bytes(8))
        assert program.test_run(packet(LOOKUP, 0, key)).retval == 42
        table.delete_raw(key[:6])
        assert program.test_run(packet(LOOKUP, 0, key)).retval == 0
        table.update_raw(key[:6], (6).to_bytes(8, "little"))
        assert program.test_run(packet(BUMP, 0, key)).retval == 13


@pytest.mark.parametrize("cpu", [0, 1])
def test_per_cpu_values_are_the_runs_cpus(ops_object: Path, cpu: int) -> None:
    with load(ops_object, engine="jit") as native:
        native.services.cpu = cpu
        table = native.maps["ph"]
        key = (7).to_bytes(4, "little")
        table.update_raw(key, b"".join((10 * (n + 1)).to_bytes(8, "little") for n in range(table.ncpus)))
        assert native.program("ops").test_run(packet(LOOKUP, 1, key)).retval == 10 * (cpu + 1) + 1
        native.program("ops").test_run(packet(UPDATE, 1, key, 500, flags=BPF_EXIST))
        copies = table.lookup_raw(key)
        assert int.from_bytes(copies[8 * cpu : 8 * cpu + 4], "little") == 500
        others = [int.from_bytes(copies[8 * n : 8 * n + 4], "little") for n in range(table.ncpus) if n != cpu]
        assert others == [10 * (n + 1) for n in range(table.ncpus) if n != cpu]


BAD_KEY_SOURCE = r"""
#include "bpf_helpers.h"

struct lpm_key { __u32 prefixlen; __u8 data[4]; };
struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(max_entries, 4); __type(key, __u32); __type(value, __u32);
	} hash SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_LPM_TRIE); __uint(max_entries, 4); __type(key, struct lpm_key); __type(value, __u32);
	__uint(map_flags, BPF_F_NO_PREALLOC); } lpm SEC(".maps");

SEC("xdp")
int bad_key(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *nowhere = (void *)(long)64;	/* an unmapped key: the verifier would refuse it */
	__u32 value = 1;
	switch (*(__u8 *)data) {
	case 0: return bpf_map_lookup_elem(&hash, nowhere) != 0;
	case 1: return bpf_map_lookup_elem(&lpm, nowhere) != 0;
	case 2: return bpf_map_update_elem(&hash, nowhere, &value, 0);
	default: return bpf_map_update_elem(&hash, data, nowhere, 0);
	}
}
"""


@pytest.mark.parametrize("case", [0, 1, 2, 3], ids=["hash lookup", "lpm lookup", "update key", "update value"])
def test_an_unmapped_key_or_value_fails_as_in_the_interpreter(tmp_path: Path, case: int) -> None:
    """Native code range-checks what it reads and leaves a bad address to Python: the interpreter's error."""
    path = build_object(BAD_KEY_SOURCE, tmp_path)
    data = bytes([case, 0, 0, 0]) + bytes(60)
    errors = []
    for engine in ("interp", "jit"):
        with load(path, engine=engine, verify=False) as obj:
            obj.maps["hash"].update_raw(data[:4], bytes(4))  # the key of case 3 exists: its value is read
            with pytest.raises(PybpfError) as raised:
                obj.program("bad_key").test_run(data)
            # The message up to the nearest region (whose address differs from object to object).
            errors.append((type(raised.value), str(raised.value).split(";")[0]))
    assert errors[0] == errors[1]
    assert errors[0][0] is MemoryAccessError
