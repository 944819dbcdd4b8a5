"""Pinning with a clear error: BPF_OBJ_PIN outside a bpffs says only EPERM, which reads as
"not root"; :func:`pin` checks the directory and says what is wrong."""

from __future__ import annotations

import os

from pybpf.errors import PermissionDeniedError
from pybpf.kernel.bpffs import is_bpffs
from pybpf.kernel.fd import FdLike
from pybpf.kernel.objects import obj_pin
from pybpf.kernel.syscall import RawSyscall


class NotOnBpffsError(PermissionDeniedError):
    """BPF_OBJ_PIN at a path outside any bpf filesystem (the kernel says only EPERM)."""


def pin(fd: FdLike, path: str | os.PathLike[str], *, syscall: RawSyscall | None = None) -> None:
    """BPF_OBJ_PIN at ``path``; NotOnBpffsError when its directory is not on a bpffs."""
    try:
        obj_pin(fd, path, syscall=syscall)
    except PermissionDeniedError as error:
        directory = os.path.dirname(os.path.abspath(path))
        if os.path.isdir(directory) and not is_bpffs(directory):
            raise NotOnBpffsError(
                f"cannot pin at {os.fspath(path)!r}: {directory} is not on a bpf filesystem (mount -t bpf)",
                error.errno,
                command=error.command,
            ) from error
        raise
