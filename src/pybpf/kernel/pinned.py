"""``open_pinned(path)``: a pinned map or program back as a :class:`KernelMap`/:class:`KernelProgram`.

BPF_OBJ_GET gives a descriptor without saying what it refers to; ``/proc/self/fdinfo/<fd>``
does (``map_type:`` or ``prog_type:`` lines), and the object's info record gives the rest.
"""

from __future__ import annotations

import os
from pathlib import Path

from pybpf.errors import NotSupportedError
from pybpf.kernel.fd import Fd
from pybpf.kernel.map_api import KernelMap, ValueCodec
from pybpf.kernel.object import KernelProgram
from pybpf.kernel.objects import map_info, obj_get, prog_info
from pybpf.kernel.syscall import RawSyscall
from pybpf.kernel.uapi import BpfMapType


def fdinfo(fd: Fd) -> dict[str, str]:
    """The ``key: value`` lines the kernel shows for ``fd`` in /proc/self/fdinfo."""
    text = Path(f"/proc/self/fdinfo/{fd.fileno()}").read_text(encoding="ascii", errors="replace")
    fields = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    return fields


def open_pinned(
    path: str | os.PathLike[str],
    *,
    codec: ValueCodec | None = None,
    syscall: RawSyscall | None = None,
) -> KernelMap | KernelProgram:
    """The map or program pinned at ``path`` (ObjectNotFoundError when nothing is pinned there)."""
    fd = obj_get(path, syscall=syscall)
    try:
        kind = fdinfo(fd)
        if "map_type" in kind:
            info = map_info(fd, syscall=syscall)
            if not isinstance(info.type, BpfMapType):
                raise NotSupportedError(f"{os.fspath(path)}: map type {info.type} is newer than pybpf")
            return KernelMap(
                fd,
                name=info.name,
                map_type=info.type,
                key_size=info.key_size,
                value_size=info.value_size,
                max_entries=info.max_entries,
                map_flags=info.map_flags,
                codec=codec,
                syscall=syscall,
            )
        if "prog_type" in kind:
            program = prog_info(fd, syscall=syscall)
            return KernelProgram(None, fd, prog_type=program.type, kernel_name=program.name, syscall=syscall)
        raise NotSupportedError(f"{os.fspath(path)}: pinned object is neither a map nor a program")
    except BaseException:
        fd.close()
        raise
