"""An arena's memory as programs and user space share it (BPF_MAP_TYPE_ARENA, Linux 6.9+).

The kernel gives an arena ``pages`` pages of address space twice: in user space at
``user_vm_start`` (the values C code keeps in ``__arena`` pointers) and in the kernel, where
programs reach it through ``BPF_PROBE_MEM32`` accesses at the kernel base plus a 32-bit offset
(the low half of a user address: an arena never crosses a 4 GiB boundary). A page is backed only
once allocated (``bpf_arena_alloc_pages``, or user space touching it); a program access to any
other address faults, and the kernel's exception table turns the fault into a read of 0 or a
dropped write, never an error.

:class:`ArenaMemory` is that model for the interpreter and the JIT: one zeroed buffer of
``pages`` pages at a native address (:attr:`address`), and a byte per page saying whether it is
allocated (:attr:`present`, also at a native address, so native code checks it). Programs go
through :meth:`load` / :meth:`store` (or the JIT's inlined equivalent); the runtime's arena map
allocates and frees pages and gives user space its view.

Without ``map_extra`` the user-space address *is* the buffer's native address (aligned so the
arena cannot cross 4 GiB), so user space may read it like the kernel's mmap; with ``map_extra``
programs see that address and the buffer lives elsewhere.
"""

from __future__ import annotations

import ctypes
import mmap

from pybpf.errors import VmError
from pybpf.vm.memory import PACK, SIZE_MASKS, UNPACK

__all__ = ["ARENA_PAGE_SIZE", "ArenaMemory"]

ARENA_PAGE_SIZE = 4096
_MAP_NORESERVE = 0x4000  # Linux's value; Python's mmap module names it only from 3.13
_LOW32 = 0xFFFFFFFF
_HIGH32 = ~_LOW32 & 0xFFFFFFFFFFFFFFFF


class ArenaMemory:
    """``pages`` pages of arena at user address :attr:`user_vm_start`; see the module doc."""

    __slots__ = (
        "_buffer", "_pin", "_present_pin", "address", "base32", "pages", "present", "present_address", "size",
        "user_high", "user_vm_start", "view",
    )

    def __init__(self, pages: int, user_vm_start: int = 0) -> None:
        if pages <= 0:
            raise VmError(f"an arena needs at least one page, got {pages}")
        self.pages = pages
        self.size = pages * ARENA_PAGE_SIZE
        # Room to align the start on the arena's size rounded up to a power of two: an aligned
        # range of at most 4 GiB never crosses a 4 GiB boundary.
        align = 1 << (self.size - 1).bit_length()
        # Reserved lazily (MAP_NORESERVE): a 4 GiB arena costs only the pages programs touch.
        flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | _MAP_NORESERVE
        self._buffer = mmap.mmap(-1, self.size + align, flags=flags)
        whole = (ctypes.c_char * (self.size + align)).from_buffer(self._buffer)
        start = ctypes.addressof(whole)
        skip = -start % align
        self._pin = whole
        self.view = memoryview(self._buffer)[skip:skip + self.size]
        self.address = start + skip
        self.present = bytearray(pages)
        self._present_pin = (ctypes.c_char * pages).from_buffer(self.present)
        self.present_address = ctypes.addressof(self._present_pin)
        self.user_vm_start = user_vm_start or self.address
        self.base32 = self.user_vm_start & _LOW32
        self.user_high = self.user_vm_start & _HIGH32

    def close(self) -> None:
        self.view.release()
        del self._pin, self._present_pin
        self._buffer.close()

    # -- what programs do -------------------------------------------------------------------------

    def index(self, address: int, size: int) -> int | None:
        """The buffer offset of a ``size``-byte program access at ``address`` (register plus
        offset, as BPF_PROBE_MEM32 adds them), or None where the kernel's access would fault."""
        at = address - self.base32
        if at < 0 or at + size > self.size:
            return None
        present = self.present
        if not present[at >> 12] or not present[(at + size - 1) >> 12]:
            return None
        return at

    def load(self, address: int, size: int) -> int:
        at = self.index(address, size)
        if at is None:
            return 0
        unpack = UNPACK[size]
        if unpack is None:
            raise VmError(f"invalid arena access size {size}")
        return int(unpack(self.view, at)[0])

    def store(self, address: int, size: int, value: int) -> None:
        at = self.index(address, size)
        pack = PACK[size]
        if at is not None and pack is not None:
            pack(self.view, at, value & SIZE_MASKS[size])

    def to_user(self, value: int) -> int:
        """``addr_space_cast(value, 1, 0)`` as the kernel's JIT emits it: the low 32 bits with
        the arena's user-space upper half, or 0 for 0."""
        low = value & _LOW32
        return self.user_high | low if low else 0

    # -- pages (the arena map allocates; user space faults pages in) ------------------------------

    def page_of(self, user_address: int) -> int:
        """The page a user (or 32-bit program) address falls in, as the kernel's compute_pgoff."""
        return ((user_address - self.user_vm_start) & _LOW32) >> 12

    def map_pages(self, first: int, count: int) -> None:
        """Back pages [first, first + count) (zeroed: they were zeroed when last unmapped)."""
        self.present[first:first + count] = b"\x01" * count

    def unmap_pages(self, first: int, count: int) -> None:
        """Drop pages: later program reads give 0, and a new page there starts zeroed."""
        start, end = first * ARENA_PAGE_SIZE, (first + count) * ARENA_PAGE_SIZE
        self.view[start:end] = bytes(end - start)
        self.present[first:first + count] = bytes(count)
