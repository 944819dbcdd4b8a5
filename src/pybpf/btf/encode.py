"""BTF encoding: type records back to the wire format ``BPF_BTF_LOAD`` and ``.BTF`` sections use.

:func:`encode_btf` is the inverse of :meth:`pybpf.btf.Btf.from_bytes` for little-endian BTF: the
types get ids 1, 2, ... in the order given, their names go into a fresh string table (each name
once), and the header is the 24-byte version-1 header. It serves whoever must hand the kernel BTF
it did not read from an object: a map value layout or function prototypes described in a test.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from pybpf.btf.types import (
    Array,
    BtfKind,
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
    Ptr,
    Restrict,
    Struct,
    Typedef,
    TypeTag,
    Union,
    Var,
    Void,
    Volatile,
)
from pybpf.errors import BtfFormatError

BTF_MAGIC = 0xEB9F
BTF_VERSION = 1
_HEADER = struct.Struct("<HBBIIIII")  # magic, version, flags, hdr_len, type_off, type_len, str_off, str_len
_COMMON = struct.Struct("<III")  # name_off, info, size_or_type
_U32 = struct.Struct("<I")
_I32 = struct.Struct("<i")
_PAIR = struct.Struct("<II")
_TRIPLE = struct.Struct("<III")


class _Strings:
    """A string table under construction: each distinct string stored once, "" at offset 0."""

    def __init__(self) -> None:
        self.data = bytearray(b"\0")
        self.offsets: dict[str, int] = {"": 0}

    def add(self, text: str) -> int:
        offset = self.offsets.get(text)
        if offset is None:
            offset = self.offsets[text] = len(self.data)
            self.data += text.encode() + b"\0"
        return offset


def _info(kind: BtfKind, vlen: int = 0, kind_flag: bool = False) -> int:
    if not 0 <= vlen <= 0xFFFF:
        raise BtfFormatError(f"a {kind.name} record cannot have {vlen} entries")
    return (int(kind_flag) << 31) | (int(kind) << 24) | vlen


def _record(record: BtfType, strings: _Strings) -> bytes:
    name = strings.add(record.name)
    match record:
        case Int():
            data = (int(record.encoding) << 24) | (record.offset << 16) | record.bits
            return _COMMON.pack(name, _info(BtfKind.INT), record.size) + _U32.pack(data)
        case Ptr() | Typedef() | Volatile() | Const() | Restrict() | TypeTag():
            return _COMMON.pack(name, _info(record.KIND), record.type_id)
        case Array():
            return (_COMMON.pack(name, _info(BtfKind.ARRAY), 0)
                    + _TRIPLE.pack(record.type_id, record.index_type_id, record.nelems))
        case Struct() | Union():
            body = b"".join(
                _TRIPLE.pack(strings.add(member.name), member.type_id,
                             (member.bitfield_size << 24) | member.bit_offset if record.kind_flag
                             else member.bit_offset)
                for member in record.members)
            return _COMMON.pack(name, _info(record.KIND, len(record.members), record.kind_flag), record.size) + body
        case Enum():
            body = b"".join(_U32.pack(strings.add(value.name)) + _U32.pack(value.value & 0xFFFFFFFF)
                            for value in record.values)
            return _COMMON.pack(name, _info(BtfKind.ENUM, len(record.values), record.signed), record.size) + body
        case Enum64():
            body = b"".join(_U32.pack(strings.add(value.name))
                            + _PAIR.pack(value.value & 0xFFFFFFFF, (value.value >> 32) & 0xFFFFFFFF)
                            for value in record.values)
            return _COMMON.pack(name, _info(BtfKind.ENUM64, len(record.values), record.signed), record.size) + body
        case Fwd():
            return _COMMON.pack(name, _info(BtfKind.FWD, 0, record.is_union), 0)
        case Func():
            return _COMMON.pack(name, _info(BtfKind.FUNC, int(record.linkage)), record.type_id)
        case FuncProto():
            body = b"".join(_PAIR.pack(strings.add(param.name), param.type_id) for param in record.params)
            return _COMMON.pack(name, _info(BtfKind.FUNC_PROTO, len(record.params)), record.return_type_id) + body
        case Var():
            return _COMMON.pack(name, _info(BtfKind.VAR), record.type_id) + _U32.pack(int(record.linkage))
        case Datasec():
            body = b"".join(_TRIPLE.pack(var.type_id, var.offset, var.size) for var in record.vars)
            return _COMMON.pack(name, _info(BtfKind.DATASEC, len(record.vars)), record.size) + body
        case Float():
            return _COMMON.pack(name, _info(BtfKind.FLOAT), record.size)
        case DeclTag():
            return _COMMON.pack(name, _info(BtfKind.DECL_TAG), record.type_id) + _I32.pack(record.component_idx)
        case Void():
            raise BtfFormatError("void (type id 0) has no record to encode")
    raise BtfFormatError(f"cannot encode a {type(record).__name__} record")  # pragma: no cover - union exhausted


def encode_btf(types: Sequence[BtfType]) -> bytes:
    """A little-endian BTF blob holding ``types`` as ids 1..len(types)."""
    strings = _Strings()
    body = b"".join(_record(record, strings) for record in types)
    header = _HEADER.pack(BTF_MAGIC, BTF_VERSION, 0, _HEADER.size, 0, len(body), len(body), len(strings.data))
    return header + body + bytes(strings.data)


__all__ = ["encode_btf"]
