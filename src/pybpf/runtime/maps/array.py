"""BPF_MAP_TYPE_ARRAY and BPF_MAP_TYPE_PERCPU_ARRAY (the kernel's arraymap.c).

Every index below ``max_entries`` always exists and holds zeroes at first; elements cannot be
deleted (EINVAL). The values are one contiguous region of ``max_entries`` slots of
``round_up(value_size, 8)`` bytes (times ``ncpus`` for the per-CPU map, one CPU's copy after
another), so a program's pointer into an element never moves, and a BPF_F_MMAPABLE array's
values can be handed to user space as one ``memoryview`` (:meth:`ArrayMap.mmap`).

JIT code looks values up (and updates them in place) without calling Python, through the map's
native descriptor (:mod:`pybpf.vm.native_maps`): the values' base, slot size and
``max_entries``; :meth:`ArrayMap.move_storage` points it at the new storage.
"""

from __future__ import annotations

import errno as errno_codes
from typing import ClassVar

from pybpf.errors import (
    MapFullError,
    MapInvalidArgumentError,
    MapKeyExistsError,
    MapKeyNotFoundError,
    MapOperationNotSupportedError,
)
from pybpf.platform.uapi_generated import BpfMapFlag, BpfMapType
from pybpf.runtime.maps.base import EXIST, F_LOCK, NOEXIST, ForEachCallback, Map
from pybpf.runtime.maps.definition import ACCESS_MASK, MapDef, check_flags, invalid
from pybpf.runtime.maps.slab import Slab
from pybpf.vm.memory import AddressSpace, Region, RegionKind
from pybpf.vm.native_maps import NativeMapDescriptor, NativeMapKind

ARRAY_CREATE_FLAGS = (
    BpfMapFlag.NUMA_NODE | BpfMapFlag.MMAPABLE | ACCESS_MASK | BpfMapFlag.PRESERVE_ELEMS | BpfMapFlag.INNER_MAP
)
PCPU_MIN_UNIT_SIZE = 32 << 10
"""The largest per-CPU value the kernel's per-CPU allocator hands out (E2BIG above it)."""
INT_MAX = (1 << 31) - 1


class ArrayMap(Map):
    """An array of ``max_entries`` values indexed by a 4-byte little-endian key."""

    MAP_TYPES: ClassVar[tuple[BpfMapType, ...]] = (BpfMapType.ARRAY,)
    SUPPORTS_BATCH = True

    def __init__(
        self, definition: MapDef, address_space: AddressSpace, ncpus: int = 1, *, storage: object | None = None
    ) -> None:
        """``storage``: a writable buffer of at least ``max_entries * slot_size`` bytes to keep the
        values in (a file-backed ``mmap`` for maps pinned and shared between processes)."""
        super().__init__(definition, address_space, ncpus)
        self.slot_size = self.value_stride * (self.ncpus if self.PERCPU else 1)
        writable = not self.map_flags & BpfMapFlag.RDONLY_PROG
        self.slab = Slab(
            address_space,
            f"{self.name or 'array'} values",
            self.slot_size,
            self.max_entries,
            eager=True,
            writable=writable,
            storage=storage,
        )
        region = self.slab.regions[0]
        self._base = region.address
        self._view = region.view
        self._native = NativeMapDescriptor(
            NativeMapKind.ARRAY,
            self.native_update_flags,
            self.key_size,
            self.value_size,
            base=self._base,
            max_entries=self.max_entries,
            slot_size=self.slot_size,
            cpu_stride=self.cpu_stride,
            ncpus=self.ncpus,
        )
        # bpf_for_each_map_elem hands the callback a pointer to the key: a u32 we keep here.
        self._key_region = address_space.add(
            Region.zeroed(RegionKind.MAP_VALUE, f"{self.name or 'array'} for_each key", 8, writable=False)
        )

    def move_storage(self, storage: object) -> None:
        """Keep the values in ``storage`` from now on (copied there first); between runs only,
        since pointers programs got from earlier lookups point into the old storage."""
        self.slab.move_storage(storage)
        region = self.slab.regions[0]
        self._base = region.address
        self._view = region.view
        self._native.set_base(self._base)

    @property
    def storage_size(self) -> int:
        """Bytes the values take: ``max_entries`` slots of ``slot_size``."""
        return self.max_entries * self.slot_size

    def validate(self) -> None:
        definition = self.definition
        if definition.max_entries == 0 or definition.key_size != 4 or definition.value_size == 0:
            raise invalid(definition, "needs key_size 4, a value_size and max_entries")
        check_flags(definition, ARRAY_CREATE_FLAGS)
        if definition.map_flags & BpfMapFlag.PRESERVE_ELEMS and definition.type != BpfMapType.PERF_EVENT_ARRAY:
            raise invalid(definition, "BPF_F_PRESERVE_ELEMS is only for perf event arrays")
        if self.PERCPU and definition.map_flags & (BpfMapFlag.MMAPABLE | BpfMapFlag.NUMA_NODE):
            raise invalid(definition, "a per-CPU array cannot be mmapable or NUMA-bound")
        limit = PCPU_MIN_UNIT_SIZE if self.PERCPU else INT_MAX
        if definition.value_size > limit:
            raise MapFullError(f"{self.label}: value_size {definition.value_size} is too big (max {limit})")

    def close(self) -> None:
        if (self.kptr_offsets or self.has_graphs) and self.slab.regions:  # (a second close finds no storage)
            self.free_fields(self._view, 0, self.max_entries * self.slot_size)
        self.slab.release()
        if self._key_region in self.address_space:
            self.address_space.remove(self._key_region)

    # -- program side -----------------------------------------------------------------------------

    def native_descriptor(self) -> NativeMapDescriptor:
        """Values at ``BASE + index * slot_size`` (+ the CPU's offset), as :meth:`lookup_address` computes."""
        return self._native

    def lookup_address(self, key: bytes, cpu: int = 0) -> int:
        index = int.from_bytes(key, "little")
        if index >= self.max_entries:
            return 0
        return self._base + index * self.slot_size + cpu * self.cpu_stride

    def for_each(self, callback: ForEachCallback, cpu: int = 0) -> int:
        key_view = self._key_region.view
        key_address = self._key_region.address
        visited = 0
        for index in range(self.max_entries):
            key_view[0:4] = index.to_bytes(4, "little")
            visited += 1
            if callback(key_address, self._base + index * self.slot_size + cpu * self.cpu_stride):
                break
        return visited

    # -- hooks ------------------------------------------------------------------------------------

    def _index(self, key: bytes) -> int:
        return int.from_bytes(key, "little")

    def _lookup_user(self, key: bytes, flags: int) -> bytes:
        index = self._index(key)
        if index >= self.max_entries:
            raise MapKeyNotFoundError(f"{self.label}: index {index} is out of range")
        start = index * self.slot_size
        size = self.slot_size if self.PERCPU else self.value_size
        return self.without_kptrs(bytes(self._view[start : start + size]))

    def _check_update_flags(self, flags: int) -> None:
        if (flags & ~F_LOCK) > EXIST:
            raise MapInvalidArgumentError(f"{self.label}: update flags {flags:#x} are invalid")

    def _update(self, key: bytes, value: bytes, flags: int, cpu: int | None) -> None:
        self._check_update_flags(flags)
        index = self._index(key)
        if index >= self.max_entries:
            raise MapFullError(f"{self.label}: index {index} is out of range (max_entries {self.max_entries})")
        if flags & NOEXIST:
            raise MapKeyExistsError(f"{self.label}: every index exists (BPF_NOEXIST)")
        self._check_lock(flags)
        start = index * self.slot_size
        self._store(start, value)

    def _store(self, start: int, value: bytes) -> None:
        view = self._view
        lock = self.spin_lock_offset
        if self.kptr_offsets or self.has_graphs:
            # copy_map_value leaves the kptrs alone, then bpf_obj_free_fields frees them: NULL.
            self.free_fields(view, start, len(value))
            value = self.without_kptrs(value)
        if lock is None:
            view[start : start + len(value)] = value
            return
        # The kernel never copies over a bpf_spin_lock: keep its 4 bytes.
        saved = bytes(view[start + lock : start + lock + 4])
        view[start : start + len(value)] = value
        view[start + lock : start + lock + 4] = saved

    def _delete(self, key: bytes) -> None:
        raise MapInvalidArgumentError(f"{self.label}: array elements cannot be deleted", errno_codes.EINVAL)

    def _next_key(self, key: bytes | None) -> bytes | None:
        index = 0 if key is None else self._index(key)
        if key is None or index >= self.max_entries:
            return b"\0\0\0\0"
        if index == self.max_entries - 1:
            return None
        return (index + 1).to_bytes(4, "little")

    def __len__(self) -> int:
        return self.max_entries

    # -- BPF_F_MMAPABLE ---------------------------------------------------------------------------

    def mmap(self) -> memoryview:
        """The values as user space maps them (read-only once frozen); needs BPF_F_MMAPABLE."""
        if not self.map_flags & BpfMapFlag.MMAPABLE:
            raise MapOperationNotSupportedError(f"{self.label} is not BPF_F_MMAPABLE", errno_codes.ENODEV, "ENODEV")
        view = self._view[: self.max_entries * self.slot_size]
        return view.toreadonly() if self.frozen or self.map_flags & BpfMapFlag.RDONLY else view


class PercpuArrayMap(ArrayMap):
    """An array with one copy of each value per CPU."""

    MAP_TYPES: ClassVar[tuple[BpfMapType, ...]] = (BpfMapType.PERCPU_ARRAY,)
    PERCPU = True

    def _check_update_flags(self, flags: int) -> None:
        if flags > EXIST:
            raise MapInvalidArgumentError(f"{self.label}: update flags {flags:#x} are invalid")

    def _update(self, key: bytes, value: bytes, flags: int, cpu: int | None) -> None:
        if cpu is None:
            super()._update(key, value, flags, None)
            return
        self._check_update_flags(flags)
        index = self._index(key)
        if index >= self.max_entries:
            raise MapFullError(f"{self.label}: index {index} is out of range (max_entries {self.max_entries})")
        if flags & NOEXIST:
            raise MapKeyExistsError(f"{self.label}: every index exists (BPF_NOEXIST)")
        self._store(index * self.slot_size + cpu * self.value_stride, value[: self.value_size])
