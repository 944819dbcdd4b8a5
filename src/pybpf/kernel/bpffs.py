"""A private bpffs mount for pinning: mount(2) through ctypes, as a context manager.

Pinning needs a bpf filesystem. Rather than touch the system's /sys/fs/bpf, tests and tools
mount their own at a fresh temporary directory and unmount it when done (needs
CAP_SYS_ADMIN). Pins vanish with the mount once no descriptor refers to their objects.
"""

from __future__ import annotations

import ctypes
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pybpf.errors import BpfCommandError, NotSupportedError

# umount2() flag: detach now, finish when the last reference goes, so a pinned object still
# held open elsewhere does not make the unmount fail with EBUSY.
MNT_DETACH = 2


# mountinfo writes space, tab, newline and backslash in paths as \ooo octal escapes.
_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")


class BpffsError(BpfCommandError):
    """mount(2)/umount2(2) of a bpffs failed; ``errno`` says why."""


def _libc() -> ctypes.CDLL:
    if not sys.platform.startswith("linux"):
        raise NotSupportedError(f"bpffs exists only on Linux, not on {sys.platform!r}")
    return ctypes.CDLL(None, use_errno=True)


def mount_bpffs(target: str | os.PathLike[str], *, mode: int = 0o700) -> None:
    """mount -t bpf bpf TARGET (with the given directory mode)."""
    libc = _libc()
    options = f"mode={mode:o}".encode()
    result = libc.mount(b"bpf", os.fsencode(target), b"bpf", ctypes.c_ulong(0), options)
    if result != 0:
        code = ctypes.get_errno()
        raise BpffsError(
            f"mount -t bpf at {os.fspath(target)!r} failed: {os.strerror(code)}"
            + (" (needs CAP_SYS_ADMIN)" if code == 1 else ""),
            code,
            command="mount",
        )


def unmount(target: str | os.PathLike[str]) -> None:
    """umount2(TARGET, MNT_DETACH)."""
    libc = _libc()
    if libc.umount2(os.fsencode(target), MNT_DETACH) != 0:
        code = ctypes.get_errno()
        raise BpffsError(f"unmounting {os.fspath(target)!r} failed: {os.strerror(code)}", code, command="umount2")


def is_bpffs(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is on a bpf filesystem (statfs f_type is BPF_FS_MAGIC)."""
    # os.statvfs has no f_type; /proc/self/mountinfo names the fs type of each mount point.
    resolved = os.path.realpath(path)
    best, best_type = "", ""
    with open("/proc/self/mountinfo", encoding="utf-8") as mountinfo:
        for line in mountinfo:
            fields = line.split()
            separator = fields.index("-")
            mount_point = _OCTAL_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), fields[4])
            fs_type = fields[separator + 1]
            inside = resolved == mount_point or resolved.startswith(mount_point.rstrip("/") + "/")
            if inside and len(mount_point) >= len(best):
                best, best_type = mount_point, fs_type
    return best_type == "bpf"


@contextmanager
def private_bpffs(parent: str | os.PathLike[str] | None = None) -> Iterator[Path]:
    """Mount a fresh bpffs at a new temporary directory; unmount and remove it afterwards."""
    directory = Path(tempfile.mkdtemp(prefix="pybpf-bpffs-", dir=parent))
    try:
        mount_bpffs(directory)
        try:
            yield directory
        finally:
            unmount(directory)
    finally:
        directory.rmdir()
