"""Native index tables: open addressing in ctypes buffers, kept by Python, probed by native code.

A table is one ``u64`` buffer: a header (:class:`IndexHeader`: the capacity mask and one word
for the owner, the LPM prefix-length list) then ``capacity`` entries of :class:`EntryField`
words: the key's :func:`~pybpf.vm.native_maps.hashing.native_hash`, the value's address, the
key bytes' address, and a tag (the seed the key was hashed with: an LPM prefix length, else 0).
``VALUE`` says what an entry is: 0 empty (a probe stops), 1 a tombstone (a deleted entry: a
probe goes on), anything else a live element. Linear probing from ``hash & mask``.

Python keeps at most half of the entries used (live or tombstones) so every probe meets an
empty entry, and rebuilds into a new buffer at a quarter load when that would be exceeded:
about 128 bytes per element at worst (a 10,000-entry map: a 64 Ki-entry table, 2 MiB). A
rebuild publishes the new table with one aligned 8-byte store into the descriptor's ``BASE``,
so a reader in another thread sees the old table or the new one whole; an insert writes the
entry's other words before ``VALUE``. Replaced buffers are kept for the next
:data:`RETIRED_KEPT` replacements, as a grace period for native readers still in them (there
is no RCU here; a lookup lasts nanoseconds, a replacement takes microseconds of Python).

:class:`LpmIndex` adds the prefix lengths present, longest first: a buffer ``[count, L0, L1,
...]`` named by the header's ``AUX`` word, replaced (never edited) when a length appears or
disappears. A lookup probes once per length no longer than the key's prefixlen, longest
first: at most ``max_prefixlen + 1`` probes (33 for IPv4), a handful for a typical firewall.
"""

from __future__ import annotations

import ctypes
from collections import deque
from enum import IntEnum
from typing import Any

from pybpf.errors import VmError
from pybpf.vm.native_maps import NativeMapDescriptor
from pybpf.vm.native_maps.hashing import native_hash, prefix_bytes


class IndexHeader(IntEnum):
    MASK = 0
    """Capacity - 1 (the capacity is a power of two)."""
    AUX = 1
    """The owner's word (LPM: the address of the prefix-length list)."""


class EntryField(IntEnum):
    HASH = 0
    VALUE = 1
    """0 empty, :data:`TOMBSTONE` deleted, else the value's address."""
    KEY = 2
    """Address of the key bytes the probe compares."""
    TAG = 3
    """The hash seed (LPM: the prefix length)."""


HEADER_FIELDS = len(IndexHeader)
ENTRY_FIELDS = len(EntryField)
EMPTY = 0
TOMBSTONE = 1
MIN_CAPACITY = 8
RETIRED_KEPT = 8
"""Replaced buffers kept alive (see the module docstring)."""


def _capacity_for(live: int) -> int:
    capacity = MIN_CAPACITY
    while capacity < 4 * live:
        capacity <<= 1
    return capacity


class NativeIndex:
    """(tag, key bytes) -> (key address, value address), published in ``descriptor.BASE``."""

    __slots__ = ("_descriptor", "_elements", "_positions", "_retired", "_table", "_used", "aux", "capacity")

    def __init__(self, descriptor: NativeMapDescriptor) -> None:
        self._descriptor = descriptor
        # (tag, key) -> (hash, key address, value address): what a rebuild re-enters.
        self._elements: dict[tuple[int, bytes], tuple[int, int, int]] = {}
        self._positions: dict[tuple[int, bytes], int] = {}
        self._retired: deque[Any] = deque(maxlen=RETIRED_KEPT)
        self._table: Any = None
        self._used = 0
        self.capacity = 0
        self.aux = 0
        self._rebuild(MIN_CAPACITY)

    def __len__(self) -> int:
        return len(self._elements)

    @property
    def address(self) -> int:
        return ctypes.addressof(self._table)

    def _rebuild(self, capacity: int) -> None:
        table = (ctypes.c_uint64 * (HEADER_FIELDS + capacity * ENTRY_FIELDS))()
        table[IndexHeader.MASK] = capacity - 1
        table[IndexHeader.AUX] = self.aux
        positions: dict[tuple[int, bytes], int] = {}
        for name, entry in self._elements.items():
            position = self._free_position(table, capacity - 1, entry[0])
            self._write(table, position, entry, name[0])
            positions[name] = position
        if self._table is not None:
            self._retired.append(self._table)
        self._table, self._positions, self.capacity, self._used = table, positions, capacity, len(positions)
        self._descriptor.set_base(ctypes.addressof(table))

    @staticmethod
    def _free_position(table: Any, mask: int, hashed: int) -> int:
        """The first empty or deleted entry of ``hashed``'s probe sequence."""
        position = hashed & mask
        while table[HEADER_FIELDS + position * ENTRY_FIELDS + EntryField.VALUE] > TOMBSTONE:
            position = (position + 1) & mask
        return position

    @staticmethod
    def _write(table: Any, position: int, entry: tuple[int, int, int], tag: int) -> None:
        """Write (hash, key address, value address) at ``position``."""
        hashed, key_address, value_address = entry
        base = HEADER_FIELDS + position * ENTRY_FIELDS
        table[base + EntryField.HASH] = hashed
        table[base + EntryField.KEY] = key_address
        table[base + EntryField.TAG] = tag
        table[base + EntryField.VALUE] = value_address  # last: it makes the entry live

    def insert(self, key: bytes, key_address: int, value_address: int, tag: int = 0) -> None:
        """Enter (or re-point) ``key``; its bytes must stay at ``key_address`` while it is entered."""
        if value_address <= TOMBSTONE:
            raise VmError(f"a native index cannot hold the value address {value_address}")
        name = (tag, bytes(key))
        if name in self._elements:
            self.remove(name[1], tag)
        hashed = native_hash(name[1], tag)
        entry = (hashed, key_address, value_address)
        self._elements[name] = entry
        if 2 * (self._used + 1) > self.capacity:
            self._rebuild(_capacity_for(len(self._elements)))
            return
        table, mask = self._table, self.capacity - 1
        position = self._free_position(table, mask, hashed)
        if table[HEADER_FIELDS + position * ENTRY_FIELDS + EntryField.VALUE] == EMPTY:
            self._used += 1
        self._write(table, position, entry, tag)
        self._positions[name] = position

    def remove(self, key: bytes, tag: int = 0) -> bool:
        """Take ``key`` out; False when it was not entered."""
        name = (tag, bytes(key))
        position = self._positions.pop(name, None)
        if position is None:
            return False
        del self._elements[name]
        self._table[HEADER_FIELDS + position * ENTRY_FIELDS + EntryField.VALUE] = TOMBSTONE
        return True

    def set_aux(self, value: int) -> None:
        self.aux = value
        self._table[IndexHeader.AUX] = value

    def clear(self) -> None:
        self._elements.clear()
        self._rebuild(MIN_CAPACITY)

    def lookup(self, key: bytes, tag: int = 0) -> int:
        """The value address a native probe finds for ``key`` (0: none), walking the table as native code does."""
        hashed = native_hash(bytes(key), tag)
        table, mask = self._table, self.capacity - 1
        position = hashed & mask
        for _ in range(self.capacity):
            base = HEADER_FIELDS + position * ENTRY_FIELDS
            value = int(table[base + EntryField.VALUE])
            if value == EMPTY:
                return 0
            if (
                value != TOMBSTONE
                and table[base + EntryField.HASH] == hashed
                and table[base + EntryField.TAG] == tag
                and ctypes.string_at(int(table[base + EntryField.KEY]), len(key)) == bytes(key)
            ):
                return value
            position = (position + 1) & mask
        return 0

    def close(self) -> None:
        """Native code must ask Python from now on (the map is being destroyed)."""
        self._descriptor.set_base(0)
        self._elements.clear()
        self._positions.clear()


class LpmIndex:
    """An LPM trie's prefixes: (prefix length, masked prefix) -> value address, plus the lengths present."""

    __slots__ = ("_counts", "_index", "_keys", "_lengths", "_retired")

    def __init__(self, descriptor: NativeMapDescriptor) -> None:
        self._index = NativeIndex(descriptor)
        self._counts: dict[int, int] = {}
        self._keys: dict[tuple[int, bytes], Any] = {}  # the compared bytes live here
        self._retired: deque[Any] = deque(maxlen=RETIRED_KEPT)
        self._lengths: Any = None
        self._publish_lengths()

    def __len__(self) -> int:
        return len(self._keys)

    @property
    def lengths(self) -> tuple[int, ...]:
        """The prefix lengths present, longest first (as native code scans them)."""
        count = int(self._lengths[0])
        return tuple(int(self._lengths[1 + number]) for number in range(count))

    def _publish_lengths(self) -> None:
        ordered = sorted(self._counts, reverse=True)
        buffer = (ctypes.c_uint64 * (1 + len(ordered)))(len(ordered), *ordered)
        if self._lengths is not None:
            self._retired.append(self._lengths)
        self._lengths = buffer
        self._index.set_aux(ctypes.addressof(buffer))

    def insert(self, data: bytes, prefixlen: int, value_address: int) -> None:
        """Enter the prefix ``prefixlen`` bits of big-endian ``data`` (bits past it do not matter)."""
        masked = prefix_bytes(data, prefixlen)
        name = (prefixlen, masked)
        buffer = self._keys.get(name)
        fresh = buffer is None
        if buffer is None:
            buffer = ctypes.create_string_buffer(masked, len(masked) or 1)
            self._keys[name] = buffer
        self._index.insert(masked, ctypes.addressof(buffer), value_address, prefixlen)
        if not fresh:
            return
        if prefixlen in self._counts:
            self._counts[prefixlen] += 1
        else:
            self._counts[prefixlen] = 1
            self._publish_lengths()  # after the entry: a reader never scans a length without it

    def remove(self, data: bytes, prefixlen: int) -> bool:
        masked = prefix_bytes(data, prefixlen)
        name = (prefixlen, masked)
        if name not in self._keys:
            return False
        left = self._counts[prefixlen] - 1
        if left:
            self._counts[prefixlen] = left
        else:
            del self._counts[prefixlen]
            self._publish_lengths()  # before the entry goes: a reader never misses a live one
        self._index.remove(masked, prefixlen)
        self._retired.append(self._keys.pop(name))
        return True

    def lookup(self, data: bytes, prefixlen: int) -> int:
        """The value address native code finds for a lookup key (0: none), the same way."""
        for length in self.lengths:
            if length <= prefixlen:
                found = self._index.lookup(prefix_bytes(data, length), length)
                if found:
                    return found
        return 0

    def clear(self) -> None:
        self._index.clear()
        self._keys.clear()
        self._counts.clear()
        self._publish_lengths()

    def close(self) -> None:
        self._index.close()
        self._keys.clear()
        self._counts.clear()
