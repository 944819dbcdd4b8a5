"""BPF_MAP_TYPE_HASH, PERCPU_HASH, LRU_HASH and LRU_PERCPU_HASH (the kernel's hashtab.c).

An element lives in one slot of a :class:`~pybpf.runtime.maps.slab.Slab`: the key (padded to 8
bytes) followed by the value (``ncpus`` padded copies for the per-CPU maps), so the pointers a
program gets for the key (``bpf_for_each_map_elem``) and the value stay put while the element
exists. A dict maps each key to its slot, so lookups cost one dict probe.

Differences from the kernel, on purpose:

* **Order.** The kernel walks buckets in jhash order; we walk keys in insertion order (a
  linked list beside the dict), which is as stable and makes get_next_key O(1). As in the
  kernel, get_next_key of a key that is not in the map starts over at the first key.
* **Updates in place.** Updating an existing element rewrites its slot, so an old pointer sees
  the new value (the kernel swaps in a fresh element for non-per-CPU hashes; a program holding
  the old pointer then reads the old value until the memory is reused).
* **LRU.** The kernel's LRU is approximate: per-CPU free lists, an active/inactive list pair and
  a reference bit; it may evict before the map is full (a CPU's local free list runs dry) and
  evicts even when an update replaces an existing key. Ours is exact least-recently-used over
  program lookups and all updates, evicting only when a new key arrives in a full map. User-
  space lookups do not refresh an element, as in the kernel (its ``lookup_elem_sys``).

Native lookups (HASH and PERCPU_HASH): beside the dict, a
:class:`~pybpf.vm.native_maps.index.NativeIndex` maps each key to its slot's key and value
addresses, entered after the element's value is written and taken out before its slot is
freed, so JIT code probes it without calling Python (see :mod:`pybpf.vm.native_maps`). LRU maps
have none: their lookups must refresh recency, which lives here.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from typing import ClassVar

from pybpf.errors import (
    MapFullError,
    MapInvalidArgumentError,
    MapKeyExistsError,
    MapKeyNotFoundError,
    MapOperationNotSupportedError,
)
from pybpf.platform.uapi_generated import BpfMapFlag, BpfMapType
from pybpf.runtime.maps.array import PCPU_MIN_UNIT_SIZE
from pybpf.runtime.maps.base import EXIST, F_LOCK, NOEXIST, ForEachCallback, Map
from pybpf.runtime.maps.definition import ACCESS_MASK, ENOTSUPP, MapDef, check_flags, invalid, round_up8
from pybpf.runtime.maps.slab import Slab
from pybpf.vm.memory import AddressSpace
from pybpf.vm.native_maps import NativeMapDescriptor, NativeMapKind
from pybpf.vm.native_maps.index import NativeIndex

HTAB_CREATE_FLAGS = (
    BpfMapFlag.NO_PREALLOC | BpfMapFlag.NO_COMMON_LRU | BpfMapFlag.NUMA_NODE | ACCESS_MASK | BpfMapFlag.ZERO_SEED
)


class HashMap(Map):
    """A hash table of at most ``max_entries`` elements."""

    MAP_TYPES: ClassVar[tuple[BpfMapType, ...]] = (BpfMapType.HASH,)
    SUPPORTS_BATCH = True
    LRU: ClassVar[bool] = False

    def __init__(self, definition: MapDef, address_space: AddressSpace, ncpus: int = 1) -> None:
        super().__init__(definition, address_space, ncpus)
        self.key_stride = round_up8(self.key_size)
        self.slot_size = self.key_stride + self.value_stride * (self.ncpus if self.PERCPU else 1)
        writable = not self.map_flags & BpfMapFlag.RDONLY_PROG
        self.slab = Slab(
            address_space, f"{self.name or 'hash'} elements", self.slot_size, self.max_entries, writable=writable
        )
        # key -> (slot, address of the slot's first byte)
        self._index: dict[bytes, tuple[int, int]] = {}
        # Iteration order: a doubly linked list of keys in insertion order.
        self._next: dict[bytes, bytes | None] = {}
        self._prev: dict[bytes, bytes | None] = {}
        self._head: bytes | None = None
        self._tail: bytes | None = None
        self._recency: OrderedDict[bytes, None] = OrderedDict()
        self._native: NativeMapDescriptor | None = None
        self._native_index: NativeIndex | None = None
        if not self.LRU:
            self._native = NativeMapDescriptor(
                NativeMapKind.HASH,
                self.native_update_flags,
                self.key_size,
                self.value_size,
                cpu_stride=self.cpu_stride,
                ncpus=self.ncpus,
            )
            self._native_index = NativeIndex(self._native)

    def validate(self) -> None:
        definition = self.definition
        check_flags(definition, HTAB_CREATE_FLAGS)
        flags = definition.map_flags
        if not self.LRU and flags & BpfMapFlag.NO_COMMON_LRU:
            raise invalid(definition, "BPF_F_NO_COMMON_LRU needs an LRU map")
        if self.LRU and flags & BpfMapFlag.NO_PREALLOC:
            raise MapOperationNotSupportedError(f"{self.label}: an LRU map must be preallocated", ENOTSUPP, "ENOTSUPP")
        if flags & BpfMapFlag.NUMA_NODE and (self.PERCPU or flags & BpfMapFlag.NO_COMMON_LRU):
            raise invalid(definition, "a per-CPU map cannot be NUMA-bound")
        if definition.max_entries == 0 or definition.key_size == 0 or definition.value_size == 0:
            raise invalid(definition, "needs a key_size, a value_size and max_entries")
        if self.PERCPU and definition.value_size > PCPU_MIN_UNIT_SIZE:
            raise MapFullError(
                f"{self.label}: value_size {definition.value_size} is too big (max {PCPU_MIN_UNIT_SIZE})"
            )

    def close(self) -> None:
        if (self.kptr_offsets or self.has_graphs) and self.slab.regions:  # (a second close finds no storage)
            for slot, _ in self._index.values():
                self.free_fields(self.slab.view(slot), self.key_stride, self.slot_size - self.key_stride)
        if self._native_index is not None:
            self._native_index.close()
        self.slab.release()

    def move_storage(self, storage: object, occupancy: memoryview) -> None:
        """Keep the elements in ``storage`` from now on, one byte per slot in ``occupancy`` saying
        which slots hold one (1) or are free (0): e.g. a pin file another process reads. A slot is
        the key (padded to 8 bytes) then the value(s). Between runs only: value pointers change.
        """
        self.slab.move_storage(storage, occupancy)
        self._index = {key: (slot, self.slab.address(slot)) for key, (slot, _) in self._index.items()}
        if self._native_index is not None:
            self._native_index.clear()
            for key, (_, address) in self._index.items():
                self._native_index.insert(key, address, address + self.key_stride)

    # -- program side -----------------------------------------------------------------------------

    def native_descriptor(self) -> NativeMapDescriptor | None:
        """The index of key -> (key, value) addresses; None for LRU maps (a lookup refreshes recency)."""
        return self._native

    def lookup_address(self, key: bytes, cpu: int = 0) -> int:
        entry = self._index.get(key)
        if entry is None:
            return 0
        if self.LRU:
            self._recency.move_to_end(key)
        return entry[1] + self.key_stride + cpu * self.cpu_stride

    def for_each(self, callback: ForEachCallback, cpu: int = 0) -> int:
        visited = 0
        offset = self.key_stride + cpu * self.cpu_stride
        # A snapshot, because the callback may delete elements (the kernel allows that for hashes).
        for key in list(self._index):
            entry = self._index.get(key)
            if entry is None:
                continue
            visited += 1
            if callback(entry[1], entry[1] + offset):
                break
        return visited

    # -- the element list -------------------------------------------------------------------------

    def _link(self, key: bytes) -> None:
        tail = self._tail
        self._prev[key] = tail
        self._next[key] = None
        if tail is None:
            self._head = key
        else:
            self._next[tail] = key
        self._tail = key

    def _unlink(self, key: bytes) -> None:
        before = self._prev.pop(key)
        after = self._next.pop(key)
        if before is None:
            self._head = after
        else:
            self._next[before] = after
        if after is None:
            self._tail = before
        else:
            self._prev[after] = before

    def _insert(self, key: bytes) -> tuple[int, int]:
        """A fresh element for ``key`` (evicting the least recently used one of a full LRU map)."""
        if len(self._index) >= self.max_entries:
            if not self.LRU:
                raise MapFullError(f"{self.label} is full ({self.max_entries} elements)")
            victim = next(iter(self._recency))
            self._remove(victim)
        slot = self.slab.alloc()
        entry = (slot, self.slab.address(slot))
        self.slab.write(slot, 0, key)
        self._index[key] = entry
        self._link(key)
        if self.LRU:
            self._recency[key] = None
        return entry

    def _remove(self, key: bytes) -> None:
        if self._native_index is not None:
            self._native_index.remove(key)  # before the slot can be reused
        slot, _ = self._index.pop(key)
        if self.kptr_offsets or self.has_graphs:
            self.free_fields(self.slab.view(slot), self.key_stride, self.slot_size - self.key_stride)
        self._unlink(key)
        if self.LRU:
            del self._recency[key]
        self.slab.free(slot)

    # -- hooks ------------------------------------------------------------------------------------

    def _value_bytes(self, slot: int) -> bytes:
        return self.without_kptrs(self.slab.read(slot, self.key_stride, self.user_value_size))

    def _lookup_user(self, key: bytes, flags: int) -> bytes:
        entry = self._index.get(key)
        if entry is None:
            raise MapKeyNotFoundError(f"{self.label}: no such key")
        return self._value_bytes(entry[0])

    def _check_update_flags(self, flags: int) -> None:
        allowed_lock = 0 if self.LRU or self.PERCPU else F_LOCK
        if flags & ~allowed_lock > EXIST:
            raise MapInvalidArgumentError(f"{self.label}: update flags {flags:#x} are invalid")
        self._check_lock(flags)

    def _update(self, key: bytes, value: bytes, flags: int, cpu: int | None) -> None:
        self._check_update_flags(flags)
        entry = self._index.get(key)
        if entry is None:
            if flags & EXIST:
                raise MapKeyNotFoundError(f"{self.label}: no such key (BPF_EXIST)")
            entry = self._insert(key)
            fresh = True
        else:
            if flags & NOEXIST:
                raise MapKeyExistsError(f"{self.label}: the key exists (BPF_NOEXIST)")
            if self.LRU:
                self._recency.move_to_end(key)
            fresh = False
        self._store(entry[0], value, cpu, fresh)
        if fresh and self._native_index is not None:
            # After the value: native code never finds an element whose value is not written yet.
            self._native_index.insert(key, entry[1], entry[1] + self.key_stride)

    def _store(self, slot: int, value: bytes, cpu: int | None, fresh: bool) -> None:
        start = self.key_stride
        if self.PERCPU and cpu is not None:
            if fresh:
                # A program's new element: this CPU's copy is the value, the others are zero.
                self.slab.write(slot, start, bytes(self.slot_size - start))
            start += cpu * self.value_stride
            value = value[: self.value_size]
        lock = self.spin_lock_offset
        if self.kptr_offsets or self.has_graphs:
            # The kernel's update makes a new element with NULL kptrs and frees the old one.
            self.free_fields(self.slab.view(slot), start, len(value))
            value = self.without_kptrs(value)
        if lock is None:
            self.slab.write(slot, start, value)
            return
        view = self.slab.view(slot)
        saved = bytes(view[start + lock : start + lock + 4]) if lock is not None and not fresh else None
        view[start : start + len(value)] = value
        if saved is not None and lock is not None:
            # The kernel never copies over an existing element's bpf_spin_lock.
            view[start + lock : start + lock + 4] = saved

    def _delete(self, key: bytes) -> None:
        if key not in self._index:
            raise MapKeyNotFoundError(f"{self.label}: no such key")
        self._remove(key)

    def _next_key(self, key: bytes | None) -> bytes | None:
        if key is None or key not in self._index:
            return self._head
        return self._next[key]

    def _lookup_and_delete(self, key: bytes, flags: int) -> bytes:
        entry = self._index.get(key)
        if entry is None:
            raise MapKeyNotFoundError(f"{self.label}: no such key")
        value = self._value_bytes(entry[0])
        self._remove(key)
        return value

    def __len__(self) -> int:
        return len(self._index)

    def raw_keys(self) -> Iterator[bytes]:
        """Every key, in iteration order (a snapshot)."""
        self._check_read()
        keys = []
        key = self._head
        while key is not None:
            keys.append(key)
            key = self._next[key]
        return iter(keys)


class PercpuHashMap(HashMap):
    MAP_TYPES: ClassVar[tuple[BpfMapType, ...]] = (BpfMapType.PERCPU_HASH,)
    PERCPU = True


class LruHashMap(HashMap):
    MAP_TYPES: ClassVar[tuple[BpfMapType, ...]] = (BpfMapType.LRU_HASH,)
    LRU = True


class LruPercpuHashMap(HashMap):
    MAP_TYPES: ClassVar[tuple[BpfMapType, ...]] = (BpfMapType.LRU_PERCPU_HASH,)
    PERCPU = True
    LRU = True
