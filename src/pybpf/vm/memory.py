"""The memory model shared by the interpreter and the JIT: regions at real native addresses.

Every :class:`Region` wraps a fixed-size writable buffer (``bytearray``, ``mmap`` or a ctypes
array) and knows the buffer's native address. Pointers held in eBPF registers are those real
addresses, so native code (the JIT, later) can use them unchanged, and a pointer into a map value
stays valid for as long as its region lives. Exporting the buffer (through a ``memoryview`` and a
ctypes view) also pins a ``bytearray`` against resizing, so its address cannot move.

:class:`AddressSpace` holds the regions and checks every access: a load or store must fall
entirely inside one region, and a store needs a writable region. A bad access raises
:class:`~pybpf.errors.MemoryAccessError` naming the pc, the address, the size and the nearest
region; no Python exception (``IndexError``, ``struct.error``) ever escapes.

Byte order is little-endian, as on every host the project runs on.

Threads: several threads may run programs on one address space at once (hooks fired by several
threads, native code running without the GIL). Mapping and unmapping happen under a lock.
Lookups take no lock: they may read the sorted lists in the middle of a change, so a lookup
trusts what it found only if the region really holds the access and is mapped here
(``region.owner is self``); otherwise it looks again under the lock. Regions never overlap, so
a region that passes that check is the right one whatever else is changing.
:attr:`AddressSpace.atomic_lock` is what the interpreter's atomic instructions hold for their
read-modify-write.
"""

from __future__ import annotations

import ctypes
import struct
import threading
from bisect import bisect_right, insort
from collections.abc import Callable
from enum import Enum
from typing import Any

from pybpf.errors import MemoryAccessError, VmError

NULL_PAGE = 4096
"""Accesses below this address are reported as null-pointer dereferences."""

_UnpackFn = Callable[[Any, int], tuple[int, ...]]
_PackFn = Callable[[Any, int, int], None]

# Unsigned little-endian accessors by access size; indexed by size (1, 2, 4, 8), None elsewhere.
UNPACK: tuple[_UnpackFn | None, ...] = tuple(
    struct.Struct(fmt).unpack_from if fmt else None for fmt in ("", "<B", "<H", "", "<I", "", "", "", "<Q")
)
PACK: tuple[_PackFn | None, ...] = tuple(
    struct.Struct(fmt).pack_into if fmt else None for fmt in ("", "<B", "<H", "", "<I", "", "", "", "<Q")
)
SIZE_MASKS = (0, 0xFF, 0xFFFF, 0, 0xFFFFFFFF, 0, 0, 0, 0xFFFFFFFFFFFFFFFF)


class RegionKind(Enum):
    """What a region holds; it only labels error messages and lets the runtime find regions."""

    STACK = "stack"
    CONTEXT = "context"
    PACKET = "packet"
    INPUT = "input"
    MAP_VALUE = "map value"
    RODATA = "rodata"
    HELPER_MEM = "helper memory"
    RINGBUF = "ring buffer"
    OTHER = "other"


class Region:
    """A fixed-size buffer at a native address, readable and (when ``writable``) writable by programs.

    ``buffer`` must be a writable buffer object (``bytearray``, ``mmap``, ctypes array); it is
    used in place, never copied. Use :meth:`from_bytes` to make a region holding a copy of
    immutable data. ``writable`` is the *program's* permission: the host may always write.
    """

    __slots__ = ("_pin", "address", "buffer", "end", "kind", "name", "owner", "size", "view", "writable")
    _pin: Any  # the ctypes view over the buffer (None only in the cache sentinel)

    def __init__(self, kind: RegionKind, name: str, buffer: Any, writable: bool = True) -> None:
        try:
            view = memoryview(buffer).cast("B")
        except TypeError as error:
            raise VmError(f"region {name!r}: buffer does not support the buffer protocol ({error})") from None
        if view.readonly:
            raise VmError(f"region {name!r}: buffer is read-only; use Region.from_bytes to copy immutable data")
        if len(view) == 0:
            raise VmError(f"region {name!r}: a region cannot be empty")
        self.kind = kind
        self.name = name
        self.buffer = buffer
        self.writable = writable
        self.view = view
        # The ctypes view both yields the native address and keeps the buffer exported (pinned).
        self._pin = (ctypes.c_char * len(view)).from_buffer(view)
        self.address: int = ctypes.addressof(self._pin)
        self.size: int = len(view)
        self.end: int = self.address + self.size
        # The address space mapping it (at most one at a time); per-instruction caches check it.
        self.owner: AddressSpace | None = None

    @classmethod
    def from_bytes(cls, kind: RegionKind, name: str, data: bytes, writable: bool = True) -> Region:
        """A region over a fresh ``bytearray`` copy of ``data``."""
        return cls(kind, name, bytearray(data), writable)

    @classmethod
    def zeroed(cls, kind: RegionKind, name: str, size: int, writable: bool = True) -> Region:
        """A region of ``size`` zero bytes."""
        if size <= 0:
            raise VmError(f"region {name!r}: size must be positive, found {size}")
        return cls(kind, name, bytearray(size), writable)

    def contains(self, address: int, size: int = 1) -> bool:
        return self.address <= address and address + size <= self.end

    def describe(self) -> str:
        access = "" if self.writable else ", read-only"
        return f"{self.kind.value} {self.name!r} [{self.address:#x}, {self.end:#x}) ({self.size} bytes{access})"

    def __repr__(self) -> str:
        return f"Region({self.describe()})"


class _NoRegion(Region):
    """Sentinel for the one-entry cache: contains nothing, so every lookup falls through."""

    def __init__(self) -> None:  # deliberately skips Region.__init__: no buffer behind it
        self.kind = RegionKind.OTHER
        self.name = "<none>"
        self.buffer = None
        self.writable = False
        self.view = memoryview(b"")
        self._pin = None
        self.address = -1
        self.size = 0
        self.end = -1
        self.owner = None


class AddressSpace:
    """The regions a program may touch, found by address (sorted starts, bisect, a last-hit cache).

    ``last`` is the most recently used region; the interpreter's inlined fast paths read it
    directly and fall back to :meth:`load`/:meth:`store` when it does not contain the access.
    It is only a hint shared by every thread: a hit counts only while the region is still mapped
    here (``region.owner is self``), so a region another thread just unmapped is never used.
    """

    __slots__ = ("_mutation", "_regions", "_starts", "atomic_lock", "generation", "last")

    def __init__(self, regions: tuple[Region, ...] = ()) -> None:
        self._starts: list[int] = []
        self._regions: list[Region] = []
        self._mutation = threading.Lock()  # held by add/remove, and by lookups that must be sure
        self.atomic_lock = threading.Lock()
        """Held by the interpreter's atomic instructions around their read-modify-write."""
        self.last: Region = _NoRegion()
        self.generation = 0
        """Bumped by every add and remove: whoever caches something derived from the layout (the
        JIT's range tables) compares it. Read it before reading :attr:`regions`: a change racing
        the read then leaves a newer layout under an older number, which only costs a rebuild."""
        for region in regions:
            self.add(region)

    # -- the set of regions ---------------------------------------------------------------------

    def add(self, region: Region) -> Region:
        """Map ``region``; regions may not overlap (they cannot, unless one buffer is added twice)."""
        with self._mutation:
            if region.owner is not None:
                raise VmError(f"cannot map {region.describe()}: it is already mapped")
            index = bisect_right(self._starts, region.address)
            before = self._regions[index - 1] if index > 0 else None
            after = self._regions[index] if index < len(self._regions) else None
            for other in (before, after):
                if other is not None and other.address < region.end and region.address < other.end:
                    raise VmError(f"cannot map {region.describe()}: it overlaps {other.describe()}")
            insort(self._starts, region.address)
            self._regions.insert(index, region)
            self.generation += 1
            region.owner = self  # last: lock-free lookups accept the region from here on
        return region

    def remove(self, region: Region) -> None:
        """Unmap ``region`` (it must have been added)."""
        with self._mutation:
            index = bisect_right(self._starts, region.address) - 1
            if index < 0 or self._regions[index] is not region:
                raise VmError(f"cannot unmap {region.describe()}: it is not mapped")
            region.owner = None  # first: lock-free lookups refuse the region from here on
            del self._starts[index]
            del self._regions[index]
            self.generation += 1
        if self.last is region:
            self.last = _NoRegion()

    def __contains__(self, region: object) -> bool:
        return isinstance(region, Region) and region.owner is self

    @property
    def regions(self) -> tuple[Region, ...]:
        """The mapped regions, by address."""
        with self._mutation:
            return tuple(self._regions)

    # -- lookup ---------------------------------------------------------------------------------

    def find(self, address: int, size: int = 1) -> Region | None:
        """The region holding all of ``[address, address + size)``, or None."""
        region = self.last
        if region.address <= address and address + size <= region.end and region.owner is self:
            return region
        try:
            region = self._regions[bisect_right(self._starts, address) - 1]
        except IndexError:  # the lists are empty, or being changed right now
            region = self.last
        if region.address <= address and address + size <= region.end and region.owner is self:
            self.last = region
            return region
        with self._mutation:  # nothing found without the lock: be sure (a fault, or a change raced us)
            index = bisect_right(self._starts, address) - 1
            if index >= 0:
                region = self._regions[index]
                if address + size <= region.end:
                    self.last = region
                    return region
        return None

    def region_for(self, address: int, size: int, pc: int | None, is_write: bool) -> Region:
        """The region for an access, or raise the MemoryAccessError explaining why there is none."""
        return self._checked(address, size, pc, is_write)

    def _checked(self, address: int, size: int, pc: int | None, is_write: bool) -> Region:
        """The region for an access, or raise the error describing why there is none."""
        region = self.find(address, size)
        if region is None:
            raise MemoryAccessError(pc, address & 0xFFFFFFFFFFFFFFFF, size, is_write, self.explain(address, size))
        if is_write and not region.writable:
            raise MemoryAccessError(pc, address, size, True, f"read-only region: {region.describe()}")
        return region

    def explain(self, address: int, size: int) -> str:
        """Why ``[address, address + size)`` is not accessible, naming the nearest region."""
        address &= 0xFFFFFFFFFFFFFFFF
        prefix = "null pointer dereference; " if address < NULL_PAGE else ""
        with self._mutation:
            starts, regions = list(self._starts), list(self._regions)
        if not regions:
            return f"{prefix}no memory is mapped"
        index = bisect_right(starts, address) - 1
        candidates = [regions[i] for i in (index, index + 1) if 0 <= i < len(regions)]

        def distance(region: Region) -> int:
            if address < region.address:
                return region.address - address
            return max(0, address + size - region.end)

        nearest = min(candidates, key=distance)
        if address < nearest.address:
            where = f"{nearest.address - address} byte(s) before the start of"
        elif address >= nearest.end:
            where = f"{address - nearest.end} byte(s) past the end of"
        else:
            where = f"runs {address + size - nearest.end} byte(s) past the end of"
        return f"{prefix}{where} {nearest.describe()}"

    # -- access ---------------------------------------------------------------------------------

    def load(self, address: int, size: int, pc: int | None = None) -> int:
        """Read an unsigned little-endian integer of ``size`` bytes (1, 2, 4 or 8)."""
        region = self.last
        offset = address - region.address
        if offset < 0 or offset + size > region.size or region.owner is not self:
            region = self._checked(address, size, pc, False)
            offset = address - region.address
        unpack = UNPACK[size] if 0 < size < len(UNPACK) else None
        if unpack is None:
            raise VmError(f"invalid access size {size}", pc)
        value: int = unpack(region.view, offset)[0]
        return value

    def store(self, address: int, size: int, value: int, pc: int | None = None) -> None:
        """Write the low ``size`` bytes of ``value`` little-endian (1, 2, 4 or 8 bytes)."""
        region = self.last
        offset = address - region.address
        if offset < 0 or offset + size > region.size or not region.writable or region.owner is not self:
            region = self._checked(address, size, pc, True)
            offset = address - region.address
        pack = PACK[size] if 0 < size < len(PACK) else None
        if pack is None:
            raise VmError(f"invalid access size {size}", pc)
        pack(region.view, offset, value & SIZE_MASKS[size])

    def read_bytes(self, address: int, n: int, pc: int | None = None) -> bytes:
        """A copy of ``n`` bytes at ``address``."""
        return bytes(self.view(address, n, pc))

    def write_bytes(self, address: int, data: bytes | bytearray | memoryview, pc: int | None = None) -> None:
        """Copy ``data`` to ``address`` (the region must be writable)."""
        if not data:
            return
        region = self._checked(address, len(data), pc, True)
        offset = address - region.address
        region.view[offset : offset + len(data)] = data

    def view(self, address: int, n: int, pc: int | None = None, *, writable: bool = False) -> memoryview:
        """A memoryview of ``n`` bytes at ``address`` (for helpers); ``writable`` checks write permission."""
        if n == 0:
            return memoryview(b"")
        if n < 0:
            raise MemoryAccessError(pc, address, n, writable, "negative size")
        region = self._checked(address, n, pc, writable)
        offset = address - region.address
        return region.view[offset : offset + n]
