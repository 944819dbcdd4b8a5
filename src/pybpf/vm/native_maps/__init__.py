"""The explicit interface between maps, the runtime's run state and native code (the JIT).

Native code serves ``bpf_map_lookup_elem`` and ``bpf_map_update_elem`` without calling Python
when the map exposes a **native descriptor**: a block of 64-bit fields (:class:`DescriptorField`)
at an address that stays the same for the map's lifetime, which the map keeps current as it
changes (values moved, index tables rebuilt). Native code re-reads the descriptor at every call,
so a map changed between two calls, by Python or by a helper, is seen at once.

Two nominal interfaces, implemented in the runtime (the VM layer never imports it):

* :class:`NativeMap`: a map that may have a descriptor (``native_descriptor()``; None keeps
  every operation in Python: LRU hashes, whose lookups must refresh recency, map-in-maps...).
* :class:`NativeRunSupport`: what one run tells native code: the descriptor behind a map pointer
  the program holds, the run's CPU, and which helper ids are the runtime's own implementations
  (only those have the semantics native code reproduces; a test's replacement stays in Python).

They are ABCs rather than ``typing.Protocol``: ``isinstance`` against a runtime-checkable
protocol costs microseconds in Python 3.11, and the JIT asks once per map per run.

Kinds (:class:`NativeMapKind`) and what their fields mean:

* ``ARRAY`` (ARRAY, PERCPU_ARRAY): the value of index ``k`` is at ``BASE + k * SLOT_SIZE``
  (plus the run's CPU times ``CPU_STRIDE``), for ``k < MAX_ENTRIES``.
* ``HASH`` (HASH, PERCPU_HASH): ``BASE`` is a :mod:`~pybpf.vm.native_maps.index` table of
  (hash, key address, value address) entries, 0 while none is available.
* ``LPM_TRIE``: ``BASE`` is an index table keyed by (prefix length, masked prefix); its header
  names the prefix lengths present, longest first (see :mod:`pybpf.vm.native_maps.index`).
"""

from __future__ import annotations

import ctypes
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum, IntFlag
from typing import TYPE_CHECKING

from pybpf.errors import VmError

if TYPE_CHECKING:
    from pybpf.vm.execution import HelperFn


class NativeMapKind(IntEnum):
    """How native code finds a value (``DescriptorField.KIND``)."""

    ARRAY = 1
    HASH = 2
    LPM_TRIE = 3


class NativeMapFlag(IntFlag):
    """``DescriptorField.FLAGS`` bits."""

    UPDATABLE = 1
    """``bpf_map_update_elem`` of an existing element (BPF_ANY/BPF_EXIST) may copy the value in
    place natively: not BPF_F_RDONLY_PROG, no bpf_spin_lock in the value, no side effect besides
    the copy (not an LRU map)."""


class DescriptorField(IntEnum):
    """Indices of a native descriptor's 64-bit fields."""

    KIND = 0
    """A :class:`NativeMapKind`."""
    FLAGS = 1
    """:class:`NativeMapFlag` bits."""
    KEY_SIZE = 2
    VALUE_SIZE = 3
    """Bytes an update copies (one CPU's copy for per-CPU maps)."""
    BASE = 4
    """ARRAY: the values; HASH, LPM_TRIE: the index table, 0 while unavailable (use Python)."""
    MAX_ENTRIES = 5
    """ARRAY: indices at or past it have no value."""
    SLOT_SIZE = 6
    """ARRAY: bytes from one index's value to the next."""
    CPU_STRIDE = 7
    """Bytes from CPU n's copy of a value to CPU n+1's (0 for maps that are not per-CPU)."""
    NCPUS = 8
    """Per-CPU maps: how many copies a value has (runs on another CPU use Python)."""
    MAX_PREFIXLEN = 9
    """LPM_TRIE: the key's data bits (a lookup key with a longer prefixlen finds nothing)."""


DESCRIPTOR_FIELDS = len(DescriptorField)


@dataclass(frozen=True, slots=True)
class NativeMapView:
    """A snapshot of a descriptor's fields (for Python readers: tests, debugging)."""

    kind: NativeMapKind
    flags: NativeMapFlag
    key_size: int
    value_size: int
    base: int
    max_entries: int
    slot_size: int
    cpu_stride: int
    ncpus: int
    max_prefixlen: int


class NativeMapDescriptor:
    """A map's descriptor: :data:`DESCRIPTOR_FIELDS` u64 fields at a stable native address.

    The map owns it and rewrites ``BASE`` (and nothing else) as its storage changes.
    """

    __slots__ = ("_fields", "address", "cpu_stride", "kind", "ncpus")

    def __init__(
        self,
        kind: NativeMapKind,
        flags: NativeMapFlag,
        key_size: int,
        value_size: int,
        *,
        base: int = 0,
        max_entries: int = 0,
        slot_size: int = 0,
        cpu_stride: int = 0,
        ncpus: int = 1,
        max_prefixlen: int = 0,
    ) -> None:
        if ncpus < 1:
            raise VmError(f"a native map descriptor needs at least one CPU, got {ncpus}")
        self.kind = kind
        self.cpu_stride = cpu_stride
        self.ncpus = ncpus
        values = [0] * DESCRIPTOR_FIELDS
        values[DescriptorField.KIND] = int(kind)
        values[DescriptorField.FLAGS] = int(flags)
        values[DescriptorField.KEY_SIZE] = key_size
        values[DescriptorField.VALUE_SIZE] = value_size
        values[DescriptorField.BASE] = base
        values[DescriptorField.MAX_ENTRIES] = max_entries
        values[DescriptorField.SLOT_SIZE] = slot_size
        values[DescriptorField.CPU_STRIDE] = cpu_stride
        values[DescriptorField.NCPUS] = ncpus
        values[DescriptorField.MAX_PREFIXLEN] = max_prefixlen
        self._fields = (ctypes.c_uint64 * DESCRIPTOR_FIELDS)(*values)
        self.address: int = ctypes.addressof(self._fields)

    def set_base(self, base: int) -> None:
        """Point ``BASE`` somewhere else (0: native code must ask Python until it is set again)."""
        self._fields[DescriptorField.BASE] = base

    @property
    def base(self) -> int:
        return int(self._fields[DescriptorField.BASE])

    def cpu_offset(self, cpu: int) -> int | None:
        """Where ``cpu``'s copy starts relative to CPU 0's, or None for a CPU the map has no copy for."""
        if self.cpu_stride and not 0 <= cpu < self.ncpus:
            return None
        return cpu * self.cpu_stride

    def view(self) -> NativeMapView:
        fields = self._fields
        return NativeMapView(
            kind=NativeMapKind(fields[DescriptorField.KIND]),
            flags=NativeMapFlag(fields[DescriptorField.FLAGS]),
            key_size=int(fields[DescriptorField.KEY_SIZE]),
            value_size=int(fields[DescriptorField.VALUE_SIZE]),
            base=int(fields[DescriptorField.BASE]),
            max_entries=int(fields[DescriptorField.MAX_ENTRIES]),
            slot_size=int(fields[DescriptorField.SLOT_SIZE]),
            cpu_stride=int(fields[DescriptorField.CPU_STRIDE]),
            ncpus=int(fields[DescriptorField.NCPUS]),
            max_prefixlen=int(fields[DescriptorField.MAX_PREFIXLEN]),
        )


class NativeMap(ABC):
    """A map native code may read (and update in place) without calling Python."""

    __slots__ = ()

    @abstractmethod
    def native_descriptor(self) -> NativeMapDescriptor | None:
        """The map's descriptor, or None when every program-side operation must go through Python."""


class NativeRunSupport(ABC):
    """What one run offers native helpers; the run's ``user`` object implements it (the runtime's RunState)."""

    __slots__ = ()

    @abstractmethod
    def native_map(self, pointer: int) -> NativeMapDescriptor | None:
        """The descriptor of the map a program holds as ``pointer``, or None (unknown map, no native view)."""

    @abstractmethod
    def native_cpu(self) -> int:
        """The run's CPU (``bpf_get_smp_processor_id``, which copy of a per-CPU value)."""

    @abstractmethod
    def native_helpers(self, helpers: Mapping[int, HelperFn]) -> frozenset[int]:
        """The helper ids among ``helpers`` whose implementation native code may stand in for this run.

        Only the runtime's own implementations qualify (a replacement's semantics are unknown),
        and only when the run's services match what native code does (the host clock for
        ``bpf_ktime_get_ns``).
        """
