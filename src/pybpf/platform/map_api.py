"""The user-space face of a map on Python values, shared by both backends.

``UserMapApi`` turns the raw, bytes-level map commands (what BPF_MAP_*_ELEM do) into the
Python-value API (``m[key]``, ``in``, iteration, ``items()``...). The user-space runtime's maps and
the kernel backend's maps both inherit it, so the two backends behave the same by construction;
each supplies the raw commands and the key/value codecs.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pybpf.errors import MapInvalidArgumentError, MapKeyNotFoundError


class UserMapApi:
    """Python-value map operations over the raw commands a subclass implements."""

    # What both backends' maps define: sizes, per-CPU layout (each CPU's value padded to 8 bytes).
    ncpus: int
    value_size: int
    value_stride: int

    @property
    def label(self) -> str:
        raise NotImplementedError

    @property
    def is_percpu(self) -> bool:
        """Whether values are per CPU (the runtime's map classes say so per class, kernel maps per map)."""
        raise NotImplementedError

    # -- what a backend supplies -------------------------------------------------------------------

    def lookup_raw(self, key: bytes, flags: int = 0) -> bytes:
        raise NotImplementedError

    def update_raw(self, key: bytes, value: bytes, flags: int = 0) -> None:
        raise NotImplementedError

    def delete_raw(self, key: bytes) -> None:
        raise NotImplementedError

    def get_next_key_raw(self, key: bytes | None = None) -> bytes | None:
        raise NotImplementedError

    def lookup_and_delete_raw(self, key: bytes = b"", flags: int = 0) -> bytes:
        raise NotImplementedError

    def encode_key(self, key: Any) -> bytes:
        raise NotImplementedError

    def decode_key(self, data: bytes) -> Any:
        raise NotImplementedError

    def _encode_one_value(self, value: Any) -> bytes:
        raise NotImplementedError

    def _decode_one_value(self, data: bytes) -> Any:
        raise NotImplementedError

    # -- value codecs shared by both backends -----------------------------------------------------

    def _encode_int(self, value: Any, size: int, what: str) -> bytes:
        in_range = isinstance(value, int) and -(1 << (size * 8 - 1)) <= value < (1 << (size * 8))
        if in_range and not isinstance(value, bool) and size in (1, 2, 4, 8):
            return (int(value) & ((1 << (size * 8)) - 1)).to_bytes(size, "little")
        raise MapInvalidArgumentError(f"{self.label}: cannot use {value!r} as a {size}-byte {what}")

    def encode_value(self, value: Any) -> bytes:
        """Bytes for ``value`` as bpf(2) takes it; a per-CPU map takes bytes or a list of ``ncpus`` values."""
        if not self.is_percpu or isinstance(value, bytes | bytearray | memoryview):
            return self._encode_one_value(value)
        if not isinstance(value, list | tuple) or len(value) != self.ncpus:
            raise MapInvalidArgumentError(f"{self.label}: a per-CPU value is a list of {self.ncpus} values")
        parts = []
        for item in value:
            encoded = self._encode_one_value(item)
            if len(encoded) != self.value_size:
                raise MapInvalidArgumentError(f"{self.label}: a per-CPU value must be {self.value_size} bytes")
            parts.append(encoded.ljust(self.value_stride, b"\0"))
        return b"".join(parts)

    def split_percpu(self, data: bytes) -> tuple[bytes, ...]:
        """A per-CPU value's bytes, one piece per CPU (without the 8-byte padding)."""
        stride = self.value_stride
        return tuple(data[cpu * stride : cpu * stride + self.value_size] for cpu in range(self.ncpus))

    def decode_value(self, data: bytes) -> Any:
        """The Python form of a bpf(2) value: a list of per-CPU values for per-CPU maps."""
        if not self.is_percpu:
            return self._decode_one_value(data)
        return [self._decode_one_value(part) for part in self.split_percpu(data)]

    # -- user-space API on Python values ----------------------------------------------------------

    def lookup(self, key: Any = b"", flags: int = 0) -> Any:
        """The value under ``key``; raises MapKeyNotFoundError (ENOENT) when absent."""
        return self.decode_value(self.lookup_raw(self.encode_key(key), flags))

    def get(self, key: Any, default: Any = None) -> Any:
        try:
            return self.lookup(key)
        except MapKeyNotFoundError:
            return default

    def update(self, key: Any, value: Any, flags: int = 0) -> None:
        self.update_raw(self.encode_key(key), self.encode_value(value), flags)

    def delete(self, key: Any) -> None:
        self.delete_raw(self.encode_key(key))

    def get_next_key(self, key: Any = None) -> Any:
        """The next key (decoded), or None after the last one."""
        found = self.get_next_key_raw(None if key is None else self.encode_key(key))
        return None if found is None else self.decode_key(found)

    def lookup_and_delete(self, key: Any = b"", flags: int = 0) -> Any:
        return self.decode_value(self.lookup_and_delete_raw(self.encode_key(key), flags))

    def __getitem__(self, key: Any) -> Any:
        return self.lookup(key)

    def __setitem__(self, key: Any, value: Any) -> None:
        self.update(key, value)

    def __delitem__(self, key: Any) -> None:
        self.delete(key)

    def __contains__(self, key: object) -> bool:
        try:
            self.lookup_raw(self.encode_key(key))
        except MapKeyNotFoundError:
            return False
        return True

    def raw_keys(self) -> Iterator[bytes]:
        """Every key as bytes, by get_next_key."""
        key = self.get_next_key_raw(None)
        while key is not None:
            yield key
            key = self.get_next_key_raw(key)

    def __iter__(self) -> Iterator[Any]:
        return (self.decode_key(key) for key in self.raw_keys())

    def __len__(self) -> int:
        return sum(1 for _ in self.raw_keys())

    def keys(self) -> Iterator[Any]:
        return iter(self)

    def values(self) -> Iterator[Any]:
        return (value for _, value in self.items())

    def items(self) -> Iterator[tuple[Any, Any]]:
        for key in list(self.raw_keys()):
            try:
                value = self.lookup_raw(key)
            except MapKeyNotFoundError:
                continue
            yield self.decode_key(key), self.decode_value(value)
