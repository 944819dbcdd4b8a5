"""Stable value storage: fixed-size slots in regions at native addresses.

A map keeps each element's bytes in one slot of a :class:`Slab`. Slots never move, so the
address a program got from ``map_lookup_elem`` keeps pointing at the element's value for as
long as the element exists (the kernel's guarantee). The slab grows by whole chunks (each one
:class:`~pybpf.vm.memory.Region`, registered in the runtime's address space) and never
shrinks while the map lives; freed slots are reused, most recently freed first.
"""

from __future__ import annotations

from pybpf.errors import MapFullError, MapInvalidArgumentError
from pybpf.vm.memory import AddressSpace, Region, RegionKind

DEFAULT_CHUNK_BYTES = 1 << 16
"""Target size of one chunk region when a slab grows on demand."""


class Slab:
    """``capacity`` slots of ``slot_size`` bytes, in chunks of ``chunk_slots`` slots (a power of two).

    With ``eager`` every chunk is allocated up front (arrays: one contiguous region, which
    BPF_F_MMAPABLE needs); otherwise chunks are added as slots are taken.
    """

    __slots__ = (
        "_free",
        "_next_fresh",
        "_occupancy",
        "_shift",
        "_storage",
        "address_space",
        "capacity",
        "chunk_slots",
        "kind",
        "name",
        "regions",
        "slot_size",
        "writable",
    )

    def __init__(
        self,
        address_space: AddressSpace,
        name: str,
        slot_size: int,
        capacity: int,
        *,
        eager: bool = False,
        kind: RegionKind = RegionKind.MAP_VALUE,
        writable: bool = True,
        storage: object | None = None,
    ) -> None:
        """``storage`` (eager slabs only) is the buffer to keep the slots in, e.g. a file-backed
        ``mmap`` shared with other processes; it must hold at least ``capacity`` slots."""
        self.address_space = address_space
        self.name = name
        self.slot_size = slot_size
        self.capacity = capacity
        self.kind = kind
        self.writable = writable
        if eager:
            chunk_slots = 1
            while chunk_slots < capacity:
                chunk_slots <<= 1
        else:
            chunk_slots = 1
            while chunk_slots * 2 * slot_size <= DEFAULT_CHUNK_BYTES and chunk_slots < capacity:
                chunk_slots <<= 1
        self.chunk_slots = chunk_slots
        self._shift = chunk_slots.bit_length() - 1
        self.regions: list[Region] = []
        self._free: list[int] = []
        self._next_fresh = 0
        self._storage: memoryview | None = None  # where chunks live after move_storage
        self._occupancy: memoryview | None = None  # one byte per slot: 1 in use, 0 free
        if storage is not None and not eager:
            raise MapInvalidArgumentError(f"{self.name}: only an eager slab can live in given storage")
        if eager:
            self._add_chunk(capacity, storage)

    def _add_chunk(self, slots: int, storage: object | None = None) -> None:
        index = len(self.regions)
        name = f"{self.name}[{index}]"
        if storage is None and self._storage is not None:
            start = index * self.chunk_slots * self.slot_size
            storage = self._storage[start : start + slots * self.slot_size]
        if storage is None:
            region = Region.zeroed(self.kind, name, slots * self.slot_size, self.writable)
        else:
            region = Region(self.kind, name, storage, self.writable)
            if region.size < slots * self.slot_size:
                raise MapInvalidArgumentError(f"{self.name}: storage of {region.size} bytes cannot hold {slots} slots")
        self.address_space.add(region)
        self.regions.append(region)

    def move_storage(self, storage: object, occupancy: memoryview | None = None) -> None:
        """Copy the slots into ``storage`` (room for ``capacity`` slots) and keep them there from now on.

        Each chunk becomes a window of ``storage`` at its own offset, and later chunks are taken
        from it too. With ``occupancy`` (one byte per slot), the slab marks which slots are in
        use there (1) and free (0), so a reader of the storage alone can find the elements. The
        old regions are unmapped: addresses handed out before the move become invalid, so call
        it between runs only.
        """
        whole = memoryview(storage).cast("B")  # type: ignore[arg-type]
        if len(whole) < self.capacity * self.slot_size:
            raise MapInvalidArgumentError(
                f"{self.name}: storage of {len(whole)} bytes cannot hold {self.capacity} slots"
            )
        if occupancy is not None and len(occupancy) < self.capacity:
            raise MapInvalidArgumentError(f"{self.name}: occupancy of {len(occupancy)} bytes for {self.capacity} slots")
        chunk_bytes = self.chunk_slots * self.slot_size
        moved: list[Region] = []
        for index, old in enumerate(self.regions):
            start = index * chunk_bytes
            region = Region(self.kind, old.name, whole[start : start + old.size], self.writable)
            region.view[:] = old.view
            moved.append(region)
        for old, region in zip(self.regions, moved, strict=True):
            self.address_space.add(region)
            if old in self.address_space:
                self.address_space.remove(old)
        self.regions[:] = moved
        self._storage = whole
        if occupancy is not None:
            free = set(self._free)
            occupancy[: self.capacity] = bytes(
                1 if slot < self._next_fresh and slot not in free else 0 for slot in range(self.capacity)
            )
        self._occupancy = occupancy

    def alloc(self) -> int:
        """A free slot number (its bytes are whatever the last user left: callers overwrite them)."""
        if self._free:
            slot = self._free.pop()
            if self._occupancy is not None:
                self._occupancy[slot] = 1
            return slot
        slot = self._next_fresh
        if slot >= self.capacity:
            raise MapFullError(f"{self.name}: all {self.capacity} slots are in use")
        if (slot >> self._shift) >= len(self.regions):
            remaining = self.capacity - slot
            self._add_chunk(min(self.chunk_slots, remaining))
        self._next_fresh = slot + 1
        if self._occupancy is not None:
            self._occupancy[slot] = 1
        return slot

    def free(self, slot: int) -> None:
        if self._occupancy is not None:
            self._occupancy[slot] = 0
        self._free.append(slot)

    def address(self, slot: int) -> int:
        """The native address of ``slot``'s first byte."""
        return self.regions[slot >> self._shift].address + (slot & (self.chunk_slots - 1)) * self.slot_size

    def view(self, slot: int) -> memoryview:
        """A writable view of ``slot``'s bytes."""
        start = (slot & (self.chunk_slots - 1)) * self.slot_size
        return self.regions[slot >> self._shift].view[start : start + self.slot_size]

    def write(self, slot: int, offset: int, data: bytes) -> None:
        """Copy ``data`` into ``slot`` at ``offset`` (no view object on the way: the update fast path)."""
        start = (slot & (self.chunk_slots - 1)) * self.slot_size + offset
        self.regions[slot >> self._shift].view[start : start + len(data)] = data

    def read(self, slot: int, offset: int, size: int) -> bytes:
        start = (slot & (self.chunk_slots - 1)) * self.slot_size + offset
        return bytes(self.regions[slot >> self._shift].view[start : start + size])

    def release(self) -> None:
        """Unmap every chunk (the map is being destroyed)."""
        for region in self.regions:
            if region in self.address_space:
                self.address_space.remove(region)
        self.regions.clear()
