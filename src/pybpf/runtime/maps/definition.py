"""``MapDef``: everything needed to create a map, as plain parameters.

The ELF loader's :class:`~pybpf.obj.spec.MapSpec` describes the same thing for an object file;
:meth:`MapDef.from_spec` converts one (it needs the object's BTF, which the spec only names by
type id). ``MapDef`` adds what a spec cannot know: the BTF itself.
"""

from __future__ import annotations

import errno as errno_codes
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pybpf.btf import Btf, FieldKind, SpecialField, special_fields
from pybpf.errors import BtfFieldError, MapErrnoError, MapInvalidArgumentError, MapOperationNotSupportedError
from pybpf.platform.kptr_types import kptr_kernel_type
from pybpf.platform.uapi_generated import BpfMapFlag, BpfMapType

if TYPE_CHECKING:
    from pybpf.obj.spec import MapSpec

ENOTSUPP = 524
"""The kernel-internal 'operation not supported' that bpf(2) leaks to user space."""

ACCESS_MASK = BpfMapFlag.RDONLY | BpfMapFlag.WRONLY | BpfMapFlag.RDONLY_PROG | BpfMapFlag.WRONLY_PROG
"""BPF_F_ACCESS_MASK: the flags that restrict who may read or write."""


def round_up8(size: int) -> int:
    """``round_up(size, 8)``: the per-CPU stride and the slot alignment the kernel uses."""
    return (size + 7) & ~7


@dataclass(frozen=True, slots=True)
class MapDef:
    """A map to create: the fields of BPF_MAP_CREATE, plus the BTF its type ids refer to.

    ``inner`` is the template of a map-in-map's inner maps (the kernel's ``inner_map_fd``);
    ``map_extra`` is the bloom filter's number of hash functions (low 4 bits), an arena's user
    address (0: the runtime's choice).
    """

    type: BpfMapType
    key_size: int
    value_size: int
    max_entries: int
    map_flags: int = 0
    name: str = ""
    inner: MapDef | None = None
    btf: Btf | None = None
    btf_key_type_id: int = 0
    btf_value_type_id: int = 0
    map_extra: int = 0

    @classmethod
    def from_spec(cls, spec: MapSpec, btf: Btf | None = None) -> MapDef:
        """The definition of an object file's map (``btf`` is the object's, for typed maps)."""
        inner = cls.from_spec(spec.inner, btf) if spec.inner is not None else None
        return cls(
            type=spec.type,
            key_size=spec.key_size,
            value_size=spec.value_size,
            max_entries=spec.max_entries,
            map_flags=spec.map_flags,
            name=spec.name,
            inner=inner,
            btf=btf,
            btf_key_type_id=(spec.btf_key_type_id or 0) if btf is not None else 0,
            btf_value_type_id=(spec.btf_value_type_id or 0) if btf is not None else 0,
            map_extra=spec.map_extra,
        )

    @property
    def flags(self) -> BpfMapFlag:
        return BpfMapFlag(self.map_flags)

    def has_graph_roots(self) -> bool:
        """Whether the value holds a ``bpf_list_head`` or ``bpf_rb_root`` (whose objects an
        update, a delete or the map's destruction frees)."""
        if self.btf is None or not self.btf_value_type_id:
            return False
        try:
            fields = special_fields(self.btf, self.btf_value_type_id)
        except BtfFieldError:
            return False  # kptr_fields refuses such a value
        return any(field.kind in (FieldKind.LIST_HEAD, FieldKind.RB_ROOT) for field in fields)

    def kptr_fields(self) -> tuple[SpecialField, ...]:
        """The value's kptrs, checked as ``btf_parse_fields``/``map_check_btf`` check them: a
        value the kernel's BTF parser refuses, a map type that cannot hold kptrs, or a
        referenced kptr of a kernel struct without a destructor fail the map's creation."""
        if self.btf is None or not self.btf_value_type_id:
            return ()
        try:
            fields = special_fields(self.btf, self.btf_value_type_id)
        except BtfFieldError as error:
            raise invalid(self, str(error)) from error
        kptrs = tuple(field for field in fields if field.kind.is_kptr)
        if kptrs and self.type not in KPTR_MAP_TYPES:
            raise MapOperationNotSupportedError(f"map {self.name!r}: a {self.type.name} map cannot hold kptrs",
                                                errno_codes.EOPNOTSUPP, "EOPNOTSUPP")
        for field in kptrs:
            kernel = kptr_kernel_type(field.target)
            if field.kind is FieldKind.KPTR_REF and kernel is not None and not kernel.dtor:
                raise MapErrnoError(f"map {self.name!r}: the kernel has no destructor for a referenced "
                                    f"struct {field.target} kptr", errno_codes.ENOENT, "ENOENT")
        return kptrs

    def spin_lock_offset(self) -> int | None:
        """Byte offset of the value's ``struct bpf_spin_lock`` (nested structs included), if any.

        Only such maps accept BPF_F_LOCK, and their user-space copies leave the lock alone. The
        search is the verifier's (:func:`pybpf.btf.special_fields`), so both agree on where it is.
        """
        if self.btf is None or not self.btf_value_type_id:
            return None
        for special in special_fields(self.btf, self.btf_value_type_id):
            if special.kind is FieldKind.SPIN_LOCK:
                return special.offset
        return None


KPTR_MAP_TYPES = frozenset({
    BpfMapType.HASH, BpfMapType.PERCPU_HASH, BpfMapType.LRU_HASH, BpfMapType.LRU_PERCPU_HASH, BpfMapType.ARRAY,
    BpfMapType.PERCPU_ARRAY, BpfMapType.SK_STORAGE, BpfMapType.INODE_STORAGE, BpfMapType.TASK_STORAGE,
})  # and BPF_MAP_TYPE_CGRP_STORAGE (32), not in our uapi table
"""The map types whose values may hold kptrs (``map_check_btf``; others: EOPNOTSUPP)."""


def invalid(definition: MapDef, reason: str) -> MapInvalidArgumentError:
    """The EINVAL a map creation fails with, naming the map and the reason."""
    label = f"map {definition.name!r}" if definition.name else "map"
    return MapInvalidArgumentError(f"{label} ({definition.type.name}): {reason}", errno_codes.EINVAL)


def check_flags(definition: MapDef, allowed: int) -> None:
    """EINVAL for flags outside ``allowed``, or for contradictory access flags (both RDONLY and WRONLY)."""
    flags = definition.map_flags
    extra = int(flags) & ~int(allowed)
    if extra:
        raise invalid(definition, f"map_flags {extra:#x} are not allowed for this map type")
    both_user = BpfMapFlag.RDONLY | BpfMapFlag.WRONLY
    both_prog = BpfMapFlag.RDONLY_PROG | BpfMapFlag.WRONLY_PROG
    if flags & both_user == both_user or flags & both_prog == both_prog:
        raise invalid(definition, "a map cannot be both read-only and write-only")
