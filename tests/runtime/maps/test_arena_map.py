"""The runtime's BPF_MAP_TYPE_ARENA: creation rules, allocation order, user-space faults."""

from __future__ import annotations

import pytest

from pybpf.errors import MapError
from pybpf.platform.uapi_generated import BpfMapFlag, BpfMapType
from pybpf.runtime.maps import ArenaMap, MapDef, create_map
from pybpf.vm.arena import ARENA_PAGE_SIZE
from pybpf.vm.memory import AddressSpace

PAGE = ARENA_PAGE_SIZE


def arena(pages: int = 8, flags: int = BpfMapFlag.MMAPABLE, map_extra: int = 0) -> ArenaMap:
    created = create_map(MapDef(BpfMapType.ARENA, 0, 0, pages, int(flags), "arena", map_extra=map_extra),
                         AddressSpace())
    assert isinstance(created, ArenaMap)
    return created


@pytest.mark.parametrize(
    ("key", "value", "pages", "flags", "extra"),
    [
        (4, 0, 8, BpfMapFlag.MMAPABLE, 0),  # no keys
        (0, 8, 8, BpfMapFlag.MMAPABLE, 0),  # no values
        (0, 0, 0, BpfMapFlag.MMAPABLE, 0),  # at least a page
        (0, 0, 8, 0, 0),  # BPF_F_MMAPABLE is required
        (0, 0, 8, BpfMapFlag.MMAPABLE | BpfMapFlag.NO_PREALLOC, 0),
        (0, 0, 8, BpfMapFlag.MMAPABLE, 0x1001),  # the user address is page aligned
        (0, 0, (1 << 20) + 1, BpfMapFlag.MMAPABLE, 0),  # at most 4 GiB
        (0, 0, 2, BpfMapFlag.MMAPABLE, (1 << 32) - PAGE),  # may not cross 4 GiB
    ],
)
def test_creation_rules(key: int, value: int, pages: int, flags: int, extra: int) -> None:
    with pytest.raises(MapError):
        create_map(MapDef(BpfMapType.ARENA, key, value, pages, int(flags), map_extra=extra), AddressSpace())


def test_best_fit_allocation_and_faults() -> None:
    a = arena()
    start = a.user_vm_start
    assert start % (8 * PAGE) == 0  # aligned: the arena cannot cross 4 GiB
    first = a.alloc_pages(0, 3)
    assert first == start
    a.free_pages(first + PAGE, 1)
    assert a.memory.load((first + PAGE) & 0xFFFFFFFF, 8) == 0  # a program reads 0 there
    assert a.alloc_pages(0, 1) == first + PAGE  # the smallest hole that fits
    assert a.alloc_pages(first, 1) == 0  # taken
    assert a.reserve_pages(first + 6 * PAGE, 1) == 0
    assert a.alloc_pages(first + 6 * PAGE, 1) == 0  # reserved
    assert a.alloc_pages(0, 1) == first + 7 * PAGE  # best fit: the one-page range after it
    assert a.alloc_pages(0, 2) == first + 3 * PAGE  # pages 3 and 4 of the three left
    assert a.alloc_pages(0, 9) == 0


def test_user_writes_fault_pages_in_and_programs_see_them() -> None:
    a = arena()
    address = a.user_vm_start + 2 * PAGE + 8
    low = address & 0xFFFFFFFF
    assert a.memory.load(low, 8) == 0  # not allocated yet
    a.write(address, (1234).to_bytes(8, "little"))
    assert a.memory.load(low, 8) == 1234
    a.memory.store(low + 8, 4, 0xABCD)
    assert a.read(address + 8, 4) == (0xABCD).to_bytes(4, "little")
    assert a.alloc_pages(a.user_vm_start + 2 * PAGE, 1) == 0  # the fault allocated it


def test_segv_on_fault_refuses_user_access_to_pages_not_allocated() -> None:
    a = arena(flags=BpfMapFlag.MMAPABLE | BpfMapFlag.SEGV_ON_FAULT)
    with pytest.raises(MapError, match="SEGV_ON_FAULT"):
        a.read(a.user_vm_start, 8)
    page = a.alloc_pages(0, 1)
    assert a.read(page, 8) == bytes(8)


def test_map_extra_is_the_user_address_programs_see() -> None:
    a = arena(map_extra=0x7F0000000000)
    assert a.user_vm_start == 0x7F0000000000
    page = a.alloc_pages(0, 1)
    assert page == 0x7F0000000000
    a.memory.store(0, 8, 77)  # a program's 32-bit view of the first page
    assert a.read(page, 8) == (77).to_bytes(8, "little")
    assert a.memory.to_user(16) == 0x7F0000000010 and a.memory.to_user(0) == 0


def test_a_4_gib_arena_costs_only_the_pages_used() -> None:
    a = arena(pages=1 << 20)
    assert a.size == 1 << 32 and a.user_vm_start % (1 << 32) == 0
    last = a.alloc_pages(a.user_vm_start + (1 << 32) - PAGE, 1)
    assert last == a.user_vm_start + (1 << 32) - PAGE
    a.memory.store((last & 0xFFFFFFFF) + PAGE - 8, 8, 5)
    assert a.read(last + PAGE - 8, 8) == (5).to_bytes(8, "little")
    a.close()
