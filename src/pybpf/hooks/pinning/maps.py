"""Pinning: a bpffs-like directory where maps, programs and links are pinned by path.

The pin root is, in order: the ``root`` argument, ``$PYBPF_PIN_ROOT``, ``$XDG_RUNTIME_DIR/pybpf``,
``/run/user/<uid>/pybpf`` (when that runtime directory exists), else ``/tmp/pybpf-<uid>``. A
relative pin path is under the root; an absolute one is used as given. As on bpffs, pinning
over an existing path fails (``FileExistsError``) and :func:`unpin` removes a pin.

Every pin file starts with a header (magic ``PYBPFPIN``, version, the length of a JSON
description, the JSON: what is pinned). Maps are **shared between processes**: the array's value
storage is the pin file itself, mapped with ``mmap(MAP_SHARED)`` from :data:`DATA_OFFSET` on, so
the process that pinned the map (its programs write there) and every process that opens the pin
(:func:`open_pinned_map`, ``pybpf map dump --pinned PATH``) see the same bytes, live, and the
values survive the pinning process's exit (they are the file's contents). A BPF_F_MMAPABLE
array pinned this way is readable and writable from any process by plain memory access
(:meth:`PinnedMap.mmap`), with no call per access; that answers whether user space needs a
syscall per map access: it does not, for arrays.

Supported map types: array and percpu_array (with their ``ncpus`` copies per value, recorded in
the header), mmapable arrays, and hash, percpu_hash, lru_hash and lru_percpu_hash. A hash map's
slots (key, then value) live in the file after one occupancy byte per slot, which the pinning
process keeps up to date; another process reads its elements by scanning the occupied slots
(:meth:`PinnedMap.entries`) but cannot update it (the key index lives in the pinning process).
A reader may see an element while it is being inserted or updated (the bytes are copied in
place), as user space may in the kernel without BPF_F_LOCK. A ring buffer's records and its
two positions (the kernel's producer and consumer pages) live in the file, so another process
consumes what programs produce (:meth:`PinnedMap.poll`) and the producer sees the room it
frees; records not consumed survive the producer. Other map types raise NotSupportedError.
A global data map (``.bss``/``.data``) cannot be pinned: programs hold the address of its
value, which moving the storage would break.

Programs and links are pinned as descriptions (object file, program, type, id, pid; link kind and
target): another process cannot run them, but ``pybpf link list`` reads the link pins, which is
how a CLI process, having no links of its own, shows the links of the processes that pinned them.
"""

from __future__ import annotations

import contextlib
import json
import mmap
import os
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from pybpf.errors import MapKeyNotFoundError, NotSupportedError, PybpfError
from pybpf.platform.uapi_generated import BpfMapType
from pybpf.runtime.maps import ArrayMap, HashMap, MapDef, PercpuArrayMap, RingBufMap
from pybpf.runtime.maps.ringbuf import POSITIONS_SIZE as RINGBUF_POSITIONS_SIZE
from pybpf.vm.memory import AddressSpace

if TYPE_CHECKING:
    from pybpf.hooks.link import Link
    from pybpf.runtime.program import Program

MAGIC = b"PYBPFPIN"
VERSION = 1
_HEADER = struct.Struct("<8sII")  # magic, version, JSON length
DATA_OFFSET = 4096
"""Where a pinned map's values start in its file (page aligned, so it can be mmap'ed alone)."""
PIN_ROOT_ENV = "PYBPF_PIN_ROOT"
PINNABLE_MAP_TYPES = frozenset(
    {
        BpfMapType.ARRAY,
        BpfMapType.PERCPU_ARRAY,
        BpfMapType.HASH,
        BpfMapType.PERCPU_HASH,
        BpfMapType.LRU_HASH,
        BpfMapType.LRU_PERCPU_HASH,
        BpfMapType.RINGBUF,
    }
)
RINGBUF_POSITIONS_PAGE = 4096
"""A pinned ring buffer's file data: a page for the positions, then the records (twice the size)."""


class PinError(PybpfError):
    """A pin path that does not hold what was expected (not a pin, wrong kind, bad header)."""


def pin_root(root: str | os.PathLike[str] | None = None) -> Path:
    """The pin directory (see the module docstring for the order); not created here."""
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


def _write_new(path: Path, meta: dict[str, Any], data_size: int = 0) -> int:
    """Create the pin file (exclusively) with its header; returns the open descriptor."""
    encoded = json.dumps(meta, sort_keys=True).encode()
    if _HEADER.size + len(encoded) > DATA_OFFSET:
        raise PinError(f"{path}: the pin description is too long ({len(encoded)} bytes)")
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        header = _HEADER.pack(MAGIC, VERSION, len(encoded)) + encoded
        os.write(fd, header)
        if data_size:
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


# -- maps --------------------------------------------------------------------------------------


def _round8(size: int) -> int:
    return (size + 7) // 8 * 8


def _map_meta(found: ArrayMap | HashMap | RingBufMap) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "kind": "map",
        "name": found.name,
        "type": int(found.type),
        "type_name": found.type.name.lower(),
        "key_size": found.key_size,
        "value_size": found.value_size,
        "max_entries": found.max_entries,
        "map_flags": found.map_flags,
        "ncpus": found.ncpus,
        "pid": os.getpid(),
    }
    if isinstance(found, RingBufMap):
        meta.update(layout="ringbuf", data_size=RINGBUF_POSITIONS_PAGE + 2 * found.size)
    elif isinstance(found, HashMap):
        # One occupancy byte per slot (padded to 8), then max_entries slots: key, then value(s).
        occupancy = _round8(found.max_entries)
        meta.update(
            layout="hash",
            occupancy_size=occupancy,
            slot_size=found.slot_size,
            key_stride=found.key_stride,
            data_size=occupancy + found.max_entries * found.slot_size,
        )
    else:
        meta.update(layout="array", data_size=found.storage_size)
    return meta


def _check_pinnable(found: object) -> ArrayMap | HashMap | RingBufMap:
    map_type = getattr(found, "type", None)
    if not isinstance(found, ArrayMap | HashMap | RingBufMap) or map_type not in PINNABLE_MAP_TYPES:
        name = map_type.name.lower() if isinstance(map_type, BpfMapType) else type(found).__name__
        supported = ", ".join(sorted(kind.name.lower() for kind in PINNABLE_MAP_TYPES))
        raise NotSupportedError(f"pinning {name} maps is not supported (pinnable types: {supported})")
    if found.name.startswith("."):
        raise NotSupportedError(
            f"map {found.name!r} is global data: programs hold its value's address, so it cannot be pinned"
        )
    return found


class _SharedStorage:
    """The file-backed mapping of a pinned map's values (kept open as long as the map uses it)."""

    def __init__(self, fd: int, size: int) -> None:
        self.mapping = mmap.mmap(fd, size, flags=mmap.MAP_SHARED, offset=DATA_OFFSET)

    def close(self) -> None:
        # A region still exported over the mapping keeps it alive; the OS unmaps it at exit.
        with contextlib.suppress(BufferError):
            self.mapping.close()


def pin_map(found: object, path: str | os.PathLike[str], root: str | os.PathLike[str] | None = None) -> Path:
    """Pin a map at ``path``: its storage moves into the pin file, shared with other processes.

    Call it between program runs (a program's pointers into the old storage would go stale).
    The mapping lives as long as the map; the file outlives both.
    """
    pinnable = _check_pinnable(found)
    full = pin_path(path, root)
    meta = _map_meta(pinnable)
    fd = _write_new(full, meta, meta["data_size"])
    try:
        storage = _SharedStorage(fd, meta["data_size"])
    finally:
        os.close(fd)
    # The map's regions now hold the mapping (and so keep it open) for as long as the map lives.
    if isinstance(pinnable, RingBufMap):
        view = memoryview(storage.mapping)
        pinnable.move_storage(view[RINGBUF_POSITIONS_PAGE:], view[:RINGBUF_POSITIONS_SIZE])
    elif isinstance(pinnable, HashMap):
        view = memoryview(storage.mapping)
        occupancy = meta["occupancy_size"]
        pinnable.move_storage(view[occupancy:], view[: pinnable.max_entries])
    else:
        pinnable.move_storage(storage.mapping)
    return full


class PinnedMap:
    """A pinned map opened in this process, over the pin file's pages (live, shared).

    Arrays open as an :class:`ArrayMap` (``map``: read and write through the map API or, when
    mmapable, :meth:`mmap`); hash maps are read-only here (their index lives in the pinning
    process): :meth:`entries` scans the occupied slots, :meth:`lookup` finds one key.
    """

    def __init__(self, path: str | os.PathLike[str], root: str | os.PathLike[str] | None = None) -> None:
        info = read_pin(path, root)
        if info.kind != "map":
            raise PinError(f"{info.path} pins a {info.kind or 'unknown object'}, not a map")
        meta = info.meta
        self.path = info.path
        self.meta = meta
        self.type = BpfMapType(meta["type"])
        self.name: str = meta["name"]
        self.ncpus = int(meta["ncpus"])
        size = int(meta["data_size"])
        if self.path.stat().st_size < DATA_OFFSET + size:
            raise PinError(f"{self.path}: the file is shorter than the map it pins")
        fd = os.open(self.path, os.O_RDWR)
        try:
            self._storage = _SharedStorage(fd, size)
        finally:
            os.close(fd)
        self.memory = AddressSpace()
        self.map: ArrayMap | None = None
        self.ring: RingBufMap | None = None
        layout = meta.get("layout", "array")
        if layout == "ringbuf":
            ring = RingBufMap(MapDef(self.type, 0, 0, meta["max_entries"], meta["map_flags"], self.name), self.memory)
            view = memoryview(self._storage.mapping)
            ring.move_storage(view[RINGBUF_POSITIONS_PAGE:], view[:RINGBUF_POSITIONS_SIZE], copy=False)
            self.ring = ring
        elif layout == "array":
            definition = MapDef(
                self.type, meta["key_size"], meta["value_size"], meta["max_entries"], meta["map_flags"], self.name
            )
            cls = PercpuArrayMap if self.type == BpfMapType.PERCPU_ARRAY else ArrayMap
            self.map = cls(definition, self.memory, self.ncpus, storage=self._storage.mapping)

    @property
    def percpu(self) -> bool:
        return self.type in (BpfMapType.PERCPU_ARRAY, BpfMapType.PERCPU_HASH, BpfMapType.LRU_PERCPU_HASH)

    def _split(self, value: bytes) -> bytes | tuple[bytes, ...]:
        if not self.percpu:
            return value
        stride, size = _round8(self.meta["value_size"]), self.meta["value_size"]
        return tuple(value[i * stride : i * stride + size] for i in range(self.ncpus))

    def poll(self, timeout: float | None = 0.0, interval: float = 0.001) -> list[bytes]:
        """A pinned ring buffer's committed records, consumed (another process produces them).

        Waits up to ``timeout`` seconds (forever for None) for at least one record, checking
        every ``interval`` seconds: the producer's wakeups do not cross processes.
        """
        ring = self.ring
        if ring is None:
            raise NotSupportedError(f"pinned map {self.name!r} is a {self.type.name.lower()} map, not a ring buffer")
        records: list[bytes] = []
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            ring.consume(records.append)
            if records or (deadline is not None and time.monotonic() >= deadline):
                return records
            time.sleep(interval)

    def entries(self) -> Iterator[tuple[bytes, bytes | tuple[bytes, ...]]]:
        """``(key, value)`` for every element; per-CPU values split into one bytes per CPU.

        A ring buffer has no elements (use :meth:`poll`).
        """
        if self.ring is not None:
            return
        found = self.map
        if found is not None:
            for key in list(found.raw_keys()):
                try:
                    yield key, self._split(bytes(found.lookup_raw(key)))
                except MapKeyNotFoundError:
                    continue
            return
        meta = self.meta
        view = memoryview(self._storage.mapping)
        occupancy_size, slot_size, key_stride = meta["occupancy_size"], meta["slot_size"], meta["key_stride"]
        key_size = meta["key_size"]
        value_bytes = _round8(meta["value_size"]) * self.ncpus if self.percpu else meta["value_size"]
        try:
            for slot in range(meta["max_entries"]):
                if not view[slot]:
                    continue
                start = occupancy_size + slot * slot_size
                key = bytes(view[start : start + key_size])
                yield key, self._split(bytes(view[start + key_stride : start + key_stride + value_bytes]))
        finally:
            view.release()

    def lookup(self, key: bytes) -> bytes | tuple[bytes, ...]:
        """The value of ``key``; MapKeyNotFoundError when absent."""
        for found, value in self.entries():
            if found == key:
                return value
        raise MapKeyNotFoundError(f"pinned map {self.name!r}: no such key")

    def mmap(self) -> memoryview:
        """The values by direct memory access (BPF_F_MMAPABLE arrays), shared with every process."""
        if self.map is None:
            raise NotSupportedError(f"pinned map {self.name!r} is a {self.type.name.lower()} map, not an array")
        return self.map.mmap()

    def close(self) -> None:
        for owned in (self.map, self.ring):
            if owned is not None:
                owned.close()
        self._storage.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_pinned_map(path: str | os.PathLike[str], root: str | os.PathLike[str] | None = None) -> PinnedMap:
    """Open the map pinned at ``path`` (relative to the pin root unless absolute)."""
    return PinnedMap(path, root)


# -- programs and links ----------------------------------------------------------------------


def pin_program(
    program: Program,
    path: str | os.PathLike[str],
    root: str | os.PathLike[str] | None = None,
    *,
    object_file: str | os.PathLike[str] | None = None,
) -> Path:
    """Pin a description of ``program`` (name, section, type, id, pid and its object file if given)."""
    meta = {
        "kind": "prog",
        "name": program.name,
        "object": os.path.abspath(object_file) if object_file is not None else None,
        "section": program.spec.section,
        "type": program.type_spec.name,
        "id": program.id,
        "pid": os.getpid(),
    }
    full = pin_path(path, root)
    os.close(_write_new(full, meta))
    return full


def pin_link(link: Link, path: str | os.PathLike[str], root: str | os.PathLike[str] | None = None) -> Path:
    """Pin a description of ``link`` (``pybpf link list`` shows it while the pin exists)."""
    meta = {"kind": "link", "link": link.info().as_dict()}
    full = pin_path(path, root)
    os.close(_write_new(full, meta))
    return full


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def pinned_links(root: str | os.PathLike[str] | None = None) -> list[dict[str, Any]]:
    """The pinned links, each as its description plus ``path`` and ``alive`` (its process runs)."""
    records = []
    for info in list_pins(root, "link"):
        record = dict(info.meta.get("link", {}))
        record.update(path=str(info.path), alive=process_alive(int(record.get("pid", 0))))
        records.append(record)
    return records


__all__ = [
    "DATA_OFFSET",
    "PIN_ROOT_ENV",
    "PinError",
    "PinInfo",
    "PinnedMap",
    "list_pins",
    "open_pinned_map",
    "pin_link",
    "pin_map",
    "pin_path",
    "pin_program",
    "pin_root",
    "pinned_links",
    "read_pin",
    "unpin",
]
