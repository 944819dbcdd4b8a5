"""Values in stable memory, the program-side API, BPF_F_MMAPABLE, freeze and access flags."""

from __future__ import annotations

import errno

import pytest
from maps_oracle import KERNEL_OK, KERNEL_REASON, Pair

from pybpf.errors import (
    MapFullError,
    MapInvalidArgumentError,
    MapKeyExistsError,
    MapKeyNotFoundError,
    MapOperationNotSupportedError,
    MapPermissionError,
)
from pybpf.platform.uapi_generated import BpfMapFlag, BpfMapType
from pybpf.runtime.maps import ArrayMap, HashMap, Map, MapDef, create_map
from pybpf.vm.memory import AddressSpace, RegionKind

U32 = [i.to_bytes(4, "little") for i in range(64)]


def make(
    map_type: BpfMapType,
    *,
    key_size: int = 4,
    value_size: int = 8,
    max_entries: int = 8,
    flags: int = 0,
    ncpus: int = 1,
    space: AddressSpace | None = None,
) -> Map:
    return create_map(
        MapDef(map_type, key_size, value_size, max_entries, map_flags=flags), space or AddressSpace(), ncpus
    )


@pytest.mark.parametrize("map_type", [BpfMapType.ARRAY, BpfMapType.HASH, BpfMapType.LRU_HASH, BpfMapType.LPM_TRIE])
def test_lookup_address_is_stable_and_sees_updates(map_type: BpfMapType) -> None:
    space = AddressSpace()
    lpm = map_type == BpfMapType.LPM_TRIE
    key = (32).to_bytes(4, "little") + b"\x0a\x00\x00\x01" if lpm else U32[3]
    m = make(
        map_type,
        key_size=8 if lpm else 4,
        value_size=8,
        max_entries=8,
        flags=BpfMapFlag.NO_PREALLOC if lpm else 0,
        space=space,
    )
    m.update_raw(key, b"AAAAAAAA")
    address = m.lookup_address(key)
    assert address != 0
    region = space.find(address, 8)
    assert region is not None and region.kind is RegionKind.MAP_VALUE
    assert space.read_bytes(address, 8) == b"AAAAAAAA"
    # Other elements come and go; the pointer stays put and sees the element's updates.
    for other in range(4, 8):
        m.update_raw(U32[other] if not lpm else (32).to_bytes(4, "little") + bytes([11, 0, 0, other]), b"x" * 8)
    m.update_raw(key, b"BBBBBBBB")
    assert m.lookup_address(key) == address
    assert space.read_bytes(address, 8) == b"BBBBBBBB"
    # A program's store through the pointer is what user space reads back.
    space.store(address, 8, 0x1122334455667788)
    assert m.lookup_raw(key) == (0x1122334455667788).to_bytes(8, "little")


def test_absent_key_gives_null() -> None:
    h = make(BpfMapType.HASH)
    assert h.lookup_address(U32[1]) == 0
    a = make(BpfMapType.ARRAY, max_entries=4)
    assert a.lookup_address(U32[4]) == 0
    assert a.lookup_address(U32[3]) != 0


def test_deleted_slot_is_reused_and_pointer_of_live_element_survives() -> None:
    space = AddressSpace()
    h = make(BpfMapType.HASH, max_entries=3, space=space)
    h.update_raw(U32[1], b"1" * 8)
    h.update_raw(U32[2], b"2" * 8)
    kept = h.lookup_address(U32[2])
    h.delete_raw(U32[1])
    h.update_raw(U32[9], b"9" * 8)
    assert h.lookup_address(U32[2]) == kept
    assert space.read_bytes(kept, 8) == b"2" * 8


def test_percpu_program_side_updates_one_cpu() -> None:
    space = AddressSpace()
    h = make(BpfMapType.PERCPU_HASH, value_size=4, ncpus=3, space=space)
    assert h.prog_update(U32[1], b"\x01\x00\x00\x00", 0, cpu=1) == 0
    # A new element from a program: this CPU's copy is set, the others are zero.
    assert h.lookup(U32[1]) == [b"\0" * 4, b"\x01\0\0\0", b"\0" * 4]
    assert h.prog_update(U32[1], b"\x02\x00\x00\x00", 0, cpu=2) == 0
    assert h.lookup(U32[1]) == [b"\0" * 4, b"\x01\0\0\0", b"\x02\0\0\0"]
    # Each CPU's pointer is its own copy, 8 bytes apart (values padded to 8 per CPU).
    assert h.lookup_address(U32[1], 2) - h.lookup_address(U32[1], 1) == 8
    assert space.read_bytes(h.lookup_address(U32[1], 2), 4) == b"\x02\0\0\0"
    a = make(BpfMapType.PERCPU_ARRAY, value_size=4, ncpus=2)
    assert a.prog_update(U32[0], b"\x07\0\0\0", 0, cpu=1) == 0
    assert a[0] == [b"\0" * 4, b"\x07\0\0\0"]


def test_program_side_returns_negative_errno() -> None:
    h = make(BpfMapType.HASH, max_entries=1)
    assert h.prog_update(U32[1], b"x" * 8, 0) == 0
    assert h.prog_update(U32[2], b"x" * 8, 0) == -errno.E2BIG
    assert h.prog_update(U32[1], b"x" * 8, 1) == -errno.EEXIST
    assert h.prog_update(U32[3], b"x" * 8, 2) == -errno.ENOENT
    assert h.prog_update(U32[1], b"x" * 8, 8) == -errno.EINVAL
    assert h.prog_delete(U32[3]) == -errno.ENOENT
    assert h.prog_delete(U32[1]) == 0
    a = make(BpfMapType.ARRAY)
    assert a.prog_delete(U32[0]) == -errno.EINVAL
    assert a.prog_update(U32[8], b"x" * 8, 0) == -errno.E2BIG


def test_for_each_visits_until_callback_stops() -> None:
    space = AddressSpace()
    h = make(BpfMapType.HASH, space=space)
    for i in range(5):
        h.update_raw(U32[i], i.to_bytes(8, "little"))
    seen: list[tuple[int, int]] = []

    def callback(key_address: int, value_address: int) -> int:
        seen.append((space.load(key_address, 4), space.load(value_address, 8)))
        return 1 if len(seen) == 3 else 0

    assert h.for_each(callback) == 3
    assert seen == [(0, 0), (1, 1), (2, 2)]
    a = make(BpfMapType.ARRAY, max_entries=4, space=space)
    keys: list[int] = []

    def record(key_address: int, value_address: int) -> int:
        keys.append(space.load(key_address, 4))
        return 0

    assert a.for_each(record) == 4
    assert keys == [0, 1, 2, 3]


def test_hash_for_each_may_delete() -> None:
    space = AddressSpace()
    h = make(BpfMapType.HASH, space=space)
    for i in range(4):
        h.update_raw(U32[i], bytes(8))
    assert h.for_each(lambda k, v: h.prog_delete(space.read_bytes(k, 4)) and 0) == 4
    assert len(h) == 0


def test_mmapable_array_shares_memory() -> None:
    a = make(BpfMapType.ARRAY, value_size=4, max_entries=4, flags=BpfMapFlag.MMAPABLE)
    assert isinstance(a, ArrayMap)
    view = a.mmap()
    a.update_raw(U32[2], b"\x01\x02\x03\x04")
    # Values are 8-byte strided, as in the kernel's array layout.
    assert bytes(view[16:20]) == b"\x01\x02\x03\x04"
    view[24:28] = b"zzzz"
    assert a.lookup_raw(U32[3]) == b"zzzz"
    a.freeze()
    assert a.mmap().readonly
    with pytest.raises(MapOperationNotSupportedError):
        plain = make(BpfMapType.ARRAY)
        assert isinstance(plain, ArrayMap)
        plain.mmap()


def test_freeze_blocks_user_writes_only() -> None:
    h = make(BpfMapType.HASH)
    assert isinstance(h, HashMap)
    h.update_raw(U32[1], b"1" * 8)
    h.freeze()
    with pytest.raises(MapPermissionError):
        h.update_raw(U32[2], b"2" * 8)
    with pytest.raises(MapPermissionError):
        h.delete_raw(U32[1])
    with pytest.raises(MapPermissionError):
        h.freeze()
    assert h.lookup_raw(U32[1]) == b"1" * 8
    assert h.prog_update(U32[2], b"2" * 8) == 0  # programs may still write
    assert h.prog_delete(U32[1]) == 0


def test_access_flags() -> None:
    ro = make(BpfMapType.ARRAY, flags=BpfMapFlag.RDONLY)
    with pytest.raises(MapPermissionError):
        ro.update_raw(U32[0], bytes(8))
    assert ro.lookup_raw(U32[0]) == bytes(8)
    wo = make(BpfMapType.ARRAY, flags=BpfMapFlag.WRONLY)
    wo.update_raw(U32[0], bytes(8))
    with pytest.raises(MapPermissionError):
        wo.lookup_raw(U32[0])
    space = AddressSpace()
    ro_prog = make(BpfMapType.ARRAY, flags=BpfMapFlag.RDONLY_PROG, space=space)
    assert ro_prog.prog_update(U32[0], bytes(8)) == -errno.EPERM
    region = space.find(ro_prog.lookup_address(U32[0]), 8)
    assert region is not None and not region.writable
    ro_prog.update_raw(U32[0], b"u" * 8)  # user space still writes it


def test_user_errors() -> None:
    a = make(BpfMapType.ARRAY, max_entries=4)
    with pytest.raises(MapFullError):
        a.update_raw(U32[4], bytes(8))
    with pytest.raises(MapKeyExistsError):
        a.update_raw(U32[0], bytes(8), 1)
    with pytest.raises(MapKeyNotFoundError):
        a.lookup_raw(U32[4])
    with pytest.raises(MapInvalidArgumentError):
        a.update_raw(U32[0], bytes(7))
    with pytest.raises(MapInvalidArgumentError):
        a.lookup_raw(b"\0\0")
    with pytest.raises(MapInvalidArgumentError):
        a.lookup_raw(U32[0], flags=1)


def test_close_unmaps_regions() -> None:
    space = AddressSpace()
    h = make(BpfMapType.HASH, space=space)
    h.update_raw(U32[0], bytes(8))
    assert space.regions
    h.close()
    assert not space.regions


@pytest.mark.kernel
@pytest.mark.skipif(not KERNEL_OK, reason=f"bpf() unavailable: {KERNEL_REASON}")
@pytest.mark.parametrize("map_type", [BpfMapType.ARRAY, BpfMapType.HASH, BpfMapType.QUEUE])
def test_freeze_matches_kernel(map_type: BpfMapType) -> None:
    key = b"" if map_type == BpfMapType.QUEUE else U32[1]
    pair = Pair(MapDef(map_type, len(key), 8, 4))
    try:
        assert pair.update(key, b"1" * 8, 0)[0] == pair.update(key, b"1" * 8, 0)[1]
        ours, kernel = pair.freeze()
        assert ours == kernel == ("ok", None)
        for ours, kernel in (
            pair.update(key, b"2" * 8, 0),
            pair.delete(key),
            pair.lookup(key),
            pair.lookup_and_delete(key or None),
            pair.freeze(),
        ):
            assert ours == kernel
    finally:
        pair.close()


@pytest.mark.kernel
@pytest.mark.skipif(not KERNEL_OK, reason=f"bpf() unavailable: {KERNEL_REASON}")
@pytest.mark.parametrize("flags", [BpfMapFlag.RDONLY, BpfMapFlag.WRONLY])
def test_access_flags_match_kernel(flags: BpfMapFlag) -> None:
    pair = Pair(MapDef(BpfMapType.HASH, 4, 8, 4, map_flags=flags))
    try:
        for ours, kernel in (
            pair.update(U32[1], b"1" * 8, 0),
            pair.lookup(U32[1]),
            pair.delete(U32[1]),
            pair.next_key(None),
            pair.lookup_and_delete(U32[1]),
        ):
            assert ours == kernel
    finally:
        pair.close()
