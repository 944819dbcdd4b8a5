"""Stable value storage: fixed-size slots in regions at native addresses.

A map keeps each element's bytes in one slot of a :class:`Slab`. Slots never move, so the
address a program got from ``map_lookup_elem`` keeps pointing at the element's value for as
long as the element exists (the kernel's guarantee). The slab grows by whole chunks (each one
:class:`~pybpf.vm.memory.Region`, registered in the runtime's address space) and never
shrinks while the map lives; freed slots are reused, most recently freed first.
"""

from __future__ import annotations

from pybpf.errors import MapFullError
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
        "_shift",
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
    ) -> None:
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
        if eager:
            self._add_chunk(capacity)

    def _add_chunk(self, slots: int) -> None:
        index = len(self.regions)
        region = Region.zeroed(self.kind, f"{self.name}[{index}]", slots * self.slot_size, self.writable)
        self.address_space.add(region)
        self.regions.append(region)

    def alloc(self) -> int:
        """A free slot number (its bytes are whatever the last user left: callers overwrite them)."""
        if self._free:
            return self._free.pop()
        slot = self._next_fresh
        if slot >= self.capacity:
            raise MapFullError(f"{self.name}: all {self.capacity} slots are in use")
        if (slot >> self._shift) >= len(self.regions):
            remaining = self.capacity - slot
            self._add_chunk(min(self.chunk_slots, remaining))
        self._next_fresh = slot + 1
        return slot

    def free(self, slot: int) -> None:
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
