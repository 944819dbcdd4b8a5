"""Pinned maps: the map's data moves into the pin file, mapped ``MAP_SHARED`` by every process.

See the package docstring for what each map type shares and how; :func:`pin_map` is the owner's
side, :class:`PinnedMap` (:func:`open_pinned_map`) any other process's.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Self

from pybpf.errors import MapInvalidArgumentError, MapKeyNotFoundError, NotSupportedError
from pybpf.hooks.pinning.store import (
    DATA_OFFSET,
    FileLock,
    PinError,
    SharedStorage,
    pin_path,
    process_alive,
    read_pin,
    write_new,
)
from pybpf.hooks.pinning.updates import (
    HashSlots,
    OwnerGoneError,
    UpdateServer,
    delete_ownerless,
    guard_mutations,
    owner_address,
    request,
    update_ownerless,
)
from pybpf.platform.uapi_generated import BpfMapType
from pybpf.runtime.maps import (
    ArrayMap,
    HashMap,
    LpmTrieMap,
    Map,
    MapDef,
    PercpuArrayMap,
    PerfEventArrayMap,
    PerfEventBuffer,
    QueueMap,
    RingBufMap,
    StackMap,
)
from pybpf.runtime.maps.perf_event_array import shared_buffer_size
from pybpf.runtime.maps.queue_stack import shared_size as queue_shared_size
from pybpf.runtime.maps.ringbuf import POSITIONS_SIZE as RINGBUF_POSITIONS_SIZE
from pybpf.vm.memory import AddressSpace

RINGBUF_POSITIONS_PAGE = 4096
"""A pinned ring buffer's file data: a page for the positions, then the records (twice the size)."""
PINNABLE_MAP_TYPES = frozenset(
    {
        BpfMapType.ARRAY,
        BpfMapType.PERCPU_ARRAY,
        BpfMapType.HASH,
        BpfMapType.PERCPU_HASH,
        BpfMapType.LRU_HASH,
        BpfMapType.LRU_PERCPU_HASH,
        BpfMapType.RINGBUF,
        BpfMapType.QUEUE,
        BpfMapType.STACK,
        BpfMapType.LPM_TRIE,
        BpfMapType.PERF_EVENT_ARRAY,
    }
)
_PINNABLE_CLASSES = (ArrayMap, HashMap, RingBufMap, QueueMap, LpmTrieMap, PerfEventArrayMap)
_PINNED_AT = "_pybpf_pinned_at"  # set on a map instance by pin_map
_PERCPU_TYPES = (BpfMapType.PERCPU_ARRAY, BpfMapType.PERCPU_HASH, BpfMapType.LRU_PERCPU_HASH)


def _round8(size: int) -> int:
    return (size + 7) // 8 * 8


def _map_meta(found: Map) -> dict[str, Any]:
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
    occupancy = _round8(found.max_entries)
    if isinstance(found, RingBufMap):
        meta.update(layout="ringbuf", data_size=RINGBUF_POSITIONS_PAGE + 2 * found.size)
    elif isinstance(found, HashMap):
        # One occupancy byte per slot (padded to 8), then max_entries slots: key, then value(s).
        meta.update(
            layout="hash",
            occupancy_size=occupancy,
            slot_size=found.slot_size,
            key_stride=found.key_stride,
            data_size=occupancy + found.max_entries * found.slot_size,
        )
    elif isinstance(found, LpmTrieMap):
        # Occupancy bytes, then one key per value slot (the trie's nodes stay in the owner), then values.
        key_stride = _round8(found.key_size)
        keys_size = found.max_entries * key_stride
        meta.update(
            layout="lpm",
            occupancy_size=occupancy,
            key_stride=key_stride,
            value_stride=found.value_stride,
            values_offset=occupancy + keys_size,
            data_size=occupancy + keys_size + found.max_entries * found.value_stride,
        )
    elif isinstance(found, QueueMap):
        meta.update(layout="queue", data_size=queue_shared_size(found.max_entries, found.value_size))
    elif isinstance(found, PerfEventArrayMap):
        buffers, offset = [], 0
        for cpu in range(min(found.ncpus, found.max_entries)):
            slot = found._objects[cpu]
            capacity = slot.capacity if isinstance(slot, PerfEventBuffer) else PerfEventBuffer(cpu).capacity
            buffers.append([cpu, offset, capacity])
            offset += _round8(shared_buffer_size(capacity))
        meta.update(layout="perf", buffers=buffers, data_size=max(offset, 8))
    else:
        meta.update(layout="array", data_size=found.storage_size)  # type: ignore[attr-defined]
    return meta


def _check_pinnable(found: object) -> Map:
    map_type = getattr(found, "type", None)
    if not isinstance(found, _PINNABLE_CLASSES) or map_type not in PINNABLE_MAP_TYPES:
        name = map_type.name.lower() if isinstance(map_type, BpfMapType) else type(found).__name__
        supported = ", ".join(sorted(kind.name.lower() for kind in PINNABLE_MAP_TYPES))
        raise NotSupportedError(f"pinning {name} maps is not supported (pinnable types: {supported})")
    if found.name.startswith("."):
        raise NotSupportedError(
            f"map {found.name!r} is global data: programs hold its value's address, so it cannot be pinned"
        )
    return found


def _write_lpm_key(found: LpmTrieMap, keys: memoryview, key_stride: int, key: bytes) -> None:
    """Mirror the key of the element ``key`` names into the file's key table, at its value's slot."""
    node = found._find_longest(key)
    if node is not None and node.slot is not None:
        start = node.slot * key_stride
        encoded = found._encode(node)
        keys[start : start + len(encoded)] = encoded


def _serve_updates(found: Map, fd: int, lpm_keys: memoryview | None = None) -> UpdateServer:
    """Guard the owner's map and start answering other processes' update requests."""
    lock = threading.RLock()
    after_update = None
    if isinstance(found, LpmTrieMap) and lpm_keys is not None:
        key_stride = _round8(found.key_size)

        def after_update(key: bytes) -> None:
            _write_lpm_key(found, lpm_keys, key_stride, key)

        for node_key in list(found.raw_keys()):
            after_update(node_key)
    guard_mutations(found, lock, after_update)
    stat = os.fstat(fd)
    server = UpdateServer(found, lock, owner_address(stat.st_dev, stat.st_ino, os.getpid()))
    close = found.close

    def close_and_stop() -> None:
        server.close()
        close()

    found.close = close_and_stop  # type: ignore[method-assign]
    return server


def pin_map(found: object, path: str | os.PathLike[str], root: str | os.PathLike[str] | None = None) -> Path:
    """Pin a map at ``path``: its storage moves into the pin file, shared with other processes.

    Call it between program runs (a program's pointers into the old storage would go stale).
    The mapping lives as long as the map; the file outlives both. Hash maps and LPM tries also
    start answering other processes' updates (:meth:`PinnedMap.update`) until the map closes.
    """
    pinnable = _check_pinnable(found)
    full = pin_path(path, root)
    earlier = getattr(pinnable, _PINNED_AT, None)
    if earlier is not None:
        # Unlike bpffs, one pin per map: the data lives in that pin's file (a second would go stale).
        raise NotSupportedError(f"map {pinnable.name!r} is already pinned at {earlier}")
    meta = _map_meta(pinnable)
    fd = write_new(full, meta, meta["data_size"])
    try:
        # Only a queue keeps a descriptor (its lock); the mapping alone keeps the file otherwise.
        storage = SharedStorage(fd, meta["data_size"], keep_fd=isinstance(pinnable, QueueMap))
        view = memoryview(storage.mapping)
        # The map's regions now hold the mapping (and so keep it open) for as long as the map lives.
        if isinstance(pinnable, RingBufMap):
            pinnable.move_storage(view[RINGBUF_POSITIONS_PAGE:], view[:RINGBUF_POSITIONS_SIZE])
        elif isinstance(pinnable, HashMap):
            pinnable.move_storage(view[meta["occupancy_size"] :], view[: pinnable.max_entries])
            _serve_updates(pinnable, fd)
        elif isinstance(pinnable, LpmTrieMap):
            values = meta["values_offset"]
            pinnable.slab.move_storage(view[values:], view[: pinnable.max_entries])
            _serve_updates(pinnable, fd, view[meta["occupancy_size"] : values])
        elif isinstance(pinnable, QueueMap):
            pinnable.move_storage(view, FileLock(storage.fd))
        elif isinstance(pinnable, PerfEventArrayMap):
            for cpu, offset, capacity in meta["buffers"]:
                slot = pinnable._objects[cpu]
                buffer = slot if isinstance(slot, PerfEventBuffer) else PerfEventBuffer(cpu, capacity // 4096)
                buffer.move_storage(view[offset : offset + shared_buffer_size(capacity)])
                if slot is None:
                    pinnable.update(cpu, buffer)
        elif isinstance(pinnable, ArrayMap):
            pinnable.move_storage(storage.mapping)
    except BaseException:
        full.unlink(missing_ok=True)
        raise
    finally:
        os.close(fd)
    setattr(pinnable, _PINNED_AT, str(full))
    return full


class PinnedMap:
    """A pinned map opened in this process, over the pin file's pages (live, shared).

    Arrays open as an :class:`ArrayMap` (``map``: read and write through the map API or, when
    mmapable, :meth:`mmap`); queues and stacks as a :class:`QueueMap` (``queue``: push and pop
    under the file lock); ring buffers and perf event arrays are consumed (:meth:`poll`,
    :meth:`poll_perf`). Hash maps and LPM tries are read by scanning their slots
    (:meth:`entries`) and updated through their owner (:meth:`update`, :meth:`delete`).
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
        self.layout: str = meta.get("layout", "array")
        size = int(meta["data_size"])
        stat = self.path.stat()
        if stat.st_size < DATA_OFFSET + size:
            raise PinError(f"{self.path}: the file is shorter than the map it pins")
        self.owner_pid = int(meta.get("pid", 0))
        self._owner = owner_address(stat.st_dev, stat.st_ino, self.owner_pid)
        fd = os.open(self.path, os.O_RDWR)
        try:
            self._storage = SharedStorage(fd, size)
        finally:
            os.close(fd)
        self._view = memoryview(self._storage.mapping)
        self.lock = FileLock(self._storage.fd)
        self.memory = AddressSpace()
        self.map: ArrayMap | None = None
        self.ring: RingBufMap | None = None
        self.queue: QueueMap | None = None
        self.perf_buffers: list[PerfEventBuffer] = []
        definition = MapDef(
            self.type, meta["key_size"], meta["value_size"], meta["max_entries"], meta["map_flags"], self.name
        )
        if self.layout == "ringbuf":
            ring = RingBufMap(MapDef(self.type, 0, 0, meta["max_entries"], meta["map_flags"], self.name), self.memory)
            ring.move_storage(self._view[RINGBUF_POSITIONS_PAGE:], self._view[:RINGBUF_POSITIONS_SIZE], copy=False)
            self.ring = ring
        elif self.layout == "array":
            cls = PercpuArrayMap if self.type == BpfMapType.PERCPU_ARRAY else ArrayMap
            self.map = cls(definition, self.memory, self.ncpus, storage=self._storage.mapping)
        elif self.layout == "queue":
            queue = (StackMap if self.type == BpfMapType.STACK else QueueMap)(definition, self.memory)
            queue.move_storage(self._view, self.lock, copy=False)
            self.queue = queue
        elif self.layout == "perf":
            for cpu, offset, capacity in meta["buffers"]:
                buffer = PerfEventBuffer(cpu, capacity // 4096)
                buffer.move_storage(self._view[offset : offset + shared_buffer_size(capacity)], copy=False)
                self.perf_buffers.append(buffer)

    @property
    def percpu(self) -> bool:
        return self.type in _PERCPU_TYPES

    @property
    def owner_alive(self) -> bool:
        """Whether the process that pinned the map still runs."""
        return process_alive(self.owner_pid)

    def _split(self, value: bytes) -> bytes | tuple[bytes, ...]:
        if not self.percpu:
            return value
        stride, size = _round8(self.meta["value_size"]), self.meta["value_size"]
        return tuple(value[i * stride : i * stride + size] for i in range(self.ncpus))

    @property
    def _value_bytes(self) -> int:
        value_size = int(self.meta["value_size"])
        return _round8(value_size) * self.ncpus if self.percpu else value_size

    # -- consumers --------------------------------------------------------------------------------

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

    def poll_perf(
        self, timeout: float | None = 0.0, interval: float = 0.001
    ) -> tuple[list[tuple[int, bytes]], dict[int, int]]:
        """A pinned perf event array's samples as ``(cpu, data)`` (CPU by CPU, in order) and the
        samples lost per CPU since the last poll; waits as :meth:`poll` does."""
        if self.layout != "perf":
            raise NotSupportedError(f"pinned map {self.name!r} is a {self.type.name.lower()} map, not a perf array")
        samples: list[tuple[int, bytes]] = []
        lost: dict[int, int] = {}
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            for buffer in self.perf_buffers:
                data, dropped = buffer.drain()
                samples.extend((buffer.cpu, sample) for sample in data)
                if dropped:
                    lost[buffer.cpu] = lost.get(buffer.cpu, 0) + dropped
            if samples or lost or (deadline is not None and time.monotonic() >= deadline):
                return samples, lost
            time.sleep(interval)

    # -- reading ----------------------------------------------------------------------------------

    def entries(self) -> Iterator[tuple[bytes, bytes | tuple[bytes, ...]]]:
        """``(key, value)`` for every element; per-CPU values split into one bytes per CPU.

        A queue or stack yields its values (oldest first) under an empty key, without removing
        them; ring buffers and perf event arrays have no elements (use :meth:`poll`).
        """
        if self.map is not None:
            for key in list(self.map.raw_keys()):
                try:
                    yield key, self._split(bytes(self.map.lookup_raw(key)))
                except MapKeyNotFoundError:
                    continue
        elif self.queue is not None:
            with self.lock:
                values = self.queue._items
                snapshot = [values[index] for index in range(len(values))]
            yield from ((b"", value) for value in snapshot)
        elif self.layout == "hash":
            slots = self._hash_slots()
            for slot in slots.occupied():
                yield slots.key(slot), self._split(slots.value(slot))
        elif self.layout == "lpm":
            meta, view = self.meta, self._view
            keys, key_stride, key_size = meta["occupancy_size"], meta["key_stride"], meta["key_size"]
            values, value_stride = meta["values_offset"], meta["value_stride"]
            for slot in range(meta["max_entries"]):
                if view[slot]:
                    key = bytes(view[keys + slot * key_stride : keys + slot * key_stride + key_size])
                    start = values + slot * value_stride
                    yield key, bytes(view[start : start + meta["value_size"]])

    def _hash_slots(self) -> HashSlots:
        return HashSlots(self._view, self.meta, self._value_bytes)

    def lookup(self, key: bytes) -> bytes | tuple[bytes, ...]:
        """The value of ``key`` (exactly that key, also for an LPM trie); MapKeyNotFoundError when absent."""
        for found, value in self.entries():
            if found == key:
                return value
        raise MapKeyNotFoundError(f"pinned map {self.name!r}: no such key")

    def mmap(self) -> memoryview:
        """The values by direct memory access (BPF_F_MMAPABLE arrays), shared with every process."""
        if self.map is None:
            raise NotSupportedError(f"pinned map {self.name!r} is a {self.type.name.lower()} map, not an array")
        return self.map.mmap()

    # -- writing ----------------------------------------------------------------------------------

    def update(self, key: bytes, value: bytes, flags: int = 0) -> None:
        """BPF_MAP_UPDATE_ELEM from this process: arrays in place, hash maps and LPM tries through
        the owner (or, for a hash map whose owner exited, in the file under its lock), queues and
        stacks push (the key is ignored). Per-CPU values are all CPUs' copies, padded to 8."""
        if self.map is not None:
            self.map.update_raw(key, value, flags)
        elif self.queue is not None:
            self.queue.update_raw(b"", value, flags)
        elif self.layout in ("hash", "lpm"):
            self._check_element(key, value)
            self._to_owner({"op": "update", "key": key.hex(), "value": value.hex(), "flags": flags}, key, value)
        else:
            raise NotSupportedError(f"pinned {self.type.name.lower()} map {self.name!r} has no elements to update")

    def delete(self, key: bytes) -> None:
        """BPF_MAP_DELETE_ELEM from this process (hash maps and LPM tries; arrays refuse, as in the kernel)."""
        if self.map is not None:
            self.map.delete_raw(key)
        elif self.layout in ("hash", "lpm"):
            self._check_element(key, None)
            self._to_owner({"op": "delete", "key": key.hex()}, key, None)
        else:
            raise NotSupportedError(f"pinned {self.type.name.lower()} map {self.name!r} has no elements to delete")

    def _check_element(self, key: bytes, value: bytes | None) -> None:
        if len(key) != self.meta["key_size"]:
            raise MapInvalidArgumentError(
                f"pinned map {self.name!r}: key is {len(key)} bytes, not {self.meta['key_size']}"
            )
        if value is not None and len(value) != self._value_bytes:
            raise MapInvalidArgumentError(
                f"pinned map {self.name!r}: value is {len(value)} bytes, the map's values are {self._value_bytes}"
            )

    def _to_owner(self, message: dict[str, Any], key: bytes, value: bytes | None) -> None:
        try:
            request(self._owner, message)
            return
        except OwnerGoneError:
            if self.layout != "hash" or self.owner_alive:
                raise
        # The owner exited: nobody indexes the elements any more, the file is the map.
        with self.lock:
            if value is None:
                delete_ownerless(self._hash_slots(), key)
            else:
                update_ownerless(self._hash_slots(), key, value, int(message["flags"]))

    def push(self, value: bytes, flags: int = 0) -> None:
        """Push onto a pinned queue or stack (BPF_EXIST overwrites the oldest value when full)."""
        self._queue().push(value, flags)

    def pop(self) -> bytes:
        """Pop the oldest (queue) or newest (stack) value; MapKeyNotFoundError when empty."""
        return self._queue().pop()

    def peek(self) -> bytes:
        return self._queue().peek()

    def _queue(self) -> QueueMap:
        if self.queue is None:
            raise NotSupportedError(f"pinned map {self.name!r} is a {self.type.name.lower()} map, not a queue or stack")
        return self.queue

    def close(self) -> None:
        for owned in (self.map, self.ring):
            if owned is not None:
                owned.close()
        for buffer in self.perf_buffers:
            buffer.release()
        self._view.release()
        self._storage.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_pinned_map(path: str | os.PathLike[str], root: str | os.PathLike[str] | None = None) -> PinnedMap:
    """Open the map pinned at ``path`` (relative to the pin root unless absolute)."""
    return PinnedMap(path, root)


__all__ = ["PINNABLE_MAP_TYPES", "RINGBUF_POSITIONS_PAGE", "PinnedMap", "open_pinned_map", "pin_map"]
