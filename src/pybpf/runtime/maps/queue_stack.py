"""BPF_MAP_TYPE_QUEUE and BPF_MAP_TYPE_STACK (the kernel's queue_stack_maps.c).

Keyless maps of at most ``max_entries`` values: push adds one, pop removes the oldest (queue)
or the newest (stack), peek reads it. Values are copied in and out (a program never holds a
pointer into them), so they live in a deque rather than in program-visible memory.

User space reaches them through bpf(2) as the kernel routes it: lookup is peek, update is
push (BPF_EXIST overwrites the oldest value of a full map), lookup_and_delete is pop; delete
and get_next_key fail with EINVAL.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from typing import Any, ClassVar

from pybpf.errors import MapFullError, MapInvalidArgumentError, MapKeyNotFoundError
from pybpf.platform.uapi_generated import BpfMapFlag, BpfMapType
from pybpf.runtime.maps.base import EXIST, NOEXIST, Map
from pybpf.runtime.maps.definition import ACCESS_MASK, MapDef, check_flags, invalid
from pybpf.vm.memory import AddressSpace

QUEUE_STACK_CREATE_FLAGS = BpfMapFlag.NUMA_NODE | ACCESS_MASK


class QueueMap(Map):
    """First in, first out."""

    MAP_TYPES: ClassVar[tuple[BpfMapType, ...]] = (BpfMapType.QUEUE,)
    HAS_KEYS = False
    LIFO: ClassVar[bool] = False

    def __init__(self, definition: MapDef, address_space: AddressSpace, ncpus: int = 1) -> None:
        super().__init__(definition, address_space, ncpus)
        self._items: deque[bytes] = deque()

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
        if len(self._items) >= self.max_entries:
            if not flags & EXIST:
                raise MapFullError(f"{self.label} is full ({self.max_entries} values)")
            self._items.popleft()
        self._items.append(bytes(value[: self.value_size]).ljust(self.value_size, b"\0"))

    def _head(self) -> bytes:
        if not self._items:
            raise MapKeyNotFoundError(f"{self.label} is empty")
        return self._items[-1] if self.LIFO else self._items[0]

    def peek(self) -> bytes:
        return self._head()

    def pop(self) -> bytes:
        value = self._head()
        if self.LIFO:
            self._items.pop()
        else:
            self._items.popleft()
        return value

    # -- program side -----------------------------------------------------------------------------

    def prog_push(self, value: bytes, flags: int = 0) -> int:
        try:
            self.push(value, flags)
        except (MapFullError, MapInvalidArgumentError) as error:
            return -error.errno
        return 0

    def prog_pop(self, out: memoryview) -> int:
        if not self._items:
            return -MapKeyNotFoundError.ERRNO
        out[: self.value_size] = self.pop()
        return 0

    def prog_peek(self, out: memoryview) -> int:
        if not self._items:
            return -MapKeyNotFoundError.ERRNO
        out[: self.value_size] = self._head()
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
        return len(self._items)

    def __iter__(self) -> Iterator[Any]:
        raise MapInvalidArgumentError(f"{self.label} has no keys to iterate (use pop or peek)")


class StackMap(QueueMap):
    """Last in, first out."""

    MAP_TYPES: ClassVar[tuple[BpfMapType, ...]] = (BpfMapType.STACK,)
    LIFO = True
