"""bpf_find_vma: the memory area of the running process that holds an address.

``bpf_find_vma(task, addr, callback_fn, callback_ctx, flags)`` finds the ``vm_area_struct`` of
``task``'s memory that contains ``addr`` and calls ``callback_fn(task, vma, callback_ctx)``
with it (kernel/bpf/task_iter.c). In user space the task is the runtime's "current" (the
stand-in ``bpf_get_current_task_btf`` returns), whose memory is this process's: the areas come
from ``/proc/self/maps``. The vma the callback sees is an image of pybpf's modelled ``struct
vm_area_struct`` (:mod:`pybpf.platform.kernel_types`: ``vm_start``, ``vm_end``, ``vm_flags``,
``vm_pgoff``), mapped read-only in the shared address space for the callback's duration. Its
``vm_flags`` hold the permission bits a maps line shows (``VM_READ``, ``VM_WRITE``, ``VM_EXEC``,
``VM_SHARED``); the kernel's other bits (``VM_MAYREAD``...) are not known from user space.
"""

# Every helper takes (env, r1..r5): the helper ABI fixes six positional parameters.
# ruff: noqa: PLR0917

from __future__ import annotations

import mmap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pybpf.platform.kernel_types import KERNEL_STRUCTS
from pybpf.platform.uapi_generated import HelperId
from pybpf.runtime.helpers._common import EINVAL, ENOENT
from pybpf.runtime.helpers.services import run_state
from pybpf.vm.execution import ExecutionContext, HelperFn
from pybpf.vm.memory import Region, RegionKind

PROC_MAPS = Path("/proc/self/maps")
# include/linux/mm.h: the permission bits of vm_flags a maps line shows.
VM_READ, VM_WRITE, VM_EXEC, VM_SHARED = 0x1, 0x2, 0x4, 0x8
_PERMISSION_BITS = (("r", VM_READ), ("w", VM_WRITE), ("x", VM_EXEC), ("s", VM_SHARED))


@dataclass(frozen=True, slots=True)
class Vma:
    """One area of a process's memory, as a ``/proc/<pid>/maps`` line describes it."""

    start: int
    end: int
    flags: int  # VM_READ | VM_WRITE | VM_EXEC | VM_SHARED
    pgoff: int  # the file offset in pages
    path: str = ""

    def image(self) -> bytes:
        """The area as pybpf's ``struct vm_area_struct``."""
        return KERNEL_STRUCTS["vm_area_struct"].pack(
            {"vm_start": self.start, "vm_end": self.end, "vm_flags": self.flags, "vm_pgoff": self.pgoff})


def parse_maps(text: str) -> Iterator[Vma]:
    """The areas of a maps file: ``start-end perms offset dev inode [path]`` per line."""
    for line in text.splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) < 5:
            continue
        start, _, end = fields[0].partition("-")
        perms = fields[1]
        flags = 0
        for letter, bit in _PERMISSION_BITS:
            if letter in perms:
                flags |= bit
        offset, inode = int(fields[2], 16), int(fields[4])
        # An anonymous area's vm_pgoff is its start page (the kernel sets it so at mmap time and
        # keeps it matching vm_start); maps shows it as offset 0.
        pgoff = int(start, 16) // mmap.PAGESIZE if inode == 0 and offset == 0 else offset // mmap.PAGESIZE
        yield Vma(int(start, 16), int(end, 16), flags, pgoff, fields[5].strip() if len(fields) > 5 else "")


def find_vma_of(address: int, maps: Path = PROC_MAPS) -> Vma | None:
    """The area holding ``address`` (the kernel's ``find_vma`` plus its ``vm_start <= addr`` test)."""
    try:
        text = maps.read_text()
    except OSError:
        return None
    return next((vma for vma in parse_maps(text) if vma.start <= address < vma.end), None)


def find_vma(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    """bpf_find_vma(task, addr, callback_fn, callback_ctx, flags): 0 after calling back, or -errno."""
    if r5:
        return EINVAL
    services = run_state(env).services
    if r1 != services.task_struct.address:
        return ENOENT  # the only task whose memory user space knows is current's
    vma = find_vma_of(r2)
    if vma is None:
        return ENOENT
    region = services.memory.add(Region.from_bytes(RegionKind.OTHER, "vm_area_struct", vma.image(), writable=False))
    try:
        env.call_function(r3, r1, region.address, r4)  # the callback's verdict is not used
    finally:
        services.memory.remove(region)
    return 0


VMA_HELPERS: dict[HelperId, HelperFn] = {HelperId.FIND_VMA: find_vma}

__all__ = ["PROC_MAPS", "VMA_HELPERS", "Vma", "find_vma", "find_vma_of", "parse_maps"]
