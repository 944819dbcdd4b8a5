"""The memory model: regions at native addresses, lookup, checked access and its error messages."""

from __future__ import annotations

import ctypes
import mmap
from collections.abc import Callable

import pytest

from pybpf.errors import MemoryAccessError, VmError
from pybpf.vm import AddressSpace, Region, RegionKind


def test_region_address_is_the_native_buffer_address() -> None:
    buffer = bytearray(b"hello, world")
    region = Region(RegionKind.INPUT, "input", buffer)
    assert ctypes.string_at(region.address, region.size) == b"hello, world"
    buffer[0:5] = b"HELLO"  # the region uses the buffer in place
    assert ctypes.string_at(region.address, 5) == b"HELLO"
    with pytest.raises(BufferError):
        buffer.append(0)  # exported, so it cannot move


@pytest.mark.parametrize("make", [lambda: bytearray(64), lambda: mmap.mmap(-1, 64), ctypes.c_uint8 * 64])
def test_region_over_each_buffer_kind(make: Callable[[], bytearray | mmap.mmap | ctypes.Array[ctypes.c_uint8]]) -> None:
    buffer = make()
    region = Region(RegionKind.MAP_VALUE, "value", buffer)
    space = AddressSpace((region,))
    space.store(region.address + 8, 8, 0x1122334455667788)
    assert space.load(region.address + 8, 8) == 0x1122334455667788
    assert bytes(memoryview(buffer).cast("B")[8:16]) == bytes.fromhex("8877665544332211")


def test_region_rejects_immutable_and_empty_buffers() -> None:
    with pytest.raises(VmError, match="read-only"):
        Region(RegionKind.RODATA, "ro", b"abc")
    with pytest.raises(VmError, match="empty"):
        Region(RegionKind.OTHER, "empty", bytearray())
    assert Region.from_bytes(RegionKind.RODATA, "ro", b"abc", writable=False).view.tobytes() == b"abc"


def test_find_among_many_regions_and_remove() -> None:
    regions = [Region.zeroed(RegionKind.OTHER, f"r{i}", 16 * (i + 1)) for i in range(20)]
    space = AddressSpace(tuple(regions))
    for region in regions:
        assert space.find(region.address) is region
        assert space.find(region.end - 4, 4) is region
        assert space.find(region.end - 3, 4) is None or space.find(region.end - 3, 4) is not region
    space.remove(regions[3])
    assert space.find(regions[3].address) is None
    with pytest.raises(VmError, match="not mapped"):
        space.remove(regions[3])
    assert regions[3] not in space and regions[4] in space


def test_overlapping_regions_are_refused() -> None:
    buffer = bytearray(16)
    region = Region(RegionKind.OTHER, "a", buffer)
    space = AddressSpace((region,))
    with pytest.raises(VmError, match="overlaps"):
        space.add(Region(RegionKind.OTHER, "same buffer", buffer))
    with pytest.raises(VmError, match="already mapped"):
        AddressSpace().add(region)  # one space at a time: instruction caches rely on it


@pytest.mark.parametrize("size", [1, 2, 4, 8])
def test_load_store_all_sizes_little_endian(size: int) -> None:
    region = Region.zeroed(RegionKind.STACK, "stack", 16)
    space = AddressSpace((region,))
    space.store(region.address, size, 0x0102030405060708A0)  # truncated to the size
    expected = (0x0102030405060708A0 & ((1 << (8 * size)) - 1)).to_bytes(size, "little")
    assert space.read_bytes(region.address, size) == expected
    assert space.load(region.address, size) == int.from_bytes(expected, "little")


def test_out_of_bounds_names_pc_region_and_distance() -> None:
    region = Region.zeroed(RegionKind.STACK, "stack of frame 0", 512)
    space = AddressSpace((region,))
    with pytest.raises(MemoryAccessError) as info:
        space.load(region.end - 4, 8, pc=17)
    error = info.value
    assert (error.pc, error.address, error.size, error.is_write) == (17, region.end - 4, 8, False)
    message = str(error)
    assert message.startswith("pc 17: invalid read of 8 byte(s)")
    assert "runs 4 byte(s) past the end of stack 'stack of frame 0'" in message
    assert f"{region.address:#x}" in message
    with pytest.raises(MemoryAccessError, match=r"24 byte\(s\) before the start of stack"):
        space.store(region.address - 24, 4, 0, pc=3)


def test_null_and_unmapped() -> None:
    space = AddressSpace()
    with pytest.raises(MemoryAccessError, match="no memory is mapped"):
        space.load(0x1000, 4)
    space.add(Region.zeroed(RegionKind.INPUT, "input", 8))
    with pytest.raises(MemoryAccessError, match=r"pc 2: invalid read of 4 byte\(s\) at 0x0: null pointer"):
        space.load(0, 4, pc=2)


def test_read_only_region_refuses_program_writes() -> None:
    region = Region.from_bytes(RegionKind.RODATA, ".rodata", b"\x01\x02\x03\x04", writable=False)
    space = AddressSpace((region,))
    assert space.load(region.address, 4) == 0x04030201  # warms the last-hit cache
    with pytest.raises(MemoryAccessError, match=r"invalid write .*read-only region: rodata '.rodata'"):
        space.store(region.address, 4, 0, pc=9)
    with pytest.raises(MemoryAccessError, match="read-only"):
        space.write_bytes(region.address, b"x")
    with pytest.raises(MemoryAccessError, match="read-only"):
        space.view(region.address, 2, writable=True)
    assert region.view.tobytes() == b"\x01\x02\x03\x04"


def test_views_for_helpers() -> None:
    region = Region.zeroed(RegionKind.HELPER_MEM, "scratch", 32)
    space = AddressSpace((region,))
    space.write_bytes(region.address + 4, b"abcd")
    view = space.view(region.address + 4, 4, writable=True)
    view[0] = ord("A")
    assert space.read_bytes(region.address + 4, 4) == b"Abcd"
    assert space.view(region.address, 0).tobytes() == b""
    with pytest.raises(MemoryAccessError):
        space.view(region.address + 30, 4)


def test_removed_region_is_not_served_from_the_cache() -> None:
    region = Region.zeroed(RegionKind.OTHER, "gone", 8)
    space = AddressSpace((region,))
    space.load(region.address, 4)
    space.remove(region)
    with pytest.raises(MemoryAccessError):
        space.load(region.address, 4)
