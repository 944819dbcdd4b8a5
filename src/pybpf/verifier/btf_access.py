"""Reads of kernel objects through BTF-typed pointers, checked against pybpf's modelled layouts.

The kernel lets a program read a kernel struct through a ``PTR_TO_BTF_ID`` (``task``,
``vma``...) or through a map pointer (``CONST_PTR_TO_MAP``: the map's own ``struct bpf_map`` /
``struct bpf_array``), checking each read against the struct's BTF (``btf_struct_access`` and
its ``btf_struct_walk``): inside the struct, not in a hole, a pointer member read whole (the
result is a BTF pointer to its pointee), a scalar read within its member (an array of scalars
is one member), nested structs walked into. Writes are refused. Only privileged loaders may
read kernel structs at all.

The layouts are those of :mod:`pybpf.platform.kernel_types` (the structs pybpf's user-space
runtime lays out). A ``PTR_TO_BTF_ID`` to a struct pybpf does not model (``task_struct``, the
sockets) keeps the older rule: readable without a layout check (see the package doc).
"""

from __future__ import annotations

from dataclasses import dataclass

from pybpf.platform.kernel_types import KERNEL_STRUCTS, KernelStruct, MemberKind
from pybpf.verifier.machine import Env, reject, tnum_text
from pybpf.verifier.state import RegState


@dataclass(frozen=True, slots=True)
class FieldRead:
    """What a checked read yields: a number, or a BTF pointer to ``pointer_to`` (a pointer member)."""

    pointer_to: str | None = None


def struct_walk(struct: KernelStruct, off: int, size: int) -> FieldRead:
    """``btf_struct_walk`` for a read of ``size`` bytes at ``off``: what the read yields, or a
    rejection in the kernel's words."""
    while True:
        if off + size > struct.size:
            raise reject(f"access beyond struct {struct.name} at off {off} size {size}")
        # The members are in offset order; an offset before the next member is a hole.
        member = next((m for m in struct.members if m.offset <= off < m.end), None)
        if member is None:
            raise reject(f"struct {struct.name} doesn't have field at offset {off}")
        if member.kind is MemberKind.STRUCT:
            struct, off = KERNEL_STRUCTS[member.target], off - member.offset  # walk on inside it
            continue
        if member.kind is MemberKind.POINTER:
            if size != member.size or off != member.offset:
                raise reject(f"cannot access ptr member {member.name} with moff {member.offset} in struct "
                             f"{struct.name} with off {off} size {size}")
            return FieldRead(pointer_to=member.target)
        # A scalar may be read in part, anywhere inside its member (an array of scalars is one).
        if off + size > member.end:
            raise reject(f"access beyond the end of member {member.name} (mend:{member.end}) in struct "
                         f"{struct.name} with off {off} size {size}")
        return FieldRead()


def _privileged_read(env: Env, name: str) -> None:
    if not env.options.privileged:
        raise reject(f"'struct {name}' access is allowed only to CAP_PERFMON and CAP_SYS_ADMIN")


def map_struct_access(env: Env, regno: int, reg: RegState, struct: KernelStruct, *, off: int, size: int,
                      write: bool) -> FieldRead:
    """``check_ptr_to_map_access``: a read of the map's kernel struct (``struct`` for its type)."""
    _privileged_read(env, struct.name)
    off += reg.off
    if off < 0:
        raise reject(f"R{regno} is {struct.name} invalid negative access: off={off}")
    if write:
        raise reject(f"only read from {struct.name} is supported")
    return struct_walk(struct, off, size)


def btf_object_access(env: Env, regno: int, reg: RegState, *, off: int, size: int, write: bool) -> FieldRead | None:
    """``check_ptr_to_btf_access`` for a pointer to a modelled struct: the value read. None when
    pybpf does not model the struct (the caller keeps its unchecked rule)."""
    struct = KERNEL_STRUCTS.get(reg.btf_type)
    if struct is None:
        return None
    _privileged_read(env, struct.name)
    if not env.options.gpl:
        raise reject(f"Cannot access kernel 'struct {struct.name}' from non-GPL compatible program")
    off += reg.off
    if off < 0:
        raise reject(f"R{regno} is ptr_{struct.name} invalid negative access: off={off}")
    if not reg.var_off.is_const() or reg.var_off.const_value():
        raise reject(f"R{regno} is ptr_{struct.name} invalid variable offset: off={off}, "
                     f"var_off={tnum_text(reg.var_off)}")
    if write:
        raise reject("only read is supported")
    return struct_walk(struct, off, size)


__all__ = ["FieldRead", "btf_object_access", "map_struct_access", "struct_walk"]
