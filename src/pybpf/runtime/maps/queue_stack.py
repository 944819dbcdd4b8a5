"""BPF_MAP_TYPE_QUEUE and BPF_MAP_TYPE_STACK (the kernel's queue_stack_maps.c).

Keyless maps of at most ``max_entries`` values: push adds one, pop removes the oldest (queue)
or the newest (stack), peek reads it. Values are copied in and out (a program never holds a
pointer into them), so they live in a deque rather than in program-visible memory.

User space reaches them through bpf(2) as the kernel routes it: lookup is peek, update is
push (BPF_EXIST overwrites the oldest value of a full map), lookup_and_delete is pop; delete
and get_next_key fail with EINVAL.

A queue or stack can move into shared memory (:meth:`QueueMap.move_storage`, used by pinning):
then its values live in a circular array of ``max_entries`` slots after a ``u64 head`` (slot of
the oldest value) and ``u64 count``, and every operation runs under a lock the caller provides
(a lock that excludes other processes, e.g. ``flock`` on the shared file), so any process with
the memory may push and pop. The kernel holds the map's raw spinlock in each operation the same
way (``queue_stack_maps.c``).
"""

from __future__ import annotations

import contextlib
import struct
from collections import deque
from collections.abc import Iterator
from typing import Any, ClassVar, Protocol

from pybpf.errors import MapFullError, MapInvalidArgumentError, MapKeyNotFoundError
from pybpf.platform.uapi_generated import BpfMapFlag, BpfMapType
from pybpf.runtime.maps.base import EXIST, NOEXIST, Map
from pybpf.runtime.maps.definition import ACCESS_MASK, MapDef, check_flags, invalid
from pybpf.vm.memory import AddressSpace

QUEUE_STACK_CREATE_FLAGS = BpfMapFlag.NUMA_NODE | ACCESS_MASK
SHARED_HEADER = struct.Struct("<QQ")  # head (slot of the oldest value), count
"""The header of a queue or stack in shared memory, before its slots."""


class Guard(Protocol):
    """A lock held around each operation (a context manager)."""

    def __enter__(self) -> object: ...

    def __exit__(self, *exc: object) -> None: ...


class _Values(Protocol):
    """Where a queue or stack keeps its values: a local deque or a shared circular array."""

    def __len__(self) -> int: ...

    def append(self, value: bytes) -> None: ...

    def popleft(self) -> bytes: ...

    def pop(self) -> bytes: ...

    def __getitem__(self, index: int) -> bytes: ...


class SharedValues:
    """Values in a circular array of ``capacity`` slots after :data:`SHARED_HEADER`, in a
    caller's buffer (only read or written under the map's guard)."""

    def __init__(self, buffer: memoryview, capacity: int, value_size: int) -> None:
        self.stride = (value_size + 7) // 8 * 8
        if len(buffer) < shared_size(capacity, value_size):
            raise MapInvalidArgumentError(f"shared queue storage of {len(buffer)} bytes is too small")
        self.buffer = buffer
        self.capacity = capacity
        self.value_size = value_size

    def _state(self) -> tuple[int, int]:
        head, count = SHARED_HEADER.unpack_from(self.buffer, 0)
        if head >= self.capacity or count > self.capacity:
            raise MapInvalidArgumentError(f"shared queue storage is corrupt (head {head}, count {count})")
        return head, count

    def _slot(self, index: int) -> int:
        return SHARED_HEADER.size + (index % self.capacity) * self.stride

    def __len__(self) -> int:
        return self._state()[1]

    def append(self, value: bytes) -> None:
        head, count = self._state()
        start = self._slot(head + count)
        self.buffer[start : start + self.value_size] = value
        SHARED_HEADER.pack_into(self.buffer, 0, head, count + 1)

    def popleft(self) -> bytes:
        head, count = self._state()
        value = self[0]
        SHARED_HEADER.pack_into(self.buffer, 0, (head + 1) % self.capacity, count - 1)
        return value

    def pop(self) -> bytes:
        head, count = self._state()
        value = self[-1]
        SHARED_HEADER.pack_into(self.buffer, 0, head, count - 1)
        return value

    def __getitem__(self, index: int) -> bytes:
        head, count = self._state()
        if not -count <= index < count:
            raise IndexError(index)
        start = self._slot(head + index % count)
        return bytes(self.buffer[start : start + self.value_size])

    def values(self) -> list[bytes]:
        """Every value, oldest first."""
        return [self[index] for index in range(len(self))]


def shared_size(capacity: int, value_size: int) -> int:
    """Bytes of shared storage a queue or stack of ``capacity`` values needs."""
    return SHARED_HEADER.size + capacity * ((value_size + 7) // 8 * 8)


class QueueMap(Map):
    """First in, first out."""

    MAP_TYPES: ClassVar[tuple[BpfMapType, ...]] = (BpfMapType.QUEUE,)
    HAS_KEYS = False
    LIFO: ClassVar[bool] = False

    def __init__(self, definition: MapDef, address_space: AddressSpace, ncpus: int = 1) -> None:
        super().__init__(definition, address_space, ncpus)
        self._items: _Values = deque()
        self._guard: Guard = contextlib.nullcontext()

    def move_storage(self, buffer: memoryview, guard: Guard, *, copy: bool = True) -> SharedValues:
        """Keep the values in ``buffer`` (:func:`shared_size` bytes) from now on, every operation
        under ``guard``: memory shared with other processes. With ``copy`` the current values move
        there; without it the buffer's values are adopted (another process's pinned queue)."""
        shared = SharedValues(buffer, self.max_entries, self.value_size)
        with guard:
            if copy:
                values = [self._items[index] for index in range(len(self._items))]
                SHARED_HEADER.pack_into(buffer, 0, 0, 0)
                for value in values:
                    shared.append(value)
            else:
                len(shared)  # checks the header
        self._items = shared
        self._guard = guard
        return shared

    def validate(self) -> None:
        definition = self.definition
        if definition.max_entries == 0 or definition.key_size != 0 or definition.value_size == 0:
            raise invalid(definition, "needs key_size 0, a value_size and max_entries")
        check_flags(definition, QUEUE_STACK_CREATE_FLAGS)

    # -- the three operations ---------------------------------------------------------------------

    def push(self, value: bytes, flags: int = 0) -> None:
        """Add ``value``; raises E2BIG when full unless ``flags`` is BPF_EXIST (then the oldest goes)."""
        if flags & NOEXIST or flags > EXIST:
            raise MapInvalidArgumentError(f"{self.label}: push flags {flags:#x} are invalid")
        value = bytes(value[: self.value_size]).ljust(self.value_size, b"\0")
        with self._guard:
            if len(self._items) >= self.max_entries:
                if not flags & EXIST:
                    raise MapFullError(f"{self.label} is full ({self.max_entries} values)")
                self._items.popleft()
            self._items.append(value)

    def _head(self) -> bytes:
        if not len(self._items):
            raise MapKeyNotFoundError(f"{self.label} is empty")
        return self._items[-1] if self.LIFO else self._items[0]

    def peek(self) -> bytes:
        with self._guard:
            return self._head()

    def pop(self) -> bytes:
        with self._guard:
            self._head()
            return self._items.pop() if self.LIFO else self._items.popleft()

    # -- program side -----------------------------------------------------------------------------

    def prog_push(self, value: bytes, flags: int = 0) -> int:
        try:
            self.push(value, flags)
        except (MapFullError, MapInvalidArgumentError) as error:
            return -error.errno
        return 0

    def prog_pop(self, out: memoryview) -> int:
        try:
            out[: self.value_size] = self.pop()
        except MapKeyNotFoundError:
            return -MapKeyNotFoundError.ERRNO
        return 0

    def prog_peek(self, out: memoryview) -> int:
        try:
            out[: self.value_size] = self.peek()
        except MapKeyNotFoundError:
            return -MapKeyNotFoundError.ERRNO
        return 0

    # -- bpf(2) routing ---------------------------------------------------------------------------

    def _lookup_user(self, key: bytes, flags: int) -> bytes:
        return self.peek()

    def _update(self, key: bytes, value: bytes, flags: int, cpu: int | None) -> None:
        self.push(value, flags)

    def _lookup_and_delete(self, key: bytes, flags: int) -> bytes:
        if flags:
            raise MapInvalidArgumentError(f"{self.label}: pop takes no flags")
        return self.pop()

    def _delete(self, key: bytes) -> None:
        raise MapInvalidArgumentError(f"{self.label}: values cannot be deleted by key")

    def _next_key(self, key: bytes | None) -> bytes | None:
        raise MapInvalidArgumentError(f"{self.label} has no keys")

    def __len__(self) -> int:
        with self._guard:
            return len(self._items)

    def __iter__(self) -> Iterator[Any]:
        raise MapInvalidArgumentError(f"{self.label} has no keys to iterate (use pop or peek)")


class StackMap(QueueMap):
    """Last in, first out."""

    MAP_TYPES: ClassVar[tuple[BpfMapType, ...]] = (BpfMapType.STACK,)
    LIFO = True
