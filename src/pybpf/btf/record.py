"""Special fields of a map value, as the kernel finds them in its BTF (``btf_parse_fields``).

A map value may embed kernel-managed objects: a ``struct bpf_spin_lock``, a ``struct
bpf_timer``, a ``struct bpf_wq``... The kernel locates them by the struct's name among the
value's members (looking into nested structs too) and keeps their offsets in the map's
``btf_record``: the lock and timer helpers must be handed exactly these offsets, and a program
may not touch their bytes with loads and stores. Each kind may appear at most once in a value
(more, and the kernel refuses to create the map with E2BIG).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from pybpf.btf.btf import Btf
from pybpf.btf.types import Datasec, Struct, Var
from pybpf.errors import BtfFieldError

_MAX_DEPTH = 8  # nesting the search follows (the kernel's is bounded too)


class FieldKind(Enum):
    """``enum btf_field_type`` for the fields this module finds; the value is the struct's name
    (which is also how the kernel's messages name the field)."""

    SPIN_LOCK = "bpf_spin_lock"
    RES_SPIN_LOCK = "bpf_res_spin_lock"
    TIMER = "bpf_timer"
    WORKQUEUE = "bpf_wq"
    REFCOUNT = "bpf_refcount"


_BY_NAME = {kind.value: kind for kind in FieldKind}


@dataclass(frozen=True, slots=True)
class SpecialField:
    """One kernel-managed object inside a map value: its kind, byte offset and size."""

    kind: FieldKind
    offset: int
    size: int


def _collect(btf: Btf, struct: Struct, base: int, depth: int, found: list[SpecialField]) -> None:
    for member in struct.members:
        member_type = btf.resolved(member.type_id)
        if not isinstance(member_type, Struct):
            continue
        offset = base + member.bit_offset // 8
        kind = _BY_NAME.get(member_type.name)
        if kind is not None:
            found.append(SpecialField(kind, offset, member_type.size))
        elif depth < _MAX_DEPTH:
            _collect(btf, member_type, offset, depth + 1, found)


def special_fields(btf: Btf, type_id: int) -> tuple[SpecialField, ...]:
    """The special fields of a map value of BTF type ``type_id``, by offset.

    Raises :class:`BtfFieldError` when a kind appears twice."""
    value = btf.resolved(type_id)
    found: list[SpecialField] = []
    if isinstance(value, Struct):
        _collect(btf, value, 0, 0, found)
    elif isinstance(value, Datasec):
        # Global data (btf_find_datasec_var): each variable of the section is a member.
        for placed in value.vars:
            var = btf[placed.type_id]
            var_type = btf.resolved(var.type_id) if isinstance(var, Var) else None
            if not isinstance(var_type, Struct):
                continue
            kind = _BY_NAME.get(var_type.name)
            if kind is not None:
                found.append(SpecialField(kind, placed.offset, var_type.size))
            else:
                _collect(btf, var_type, placed.offset, 1, found)
    seen: set[FieldKind] = set()
    for field in found:
        if field.kind in seen:
            raise BtfFieldError(f"the map value holds more than one {field.kind.value}")
        seen.add(field.kind)
    return tuple(sorted(found, key=lambda field: field.offset))


__all__ = ["FieldKind", "SpecialField", "special_fields"]
