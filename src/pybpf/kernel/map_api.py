"""``KernelMap``: a map in the kernel with the user-space runtime's map API.

The methods and their meaning are those of :class:`pybpf.runtime.maps.base.Map` (``m[key]``,
``items()``, ``lookup``/``update``/``delete``, ``*_raw`` on bytes, batches, per-CPU values as one
entry per possible CPU), so code written against one backend runs on the other. Refusals raise
the same :class:`~pybpf.errors.MapErrnoError` subclasses, chained from the bpf(2) error.

Typed keys and values need a codec between Python values and BTF-typed bytes; the runtime owns
that codec, and this layer sits below it, so it is passed in (:class:`ValueCodec`). Without one,
keys and values are bytes, or little-endian ints of the key/value size.
"""

from __future__ import annotations

import errno as errno_codes
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pybpf.btf import Btf
from pybpf.errors import (
    BpfCommandError,
    MapBusyError,
    MapErrnoError,
    MapFullError,
    MapInvalidArgumentError,
    MapKeyExistsError,
    MapKeyNotFoundError,
    MapOperationNotSupportedError,
    MapPermissionError,
)
from pybpf.kernel.arena import KernelArena
from pybpf.kernel.fd import Fd
from pybpf.kernel.maps import (
    map_delete,
    map_freeze,
    map_get_next_key,
    map_lookup,
    map_lookup_and_delete,
    map_lookup_batch,
    map_update,
    map_update_batch,
)
from pybpf.kernel.objects import MapInfo, map_info
from pybpf.kernel.pin import pin
from pybpf.kernel.ringbuf import RingBufferCallback, RingBufferReader, UserRingBufferWriter
from pybpf.kernel.syscall import ENOTSUPP, RawSyscall, errno_name
from pybpf.kernel.uapi import BpfMapType
from pybpf.platform.map_api import UserMapApi

PERCPU_TYPES = frozenset(
    {
        BpfMapType.PERCPU_ARRAY,
        BpfMapType.PERCPU_HASH,
        BpfMapType.LRU_PERCPU_HASH,
        BpfMapType.PERCPU_CGROUP_STORAGE,
    }
)
"""Map types whose user-space values hold one copy per possible CPU."""

_NO_ENTRIES = frozenset(
    {
        BpfMapType.QUEUE,
        BpfMapType.STACK,
        BpfMapType.BLOOM_FILTER,
        BpfMapType.RINGBUF,
        BpfMapType.PERF_EVENT_ARRAY,
    }
)

_ERRNO_MAP_ERRORS: dict[int, type[MapErrnoError]] = {
    errno_codes.ENOENT: MapKeyNotFoundError,
    errno_codes.EEXIST: MapKeyExistsError,
    errno_codes.E2BIG: MapFullError,
    errno_codes.ENOSPC: MapFullError,
    errno_codes.EINVAL: MapInvalidArgumentError,
    errno_codes.EPERM: MapPermissionError,
    errno_codes.EACCES: MapPermissionError,
    errno_codes.EBUSY: MapBusyError,
    errno_codes.EOPNOTSUPP: MapOperationNotSupportedError,
    ENOTSUPP: MapOperationNotSupportedError,
}


def round_up8(size: int) -> int:
    return (size + 7) & ~7


def possible_cpus(path: str | os.PathLike[str] = "/sys/devices/system/cpu/possible") -> int:
    """How many CPUs the kernel sizes per-CPU values for (``0-3,8-11`` style ranges)."""
    text = Path(path).read_text(encoding="ascii").strip()
    count = 0
    for part in text.split(","):
        low, _, high = part.partition("-")
        count += int(high or low) - int(low) + 1
    return count


@dataclass(frozen=True, slots=True)
class ValueCodec:
    """Python values <-> the bytes of a BTF type: ``encode(btf, type_id, value) -> bytes`` and
    ``decode(btf, type_id, data) -> value`` (the runtime's typed-values codec is the usual one)."""

    encode: Callable[[Btf, int, Any], bytes]
    decode: Callable[[Btf, int, bytes], Any]


@dataclass(frozen=True, slots=True)
class MapEntry:
    """One element as user space reads it: key bytes and value bytes (one per CPU for per-CPU maps)."""

    key: bytes
    value: bytes | tuple[bytes, ...]


def map_errno_error(error: BpfCommandError, label: str) -> MapErrnoError:
    """The runtime's map error for a failed bpf(2) map command."""
    cls = _ERRNO_MAP_ERRORS.get(error.errno, MapErrnoError)
    return cls(f"{label}: {error}", error.errno, errno_name(error.errno))


class KernelMap(UserMapApi):
    """A kernel map, owned through its :class:`Fd`, with the runtime's map API."""

    def __init__(
        self,
        fd: Fd,
        *,
        name: str,
        map_type: BpfMapType,
        key_size: int,
        value_size: int,
        max_entries: int,
        map_flags: int = 0,
        btf: Btf | None = None,
        btf_key_type_id: int = 0,
        btf_value_type_id: int = 0,
        ncpus: int | None = None,
        codec: ValueCodec | None = None,
        syscall: RawSyscall | None = None,
    ) -> None:
        self.fd = fd
        self.name = name
        self.type = map_type
        self.key_size = key_size
        self.value_size = value_size
        self.max_entries = max_entries
        self.map_flags = map_flags
        self.btf = btf
        self.btf_key_type_id = btf_key_type_id
        self.btf_value_type_id = btf_value_type_id
        self.PERCPU = map_type in PERCPU_TYPES
        # An arena's user-space mapping (the loader maps every arena it creates).
        self.arena: KernelArena | None = None
        self.ncpus = (possible_cpus() if ncpus is None else ncpus) if self.PERCPU else 1
        self.value_stride = round_up8(value_size)
        self.frozen = False
        self._codec = codec
        self._syscall = syscall
        self._ring: RingBufferReader | None = None
        self._writer: UserRingBufferWriter | None = None

    # -- identity ---------------------------------------------------------------------------------

    @property
    def is_percpu(self) -> bool:
        return self.PERCPU

    @property
    def label(self) -> str:
        return f"map {self.name!r}" if self.name else f"{self.type.name.lower()} map"

    @property
    def user_value_size(self) -> int:
        """Bytes of one value as bpf(2) exchanges it (all CPUs' copies for a per-CPU map)."""
        return self.value_stride * self.ncpus if self.PERCPU else self.value_size

    def fileno(self) -> int:
        return self.fd.fileno()

    def close(self) -> None:
        """Close this descriptor (the map lives on while programs, pins or other fds hold it)."""
        if self._ring is not None:
            self._ring.close()
            self._ring = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self.arena is not None:
            self.arena.close()
            self.arena = None
        self.fd.close()

    # -- ring buffer ------------------------------------------------------------------------------

    def ring_reader(self) -> RingBufferReader:
        """The mmap'ed reader of a ring buffer map (made on first use, closed with the map)."""
        if self.type is not BpfMapType.RINGBUF:
            raise MapOperationNotSupportedError(f"{self.label} is not a ring buffer", errno_codes.EOPNOTSUPP)
        if self._ring is None:
            self._ring = RingBufferReader(self.fd, self.max_entries)
        return self._ring

    def push(self, data: bytes) -> None:
        """User ring buffer: publish one sample for ``bpf_user_ringbuf_drain`` (the runtime's
        ``push``); MapErrnoError ENOSPC when the ring is full."""
        if self.type is not BpfMapType.USER_RINGBUF:
            raise MapOperationNotSupportedError(f"{self.label} is not a user ring buffer", errno_codes.EOPNOTSUPP)
        if self._writer is None:
            self._writer = UserRingBufferWriter(self.fd, self.max_entries)
        if not self._writer.push(data):
            raise MapErrnoError(f"{self.label}: no room for {len(data)} bytes", errno_codes.ENOSPC, "ENOSPC")

    def consume(self, callback: RingBufferCallback, limit: int | None = None) -> int:
        """Ring buffer: hand committed records to ``callback`` in order (the runtime's ``consume``)."""
        return self.ring_reader().consume(callback, limit)

    def wait(self, timeout: float | None = None) -> bool:
        """Ring buffer: block (epoll) until the kernel signals records, at most ``timeout`` seconds."""
        return self.ring_reader().wait(timeout)

    def info(self) -> MapInfo:
        """BPF_OBJ_GET_INFO_BY_FD: the kernel's view of the map (id, flags, BTF ids...)."""
        return map_info(self.fd, syscall=self._syscall)

    def pin(self, path: str | os.PathLike[str]) -> None:
        """BPF_OBJ_PIN at ``path`` (which must be on a bpffs)."""
        pin(self.fd, path, syscall=self._syscall)

    def _call(self, function: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return function(self.fd, *args, syscall=self._syscall, **kwargs)
        except BpfCommandError as error:
            raise map_errno_error(error, self.label) from error

    def _check_key(self, key: bytes) -> bytes:
        if len(key) != self.key_size:
            raise MapInvalidArgumentError(f"{self.label}: key is {len(key)} bytes, the map's keys are {self.key_size}")
        return key

    # -- user-space commands on bytes -------------------------------------------------------------

    def lookup_raw(self, key: bytes, flags: int = 0) -> bytes:
        """BPF_MAP_LOOKUP_ELEM."""
        data: bytes = self._call(map_lookup, self._check_key(bytes(key)), self.user_value_size, flags=flags)
        return data

    def update_raw(self, key: bytes, value: bytes, flags: int = 0) -> None:
        """BPF_MAP_UPDATE_ELEM."""
        value = bytes(value)
        if len(value) != self.user_value_size:
            raise MapInvalidArgumentError(
                f"{self.label}: value is {len(value)} bytes, the map's values are {self.user_value_size}"
            )
        self._call(map_update, self._check_key(bytes(key)), value, flags)

    def delete_raw(self, key: bytes) -> None:
        """BPF_MAP_DELETE_ELEM."""
        self._call(map_delete, self._check_key(bytes(key)))

    def get_next_key_raw(self, key: bytes | None = None) -> bytes | None:
        """BPF_MAP_GET_NEXT_KEY: the key after ``key`` (None: the first); None at the end."""
        current = None if key is None else self._check_key(bytes(key))
        found: bytes | None = self._call(map_get_next_key, current, self.key_size)
        return found

    def lookup_and_delete_raw(self, key: bytes = b"", flags: int = 0) -> bytes:
        """BPF_MAP_LOOKUP_AND_DELETE_ELEM (pop, for a queue or stack)."""
        data: bytes = self._call(
            map_lookup_and_delete, self._check_key(bytes(key)) or None, self.user_value_size, flags=flags
        )
        return data

    def freeze(self) -> None:
        """BPF_MAP_FREEZE: user space may no longer write the map; programs still may."""
        self._call(map_freeze)
        self.frozen = True

    # -- codecs -----------------------------------------------------------------------------------

    def encode_key(self, key: Any) -> bytes:
        """Bytes for ``key``: bytes as they are, else BTF-typed or (without BTF) a little-endian int."""
        if isinstance(key, bytes | bytearray | memoryview):
            return bytes(key)
        if self._codec is not None and self.btf is not None and self.btf_key_type_id:
            return self._codec.encode(self.btf, self.btf_key_type_id, key)
        return self._encode_int(key, self.key_size, "key")

    def decode_key(self, data: bytes) -> Any:
        if self._codec is not None and self.btf is not None and self.btf_key_type_id:
            return self._codec.decode(self.btf, self.btf_key_type_id, data)
        return data

    def _encode_one_value(self, value: Any) -> bytes:
        if isinstance(value, bytes | bytearray | memoryview):
            return bytes(value)
        if self._codec is not None and self.btf is not None and self.btf_value_type_id:
            return self._codec.encode(self.btf, self.btf_value_type_id, value)
        return self._encode_int(value, self.value_size, "value")

    def _decode_one_value(self, data: bytes) -> Any:
        if self._codec is not None and self.btf is not None and self.btf_value_type_id:
            return self._codec.decode(self.btf, self.btf_value_type_id, data)
        return data

    # The Python-value API (m[key], in, iteration, items...) comes from UserMapApi.

    def entries(self) -> Iterator[MapEntry]:
        """Every element as bytes (per-CPU values split per CPU), as ``Object.map_entries`` gives them.

        Maps without keys (queue, stack, bloom filter, ring buffer) and perf event arrays (no
        user-space lookup) give nothing, as in the runtime: reading them would consume them.
        """
        if self.type in _NO_ENTRIES:
            return
        for key in list(self.raw_keys()):
            try:
                value = self.lookup_raw(key)
            except MapKeyNotFoundError:
                continue
            yield MapEntry(key, self.split_percpu(value) if self.PERCPU else value)

    # -- batches ----------------------------------------------------------------------------------

    def lookup_batch(self, start: Any = None, count: int | None = None) -> tuple[list[tuple[Any, Any]], Any]:
        """BPF_MAP_LOOKUP_BATCH: up to ``count`` items after the token ``start`` (None: from the
        beginning), and the token to continue from (None when the walk is over).

        The whole map in one walk goes through the kernel's batch command; a bounded or resumed
        walk uses the keys themselves as tokens, as the runtime does.
        """
        if start is None and count is None:
            pairs = self._call(map_lookup_batch, self.key_size, self.user_value_size)
            return [(self.decode_key(key), self.decode_value(value)) for key, value in pairs], None
        key = None if start is None else self.encode_key(start)
        items: list[tuple[Any, Any]] = []
        while count is None or len(items) < count:
            key = self.get_next_key_raw(key)
            if key is None:
                return items, None
            items.append((self.decode_key(key), self.decode_value(self.lookup_raw(key))))
        more = key is not None and self.get_next_key_raw(key) is not None
        return items, self.decode_key(key) if more and key is not None else None

    def lookup_and_delete_batch(self, count: int | None = None) -> list[tuple[Any, Any]]:
        """BPF_MAP_LOOKUP_AND_DELETE_BATCH: remove and return up to ``count`` items."""
        if count is None:
            pairs = self._call(map_lookup_batch, self.key_size, self.user_value_size, delete=True)
            return [(self.decode_key(key), self.decode_value(value)) for key, value in pairs]
        items: list[tuple[Any, Any]] = []
        while len(items) < count:
            key = self.get_next_key_raw(None)
            if key is None:
                break
            items.append((self.decode_key(key), self.decode_value(self.lookup_and_delete_raw(key))))
        return items

    def update_batch(self, items: Iterable[tuple[Any, Any]], flags: int = 0) -> int:
        """BPF_MAP_UPDATE_BATCH: store every item; returns how many were stored."""
        encoded = [(self.encode_key(key), self.encode_value(value)) for key, value in items]
        done: int = self._call(map_update_batch, encoded, self.key_size, self.user_value_size, elem_flags=flags)
        return done

    def delete_batch(self, keys: Iterable[Any]) -> int:
        """Delete each key in turn; the first failure stops the batch and is raised."""
        done = 0
        for key in keys:
            try:
                self.delete(key)
            except MapErrnoError as error:
                error.add_note(f"the batch stopped after {done} element(s)")
                raise
            done += 1
        return done

    def __repr__(self) -> str:
        return (
            f"<KernelMap {self.name!r} {self.type.name} key_size={self.key_size} value_size={self.value_size}"
            f" max_entries={self.max_entries} fd={self.fd!r}>"
        )
