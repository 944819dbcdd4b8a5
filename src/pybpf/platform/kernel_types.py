"""The kernel types pybpf models: layouts of the kernel structs its user-space runtime provides.

A program may read some kernel objects directly: the ``struct bpf_map`` behind a map pointer
(``((struct bpf_map *)&my_map)->max_entries``), the ``struct vm_area_struct`` that
``bpf_find_vma`` hands its callback. The kernel checks such reads against the struct's BTF
(``btf_struct_access``) and libbpf relocates their offsets against vmlinux (CO-RE). In user
space these structs are what pybpf lays out, so this table is "pybpf's kernel": one
:class:`KernelStruct` per modelled type, which

* the verifier checks BTF-typed reads against (offset inside the struct, a pointer member read
  whole, a scalar read within its member),
* the runtime builds the objects' images from (:meth:`KernelStruct.pack`), at the address the
  program's pointer holds,
* the runtime turns into a small BTF, the CO-RE target for these types when no vmlinux BTF is
  given.

The layouts are pybpf's own (not the kernel's offsets): a program reaching them through CO-RE,
as it must reach the kernel's, reads the same fields either way. Fields the model lacks are
missing as from a kernel without them (a CO-RE relocation against the model fails, and the
instruction is poisoned).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from types import MappingProxyType

from pybpf.platform.uapi_generated import BpfMapType


class MemberKind(Enum):
    """What a member holds: a number (or an array of numbers), a pointer, or a nested struct."""

    SCALAR = "scalar"
    POINTER = "pointer"
    STRUCT = "struct"


@dataclass(frozen=True, slots=True)
class KernelMember:
    """One member. ``size`` covers the whole member (an array: all its elements, each of
    ``elem_size`` bytes); ``target`` names the struct a POINTER points to or a STRUCT is."""

    name: str
    offset: int
    size: int
    kind: MemberKind = MemberKind.SCALAR
    signed: bool = False
    target: str = ""
    elem_size: int = 0  # 0: not an array
    enum: str = ""  # a scalar of this enum type (CO-RE matches an enum member only with an enum)

    @property
    def is_array(self) -> bool:
        return self.elem_size > 0

    @property
    def end(self) -> int:
        return self.offset + self.size


@dataclass(frozen=True, slots=True)
class KernelStruct:
    """A modelled kernel struct: its size, its members in offset order, its alignment."""

    name: str
    size: int
    members: tuple[KernelMember, ...]
    align: int = 8

    def member(self, name: str) -> KernelMember | None:
        return next((member for member in self.members if member.name == name), None)

    def pack(self, values: Mapping[str, int | bytes]) -> bytes:
        """The struct's bytes (little-endian) with the named scalar members set; the rest zero.

        A nested struct member takes its own fields as ``"member.field"`` keys."""
        image = bytearray(self.size)
        self._fill(image, 0, values, "")
        return bytes(image)

    def _fill(self, image: bytearray, base: int, values: Mapping[str, int | bytes], prefix: str) -> None:
        for member in self.members:
            key = prefix + member.name
            if member.kind is MemberKind.STRUCT:
                KERNEL_STRUCTS[member.target]._fill(image, base + member.offset, values, key + ".")
                continue
            value = values.get(key)
            if value is None:
                continue
            start = base + member.offset
            if isinstance(value, bytes):
                data = value[: member.size].ljust(member.size, b"\0")
            else:
                data = (value & ((1 << (member.size * 8)) - 1)).to_bytes(member.size, "little")
            image[start : start + member.size] = data


BPF_OBJ_NAME_LEN = 16


def _scalar(name: str, offset: int, size: int, *, signed: bool = False, elem_size: int = 0,
            enum: str = "") -> KernelMember:
    return KernelMember(name, offset, size, MemberKind.SCALAR, signed, elem_size=elem_size, enum=enum)


_BPF_MAP = KernelStruct("bpf_map", 48, (
    _scalar("map_type", 0, 4, enum="bpf_map_type"),
    _scalar("key_size", 4, 4),
    _scalar("value_size", 8, 4),
    _scalar("max_entries", 12, 4),
    _scalar("map_extra", 16, 8),
    _scalar("map_flags", 24, 4),
    _scalar("name", 28, BPF_OBJ_NAME_LEN, elem_size=1),  # char name[BPF_OBJ_NAME_LEN]
))
_BPF_ARRAY = KernelStruct("bpf_array", 56, (
    KernelMember("map", 0, _BPF_MAP.size, MemberKind.STRUCT, target="bpf_map"),
    _scalar("elem_size", 48, 4),
    _scalar("index_mask", 52, 4),
))
_VM_AREA_STRUCT = KernelStruct("vm_area_struct", 32, (
    _scalar("vm_start", 0, 8),
    _scalar("vm_end", 8, 8),
    _scalar("vm_flags", 16, 8),
    _scalar("vm_pgoff", 24, 8),
))

KERNEL_STRUCTS: Mapping[str, KernelStruct] = MappingProxyType({
    struct.name: struct for struct in (_BPF_MAP, _BPF_ARRAY, _VM_AREA_STRUCT)
})
"""Every modelled kernel struct by name."""

_ARRAY_MAPS = frozenset({BpfMapType.ARRAY, BpfMapType.PERCPU_ARRAY, BpfMapType.PROG_ARRAY,
                         BpfMapType.PERF_EVENT_ARRAY, BpfMapType.CGROUP_ARRAY, BpfMapType.ARRAY_OF_MAPS})


def map_struct(map_type: BpfMapType | int) -> KernelStruct:
    """The kernel struct a map of ``map_type`` is (the kernel's ``map_ops->map_btf_id``): the
    array maps a ``struct bpf_array``; the others are modelled as their ``struct bpf_map`` only
    (the kernel's ``bpf_htab``, ``bpf_ringbuf_map``... extend it with fields not modelled)."""
    return _BPF_ARRAY if map_type in _ARRAY_MAPS else _BPF_MAP


def map_image(map_type: BpfMapType | int, *, key_size: int, value_size: int, max_entries: int, map_flags: int = 0,
              name: str = "", map_extra: int = 0) -> bytes:
    """The bytes of a map's modelled kernel struct (:func:`map_struct`), as the kernel fills them
    at map creation (``bpf_map_init_from_attr``; an array's ``elem_size`` and ``index_mask``)."""
    struct = map_struct(map_type)
    prefix = "map." if struct is _BPF_ARRAY else ""
    values: dict[str, int | bytes] = {
        prefix + "map_type": int(map_type), prefix + "key_size": key_size, prefix + "value_size": value_size,
        prefix + "max_entries": max_entries, prefix + "map_flags": map_flags, prefix + "map_extra": map_extra,
        prefix + "name": name.encode()[: BPF_OBJ_NAME_LEN - 1],
    }
    if struct is _BPF_ARRAY:
        values["elem_size"] = (value_size + 7) // 8 * 8
        # The kernel rounds max_entries up to a power of two for the Spectre-v1 index mask.
        values["index_mask"] = (1 << max(0, (max_entries - 1).bit_length())) - 1
    return struct.pack(values)


__all__ = [
    "BPF_OBJ_NAME_LEN",
    "KERNEL_STRUCTS",
    "KernelMember",
    "KernelStruct",
    "MemberKind",
    "map_image",
    "map_struct",
]
