"""The BTF of pybpf's kernel: the modelled kernel structs as a CO-RE relocation target.

A program reads kernel structs through CO-RE (``struct bpf_map { ... }
__attribute__((preserve_access_index))``); libbpf relocates the offsets against the kernel's
vmlinux BTF. Run in user space, the structs are those pybpf lays out
(:mod:`pybpf.platform.kernel_types`), so their relocations resolve against :func:`model_btf`,
a BTF built from that table, whenever no vmlinux BTF is given. Relocations of every other type
keep resolving against the object's own BTF (see :func:`pybpf.runtime.relocate.apply_core`).
"""

from __future__ import annotations

import functools

from pybpf.btf import Array, Btf, BtfType, Enum, Int, IntEncoding, Member, Ptr, Struct
from pybpf.btf.parse import StringTable
from pybpf.platform.kernel_types import KERNEL_STRUCTS, KernelMember, MemberKind


@functools.cache
def model_btf() -> Btf:
    """The modelled kernel structs (and the ints, enums, arrays and pointers their members use)."""
    types: list[BtfType] = []
    ids: dict[object, int] = {}

    def add(key: object, record: BtfType) -> int:
        known = ids.get(key)
        if known is None:
            types.append(record)
            known = ids[key] = len(types)
        return known

    # Structs first, so that members may refer to any of them by id.
    struct_ids = {name: index + 1 for index, name in enumerate(KERNEL_STRUCTS)}
    types.extend(Struct(name, 0, ()) for name in struct_ids)  # placeholders, replaced below
    ids.update(struct_ids)
    index_type = add(("int", 4, True), Int("int", 4, IntEncoding.SIGNED, 0, 32))

    def scalar(size: int, signed: bool, char: bool) -> int:
        if char:
            return add(("char", 1), Int("char", 1, IntEncoding.SIGNED, 0, 8))
        name = {1: "unsigned char", 2: "short unsigned int", 4: "unsigned int", 8: "long long unsigned int"}[size]
        if signed:
            name = {1: "signed char", 2: "short int", 4: "int", 8: "long long int"}[size]
        return add(("int", size, signed), Int(name, size, IntEncoding.SIGNED if signed else IntEncoding(0), 0,
                                              size * 8))

    def member_type(member: KernelMember) -> int:
        if member.kind is MemberKind.STRUCT:
            return struct_ids[member.target]
        if member.kind is MemberKind.POINTER:
            return add(("ptr", member.target), Ptr("", struct_ids[member.target]))
        if member.enum:
            return add(("enum", member.enum), Enum(member.enum, member.size, ()))
        if member.is_array:
            element = scalar(member.elem_size, member.signed, char=member.elem_size == 1)
            count = member.size // member.elem_size
            return add(("array", element, count), Array("", element, index_type, count))
        return scalar(member.size, member.signed, char=False)

    for name, struct in KERNEL_STRUCTS.items():
        members = tuple(Member(member.name, member_type(member), member.offset * 8) for member in struct.members)
        types[struct_ids[name] - 1] = Struct(name, struct.size, members)
    return Btf(types, StringTable(b"\0"))


__all__ = ["model_btf"]
