"""Every program and map loaded in the kernel, as ``bpftool prog list`` / ``map list`` show them.

Ids are walked with BPF_*_GET_NEXT_ID and each object opened by id just long enough to read its
info; an object that goes away between the two steps is skipped (it is no longer loaded).
"""

from __future__ import annotations

from collections.abc import Iterator

from pybpf.errors import ObjectNotFoundError
from pybpf.kernel.objects import MapInfo, ProgInfo, map_fd_by_id, map_ids, map_info, prog_fd_by_id, prog_ids, prog_info
from pybpf.kernel.syscall import RawSyscall


def loaded_programs(*, syscall: RawSyscall | None = None) -> Iterator[ProgInfo]:
    """Info of every program in the kernel, by increasing id (needs CAP_SYS_ADMIN)."""
    for prog_id in prog_ids(syscall=syscall):
        try:
            with prog_fd_by_id(prog_id, syscall=syscall) as fd:
                yield prog_info(fd, syscall=syscall)
        except ObjectNotFoundError:
            continue


def loaded_maps(*, syscall: RawSyscall | None = None) -> Iterator[MapInfo]:
    """Info of every map in the kernel, by increasing id (needs CAP_SYS_ADMIN)."""
    for map_id in map_ids(syscall=syscall):
        try:
            with map_fd_by_id(map_id, syscall=syscall) as fd:
                yield map_info(fd, syscall=syscall)
        except ObjectNotFoundError:
            continue
