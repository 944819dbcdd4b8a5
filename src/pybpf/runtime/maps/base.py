"""The map base class: the checks every map shares, and the user-space API built on a few hooks.

A map has two faces, as in the kernel:

* **Program side** (what helpers call; never raises for a refused operation): ``lookup_address``
  returns the native address of the value (0 when absent); ``prog_update``, ``prog_delete``,
  ``prog_push``, ``prog_pop``, ``prog_peek`` return what the helper returns, 0 or ``-errno``;
  ``for_each`` drives ``bpf_for_each_map_elem``. Per-CPU maps take the running ``cpu``.
* **User-space side** (what bpf(2) does; raises :class:`~pybpf.errors.MapErrnoError` subclasses
  carrying the kernel's errno): ``lookup_raw``/``update_raw``/``delete_raw``/``get_next_key_raw``/
  ``lookup_and_delete_raw`` on bytes, ``freeze``, batches, and a mapping interface
  (``m[key]``, ``len``, iteration, ``keys()``...) that also accepts and returns BTF-typed
  Python values when the map has BTF key/value types (see :mod:`pybpf.runtime.typed_values`).

User-space per-CPU values hold every CPU's copy, each padded to 8 bytes
(``round_up(value_size, 8) * ncpus`` bytes), exactly as bpf(2) lays them out.

Subclasses implement the hooks (``_lookup_user``, ``_update``, ``_delete``, ``_next_key``,
``_lookup_and_delete``) by raising the kernel's errno as a ``MapErrnoError``; the defaults say
ENOTSUPP, as the kernel does for a map type without the operation.
"""

from __future__ import annotations

import ctypes
import errno as errno_codes
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

from pybpf.btf.record import FieldKind
from pybpf.errors import (
    MapErrnoError,
    MapInvalidArgumentError,
    MapOperationNotSupportedError,
    MapPermissionError,
)
from pybpf.platform.kernel_types import map_image
from pybpf.platform.map_api import UserMapApi
from pybpf.platform.uapi_generated import BpfMapFlag, BpfMapType, BpfUpdateFlag
from pybpf.runtime.maps.definition import ENOTSUPP, MapDef, round_up8
from pybpf.runtime.typed_values import btf_value_decode, btf_value_encode
from pybpf.vm.memory import AddressSpace
from pybpf.vm.native_maps import NativeMap, NativeMapDescriptor, NativeMapFlag

ForEachCallback = Callable[[int, int], int]
"""``callback(key_address, value_address) -> 0 to go on, 1 to stop`` (bpf_for_each_map_elem)."""

F_LOCK = int(BpfUpdateFlag.F_LOCK)
EXIST = int(BpfUpdateFlag.EXIST)
NOEXIST = int(BpfUpdateFlag.NOEXIST)


def not_supported(what: str) -> MapOperationNotSupportedError:
    return MapOperationNotSupportedError(f"{what}: operation not supported", ENOTSUPP, "ENOTSUPP")


def eopnotsupp(what: str) -> MapOperationNotSupportedError:
    return MapOperationNotSupportedError(f"{what}: operation not supported", errno_codes.EOPNOTSUPP, "EOPNOTSUPP")


class Map(UserMapApi, NativeMap):
    """A live map in user space. Create one with :func:`pybpf.runtime.maps.create_map`.

    As a :class:`~pybpf.vm.native_maps.NativeMap` it may expose a native descriptor that JIT code
    reads (and updates in place) without calling Python; by default it has none.
    """

    MAP_TYPES: ClassVar[tuple[BpfMapType, ...]] = ()
    PERCPU: ClassVar[bool] = False
    HAS_KEYS: ClassVar[bool] = True
    """False for queue, stack, bloom filter and ring buffer: their key is NULL (key_size 0)."""
    SUPPORTS_BATCH: ClassVar[bool] = False

    def __init__(self, definition: MapDef, address_space: AddressSpace, ncpus: int = 1) -> None:
        if ncpus < 1:
            raise MapInvalidArgumentError(f"a map needs at least one CPU, got ncpus={ncpus}")
        self.definition = definition
        self.address_space = address_space
        self.ncpus = ncpus
        self.name = definition.name
        self.type = definition.type
        self.key_size = definition.key_size
        self.value_size = definition.value_size
        self.max_entries = definition.max_entries
        self.map_flags = int(definition.map_flags)
        # Plain booleans: IntFlag arithmetic costs microseconds on the helpers' hot path.
        self.prog_readonly = bool(self.map_flags & int(BpfMapFlag.RDONLY_PROG))
        self.user_readonly = bool(self.map_flags & int(BpfMapFlag.RDONLY))
        self.user_writeonly = bool(self.map_flags & int(BpfMapFlag.WRONLY))
        self.frozen = False
        self.value_stride = round_up8(definition.value_size)
        # Where CPU n's copy starts, relative to CPU 0's: only per-CPU maps keep one per CPU.
        self.cpu_stride = self.value_stride if self.PERCPU else 0
        # The map's identity for programs (the kernel's struct bpf_map pointer): the image of its
        # modelled kernel struct (pybpf.platform.kernel_types), which the registry maps read-only
        # into the address space when a program gets the pointer (programs may read its fields).
        image = map_image(definition.type, key_size=definition.key_size, value_size=definition.value_size,
                          max_entries=definition.max_entries, map_flags=self.map_flags, name=definition.name)
        self.kernel_image = (ctypes.c_char * len(image)).from_buffer_copy(image)
        self.address: int = ctypes.addressof(self.kernel_image)
        kptrs = definition.kptr_fields()
        # The value's kptr slots: user-space copies never carry them (they read as NULL), and an
        # update or delete frees what they hold (bpf_obj_free_fields). The referenced ones own
        # their object: it is released through kptr_release, which the runtime's services set
        # when the map is registered for runs.
        self.kptr_offsets: tuple[int, ...] = tuple(field.offset for field in kptrs)
        self._owned_kptrs = frozenset(field.offset for field in kptrs if field.kind is not FieldKind.KPTR_UNREF)
        self.kptr_release: Callable[[int], None] | None = None
        # List heads and rb-tree roots in the value: what they hold is dropped by graph_release
        # (the runtime's object heap, set when the map is registered for runs) on the same events.
        self.has_graphs = definition.has_graph_roots()
        self.graph_release: Callable[[int, int], None] | None = None
        self.spin_lock_offset = definition.spin_lock_offset()
        self.validate()

    # -- creation ---------------------------------------------------------------------------------

    def validate(self) -> None:
        """Raise the kernel's map-creation error for a bad definition (subclasses extend)."""

    def close(self) -> None:
        """Release the map's memory regions (the runtime calls this when the map is destroyed)."""

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

    # -- program side -----------------------------------------------------------------------------

    def native_descriptor(self) -> NativeMapDescriptor | None:
        """None: every program-side operation of this map goes through Python."""
        return None

    @property
    def native_update_flags(self) -> NativeMapFlag:
        """UPDATABLE unless an update must do more than copy the value: a read-only map for
        programs (EPERM), a bpf_spin_lock in the value (kept across updates), kptrs (freed)."""
        if self.prog_readonly or self.spin_lock_offset is not None or self.kptr_offsets or self.has_graphs:
            return NativeMapFlag(0)
        return NativeMapFlag.UPDATABLE

    def free_fields(self, view: memoryview, start: int, size: int) -> None:
        """``bpf_obj_free_fields`` for ``view[start:start + size]``: its kptrs (:meth:`free_kptrs`)
        and the objects its list heads and rb-tree roots still hold."""
        if self.kptr_offsets:
            self.free_kptrs(view, start, size)
        release = self.graph_release
        if self.has_graphs and release is not None and size > 0:
            release(ctypes.addressof(ctypes.c_char.from_buffer(view, start)), size)

    def free_kptrs(self, view: memoryview, start: int, size: int) -> None:
        """``bpf_obj_free_fields`` for the value copies in ``view[start:start + size]``: every kptr
        slot becomes NULL, and the object a referenced one held is released."""
        stride = self.value_stride
        release = self.kptr_release
        for copy in range(start, start + size, stride):
            for offset in self.kptr_offsets:
                at = copy + offset
                address = int.from_bytes(view[at : at + 8], "little")
                if not address:
                    continue
                view[at : at + 8] = bytes(8)
                if release is not None and offset in self._owned_kptrs:
                    release(address)

    def without_kptrs(self, value: bytes) -> bytes:
        """A value as user space reads it: kptr slots NULL (``check_and_init_map_value``)."""
        if not self.kptr_offsets:
            return value
        copy = bytearray(value)
        for start in range(0, len(copy), self.value_stride):
            for offset in self.kptr_offsets:
                copy[start + offset : start + offset + 8] = bytes(8)
        return bytes(copy)

    def lookup_address(self, key: bytes, cpu: int = 0) -> int:
        """bpf_map_lookup_elem: the native address of the value (this CPU's copy), 0 when absent."""
        return 0

    def prog_update(self, key: bytes, value: bytes, flags: int = 0, cpu: int = 0) -> int:
        """bpf_map_update_elem: 0 or -errno. Per-CPU maps update only ``cpu``'s copy."""
        if self.prog_readonly:
            return -errno_codes.EPERM
        try:
            self._update(key, value, flags, cpu)
        except MapErrnoError as error:
            return -error.errno
        return 0

    def prog_delete(self, key: bytes) -> int:
        """bpf_map_delete_elem: 0 or -errno."""
        if self.prog_readonly:
            return -errno_codes.EPERM
        try:
            self._delete(key)
        except MapErrnoError as error:
            return -error.errno
        return 0

    def prog_push(self, value: bytes, flags: int = 0) -> int:
        """bpf_map_push_elem: 0 or -errno (queue, stack, bloom filter)."""
        return -errno_codes.EOPNOTSUPP

    def prog_pop(self, out: memoryview) -> int:
        """bpf_map_pop_elem: fill ``out`` with the value and remove it; 0 or -errno."""
        return -errno_codes.EOPNOTSUPP

    def prog_peek(self, out: memoryview) -> int:
        """bpf_map_peek_elem: fill ``out`` (the bloom filter reads it instead); 0 or -errno."""
        return -errno_codes.EOPNOTSUPP

    def for_each(self, callback: ForEachCallback, cpu: int = 0) -> int:
        """bpf_for_each_map_elem: call ``callback`` per element until it returns 1; the count visited."""
        return -errno_codes.EOPNOTSUPP

    # -- hooks (raise MapErrnoError) --------------------------------------------------------------

    def _lookup_user(self, key: bytes, flags: int) -> bytes:
        raise not_supported(f"{self.label}: lookup")

    def _update(self, key: bytes, value: bytes, flags: int, cpu: int | None) -> None:
        """Store ``value``; ``cpu`` None means from user space (all CPUs' copies for per-CPU maps)."""
        raise not_supported(f"{self.label}: update")

    def _delete(self, key: bytes) -> None:
        raise not_supported(f"{self.label}: delete")

    def _next_key(self, key: bytes | None) -> bytes | None:
        raise not_supported(f"{self.label}: get_next_key")

    def _lookup_and_delete(self, key: bytes, flags: int) -> bytes:
        raise not_supported(f"{self.label}: lookup_and_delete")

    # -- user-space checks ------------------------------------------------------------------------

    def _check_read(self) -> None:
        if self.user_writeonly:
            raise MapPermissionError(f"{self.label} is write-only for user space")

    def _check_write(self) -> None:
        if self.frozen:
            raise MapPermissionError(f"{self.label} is frozen: user space may not write it")
        if self.user_readonly:
            raise MapPermissionError(f"{self.label} is read-only for user space")

    def _check_lock(self, flags: int) -> None:
        if flags & F_LOCK and self.spin_lock_offset is None:
            raise MapInvalidArgumentError(f"{self.label}: BPF_F_LOCK needs a struct bpf_spin_lock in the value")

    def _check_key(self, key: bytes) -> bytes:
        if len(key) != self.key_size:
            raise MapInvalidArgumentError(f"{self.label}: key is {len(key)} bytes, the map's keys are {self.key_size}")
        return key

    # -- user-space commands on bytes -------------------------------------------------------------

    def lookup_raw(self, key: bytes, flags: int = 0) -> bytes:
        """BPF_MAP_LOOKUP_ELEM."""
        if flags & ~F_LOCK:
            raise MapInvalidArgumentError(f"{self.label}: lookup flags {flags:#x} are invalid")
        self._check_read()
        self._check_lock(flags)
        return self._lookup_user(self._check_key(bytes(key)), flags)

    def update_raw(self, key: bytes, value: bytes, flags: int = 0) -> None:
        """BPF_MAP_UPDATE_ELEM."""
        self._check_write()
        self._check_lock(flags)
        key = self._check_key(bytes(key))
        value = bytes(value)
        if len(value) != self.user_value_size:
            raise MapInvalidArgumentError(
                f"{self.label}: value is {len(value)} bytes, the map's values are {self.user_value_size}"
            )
        self._update(key, value, flags, None)

    def delete_raw(self, key: bytes) -> None:
        """BPF_MAP_DELETE_ELEM."""
        self._check_write()
        self._delete(self._check_key(bytes(key)))

    def get_next_key_raw(self, key: bytes | None = None) -> bytes | None:
        """BPF_MAP_GET_NEXT_KEY: the key after ``key`` (None or an absent key: the first); None at the end."""
        self._check_read()
        return self._next_key(None if key is None else self._check_key(bytes(key)))

    def lookup_and_delete_raw(self, key: bytes = b"", flags: int = 0) -> bytes:
        """BPF_MAP_LOOKUP_AND_DELETE_ELEM (pop, for a queue or stack)."""
        if flags & ~F_LOCK:
            raise MapInvalidArgumentError(f"{self.label}: lookup_and_delete flags {flags:#x} are invalid")
        self._check_read()
        self._check_write()
        self._check_lock(flags)
        return self._lookup_and_delete(self._check_key(bytes(key)), flags)

    def freeze(self) -> None:
        """BPF_MAP_FREEZE: user space may no longer write the map; programs still may."""
        if self.spin_lock_offset is not None:
            raise not_supported(f"{self.label}: a map with special BTF fields cannot be frozen")
        self._check_write()
        self.frozen = True

    # -- codecs -----------------------------------------------------------------------------------

    def encode_key(self, key: Any) -> bytes:
        """Bytes for ``key``: bytes as they are, else BTF-typed or (without BTF) a little-endian int."""
        if isinstance(key, bytes | bytearray | memoryview):
            return bytes(key)
        definition = self.definition
        if definition.btf is not None and definition.btf_key_type_id:
            return btf_value_encode(definition.btf, definition.btf_key_type_id, key)
        return self._encode_int(key, self.key_size, "key")

    def decode_key(self, data: bytes) -> Any:
        definition = self.definition
        if definition.btf is not None and definition.btf_key_type_id:
            return btf_value_decode(definition.btf, definition.btf_key_type_id, data)
        return data

    def _encode_one_value(self, value: Any) -> bytes:
        if isinstance(value, bytes | bytearray | memoryview):
            return bytes(value)
        definition = self.definition
        if definition.btf is not None and definition.btf_value_type_id:
            return btf_value_encode(definition.btf, definition.btf_value_type_id, value)
        return self._encode_int(value, self.value_size, "value")

    def _decode_one_value(self, data: bytes) -> Any:
        definition = self.definition
        if definition.btf is not None and definition.btf_value_type_id:
            return btf_value_decode(definition.btf, definition.btf_value_type_id, data)
        return data

    # The Python-value API (m[key], in, iteration, items...) comes from UserMapApi.

    # -- batches ----------------------------------------------------------------------------------

    def _check_batch(self, what: str) -> None:
        if not self.SUPPORTS_BATCH:
            raise not_supported(f"{self.label}: {what}")

    def lookup_batch(self, start: Any = None, count: int | None = None) -> tuple[list[tuple[Any, Any]], Any]:
        """BPF_MAP_LOOKUP_BATCH: up to ``count`` items after the token ``start`` (None: from the
        beginning), and the token to continue from (None when the walk is over)."""
        self._check_batch("lookup_batch")
        self._check_read()
        key = None if start is None else self.encode_key(start)
        items: list[tuple[Any, Any]] = []
        while count is None or len(items) < count:
            key = self._next_key(key)
            if key is None:
                return items, None
            items.append((self.decode_key(key), self.decode_value(self._lookup_user(key, 0))))
        return items, None if key is None or self._next_key(key) is None else self.decode_key(key)

    def lookup_and_delete_batch(self, count: int | None = None) -> list[tuple[Any, Any]]:
        """BPF_MAP_LOOKUP_AND_DELETE_BATCH: remove and return up to ``count`` items."""
        self._check_batch("lookup_and_delete_batch")
        self._check_read()
        self._check_write()
        items: list[tuple[Any, Any]] = []
        while count is None or len(items) < count:
            key = self._next_key(None)
            if key is None:
                break
            items.append((self.decode_key(key), self.decode_value(self._lookup_and_delete(key, 0))))
        return items

    def update_batch(self, items: Iterable[tuple[Any, Any]], flags: int = 0) -> int:
        """BPF_MAP_UPDATE_BATCH: store each item in turn; the first failure stops the batch and is
        raised (with a note saying how many items were stored before it)."""
        self._check_batch("update_batch")
        done = 0
        for key, value in items:
            try:
                self.update(key, value, flags)
            except MapErrnoError as error:
                error.add_note(f"the batch stopped after {done} element(s)")
                raise
            done += 1
        return done

    def delete_batch(self, keys: Iterable[Any]) -> int:
        """BPF_MAP_DELETE_BATCH: delete each key in turn; the first failure stops the batch."""
        self._check_batch("delete_batch")
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
            f"<{type(self).__name__} {self.name!r} key_size={self.key_size} value_size={self.value_size}"
            f" max_entries={self.max_entries}>"
        )
