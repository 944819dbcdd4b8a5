"""Text renderings of BTF: C-like type names, and ``bpftool btf dump ... format raw`` lines.

Both return strings; nothing here prints.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from pybpf.btf.types import (
    Array,
    BtfType,
    Const,
    Datasec,
    DeclTag,
    Enum,
    Enum64,
    Float,
    Func,
    FuncProto,
    Fwd,
    Int,
    IntEncoding,
    Ptr,
    Restrict,
    Struct,
    Typedef,
    TypeTag,
    Union,
    Var,
    VarLinkage,
    Void,
    Volatile,
)
from pybpf.errors import BtfTypeError

if TYPE_CHECKING:
    from pybpf.btf.btf import Btf

_MAX_DEPTH = 64
_QUALIFIERS = (Const, Volatile, Restrict, TypeTag)


def _qualifier_word(record: Const | Volatile | Restrict | TypeTag) -> str:
    if isinstance(record, Const):
        return "const"
    if isinstance(record, Volatile):
        return "volatile"
    if isinstance(record, Restrict):
        return "restrict"
    return f'__attribute__((btf_type_tag("{record.name}")))'


def format_c_type(btf: Btf, type_id: int, name: str = "") -> str:
    """A C spelling of ``type_id``, declaring ``name`` when given (see :meth:`Btf.format_type`)."""
    return _declare(btf, type_id, name, 0)


def _params(btf: Btf, proto: FuncProto, depth: int, with_names: bool) -> str:
    parts = []
    for param in proto.params:
        if param.type_id == 0 and not param.name:
            parts.append("...")
        else:
            parts.append(_declare(btf, param.type_id, param.name if with_names else "", depth + 1))
    return ", ".join(parts) if parts else "void"


def _tagged(keyword: str, name: str) -> str:
    return f"{keyword} {name}" if name else f"{keyword} {{...}}"


def _declare(btf: Btf, type_id: int, declarator: str, depth: int) -> str:
    """C reads declarations inside-out: pointers and qualifiers wrap ``declarator`` on the left,
    arrays and parameter lists on the right, and the innermost type supplies the base name."""
    if depth > _MAX_DEPTH:
        raise BtfTypeError(f"type nesting deeper than {_MAX_DEPTH} (a loop?)", type_id=type_id)
    record = btf[type_id]
    base: str
    if isinstance(record, Void):
        base = "void"
    elif isinstance(record, Int | Float | Typedef):
        base = record.name
    elif isinstance(record, Struct):
        base = _tagged("struct", record.name)
    elif isinstance(record, Union):
        base = _tagged("union", record.name)
    elif isinstance(record, Enum | Enum64):
        base = _tagged("enum", record.name)
    elif isinstance(record, Fwd):
        base = _tagged("union" if record.is_union else "struct", record.name)
    elif isinstance(record, Ptr):
        return _declare(btf, record.type_id, "*" + declarator, depth + 1)
    elif isinstance(record, _QUALIFIERS):
        word = _qualifier_word(record)
        if _qualifies_pointer(btf, record.type_id, depth):
            # `int *const p`: the qualifier belongs to the pointer, right of its star.
            inner = f"{word} {declarator}" if declarator else word
            return _declare(btf, record.type_id, inner, depth + 1)
        return f"{word} {_declare(btf, record.type_id, declarator, depth + 1)}"
    elif isinstance(record, Array):
        inner = f"({declarator})" if declarator.startswith("*") else declarator
        return _declare(btf, record.type_id, f"{inner}[{record.nelems}]", depth + 1)
    elif isinstance(record, FuncProto):
        inner = f"({declarator})" if declarator.startswith("*") else declarator
        return _declare(btf, record.return_type_id, f"{inner}({_params(btf, record, depth, False)})", depth + 1)
    elif isinstance(record, Func):
        proto = btf[record.type_id]
        if not isinstance(proto, FuncProto):
            raise BtfTypeError(f"FUNC refers to {proto.KIND.name}, not FUNC_PROTO", type_id=type_id)
        decl = f"{declarator or record.name}({_params(btf, proto, depth, True)})"
        return _declare(btf, proto.return_type_id, decl, depth + 1)
    elif isinstance(record, Var):
        return _declare(btf, record.type_id, declarator or record.name, depth + 1)
    elif isinstance(record, Datasec):
        base = f'SEC("{record.name}")'
    else:  # DeclTag: an annotation, not a type
        base = f'__attribute__((btf_decl_tag("{record.name}")))'
    return f"{base} {declarator}" if declarator else base


def _qualifies_pointer(btf: Btf, type_id: int, depth: int) -> bool:
    current = type_id
    for _ in range(_MAX_DEPTH - depth):
        record = btf[current]
        if isinstance(record, Ptr):
            return True
        if not isinstance(record, _QUALIFIERS):
            return False
        current = record.type_id
    raise BtfTypeError(f"qualifier chain longer than {_MAX_DEPTH} (a loop?)", type_id=type_id)


# -- bpftool's raw format --------------------------------------------------------------------

_INT_ENCODING = {0: "(none)", IntEncoding.SIGNED: "SIGNED", IntEncoding.CHAR: "CHAR", IntEncoding.BOOL: "BOOL"}
_VAR_LINKAGE = {VarLinkage.STATIC: "static", VarLinkage.GLOBAL_ALLOCATED: "global", VarLinkage.GLOBAL_EXTERN: "extern"}


def _quoted(name: str) -> str:
    return f"'{name or '(anon)'}'"


def format_raw_type(btf: Btf, type_id: int) -> list[str]:
    """The lines ``bpftool btf dump ... format raw`` prints for one type (members on their own
    tab-indented lines)."""
    record: BtfType = btf[type_id]
    head = f"[{type_id}] {record.KIND.name} {_quoted(record.name)}"
    extra: list[str] = []
    if isinstance(record, Int):
        encoding = _INT_ENCODING.get(int(record.encoding), "UNKN")
        head += f" size={record.size} bits_offset={record.offset} nr_bits={record.bits} encoding={encoding}"
    elif isinstance(record, Ptr | Const | Volatile | Restrict | Typedef | TypeTag):
        head += f" type_id={record.type_id}"
    elif isinstance(record, Array):
        head += f" type_id={record.type_id} index_type_id={record.index_type_id} nr_elems={record.nelems}"
    elif isinstance(record, Struct | Union):
        head += f" size={record.size} vlen={len(record.members)}"
        for member in record.members:
            line = f"\t{_quoted(member.name)} type_id={member.type_id} bits_offset={member.bit_offset}"
            if member.bitfield_size:
                line += f" bitfield_size={member.bitfield_size}"
            extra.append(line)
    elif isinstance(record, Enum | Enum64):
        encoding = "SIGNED" if record.signed else "UNSIGNED"
        head += f" encoding={encoding} size={record.size} vlen={len(record.values)}"
        suffix = "" if isinstance(record, Enum) else ("LL" if record.signed else "ULL")
        extra.extend(f"\t{_quoted(value.name)} val={value.value}{suffix}" for value in record.values)
    elif isinstance(record, Fwd):
        head += f" fwd_kind={'union' if record.is_union else 'struct'}"
    elif isinstance(record, Func):
        head += f" type_id={record.type_id} linkage={record.linkage.name.lower()}"
    elif isinstance(record, FuncProto):
        head += f" ret_type_id={record.return_type_id} vlen={len(record.params)}"
        extra.extend(f"\t{_quoted(param.name)} type_id={param.type_id}" for param in record.params)
    elif isinstance(record, Var):
        head += f" type_id={record.type_id}, linkage={_VAR_LINKAGE[record.linkage]}"
    elif isinstance(record, Datasec):
        head += f" size={record.size} vlen={len(record.vars)}"
        for secinfo in record.vars:
            target = btf[secinfo.type_id]
            extra.append(
                f"\ttype_id={secinfo.type_id} offset={secinfo.offset} size={secinfo.size}"
                f" ({target.KIND.name} {_quoted(target.name)})"
            )
    elif isinstance(record, Float):
        head += f" size={record.size}"
    elif isinstance(record, DeclTag):
        head += f" type_id={record.type_id} component_idx={record.component_idx}"
    return [head, *extra]


def iter_raw_dump(btf: Btf) -> Iterator[str]:
    """Every line of ``bpftool btf dump file X format raw`` for ``btf`` (for split BTF, only its
    own types, as bpftool prints them)."""
    for type_id in range(btf.start_id, len(btf)):
        yield from format_raw_type(btf, type_id)


def dump_raw(btf: Btf) -> str:
    """The whole raw dump as one string, newline-terminated like bpftool's output."""
    return "".join(line + "\n" for line in iter_raw_dump(btf))
