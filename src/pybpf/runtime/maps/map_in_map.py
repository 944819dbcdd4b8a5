"""BPF_MAP_TYPE_ARRAY_OF_MAPS and BPF_MAP_TYPE_HASH_OF_MAPS (the kernel's map_in_map.c).

The definition's ``inner`` is the template every inner map must match (the kernel's
``inner_map_fd``): same type, key size, value size and flags, and the same max_entries unless
the template has BPF_F_INNER_MAP. A program's lookup yields the inner map's identity address
(:attr:`Map.address`), which the runtime turns back into the map; :meth:`lookup_inner` gives the
map directly.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

from pybpf.errors import (
    MapFullError,
    MapInvalidArgumentError,
    MapKeyExistsError,
    MapKeyNotFoundError,
)
from pybpf.platform.uapi_generated import BpfMapFlag, BpfMapType
from pybpf.runtime.maps.base import EXIST, F_LOCK, NOEXIST, Map
from pybpf.runtime.maps.definition import MapDef, check_flags, invalid
from pybpf.runtime.maps.fd_array import FdArrayMap
from pybpf.runtime.maps.hash import HTAB_CREATE_FLAGS
from pybpf.vm.memory import AddressSpace

MAP_IN_MAP_TYPES = (BpfMapType.ARRAY_OF_MAPS, BpfMapType.HASH_OF_MAPS)
# Map types the kernel cannot nest (no map_meta_equal, or special lifetimes).
NOT_NESTABLE = (
    *MAP_IN_MAP_TYPES,
    BpfMapType.PROG_ARRAY,
    BpfMapType.CGROUP_STORAGE,
    BpfMapType.PERCPU_CGROUP_STORAGE,
    BpfMapType.STRUCT_OPS,
)


def check_template(definition: MapDef) -> MapDef:
    inner = definition.inner
    if inner is None:
        raise invalid(definition, "a map-in-map needs an inner map template")
    if inner.type in NOT_NESTABLE:
        raise invalid(definition, f"a {inner.type.name} map cannot be an inner map")
    return inner


def check_inner(outer: Map, template: MapDef, value: object) -> Map:
    """The kernel's bpf_map_meta_equal: EINVAL unless ``value`` is a map matching the template."""
    if not isinstance(value, Map):
        raise MapInvalidArgumentError(f"{outer.label}: slots hold maps, not {value!r}")
    ignore = BpfMapFlag.INNER_MAP
    same = (
        value.type == template.type
        and value.key_size == template.key_size
        and value.value_size == template.value_size
        and (value.map_flags & ~int(ignore)) == (template.map_flags & ~int(ignore))
        and (template.map_flags & BpfMapFlag.INNER_MAP or value.max_entries == template.max_entries)
    )
    if not same:
        raise MapInvalidArgumentError(f"{outer.label}: {value!r} does not match the inner map template")
    return value


class ArrayOfMapsMap(FdArrayMap):
    MAP_TYPES: ClassVar[tuple[BpfMapType, ...]] = (BpfMapType.ARRAY_OF_MAPS,)

    def validate(self) -> None:
        self.template = check_template(self.definition)
        super().validate()

    def check_object(self, value: object) -> None:
        check_inner(self, self.template, value)

    def lookup_inner(self, key: bytes) -> Map | None:
        found = self.object_at(int.from_bytes(key, "little"))
        return found if isinstance(found, Map) else None

    def lookup_address(self, key: bytes, cpu: int = 0) -> int:
        inner = self.lookup_inner(key)
        return 0 if inner is None else inner.address


class HashOfMapsMap(Map):
    """A hash from keys to inner maps (insertion order for iteration, as our hash maps)."""

    MAP_TYPES: ClassVar[tuple[BpfMapType, ...]] = (BpfMapType.HASH_OF_MAPS,)

    def __init__(self, definition: MapDef, address_space: AddressSpace, ncpus: int = 1) -> None:
        super().__init__(definition, address_space, ncpus)
        self._maps: dict[bytes, Map] = {}

    def validate(self) -> None:
        definition = self.definition
        self.template = check_template(definition)
        check_flags(definition, HTAB_CREATE_FLAGS & ~BpfMapFlag.NO_COMMON_LRU)
        if definition.max_entries == 0 or definition.key_size == 0 or definition.value_size != 4:
            raise invalid(definition, "needs a key_size, value_size 4 and max_entries")

    def lookup_inner(self, key: bytes) -> Map | None:
        return self._maps.get(key)

    def lookup_address(self, key: bytes, cpu: int = 0) -> int:
        inner = self._maps.get(key)
        return 0 if inner is None else inner.address

    def update(self, key: Any, value: Any, flags: int = 0) -> None:
        self._check_write()
        self._check_lock(flags)
        raw_key = self._check_key(self.encode_key(key))
        inner = check_inner(self, self.template, value)
        if (flags & ~F_LOCK) > EXIST:
            raise MapInvalidArgumentError(f"{self.label}: update flags {flags:#x} are invalid")
        present = raw_key in self._maps
        if present and flags & NOEXIST:
            raise MapKeyExistsError(f"{self.label}: the key exists (BPF_NOEXIST)")
        if not present and flags & EXIST:
            raise MapKeyNotFoundError(f"{self.label}: no such key (BPF_EXIST)")
        if not present and len(self._maps) >= self.max_entries:
            raise MapFullError(f"{self.label} is full ({self.max_entries} elements)")
        self._maps[raw_key] = inner

    def lookup(self, key: Any = b"", flags: int = 0) -> Any:
        self._check_read()
        found = self._maps.get(self.encode_key(key))
        if found is None:
            raise MapKeyNotFoundError(f"{self.label}: no such key")
        return found

    def _delete(self, key: bytes) -> None:
        if self._maps.pop(key, None) is None:
            raise MapKeyNotFoundError(f"{self.label}: no such key")

    def update_raw(self, key: bytes, value: bytes, flags: int = 0) -> None:
        raise MapInvalidArgumentError(f"{self.label}: values are maps; use update(key, inner_map)")

    def _lookup_user(self, key: bytes, flags: int) -> bytes:
        raise MapInvalidArgumentError(f"{self.label}: values are maps; use lookup(key)")

    def __contains__(self, key: object) -> bool:
        return self.encode_key(key) in self._maps

    def _next_key(self, key: bytes | None) -> bytes | None:
        keys = list(self._maps)
        if not keys:
            return None
        if key is None or key not in self._maps:
            return keys[0]
        position = keys.index(key) + 1
        return keys[position] if position < len(keys) else None

    def items(self) -> Iterator[tuple[Any, Any]]:
        return ((self.decode_key(key), inner) for key, inner in list(self._maps.items()))

    def __len__(self) -> int:
        return len(self._maps)
