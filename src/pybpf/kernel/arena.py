"""A kernel BPF_MAP_TYPE_ARENA mapped into this process, as libbpf maps it when it creates one.

The kernel fixes an arena's user-space address (``user_vm_start``) at creation (``map_extra``)
or at the first ``mmap`` of its fd, and refuses to load a program using the arena before that
("arena's user address must be set via map_extra or mmap()"); so the loader maps every arena
right after creating it, then copies the object's global ``__arena`` variables to its start
(which allocates their pages: a user-space touch of a page allocates it, unless the arena was
created with ``BPF_F_SEGV_ON_FAULT``).

Addresses here are user-space addresses, the values programs store as ``__arena`` pointers.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import mmap

from pybpf.errors import KernelError, MapError, NotSupportedError
from pybpf.kernel.fd import Fd
from pybpf.platform.uapi_generated import BpfMapFlag

__all__ = ["KernelArena"]

_MAP_FIXED_NOREPLACE = 0x100000
_MAP_FAILED = ctypes.c_void_p(-1).value


def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    return libc


class KernelArena:
    """The shared mapping of one arena map: ``size`` bytes at :attr:`user_vm_start`."""

    def __init__(self, fd: Fd, max_entries: int, *, map_extra: int = 0, map_flags: int = 0) -> None:
        self.size = max_entries * mmap.PAGESIZE
        self.segv_on_fault = bool(map_flags & BpfMapFlag.SEGV_ON_FAULT)
        self._libc = _libc()
        flags = mmap.MAP_SHARED | (_MAP_FIXED_NOREPLACE if map_extra else 0)
        address = self._libc.mmap(map_extra or None, self.size, mmap.PROT_READ | mmap.PROT_WRITE, flags,
                                  fd.fileno(), 0)
        if address is None or address == _MAP_FAILED:
            errno = ctypes.get_errno()
            raise KernelError(f"mmap of arena map: errno {errno}", errno)
        self.user_vm_start: int = address

    def close(self) -> None:
        if self.user_vm_start:
            self._libc.munmap(self.user_vm_start, self.size)
            self.user_vm_start = 0

    def _check(self, address: int, n: int) -> None:
        if not self.user_vm_start:
            raise MapError("the arena is no longer mapped")
        if not self.user_vm_start <= address <= address + n <= self.user_vm_start + self.size:
            raise MapError(f"{n} bytes at {address:#x} are outside the arena "
                           f"[{self.user_vm_start:#x}, {self.user_vm_start + self.size:#x})")
        if self.segv_on_fault:
            # A page no program allocated would kill this process (SIGSEGV) instead of faulting in.
            raise NotSupportedError("reading or writing a BPF_F_SEGV_ON_FAULT arena from Python")

    def read(self, address: int, n: int) -> bytes:
        """``n`` bytes at user address ``address`` (a page not yet allocated is allocated, zeroed)."""
        self._check(address, n)
        return ctypes.string_at(address, n)

    def write(self, address: int, data: bytes) -> None:
        self._check(address, len(data))
        ctypes.memmove(address, data, len(data))
