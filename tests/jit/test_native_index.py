"""The native index tables Python keeps for native map lookups (pybpf.vm.native_maps), without the JIT.

Random insert/remove sequences must leave :class:`NativeIndex` answering exactly as a dict would,
within its load limit and published in the descriptor; an LPM trie's :class:`LpmIndex`, probed the
way native code probes it, must find the value the trie's longest-prefix match finds for any key;
and the maps expose a descriptor only when native code may reproduce their semantics.
"""

from __future__ import annotations

import contextlib
import ctypes
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pybpf.errors import MapError
from pybpf.platform.uapi_generated import BpfMapFlag, BpfMapType
from pybpf.runtime.maps import create_map
from pybpf.runtime.maps.definition import MapDef
from pybpf.runtime.maps.hash import HashMap
from pybpf.vm.memory import AddressSpace
from pybpf.vm.native_maps import NativeMapDescriptor, NativeMapFlag, NativeMapKind
from pybpf.vm.native_maps.hashing import native_hash, prefix_bytes
from pybpf.vm.native_maps.index import NativeIndex


def test_hash_is_murmur_mixing_with_length_and_seed() -> None:
    """Different lengths, seeds and single bits all give different hashes; equal input the same."""
    seen = {native_hash(bytes(length), seed) for length in range(0, 20) for seed in (0, 1, 32)}
    assert len(seen) == 60
    base = bytes(range(16))
    flipped = {native_hash(bytes(b ^ (1 << bit) if i == index else b for i, b in enumerate(base))) for index in
               range(16) for bit in range(8)}
    assert len(flipped) == 128 and native_hash(base) not in flipped
    assert native_hash(base, 7) == native_hash(bytes(base), 7)


def test_prefix_bytes_keep_only_the_prefix_bits() -> None:
    data = bytes([0xC0, 0xA8, 0xFF, 0x01])
    assert prefix_bytes(data, 0) == b""
    assert prefix_bytes(data, 16) == bytes([0xC0, 0xA8])
    assert prefix_bytes(data, 20) == bytes([0xC0, 0xA8, 0xF0])
    assert prefix_bytes(data, 23) == bytes([0xC0, 0xA8, 0xFE])


OPERATIONS = st.lists(st.tuples(st.booleans(), st.binary(min_size=0, max_size=3), st.integers(0, 2)), max_size=120)


@settings(max_examples=60, deadline=None)
@given(operations=OPERATIONS)
def test_index_answers_as_a_dict(operations: list[tuple[bool, bytes, int]]) -> None:
    descriptor = NativeMapDescriptor(NativeMapKind.HASH, NativeMapFlag(0), 3, 8)
    index = NativeIndex(descriptor)
    keys: dict[tuple[int, bytes], Any] = {}
    expected: dict[tuple[int, bytes], int] = {}
    for number, (insert, key, tag) in enumerate(operations):
        name = (tag, key)
        if insert:
            buffer = keys.setdefault(name, ctypes.create_string_buffer(key, len(key) or 1))
            expected[name] = 0x1000 + number
            index.insert(key, ctypes.addressof(buffer), 0x1000 + number, tag)
        else:
            assert index.remove(key, tag) == (name in expected)
            expected.pop(name, None)
        assert len(index) == len(expected)
        assert 2 * len(index) <= index.capacity
        assert descriptor.base == index.address
    for tag in range(3):
        for key in {key for _, key in keys} | {b"zz"}:
            assert index.lookup(key, tag) == expected.get((tag, key), 0)
    index.close()
    assert descriptor.base == 0


def _lpm(data_size: int) -> Any:
    definition = MapDef(BpfMapType.LPM_TRIE, 4 + data_size, 4, 64, map_flags=int(BpfMapFlag.NO_PREALLOC))
    return create_map(definition, AddressSpace())


PREFIXES = st.lists(
    st.tuples(st.booleans(), st.integers(0, 24), st.binary(min_size=3, max_size=3)), min_size=1, max_size=60
)


@settings(max_examples=60, deadline=None)
@given(operations=PREFIXES, probes=st.lists(st.tuples(st.integers(0, 25), st.binary(min_size=3, max_size=3))))
def test_lpm_index_finds_what_the_trie_finds(
    operations: list[tuple[bool, int, bytes]], probes: list[tuple[int, bytes]]
) -> None:
    trie = _lpm(3)
    keys = []
    for insert, prefixlen, data in operations:
        key = prefixlen.to_bytes(4, "little") + data
        keys.append(key)
        with contextlib.suppress(MapError):  # a refused operation changes nothing: the trie decides
            if insert:
                trie.update_raw(key, len(keys).to_bytes(4, "little"))
            else:
                trie.delete_raw(key)
    index = trie._native_index
    for key in keys + [prefixlen.to_bytes(4, "little") + data for prefixlen, data in probes]:
        prefixlen = int.from_bytes(key[:4], "little")
        expected = trie.lookup_address(key)
        found = index.lookup(key[4:], prefixlen) if prefixlen <= 24 else 0
        assert found == expected, key.hex()
    assert len(index) == len(trie)
    assert list(index.lengths) == sorted({int.from_bytes(key[:4], "little") for key in trie.raw_keys()}, reverse=True)


@pytest.mark.parametrize(
    ("map_type", "flags", "kind", "updatable"),
    [
        (BpfMapType.ARRAY, 0, NativeMapKind.ARRAY, True),
        (BpfMapType.PERCPU_ARRAY, 0, NativeMapKind.ARRAY, True),
        (BpfMapType.HASH, 0, NativeMapKind.HASH, True),
        (BpfMapType.PERCPU_HASH, 0, NativeMapKind.HASH, True),
        (BpfMapType.HASH, BpfMapFlag.RDONLY_PROG, NativeMapKind.HASH, False),
        (BpfMapType.ARRAY, BpfMapFlag.RDONLY_PROG, NativeMapKind.ARRAY, False),
        (BpfMapType.LRU_HASH, 0, None, False),
        (BpfMapType.LRU_PERCPU_HASH, 0, None, False),
    ],
)
def test_which_maps_are_native(map_type: BpfMapType, flags: int, kind: NativeMapKind | None, updatable: bool) -> None:
    created = create_map(MapDef(map_type, 4, 8, 4, map_flags=int(flags)), AddressSpace(), ncpus=2)
    descriptor = created.native_descriptor()
    if kind is None:
        assert descriptor is None  # LRU: a lookup refreshes recency, in Python
        return
    assert descriptor is not None
    view = descriptor.view()
    assert view.kind is kind
    assert bool(view.flags & NativeMapFlag.UPDATABLE) == updatable
    assert view.cpu_stride == (8 if map_type in (BpfMapType.PERCPU_ARRAY, BpfMapType.PERCPU_HASH) else 0)
    assert descriptor.cpu_offset(1) == view.cpu_stride
    assert descriptor.cpu_offset(2) == (None if view.cpu_stride else 0)


def test_hash_index_follows_moved_storage() -> None:
    created = create_map(MapDef(BpfMapType.HASH, 4, 8, 16), AddressSpace())
    assert isinstance(created, HashMap)
    index = created._native_index
    assert index is not None  # a plain (not LRU) hash has a native index
    created.update_raw(b"abcd", bytes(range(8)))
    before = index.lookup(b"abcd")
    storage = bytearray(16 * created.slot_size)
    created.move_storage(storage, memoryview(bytearray(16)))
    index = created._native_index
    assert index is not None
    after = index.lookup(b"abcd")
    assert after != before
    assert after == created.lookup_address(b"abcd")
    assert ctypes.string_at(after, 8) == bytes(range(8))
