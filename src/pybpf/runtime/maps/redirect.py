"""XDP redirect targets: DEVMAP, DEVMAP_HASH, CPUMAP and XSKMAP (devmap.c, cpumap.c, xskmap.c).

``bpf_redirect_map(map, key, flags)`` asks :meth:`redirect_target` for the slot; the runtime
decides what a redirect does (there are no real devices, CPUs queues or sockets here). The
values are the uapi structs as bytes: ``struct bpf_devmap_val`` (``u32 ifindex`` then, in the
8-byte form, a program fd) and ``struct bpf_cpumap_val`` (``u32 qsize`` then a program fd);
programs may look devmap values up (read-only). An XSKMAP slot holds a socket object.

Without network devices to check, any non-zero ifindex is accepted (the kernel answers EINVAL
for an ifindex with no device, ENODEV for a CPU that is not possible).
"""

from __future__ import annotations

import errno as errno_codes
from collections.abc import Iterator
from typing import Any, ClassVar

from pybpf.errors import (
    MapFullError,
    MapInvalidArgumentError,
    MapKeyExistsError,
    MapKeyNotFoundError,
    MapOperationNotSupportedError,
)
from pybpf.platform.uapi_generated import BpfMapFlag, BpfMapType
from pybpf.runtime.maps.base import EXIST, NOEXIST, Map, eopnotsupp
from pybpf.runtime.maps.definition import ACCESS_MASK, MapDef, check_flags, invalid
from pybpf.runtime.maps.slab import Slab
from pybpf.vm.memory import AddressSpace

DEV_CREATE_FLAGS = BpfMapFlag.NUMA_NODE | ACCESS_MASK
NR_CPUS = 8192
CPUMAP_MAX_QSIZE = 16384


class _SlotMap(Map):
    """Shared shape: a u32 key, a 4- or 8-byte value kept in a read-only (for programs) slab."""

    VALUE_SIZES: ClassVar[tuple[int, ...]] = (4, 8)
    HASHED: ClassVar[bool] = False

    def __init__(self, definition: MapDef, address_space: AddressSpace, ncpus: int = 1) -> None:
        super().__init__(definition, address_space, ncpus)
        self.slab = Slab(
            address_space,
            f"{self.name or self.type.name.lower()} values",
            self.value_stride,
            self.max_entries,
            eager=not self.HASHED,
            writable=False,
        )
        self._slots: dict[int, int] = {}  # key -> slab slot (array maps use slot == index)

    def validate(self) -> None:
        definition = self.definition
        if definition.max_entries == 0 or definition.key_size != 4 or definition.value_size not in self.VALUE_SIZES:
            raise invalid(definition, f"needs key_size 4, value_size {self.VALUE_SIZES} and max_entries")
        check_flags(definition, DEV_CREATE_FLAGS)

    def close(self) -> None:
        self.slab.release()

    def _value(self, key: int) -> bytes | None:
        slot = self._slots.get(key)
        return None if slot is None else bytes(self.slab.view(slot)[: self.value_size])

    def redirect_target(self, key: int) -> bytes | None:
        """The value in slot ``key`` (what bpf_redirect_map redirects to), or None when empty."""
        return self._value(key)

    def lookup_address(self, key: bytes, cpu: int = 0) -> int:
        slot = self._slots.get(int.from_bytes(key, "little"))
        return 0 if slot is None else self.slab.address(slot)

    def _store(self, key: int, value: bytes) -> None:
        slot = self._slots.get(key)
        if slot is None:
            slot = key if not self.HASHED else self.slab.alloc()
            self._slots[key] = slot
        self.slab.view(slot)[: self.value_size] = value

    def _lookup_user(self, key: bytes, flags: int) -> bytes:
        value = self._value(int.from_bytes(key, "little"))
        if value is None:
            raise MapKeyNotFoundError(f"{self.label}: the slot is empty")
        return value

    def _next_key(self, key: bytes | None) -> bytes | None:
        index = 0 if key is None else int.from_bytes(key, "little")
        if key is None or index >= self.max_entries:
            return b"\0\0\0\0"
        if index == self.max_entries - 1:
            return None
        return (index + 1).to_bytes(4, "little")

    def __len__(self) -> int:
        return len(self._slots)

    def items(self) -> Iterator[tuple[Any, Any]]:
        return ((key, self._value(key)) for key in sorted(self._slots))


class DevMap(_SlotMap):
    """Array of network devices (``struct bpf_devmap_val``)."""

    MAP_TYPES: ClassVar[tuple[BpfMapType, ...]] = (BpfMapType.DEVMAP,)

    def _update(self, key: bytes, value: bytes, flags: int, cpu: int | None) -> None:
        if flags > EXIST:
            raise MapInvalidArgumentError(f"{self.label}: update flags {flags:#x} are invalid")
        index = int.from_bytes(key, "little")
        if index >= self.max_entries:
            raise MapFullError(f"{self.label}: index {index} is out of range")
        if flags == NOEXIST:
            raise MapKeyExistsError(f"{self.label}: every index exists (BPF_NOEXIST)")
        if int.from_bytes(value[:4], "little") == 0:
            self._slots.pop(index, None)  # ifindex 0 empties the slot, as in the kernel
            return
        self._store(index, value)

    def _delete(self, key: bytes) -> None:
        index = int.from_bytes(key, "little")
        if index >= self.max_entries:
            raise MapInvalidArgumentError(f"{self.label}: index {index} is out of range")
        self._slots.pop(index, None)


class DevMapHash(_SlotMap):
    """Hash of network devices keyed by any u32 (ifindex, usually)."""

    MAP_TYPES: ClassVar[tuple[BpfMapType, ...]] = (BpfMapType.DEVMAP_HASH,)
    HASHED = True

    def _update(self, key: bytes, value: bytes, flags: int, cpu: int | None) -> None:
        if flags > EXIST:
            raise MapInvalidArgumentError(f"{self.label}: update flags {flags:#x} are invalid")
        index = int.from_bytes(key, "little")
        # The device is looked up before the key: a bad ifindex is EINVAL even for BPF_NOEXIST.
        if int.from_bytes(value[:4], "little") == 0:
            raise MapInvalidArgumentError(f"{self.label}: ifindex 0 names no device")
        present = index in self._slots
        if present and flags & NOEXIST:
            raise MapKeyExistsError(f"{self.label}: the key exists (BPF_NOEXIST)")
        # The kernel does not check BPF_EXIST here: an absent key is simply added.
        if not present and len(self._slots) >= self.max_entries:
            raise MapFullError(f"{self.label} is full ({self.max_entries} devices)")
        self._store(index, value)

    def _delete(self, key: bytes) -> None:
        slot = self._slots.pop(int.from_bytes(key, "little"), None)
        if slot is None:
            raise MapKeyNotFoundError(f"{self.label}: no such key")
        self.slab.free(slot)

    def _next_key(self, key: bytes | None) -> bytes | None:
        keys = list(self._slots)
        index = None if key is None else int.from_bytes(key, "little")
        if not keys:
            return None
        if index is None or index not in self._slots:
            return keys[0].to_bytes(4, "little")
        position = keys.index(index) + 1
        return keys[position].to_bytes(4, "little") if position < len(keys) else None


class CpuMap(_SlotMap):
    """Array of CPUs to hand packets to (``struct bpf_cpumap_val``: queue size, program)."""

    MAP_TYPES: ClassVar[tuple[BpfMapType, ...]] = (BpfMapType.CPUMAP,)

    def validate(self) -> None:
        super().validate()
        if self.definition.max_entries > NR_CPUS:
            raise MapFullError(f"{self.label}: at most {NR_CPUS} CPUs")

    def lookup_address(self, key: bytes, cpu: int = 0) -> int:
        return 0  # programs cannot look cpumap entries up; only bpf_redirect_map uses them

    def _update(self, key: bytes, value: bytes, flags: int, cpu: int | None) -> None:
        if flags > EXIST:
            raise MapInvalidArgumentError(f"{self.label}: update flags {flags:#x} are invalid")
        index = int.from_bytes(key, "little")
        if index >= self.max_entries:
            raise MapFullError(f"{self.label}: index {index} is out of range")
        if flags == NOEXIST:
            raise MapKeyExistsError(f"{self.label}: every index exists (BPF_NOEXIST)")
        qsize = int.from_bytes(value[:4], "little")
        if qsize > CPUMAP_MAX_QSIZE:
            raise MapFullError(
                f"{self.label}: qsize {qsize} exceeds {CPUMAP_MAX_QSIZE}", errno_codes.EOVERFLOW, "EOVERFLOW"
            )
        if index >= self.ncpus:
            raise MapOperationNotSupportedError(
                f"{self.label}: CPU {index} is not possible", errno_codes.ENODEV, "ENODEV"
            )
        if qsize == 0:
            self._slots.pop(index, None)  # queue size 0 removes the CPU
            return
        self._store(index, value)

    def _delete(self, key: bytes) -> None:
        index = int.from_bytes(key, "little")
        if index >= self.max_entries:
            raise MapInvalidArgumentError(f"{self.label}: index {index} is out of range")
        self._slots.pop(index, None)


class XskMap(_SlotMap):
    """Array of AF_XDP sockets: user space stores socket objects (the kernel takes socket fds)."""

    MAP_TYPES: ClassVar[tuple[BpfMapType, ...]] = (BpfMapType.XSKMAP,)
    VALUE_SIZES = (4,)

    def __init__(self, definition: MapDef, address_space: AddressSpace, ncpus: int = 1) -> None:
        super().__init__(definition, address_space, ncpus)
        self._sockets: dict[int, object] = {}

    def socket_at(self, index: int) -> object | None:
        return self._sockets.get(index)

    def update(self, key: Any, value: Any, flags: int = 0) -> None:
        self._check_write()
        if flags > EXIST:
            raise MapInvalidArgumentError(f"{self.label}: update flags {flags:#x} are invalid")
        index = int.from_bytes(self.encode_key(key), "little")
        if index >= self.max_entries:
            raise MapFullError(f"{self.label}: index {index} is out of range")
        present = index in self._sockets
        if present and flags == NOEXIST:
            raise MapKeyExistsError(f"{self.label}: the slot holds a socket (BPF_NOEXIST)")
        if not present and flags == EXIST:
            raise MapKeyNotFoundError(f"{self.label}: the slot is empty (BPF_EXIST)")
        self._sockets[index] = value
        self._store(index, index.to_bytes(4, "little"))

    def update_raw(self, key: bytes, value: bytes, flags: int = 0) -> None:
        raise MapInvalidArgumentError(f"{self.label}: slots hold socket objects; use update(index, socket)")

    def _lookup_user(self, key: bytes, flags: int) -> bytes:
        raise eopnotsupp(f"{self.label}: user space cannot look sockets up")

    def lookup(self, key: Any = b"", flags: int = 0) -> Any:
        raise eopnotsupp(f"{self.label}: user space cannot look sockets up")

    def _delete(self, key: bytes) -> None:
        index = int.from_bytes(key, "little")
        if index >= self.max_entries:
            raise MapInvalidArgumentError(f"{self.label}: index {index} is out of range")
        self._sockets.pop(index, None)
        self._slots.pop(index, None)

    def items(self) -> Iterator[tuple[Any, Any]]:
        return iter(sorted(self._sockets.items()))
