"""The pin directory and pin files: where pins live, their header, and the file lock.

Every pin file starts with a header (magic ``PYBPFPIN``, version, the length of a JSON
description, the JSON: what is pinned); a map's shared data starts at :data:`DATA_OFFSET`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import mmap
import os
import struct
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pybpf.errors import PybpfError

MAGIC = b"PYBPFPIN"
VERSION = 1
_HEADER = struct.Struct("<8sII")  # magic, version, JSON length
DATA_OFFSET = 4096
"""Where a pinned map's values start in its file (page aligned, so it can be mmap'ed alone)."""
PIN_ROOT_ENV = "PYBPF_PIN_ROOT"


class PinError(PybpfError):
    """A pin path that does not hold what was expected (not a pin, wrong kind, bad header)."""


def pin_root(root: str | os.PathLike[str] | None = None) -> Path:
    """The pin directory (see the package docstring for the order); not created here."""
    if root is not None:
        return Path(root)
    configured = os.environ.get(PIN_ROOT_ENV)
    if configured:
        return Path(configured)
    runtime_dir = os.environ.get("XDG_RUNTIME_DIR")
    if runtime_dir:
        return Path(runtime_dir) / "pybpf"
    user_run = Path(f"/run/user/{os.getuid()}")
    if user_run.is_dir():
        return user_run / "pybpf"
    return Path(f"/tmp/pybpf-{os.getuid()}")


def pin_path(path: str | os.PathLike[str], root: str | os.PathLike[str] | None = None) -> Path:
    """``path`` under the pin root when relative, as given when absolute."""
    given = Path(path)
    return given if given.is_absolute() else pin_root(root) / given


@dataclass(frozen=True, slots=True)
class PinInfo:
    """One pin: its path and the JSON description from its header."""

    path: Path
    kind: str  # "map", "prog" or "link"
    meta: dict[str, Any]


def write_new(path: Path, meta: dict[str, Any], data_size: int = 0, payload: bytes = b"") -> int:
    """Create the pin file (exclusively) with its header, and ``payload`` or ``data_size`` zero
    bytes from :data:`DATA_OFFSET` on; returns the open descriptor."""
    encoded = json.dumps(meta, sort_keys=True).encode()
    if _HEADER.size + len(encoded) > DATA_OFFSET:
        raise PinError(f"{path}: the pin description is too long ({len(encoded)} bytes)")
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, _HEADER.pack(MAGIC, VERSION, len(encoded)) + encoded)
        if payload:
            os.pwrite(fd, payload, DATA_OFFSET)
        elif data_size:
            os.ftruncate(fd, DATA_OFFSET + data_size)
    except BaseException:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    return fd


def read_pin(path: str | os.PathLike[str], root: str | os.PathLike[str] | None = None) -> PinInfo:
    """The description of the pin at ``path``; PinError when it is not a pin."""
    full = pin_path(path, root)
    with full.open("rb") as file:
        head = file.read(DATA_OFFSET)
    if len(head) < _HEADER.size:
        raise PinError(f"{full}: not a pybpf pin (too short)")
    magic, version, length = _HEADER.unpack_from(head)
    if magic != MAGIC:
        raise PinError(f"{full}: not a pybpf pin")
    if version != VERSION:
        raise PinError(f"{full}: pin format version {version}, this pybpf reads {VERSION}")
    try:
        meta = json.loads(head[_HEADER.size : _HEADER.size + length])
    except ValueError as error:
        raise PinError(f"{full}: unreadable pin description ({error})") from None
    return PinInfo(full, str(meta.get("kind", "")), meta)


def read_payload(info: PinInfo) -> bytes:
    """The bytes a pin keeps after its header (a pinned program's object file)."""
    with info.path.open("rb") as file:
        file.seek(DATA_OFFSET)
        return file.read()


def unpin(path: str | os.PathLike[str], root: str | os.PathLike[str] | None = None) -> None:
    """Remove a pin (the object lives on in the processes that use it)."""
    info = read_pin(path, root)
    info.path.unlink()


def list_pins(root: str | os.PathLike[str] | None = None, kind: str | None = None) -> list[PinInfo]:
    """Every pin under the root (of one ``kind`` if given), by path; unreadable files are skipped."""
    base = pin_root(root)
    if not base.is_dir():
        return []
    found: list[PinInfo] = []
    for candidate in sorted(base.rglob("*")):
        if not candidate.is_file():
            continue
        try:
            info = read_pin(candidate)
        except (PinError, OSError):
            continue
        if kind is None or info.kind == kind:
            found.append(info)
    return found


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class SharedStorage:
    """The file-backed mapping of a pinned map's data, and a descriptor of the file kept open
    for :class:`FileLock` (as long as the map uses it)."""

    def __init__(self, fd: int, size: int, *, keep_fd: bool = True) -> None:
        self.fd = os.dup(fd) if keep_fd else -1
        self.mapping = mmap.mmap(fd, size, flags=mmap.MAP_SHARED, offset=DATA_OFFSET)

    def close(self) -> None:
        # A region still exported over the mapping keeps it alive; the OS unmaps it at exit.
        with contextlib.suppress(BufferError):
            self.mapping.close()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class FileLock:
    """A lock that excludes other processes (``flock`` on the pin file, through a descriptor of
    this process's own, so each process's lock is its own open file description) and other
    threads of this process (``flock`` does not: threads share the descriptor).

    Each acquisition is two system calls (lock, unlock): a full memory barrier either side, so
    what one holder wrote is what the next one reads.
    """

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._threads = threading.Lock()

    def __enter__(self) -> FileLock:
        self._threads.acquire()
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except BaseException:
            self._threads.release()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._threads.release()


__all__ = [
    "DATA_OFFSET",
    "PIN_ROOT_ENV",
    "FileLock",
    "PinError",
    "PinInfo",
    "SharedStorage",
    "list_pins",
    "pin_path",
    "pin_root",
    "process_alive",
    "read_payload",
    "read_pin",
    "unpin",
    "write_new",
]
