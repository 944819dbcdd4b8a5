"""Updates of a pinned hash map or LPM trie from another process.

The element index of a hash map (a dict, and the native index JIT code probes) and the shape of
an LPM trie live only in the process that pinned the map (the *owner*); the pin file holds the
elements' bytes. So another process never rewrites the file's structure itself while the owner
lives: it asks the owner. :class:`UpdateServer` (owner side) listens on an abstract Unix socket
named after the pin file and its owner's pid, and applies each request with the map's own
``update_raw``/``delete_raw`` under the map's mutation lock, so the owner's programs (under the
interpreter or the JIT) see the change exactly as if the owner had made it, and it is ordered
with the owner's own updates. :func:`request` (other side) sends one request and waits for the
owner's answer, which carries the kernel's errno (ENOENT, EEXIST, E2BIG...).

When the owner has exited (nothing listens), nobody holds an index: the file alone is the map,
and :func:`update_ownerless`/:func:`delete_ownerless` edit a hash map's slots in place under an
exclusive ``flock`` of the pin file (an update of an existing key rewrites its value, a new key
takes a free slot, its key and value written before its occupancy byte; a delete clears the
occupancy byte).

The owner's mutation lock: ``HashMap``/``LpmTrieMap`` have none, so :func:`guard_mutations` wraps
the map instance's mutating and iterating methods with a re-entrant lock (see the report of the
pinning work for the hook hash.py could offer instead).
"""

from __future__ import annotations

import contextlib
import errno as errno_codes
import json
import os
import socket
import struct
import threading
from collections.abc import Callable
from typing import Any

from pybpf.errors import (
    MapErrnoError,
    MapFullError,
    MapInvalidArgumentError,
    MapKeyExistsError,
    MapKeyNotFoundError,
    MapPermissionError,
    PybpfError,
)
from pybpf.platform.uapi_generated import BpfUpdateFlag
from pybpf.runtime.maps import Map

REQUEST_TIMEOUT = 5.0
"""Seconds a request waits for the owner's answer."""
_MAX_MESSAGE = 1 << 22  # a request's JSON: hex key and value (a per-CPU value holds every CPU's copy)
_PEER_CREDENTIALS = struct.Struct("3i")  # struct ucred: pid, uid, gid
_ERRORS: dict[str, type[MapErrnoError]] = {
    cls.__name__: cls
    for cls in (MapKeyNotFoundError, MapKeyExistsError, MapFullError, MapInvalidArgumentError, MapPermissionError)
}
GUARDED_METHODS = ("_update", "_delete", "_lookup_and_delete", "_next_key", "raw_keys", "for_each")
"""The map methods that change or walk the element structure: run under the mutation lock."""


class OwnerGoneError(PybpfError):
    """The process that pinned the map no longer serves requests (it exited or closed the map)."""


def owner_address(st_dev: int, st_ino: int, pid: int) -> str:
    """The abstract socket name of a pin's owner (a leading NUL: no file in the file system)."""
    return f"\0pybpf-pin:{st_dev}:{st_ino}:{pid}"


def guard_mutations(found: Map, lock: threading.RLock, after_update: Callable[[bytes], None] | None = None) -> None:
    """Run ``found``'s structure-changing and structure-walking methods under ``lock`` (instance
    attributes shadowing the class's methods); ``after_update(key)`` runs after each update."""
    for name in GUARDED_METHODS:
        method = getattr(found, name)
        hook = after_update if name == "_update" else None

        def guarded(*args: Any, _method: Any = method, _hook: Any = hook) -> Any:
            with lock:
                result = _method(*args)
                if _hook is not None:
                    _hook(args[0])
                return result

        setattr(found, name, guarded)


class UpdateServer:
    """The owner's side: a daemon thread applying other processes' update and delete requests."""

    def __init__(self, found: Map, lock: threading.RLock, address: str) -> None:
        self.found = found
        self.lock = lock
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._socket.bind(address)
        self._socket.listen(8)
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._serve, name=f"pybpf-pin-{found.name}", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._closed.is_set():
            try:
                connection, _ = self._socket.accept()
            except OSError:
                return  # closed
            with connection:
                connection.settimeout(REQUEST_TIMEOUT)
                with contextlib.suppress(OSError, ValueError):
                    if not _same_user(connection):
                        continue
                    while message := connection.recv(_MAX_MESSAGE):
                        connection.sendall(json.dumps(self.apply(json.loads(message))).encode())

    def apply(self, message: dict[str, Any]) -> dict[str, Any]:
        """Apply one request; the answer (``{"ok": true}`` or the error's class, errno and text)."""
        try:
            key = bytes.fromhex(message["key"])
            with self.lock:
                match message["op"]:
                    case "update":
                        self.found.update_raw(key, bytes.fromhex(message["value"]), int(message["flags"]))
                    case "delete":
                        self.found.delete_raw(key)
                    case op:
                        raise MapInvalidArgumentError(f"unknown request {op!r}")
        except MapErrnoError as error:
            return {"error": type(error).__name__, "errno": error.errno, "message": str(error)}
        except (KeyError, ValueError, TypeError) as error:
            return {"error": "MapInvalidArgumentError", "errno": errno_codes.EINVAL, "message": f"bad request: {error}"}
        return {"ok": True}

    def close(self) -> None:
        self._closed.set()
        with contextlib.suppress(OSError):
            self._socket.shutdown(socket.SHUT_RDWR)
        self._socket.close()


def _same_user(connection: socket.socket) -> bool:
    """Whether the peer runs as this process's user (or root): an abstract socket has no file
    permissions, so the owner checks what the pin file's 0600 mode says for the data."""
    _, uid, _ = _PEER_CREDENTIALS.unpack(
        connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEER_CREDENTIALS.size)
    )
    return uid in (os.getuid(), 0)


def request(address: str, message: dict[str, Any]) -> None:
    """Send one request to the owner at ``address``; raises the owner's map error, or
    OwnerGoneError when nothing listens there."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as connection:
        connection.settimeout(REQUEST_TIMEOUT)
        try:
            connection.connect(address)
        except (ConnectionRefusedError, FileNotFoundError) as error:
            raise OwnerGoneError(f"the process that pinned the map does not answer ({error.strerror})") from None
        connection.sendall(json.dumps(message).encode())
        answer = json.loads(connection.recv(_MAX_MESSAGE) or b"{}")
    if answer.get("ok"):
        return
    if "error" not in answer:
        raise OwnerGoneError("the process that pinned the map closed it, or refused this user, during the request")
    cls = _ERRORS.get(answer["error"], MapErrnoError)
    raise cls(answer["message"], int(answer["errno"]))


# -- the owner has exited: the file is the whole map ------------------------------------------------


class HashSlots:
    """A pinned hash map's file data: one occupancy byte per slot, then slots (key, then value)."""

    def __init__(self, view: memoryview, meta: dict[str, Any], value_bytes: int) -> None:
        self.view = view
        self.capacity = int(meta["max_entries"])
        self.occupancy_size = int(meta["occupancy_size"])
        self.slot_size = int(meta["slot_size"])
        self.key_stride = int(meta["key_stride"])
        self.key_size = int(meta["key_size"])
        self.value_bytes = value_bytes

    def start(self, slot: int) -> int:
        return self.occupancy_size + slot * self.slot_size

    def key(self, slot: int) -> bytes:
        start = self.start(slot)
        return bytes(self.view[start : start + self.key_size])

    def value(self, slot: int) -> bytes:
        start = self.start(slot) + self.key_stride
        return bytes(self.view[start : start + self.value_bytes])

    def occupied(self) -> list[int]:
        return [slot for slot in range(self.capacity) if self.view[slot]]

    def find(self, key: bytes) -> int | None:
        return next((slot for slot in self.occupied() if self.key(slot) == key), None)

    def write_value(self, slot: int, value: bytes) -> None:
        start = self.start(slot) + self.key_stride
        self.view[start : start + len(value)] = value


def update_ownerless(slots: HashSlots, key: bytes, value: bytes, flags: int) -> None:
    """BPF_MAP_UPDATE_ELEM on the file alone (call it under the pin's FileLock)."""
    if flags > BpfUpdateFlag.EXIST:
        raise MapInvalidArgumentError(f"update flags {flags:#x} are invalid")
    found = slots.find(key)
    if found is not None:
        if flags == BpfUpdateFlag.NOEXIST:
            raise MapKeyExistsError("the key exists (BPF_NOEXIST)")
        slots.write_value(found, value)
        return
    if flags == BpfUpdateFlag.EXIST:
        raise MapKeyNotFoundError("no such key (BPF_EXIST)")
    free = next((slot for slot in range(slots.capacity) if not slots.view[slot]), None)
    if free is None:
        raise MapFullError(f"the map is full ({slots.capacity} elements)")
    start = slots.start(free)
    slots.view[start : start + slots.slot_size] = bytes(slots.slot_size)
    slots.view[start : start + len(key)] = key
    slots.write_value(free, value)
    slots.view[free] = 1  # last: a reader never finds a slot whose key and value are not written


def delete_ownerless(slots: HashSlots, key: bytes) -> None:
    """BPF_MAP_DELETE_ELEM on the file alone (call it under the pin's FileLock)."""
    found = slots.find(key)
    if found is None:
        raise MapKeyNotFoundError("no such key")
    slots.view[found] = 0


__all__ = [
    "GUARDED_METHODS",
    "REQUEST_TIMEOUT",
    "HashSlots",
    "OwnerGoneError",
    "UpdateServer",
    "delete_ownerless",
    "guard_mutations",
    "owner_address",
    "request",
    "update_ownerless",
]
