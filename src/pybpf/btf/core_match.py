"""CO-RE type compatibility rules (libbpf's relo_core.c semantics, our own code).

Three relations decide whether a target type can stand in for a local one:

- :func:`fields_are_compat` for the type of a matched struct member (field relocations);
- :func:`types_are_compat` for the root of TYPE_ID_TARGET / TYPE_EXISTS / TYPE_SIZE;
- :func:`types_match` for TYPE_MATCHES, a stricter, layout-aware relation.

Names are compared by their *essential* part: ``task_struct___v2`` and ``task_struct`` are the
same type to CO-RE (the ``___suffix`` "flavour" lets one program carry several local layouts).
"""

from __future__ import annotations

from pybpf.btf.btf import Btf
from pybpf.btf.types import (
    Array,
    BtfType,
    Enum,
    Enum64,
    Float,
    FuncProto,
    Fwd,
    Int,
    Ptr,
    Struct,
    Union,
    Void,
)
from pybpf.errors import CoreReloError

# libbpf's recursion bound for compatibility checks (MAX_TYPES_ARE_COMPAT_DEPTH, MAX_TYPES_MATCH_DEPTH).
MAX_COMPAT_DEPTH = 32


def essential_name(name: str) -> str:
    """``name`` without its last ``___flavour`` suffix: the rightmost ``X___Y`` with X and Y not
    underscores marks where the flavour starts."""
    for i in range(len(name) - 5, -1, -1):
        if name[i] != "_" and name[i + 1 : i + 4] == "___" and name[i + 4] != "_":
            return name[: i + 1]
    return name


def names_match(local: str, target: str) -> bool:
    """Essential names equal; an anonymous target only matches an anonymous local."""
    if not target:
        return not local
    return essential_name(local) == essential_name(target)


def kinds_core_compat(local: BtfType, target: BtfType) -> bool:
    """Same kind, except that ENUM and ENUM64 are interchangeable."""
    if isinstance(local, Enum | Enum64):
        return isinstance(target, Enum | Enum64)
    return local.KIND == target.KIND


def _depth_error(local_id: int) -> CoreReloError:
    return CoreReloError(f"types nest deeper than {MAX_COMPAT_DEPTH} levels", type_id=local_id)


def fields_are_compat(local: Btf, local_id: int, target: Btf, target_id: int) -> bool:
    """Can a member of type ``target_id`` be read where the program expects ``local_id``?"""
    for _ in range(MAX_COMPAT_DEPTH):
        local_type = local.resolved(local_id)
        target_type = target.resolved(target_id)
        if isinstance(local_type, Struct | Union) and isinstance(target_type, Struct | Union):
            return True  # composites are compared member by member by the accessor walk
        if not kinds_core_compat(local_type, target_type):
            return False
        if isinstance(local_type, Ptr | Float):
            return True
        if isinstance(local_type, Fwd | Enum | Enum64):
            local_name = essential_name(local_type.name)
            target_name = essential_name(target_type.name)
            return not local_name or not target_name or local_name == target_name
        if isinstance(local_type, Int) and isinstance(target_type, Int):
            # Old-style bitfield ints (non-zero offset) cannot be relocated.
            return local_type.offset == 0 and target_type.offset == 0
        if isinstance(local_type, Array) and isinstance(target_type, Array):
            local_id, target_id = local_type.type_id, target_type.type_id
            continue
        return False
    raise _depth_error(local_id)


def types_are_compat(local: Btf, local_id: int, target: Btf, target_id: int, depth: int = 0) -> bool:
    """The relation for type-based relocations: kinds agree, pointers/arrays/prototypes recurse."""
    for _ in range(MAX_COMPAT_DEPTH - depth):
        local_type = local.resolved(local_id)
        target_type = target.resolved(target_id)
        if not kinds_core_compat(local_type, target_type):
            return False
        if isinstance(local_type, Void | Struct | Union | Enum | Enum64 | Fwd):
            return True
        if isinstance(local_type, Int) and isinstance(target_type, Int):
            return local_type.offset == 0 and target_type.offset == 0
        if (isinstance(local_type, Ptr) and isinstance(target_type, Ptr)) or (
            isinstance(local_type, Array) and isinstance(target_type, Array)
        ):
            local_id, target_id = local_type.type_id, target_type.type_id
        elif isinstance(local_type, FuncProto) and isinstance(target_type, FuncProto):
            if len(local_type.params) != len(target_type.params):
                return False
            for local_param, target_param in zip(local_type.params, target_type.params, strict=True):
                if not types_are_compat(local, local_param.type_id, target, target_param.type_id, depth + 1):
                    return False
            local_id, target_id = local_type.return_type_id, target_type.return_type_id
        else:
            return False  # libbpf does not relocate other kinds (FLOAT, FUNC, VAR...)
    raise _depth_error(local_id)


def types_match(local: Btf, local_id: int, target: Btf, target_id: int) -> bool:
    """TYPE_MATCHES: names, kinds, signedness, sizes, array lengths, every local member/enumerator
    present in the target; behind a pointer, a struct matches its forward declaration."""
    return _types_match(local, local_id, target, target_id, behind_ptr=False, depth=0)


def _types_match(local: Btf, local_id: int, target: Btf, target_id: int, *, behind_ptr: bool, depth: int) -> bool:
    for _ in range(MAX_COMPAT_DEPTH - depth):
        local_type = local.resolved(local_id)
        target_type = target.resolved(target_id)
        if not names_match(local_type.name, target_type.name):
            return False
        if isinstance(local_type, Void):
            return isinstance(target_type, Void)
        if isinstance(local_type, Fwd):
            if isinstance(target_type, Fwd):
                return local_type.is_union == target_type.is_union
            if behind_ptr:
                return isinstance(target_type, Union) if local_type.is_union else isinstance(target_type, Struct)
            return False
        if isinstance(local_type, Enum | Enum64):
            return isinstance(target_type, Enum | Enum64) and _enums_match(local_type, target_type)
        if isinstance(local_type, Struct | Union):
            if behind_ptr:
                if local_type.KIND == target_type.KIND:
                    return True
                return isinstance(target_type, Fwd) and target_type.is_union == isinstance(local_type, Union)
            if local_type.KIND != target_type.KIND:
                return False
            target_composite = target_type
            if not isinstance(target_composite, Struct | Union):
                return False
            return _composites_match(
                local, local_type, target, target_composite, behind_ptr=behind_ptr, depth=depth
            )
        if isinstance(local_type, Int):
            return (
                isinstance(target_type, Int)
                and local_type.size == target_type.size
                and local_type.is_signed == target_type.is_signed
            )
        if isinstance(local_type, Ptr):
            if not isinstance(target_type, Ptr):
                return False
            behind_ptr = True
            local_id, target_id = local_type.type_id, target_type.type_id
        elif isinstance(local_type, Array):
            if not isinstance(target_type, Array) or local_type.nelems != target_type.nelems:
                return False
            local_id, target_id = local_type.type_id, target_type.type_id
        elif isinstance(local_type, FuncProto):
            if not isinstance(target_type, FuncProto) or len(local_type.params) != len(target_type.params):
                return False
            for local_param, target_param in zip(local_type.params, target_type.params, strict=True):
                if not _types_match(
                    local, local_param.type_id, target, target_param.type_id, behind_ptr=behind_ptr, depth=depth + 1
                ):
                    return False
            local_id, target_id = local_type.return_type_id, target_type.return_type_id
        else:
            return False
        depth += 1
    raise _depth_error(local_id)


def _enums_match(local_type: Enum | Enum64, target_type: Enum | Enum64) -> bool:
    if local_type.size != target_type.size or len(local_type.values) > len(target_type.values):
        return False
    return all(
        any(names_match(value.name, other.name) for other in target_type.values) for value in local_type.values
    )


def _composites_match(
    local: Btf, local_type: Struct | Union, target: Btf, target_type: Struct | Union, *, behind_ptr: bool, depth: int
) -> bool:
    if len(local_type.members) > len(target_type.members):
        return False
    for member in local_type.members:
        if not any(
            names_match(member.name, other.name)
            and _types_match(local, member.type_id, target, other.type_id, behind_ptr=behind_ptr, depth=depth + 1)
            for other in target_type.members
        ):
            return False
    return True
