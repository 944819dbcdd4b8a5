"""Arrays whose slots hold objects rather than bytes: BPF_MAP_TYPE_PROG_ARRAY, the base of the
perf event array and of the array of maps (the kernel's ``fd_array`` family in arraymap.c).

In the kernel user space stores a file descriptor and reads back an id; here user space stores
the object itself (a program, a map, a perf buffer) and reads the object back. The errno rules
are the kernel's: updates take only BPF_ANY (EINVAL), an index past the end is E2BIG for update
and delete, an empty slot is ENOENT for lookup and delete, and the keys are the array's.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

from pybpf.errors import MapFullError, MapInvalidArgumentError, MapKeyNotFoundError
from pybpf.platform.uapi_generated import BpfMapFlag, BpfMapType
from pybpf.runtime.maps.array import ARRAY_CREATE_FLAGS
from pybpf.runtime.maps.base import Map
from pybpf.runtime.maps.definition import MapDef, check_flags, invalid
from pybpf.vm.memory import AddressSpace


class FdArrayMap(Map):
    """``max_entries`` slots, each empty or holding one object."""

    def __init__(self, definition: MapDef, address_space: AddressSpace, ncpus: int = 1) -> None:
        super().__init__(definition, address_space, ncpus)
        self._objects: list[object | None] = [None] * self.max_entries

    def validate(self) -> None:
        definition = self.definition
        if definition.max_entries == 0 or definition.key_size != 4 or definition.value_size != 4:
            raise invalid(definition, "needs key_size 4, value_size 4 and max_entries")
        check_flags(definition, ARRAY_CREATE_FLAGS & ~BpfMapFlag.MMAPABLE)
        if definition.map_flags & BpfMapFlag.PRESERVE_ELEMS and definition.type != BpfMapType.PERF_EVENT_ARRAY:
            raise invalid(definition, "BPF_F_PRESERVE_ELEMS is only for perf event arrays")

    def check_object(self, value: object) -> None:
        """Raise EINVAL for an object this map cannot hold (the kernel's map_fd_get_ptr)."""

    def _slot(self, key: Any) -> int:
        return int.from_bytes(self.encode_key(key), "little")

    # -- program side -----------------------------------------------------------------------------

    def object_at(self, index: int) -> object | None:
        """The object in slot ``index`` (None when empty or out of range): tail calls, redirects."""
        if 0 <= index < self.max_entries:
            return self._objects[index]
        return None

    # -- user space on objects --------------------------------------------------------------------

    def update(self, key: Any, value: Any, flags: int = 0) -> None:
        self._check_write()
        if flags != 0:
            raise MapInvalidArgumentError(f"{self.label}: slots take only BPF_ANY")
        index = self._slot(key)
        if index >= self.max_entries:
            raise MapFullError(f"{self.label}: index {index} is out of range (max_entries {self.max_entries})")
        self.check_object(value)
        self._objects[index] = value

    def lookup(self, key: Any = b"", flags: int = 0) -> Any:
        self._check_read()
        index = self._slot(key)
        found = self._objects[index] if index < self.max_entries else None
        if found is None:
            raise MapKeyNotFoundError(f"{self.label}: slot {index} is empty")
        return found

    def delete(self, key: Any) -> None:
        self._check_write()
        self._delete(self.encode_key(key))

    def _delete(self, key: bytes) -> None:
        index = int.from_bytes(key, "little")
        if index >= self.max_entries:
            raise MapFullError(f"{self.label}: index {index} is out of range (max_entries {self.max_entries})")
        if self._objects[index] is None:
            raise MapKeyNotFoundError(f"{self.label}: slot {index} is empty")
        self._objects[index] = None

    def update_raw(self, key: bytes, value: bytes, flags: int = 0) -> None:
        raise MapInvalidArgumentError(f"{self.label}: slots hold objects; use update(index, object)")

    def _lookup_user(self, key: bytes, flags: int) -> bytes:
        raise MapInvalidArgumentError(f"{self.label}: slots hold objects; use lookup(index)")

    def __contains__(self, key: object) -> bool:
        index = self._slot(key)
        return index < self.max_entries and self._objects[index] is not None

    def _next_key(self, key: bytes | None) -> bytes | None:
        index = 0 if key is None else int.from_bytes(key, "little")
        if key is None or index >= self.max_entries:
            return b"\0\0\0\0"
        if index == self.max_entries - 1:
            return None
        return (index + 1).to_bytes(4, "little")

    def items(self) -> Iterator[tuple[Any, Any]]:
        """The occupied slots, as ``(index, object)``."""
        return ((index, found) for index, found in enumerate(self._objects) if found is not None)

    def __len__(self) -> int:
        return self.max_entries


class ProgArrayMap(FdArrayMap):
    """Tail-call targets: slot ``index`` holds a program object (bpf_tail_call jumps to it)."""

    MAP_TYPES: ClassVar[tuple[BpfMapType, ...]] = (BpfMapType.PROG_ARRAY,)

    def check_object(self, value: object) -> None:
        if value is None or isinstance(value, Map):
            raise MapInvalidArgumentError(f"{self.label}: slots hold programs, not {value!r}")

    def program_at(self, index: int) -> object | None:
        """The tail-call target in slot ``index``, or None (the tail call then falls through)."""
        return self.object_at(index)
