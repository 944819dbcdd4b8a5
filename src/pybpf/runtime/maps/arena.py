"""BPF_MAP_TYPE_ARENA (the kernel's kernel/bpf/arena.c and range_tree.c).

``max_entries`` pages of memory shared by programs and user space, with no keys or values: the
memory is :class:`~pybpf.vm.arena.ArenaMemory`, which the interpreter and the JIT access; this
map allocates its pages as the kernel does and gives user space its view.

Allocation follows the kernel's: the free pages are a set of ranges, ``bpf_arena_alloc_pages``
without an address takes the start of the smallest free range that fits (among equals, the one
changed last: the kernel's size-ordered tree), with an address it needs the whole range free;
freeing merges ranges back; ``bpf_arena_reserve_pages`` takes free pages out without backing
them. User space touching a page that is not allocated allocates it (the kernel's page fault
handler), unless the map was created with ``BPF_F_SEGV_ON_FAULT``.
"""

from __future__ import annotations

import errno as errno_codes
from dataclasses import dataclass
from typing import ClassVar

from pybpf.errors import MapError, MapInvalidArgumentError
from pybpf.platform.uapi_generated import BpfMapFlag, BpfMapType
from pybpf.runtime.maps.base import Map, eopnotsupp
from pybpf.runtime.maps.definition import MapDef, check_flags, invalid
from pybpf.vm.arena import ARENA_PAGE_SIZE, ArenaMemory
from pybpf.vm.memory import AddressSpace

__all__ = ["ArenaMap"]

ARENA_CREATE_FLAGS = BpfMapFlag.MMAPABLE | BpfMapFlag.SEGV_ON_FAULT | BpfMapFlag.NO_USER_CONV
_MAX_SIZE = 1 << 32
_LOW32 = 0xFFFFFFFF


@dataclass(slots=True)
class _Range:
    start: int
    last: int  # inclusive, as the kernel's range_node
    seq: int  # when it was last (re)inserted into the kernel's size tree

    @property
    def size(self) -> int:
        return self.last - self.start + 1


class _RangeTree:
    """The kernel's range_tree: free page ranges, best-fit search."""

    def __init__(self) -> None:
        self.ranges: list[_Range] = []
        self._seq = 0

    def _insert(self, start: int, last: int) -> None:
        self._seq += 1
        self.ranges.append(_Range(start, last, self._seq))

    def is_set(self, start: int, count: int) -> bool:
        """``is_range_tree_set() == 0``: one free range covers all of it."""
        last = start + count - 1
        return any(node.start <= start and last <= node.last for node in self.ranges)

    def find(self, count: int) -> int | None:
        fitting = [node for node in self.ranges if node.size >= count]
        if not fitting:
            return None
        best = min(fitting, key=lambda node: (node.size, -node.seq))
        return best.start

    def clear(self, start: int, count: int) -> None:
        last = start + count - 1
        for node in sorted((n for n in self.ranges if n.start <= last and start <= n.last), key=lambda n: n.start):
            self.ranges.remove(node)
            if node.start < start:
                self._insert(node.start, start - 1)
            if node.last > last:
                self._insert(last + 1, node.last)

    def set(self, start: int, count: int) -> None:
        self.clear(start, count)
        last = start + count - 1
        left = next((n for n in self.ranges if n.last == start - 1), None)
        right = next((n for n in self.ranges if n.start == last + 1), None)
        for neighbour in (left, right):
            if neighbour is not None:
                self.ranges.remove(neighbour)
        self._insert(left.start if left else start, right.last if right else last)


class ArenaMap(Map):
    """Pages shared by programs and user space; see the module doc."""

    MAP_TYPES: ClassVar[tuple[BpfMapType, ...]] = (BpfMapType.ARENA,)
    HAS_KEYS = False

    def __init__(self, definition: MapDef, address_space: AddressSpace, ncpus: int = 1) -> None:
        super().__init__(definition, address_space, ncpus)
        self.memory = ArenaMemory(definition.max_entries, definition.map_extra)
        self.user_vm_start = self.memory.user_vm_start
        self.size = self.memory.size
        self.segv_on_fault = bool(self.map_flags & BpfMapFlag.SEGV_ON_FAULT)
        self.no_user_conv = bool(self.map_flags & BpfMapFlag.NO_USER_CONV)
        self._free = _RangeTree()
        self._free.set(0, definition.max_entries)

    def validate(self) -> None:
        definition = self.definition
        if definition.key_size or definition.value_size or definition.max_entries <= 0:
            raise invalid(definition, "an arena has no keys or values, and max_entries pages")
        if not definition.map_flags & BpfMapFlag.MMAPABLE:
            raise invalid(definition, "an arena needs BPF_F_MMAPABLE")
        check_flags(definition, ARENA_CREATE_FLAGS)
        if definition.map_extra % ARENA_PAGE_SIZE:
            raise invalid(definition, "map_extra (the user address) must be page aligned")
        size = definition.max_entries * ARENA_PAGE_SIZE
        if size > _MAX_SIZE:
            raise MapError(f"{self.label}: an arena spans at most 4 GiB", "E2BIG")
        if definition.map_extra >> 32 != (definition.map_extra + size - 1) >> 32:
            raise MapError(f"{self.label}: the arena may not cross a 4 GiB boundary", "ERANGE")

    def close(self) -> None:
        self.memory.close()

    # -- the kfuncs -------------------------------------------------------------------------------

    def _user_address(self, page: int) -> int:
        return (self.user_vm_start & ~_LOW32) + ((self.user_vm_start + page * ARENA_PAGE_SIZE) & _LOW32)

    def alloc_pages(self, address: int, count: int) -> int:
        """bpf_arena_alloc_pages: the user address of ``count`` new zeroed pages, or 0."""
        pages = self.memory.pages
        if count <= 0 or count > pages:
            return 0
        if address:
            if address % ARENA_PAGE_SIZE:
                return 0
            first = self.memory.page_of(address)
            if first > pages - count or not self._free.is_set(first, count):
                return 0
        else:
            found = self._free.find(count)
            if found is None:
                return 0
            first = found
        self._free.clear(first, count)
        self.memory.map_pages(first, count)
        return self._user_address(first)

    def free_pages(self, address: int, count: int) -> None:
        """bpf_arena_free_pages: from the page ``address`` (its low 32 bits) falls in."""
        if count <= 0 or not address:
            return
        low = address & _LOW32 & ~(ARENA_PAGE_SIZE - 1)
        full = (self.user_vm_start & ~_LOW32) + low
        end = min(self.user_vm_start + self.size, full + count * ARENA_PAGE_SIZE)
        if full >= end:
            return
        count = (end - full) // ARENA_PAGE_SIZE
        first = self.memory.page_of(low)
        self._free.set(first, count)
        self.memory.unmap_pages(first, count)

    def reserve_pages(self, address: int, count: int) -> int:
        """bpf_arena_reserve_pages: 0, -EINVAL (outside the arena) or -EBUSY (a page is in use)."""
        if count == 0:
            return 0
        if address % ARENA_PAGE_SIZE:
            return 0
        first = self.memory.page_of(address)
        if first + count > self.memory.pages:
            return -errno_codes.EINVAL
        if not self._free.is_set(first, count):
            return -errno_codes.EBUSY
        self._free.clear(first, count)
        return 0

    # -- user space (the kernel's mmap of the map) -------------------------------------------------

    def _fault_in(self, address: int, n: int) -> int:
        """The buffer offset of ``n`` bytes at user ``address``, allocating untouched pages."""
        offset = address - self.user_vm_start
        if n < 0 or offset < 0 or offset + n > self.size:
            raise MapError(f"{self.label}: {n} bytes at {address:#x} are outside the arena "
                           f"[{self.user_vm_start:#x}, {self.user_vm_start + self.size:#x})", "EFAULT")
        present = self.memory.present
        for page in range(offset // ARENA_PAGE_SIZE, -(-(offset + n) // ARENA_PAGE_SIZE)):
            if not present[page]:
                if self.segv_on_fault:
                    raise MapError(f"{self.label}: page {page} is not allocated (BPF_F_SEGV_ON_FAULT)", "EFAULT")
                self._free.clear(page, 1)
                self.memory.map_pages(page, 1)
        return offset

    def read(self, address: int, n: int) -> bytes:
        """``n`` bytes at user address ``address``, as a read of the mmap'ed arena."""
        offset = self._fault_in(address, n)
        return bytes(self.memory.view[offset:offset + n])

    def write(self, address: int, data: bytes) -> None:
        offset = self._fault_in(address, len(data))
        self.memory.view[offset:offset + len(data)] = data

    def write_globals(self, data: bytes) -> None:
        """The object's global ``__arena`` variables, copied to the arena's start by the loader."""
        if data:
            self.write(self.user_vm_start, data)

    # -- bpf(2): an arena has no elements ---------------------------------------------------------

    def _lookup_user(self, key: bytes, flags: int) -> bytes:
        raise eopnotsupp(f"{self.label}: an arena has no elements (read it through read())")

    def _update(self, key: bytes, value: bytes, flags: int, cpu: int | None) -> None:
        raise eopnotsupp(f"{self.label}: an arena has no elements (write it through write())")

    def _delete(self, key: bytes) -> None:
        raise eopnotsupp(f"{self.label}: an arena has no elements")

    def _next_key(self, key: bytes | None) -> bytes | None:
        raise MapInvalidArgumentError(f"{self.label}: an arena has no keys")
