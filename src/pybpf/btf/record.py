"""Special fields of a map value, as the kernel finds them in its BTF (``btf_parse_fields``).

A map value may embed kernel-managed objects: a ``struct bpf_spin_lock``, a ``struct
bpf_timer``, a ``struct bpf_wq``... The kernel locates them by the struct's name among the
value's members (looking into nested structs too) and keeps their offsets in the map's
``btf_record``: the lock and timer helpers must be handed exactly these offsets, and a program
may not touch their bytes with loads and stores. Each of these kinds may appear at most once in
a value (more, and the kernel refuses to create the map with E2BIG).

A member may also be a **kptr**: a pointer to a struct whose pointee carries a BTF type tag
(``btf_find_kptr``): ``struct task_struct __kptr *t`` (tag ``kptr``, a referenced kptr the map
owns), ``__kptr_untrusted`` (tag ``kptr_untrusted``, an unreferenced one) or ``__percpu_kptr``
(tag ``percpu_kptr``, a program-allocated per-CPU object). A kptr is 8 bytes at an 8-aligned
offset (a misaligned one is an ordinary pointer, as the kernel ignores it), any number of them
may appear, arrays of them (and of structs holding them) repeat them per element; an unknown
tag, two tags or a pointee that is not a struct make the kernel refuse the value. Whether the
pointee is a kernel type (found by name in vmlinux) or a program-local one is the loader's
question, not this module's: :attr:`SpecialField.target` names it.

Graph fields may repeat too: a ``struct bpf_list_head`` / ``struct bpf_rb_root`` (a *root*) names
the objects it holds with a ``contains:<struct>:<node member>`` decl tag (``__contains(foo,
node)``) on its member, or on the variable for global data; the node member is a ``struct
bpf_list_node`` / ``struct bpf_rb_node`` of that struct (:attr:`SpecialField.root`). A record
holding a root must hold a ``struct bpf_spin_lock`` too (the lock that protects it). The same
search finds the fields of a program-allocated object's type (``btf_parse_struct_metas``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

from pybpf.btf.btf import Btf
from pybpf.btf.types import Array, BtfKind, Datasec, DeclTag, Ptr, Struct, TypeTag, Var, Volatile
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
    # kptrs: the value is the type tag that makes the pointer one.
    KPTR_UNREF = "kptr_untrusted"
    KPTR_REF = "kptr"
    KPTR_PERCPU = "percpu_kptr"
    LIST_HEAD = "bpf_list_head"
    LIST_NODE = "bpf_list_node"
    RB_ROOT = "bpf_rb_root"
    RB_NODE = "bpf_rb_node"

    @property
    def is_kptr(self) -> bool:
        return self in _KPTR_KINDS

    @property
    def label(self) -> str:
        """How the kernel's messages name the field (``btf_field_type_name``)."""
        return "kptr" if self is FieldKind.KPTR_UNREF else self.value


_KPTR_KINDS = frozenset({FieldKind.KPTR_UNREF, FieldKind.KPTR_REF, FieldKind.KPTR_PERCPU})
_BY_NAME = {kind.value: kind for kind in FieldKind if kind not in _KPTR_KINDS}
_BY_TAG = {kind.value: kind for kind in _KPTR_KINDS}
KPTR_SIZE = 8  # a kptr is a u64, 8-aligned (btf_field_type_size/align)
# The graph kinds may repeat in a record; a root's node is of the matching kind.
_REPEATABLE = frozenset({FieldKind.LIST_HEAD, FieldKind.LIST_NODE, FieldKind.RB_ROOT, FieldKind.RB_NODE})
GRAPH_NODE_OF = {FieldKind.LIST_HEAD: FieldKind.LIST_NODE, FieldKind.RB_ROOT: FieldKind.RB_NODE}
"""For each root kind, the node kind its contained objects link through."""
_CONTAINS = "contains:"


@dataclass(frozen=True, slots=True)
class GraphRoot:
    """What a list head or rb-tree root holds: objects of struct ``value_type`` (type id
    ``value_type_id`` in the same BTF), linked through their node member ``node_name`` at byte
    ``node_offset``."""

    value_type: str
    value_type_id: int
    node_name: str
    node_offset: int


@dataclass(frozen=True, slots=True)
class SpecialField:
    """One kernel-managed object inside a map value: its kind, byte offset and size; for a
    kptr, the struct it points to (its name, and its type id in the value's BTF); for a list
    head or rb-tree root, what it holds."""

    kind: FieldKind
    offset: int
    size: int
    target: str = ""
    target_id: int = 0
    root: GraphRoot | None = None


def _contains_tag(btf: Btf, holder: int, component: int) -> str | None:
    """The value of a ``contains:`` decl tag on member ``component`` of type ``holder`` (-1: on
    the type or variable itself)."""
    for tag in btf:
        if isinstance(tag, DeclTag) and tag.type_id == holder and tag.component_idx == component \
                and tag.name.startswith(_CONTAINS):
            return tag.name[len(_CONTAINS):]
    return None


def _graph_root(btf: Btf, kind: FieldKind, holder: int, component: int) -> GraphRoot:
    """``btf_parse_graph_root``: the struct and node member a root's ``contains:`` tag names."""
    tag = _contains_tag(btf, holder, component)
    if tag is None or ":" not in tag:
        raise BtfFieldError(f"a {kind.value} needs a __contains(type, node) tag naming what it holds")
    value_name, node_name = tag.split(":", 1)
    value_id = btf.find(value_name, BtfKind.STRUCT)
    value = btf[value_id] if value_id is not None else None
    if not isinstance(value, Struct):
        raise BtfFieldError(f"the {kind.value} contains struct {value_name}, which the BTF does not define")
    node_kind = GRAPH_NODE_OF[kind]
    for member in value.members:
        if member.name != node_name:
            continue
        node_type = btf.resolved(member.type_id)
        if not isinstance(node_type, Struct) or node_type.name != node_kind.value or member.bit_offset % 8:
            raise BtfFieldError(f"member {node_name} of struct {value_name} is not a struct {node_kind.value}")
        return GraphRoot(value_name, value_id or 0, node_name, member.bit_offset // 8)
    raise BtfFieldError(f"struct {value_name} has no member {node_name}")


def _named_field(btf: Btf, kind: FieldKind, offset: int, size: int, holder: int,  # noqa: PLR0917
                 component: int) -> SpecialField:
    root = _graph_root(btf, kind, holder, component) if kind in GRAPH_NODE_OF else None
    return SpecialField(kind, offset, size, root=root)


def _kptr(btf: Btf, type_id: int, offset: int) -> SpecialField | None:
    """``btf_find_kptr``: the kptr a member of type ``type_id`` at ``offset`` is, if it is one."""
    member_type = btf[type_id]
    if isinstance(member_type, Volatile):  # a modifier on the pointer itself is allowed
        member_type = btf[member_type.type_id]
    if not isinstance(member_type, Ptr):
        return None
    tag = btf[member_type.type_id]
    if not isinstance(tag, TypeTag):
        return None
    if isinstance(btf[tag.type_id], TypeTag):
        raise BtfFieldError(f"the kptr at offset {offset} carries more than one type tag")
    kind = _BY_TAG.get(tag.name)
    if kind is None:
        raise BtfFieldError(f"unknown type tag {tag.name!r} on the pointer at offset {offset}")
    target_id = btf.resolve(tag.type_id)
    target = btf[target_id]
    if not isinstance(target, Struct):
        raise BtfFieldError(f"the kptr at offset {offset} does not point to a struct")
    if offset % KPTR_SIZE:
        return None  # the kernel ignores a misaligned one (an ordinary pointer)
    return SpecialField(kind, offset, KPTR_SIZE, target.name, target_id)


def _element(btf: Btf, type_id: int) -> tuple[int, int]:
    """The element type of a (possibly nested) array member, and how many elements it has."""
    count = 1
    for _ in range(_MAX_DEPTH):
        array = btf[type_id]
        if not isinstance(array, Array):
            break
        count *= array.nelems
        type_id = array.type_id
    return type_id, count


def _repeat(fields: list[SpecialField], count: int, stride: int) -> list[SpecialField]:
    """``btf_repeat_fields``: an array's fields once per element; only kptrs may repeat."""
    if count <= 1 or not fields:
        return fields
    if not all(field.kind.is_kptr for field in fields):
        raise BtfFieldError(f"an array holds {fields[0].kind.label} fields")
    return [SpecialField(field.kind, field.offset + index * stride, field.size, field.target, field.target_id,
                         field.root)
            for index in range(count) for field in fields]


def _collect(btf: Btf, struct_id: int, base: int, depth: int, found: list[SpecialField]) -> None:
    struct = btf[struct_id]
    if not isinstance(struct, Struct):
        return
    for index, member in enumerate(struct.members):
        offset = base + member.bit_offset // 8
        element_id, count = _element(btf, member.type_id)
        if count == 0:
            continue
        kptr = _kptr(btf, element_id, offset)
        if kptr is not None:
            found.extend(_repeat([kptr], count, KPTR_SIZE))
            continue
        member_type = btf.resolved(element_id)
        if not isinstance(member_type, Struct):
            continue
        kind = _BY_NAME.get(member_type.name)
        if kind is not None:
            special = _named_field(btf, kind, offset, member_type.size, struct_id, index)
            found.extend(_repeat([special], count, member_type.size))
        elif depth < _MAX_DEPTH:
            nested: list[SpecialField] = []
            _collect(btf, btf.resolve(element_id), offset, depth + 1, nested)
            found.extend(_repeat(nested, count, member_type.size))


def special_fields(btf: Btf, type_id: int, var_offsets: Mapping[str, int] | None = None) -> tuple[SpecialField, ...]:
    """The special fields of a map value of BTF type ``type_id``, by offset.

    ``var_offsets``: for global data (a DATASEC), each variable's offset as the ELF symbols give
    it (clang emits the DATASEC with offsets the loader fixes up).

    Raises :class:`BtfFieldError` when a kind other than a kptr or graph field appears twice,
    for a kptr the kernel refuses (unknown or repeated tag, not pointing to a struct), and for a
    graph root whose ``contains:`` tag is missing or wrong or that no spin lock protects."""
    value = btf.resolved(type_id)
    found: list[SpecialField] = []
    if isinstance(value, Struct):
        _collect(btf, btf.resolve(type_id), 0, 0, found)
    elif isinstance(value, Datasec):
        # Global data (btf_find_datasec_var): each variable of the section is a member.
        for placed in value.vars:
            var = btf[placed.type_id]
            if not isinstance(var, Var):
                continue
            offset = var_offsets.get(var.name, placed.offset) if var_offsets is not None else placed.offset
            element_id, count = _element(btf, var.type_id)
            kptr = _kptr(btf, element_id, offset) if count else None
            if kptr is not None:
                found.extend(_repeat([kptr], count, KPTR_SIZE))
                continue
            var_type = btf.resolved(var.type_id)
            if not isinstance(var_type, Struct):
                continue
            kind = _BY_NAME.get(var_type.name)
            if kind is not None:
                found.append(_named_field(btf, kind, offset, var_type.size, placed.type_id, -1))
            else:
                _collect(btf, btf.resolve(var.type_id), offset, 1, found)
    seen: set[FieldKind] = set()
    for field in found:
        if field.kind.is_kptr:
            continue
        if field.kind in seen and field.kind not in _REPEATABLE:
            raise BtfFieldError(f"the map value holds more than one {field.kind.value}")
        seen.add(field.kind)
    if (FieldKind.LIST_HEAD in seen or FieldKind.RB_ROOT in seen) and FieldKind.SPIN_LOCK not in seen:
        # btf_parse_fields: a list head or rb-tree root is only usable under a lock beside it.
        raise BtfFieldError("a bpf_list_head or bpf_rb_root needs a bpf_spin_lock in the same value")
    return tuple(sorted(found, key=lambda field: field.offset))


__all__ = ["GRAPH_NODE_OF", "KPTR_SIZE", "FieldKind", "GraphRoot", "SpecialField", "special_fields"]
