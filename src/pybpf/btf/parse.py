"""Decode a raw ``.BTF`` blob (header, type section, string section) into type records.

The layout is include/uapi/linux/btf.h's: a ``struct btf_header``, then at ``hdr_len + type_off``
a packed run of ``struct btf_type`` each followed by kind-specific data, and at
``hdr_len + str_off`` NUL-terminated strings. Both byte orders are accepted; the magic tells which.

Every malformation raises :class:`~pybpf.errors.BtfFormatError` naming the type id and/or byte
offset: no IndexError, struct.error or UnicodeDecodeError ever escapes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Literal

from pybpf.btf.types import (
    BTF_HEADER_SIZE,
    BTF_MAGIC,
    BTF_MAX_TYPE_ID,
    BTF_VERSION,
    Array,
    BtfKind,
    BtfType,
    Const,
    Datasec,
    DeclTag,
    Enum,
    Enum64,
    EnumValue,
    Float,
    Func,
    FuncLinkage,
    FuncProto,
    Fwd,
    Int,
    IntEncoding,
    Member,
    Param,
    Ptr,
    Restrict,
    Struct,
    Typedef,
    TypeTag,
    Union,
    Var,
    VarLinkage,
    VarSecinfo,
    Volatile,
)
from pybpf.errors import BtfFormatError

ByteOrder = Literal["little", "big"]

_TYPE_HEADER_SIZE = 12


@dataclass(frozen=True, slots=True)
class BtfHeader:
    """``struct btf_header``; offsets are relative to the end of the header (``hdr_len``)."""

    magic: int
    version: int
    flags: int
    hdr_len: int
    type_off: int
    type_len: int
    str_off: int
    str_len: int
    byte_order: ByteOrder


def detect_byte_order(data: bytes, what: str = "BTF") -> ByteOrder:
    """The byte order whose reading of the first two bytes is BTF_MAGIC (shared with .BTF.ext)."""
    if len(data) < 2:
        raise BtfFormatError(f"{what} data is {len(data)} byte(s), too short for the magic", offset=0)
    if int.from_bytes(data[:2], "little") == BTF_MAGIC:
        return "little"
    if int.from_bytes(data[:2], "big") == BTF_MAGIC:
        return "big"
    raise BtfFormatError(f"bad {what} magic {data[:2].hex()} (want {BTF_MAGIC:#06x})", offset=0)


def decode_header(data: bytes) -> BtfHeader:
    """Decode and check the header: sections inside the blob, aligned, not overlapping."""
    order = detect_byte_order(data)
    prefix = "<" if order == "little" else ">"
    if len(data) < BTF_HEADER_SIZE:
        raise BtfFormatError(f"truncated header: {len(data)} of {BTF_HEADER_SIZE} bytes", offset=0)
    magic, version, flags, hdr_len, type_off, type_len, str_off, str_len = struct.unpack_from(
        prefix + "HBBIIIII", data, 0
    )
    header = BtfHeader(magic, version, flags, hdr_len, type_off, type_len, str_off, str_len, order)
    if header.version != BTF_VERSION:
        raise BtfFormatError(f"unsupported BTF version {header.version}", offset=2)
    if header.hdr_len < BTF_HEADER_SIZE:
        raise BtfFormatError(f"hdr_len {header.hdr_len} is shorter than {BTF_HEADER_SIZE}", offset=4)
    if header.hdr_len > len(data):
        raise BtfFormatError(f"hdr_len {header.hdr_len} runs past the {len(data)}-byte blob", offset=4)
    if any(data[BTF_HEADER_SIZE : header.hdr_len]):
        # The kernel rejects a longer header with non-zero unknown fields: they may change meaning.
        raise BtfFormatError("unknown non-zero fields in an extended header", offset=BTF_HEADER_SIZE)
    body = len(data) - header.hdr_len
    if header.type_off % 4:
        raise BtfFormatError(f"type section offset {header.type_off} is not 4-byte aligned", offset=8)
    for name, off, length in (("type", header.type_off, header.type_len), ("string", header.str_off, header.str_len)):
        if off + length > body:
            raise BtfFormatError(
                f"{name} section [{off}, {off + length}) runs past the {body}-byte body",
                offset=header.hdr_len + off,
            )
    type_end = header.type_off + header.type_len
    str_end = header.str_off + header.str_len
    if header.type_off < str_end and header.str_off < type_end and header.type_len and header.str_len:
        raise BtfFormatError("type and string sections overlap", offset=header.hdr_len + header.str_off)
    return header


class StringTable:
    """The string section (plus the base's, for split BTF): offset -> str, decoded on first use.

    Offsets below the base table's length refer to the base, as in libbpf's split BTF.
    Strings are decoded as UTF-8 with replacement characters: names are C identifiers, but line
    info carries arbitrary source text, and one odd byte must not make a whole object unloadable.
    """

    __slots__ = ("_base", "_cache", "_data", "_start")

    def __init__(self, data: bytes, base: StringTable | None = None) -> None:
        self._data = data
        self._base = base
        self._start = len(base) if base is not None else 0
        self._cache: dict[int, str] = {}
        if data and data[-1] != 0:
            raise BtfFormatError("string section does not end with NUL")
        if base is None and data and data[0] != 0:
            raise BtfFormatError("string section does not start with the empty string")

    def __len__(self) -> int:
        return self._start + len(self._data)

    def get(self, offset: int) -> str:
        """The NUL-terminated string at ``offset``; raises BtfFormatError when out of range."""
        cached = self._cache.get(offset)
        if cached is not None:
            return cached
        if offset < self._start and self._base is not None:
            return self._base.get(offset)
        local = offset - self._start
        if local >= len(self._data) or local < 0:
            if offset == 0:
                return ""  # an empty table still names every anonymous type
            raise BtfFormatError(f"string offset {offset} is outside the {len(self)}-byte string section")
        end = self._data.index(0, local)  # found: the section ends with NUL
        text = self._data[local:end].decode("utf-8", "replace")
        self._cache[offset] = text
        return text


def decode_types(
    data: bytes, header: BtfHeader, strings: StringTable, first_id: int = 1
) -> list[BtfType]:
    """Decode the type section into records; the first gets id ``first_id``.

    Referenced type ids are not range-checked here (the caller knows the final count).
    """
    prefix = "<" if header.byte_order == "little" else ">"
    type_header = struct.Struct(prefix + "III")
    u32 = struct.Struct(prefix + "I")
    i32 = struct.Struct(prefix + "i")
    triple = struct.Struct(prefix + "III")
    pair = struct.Struct(prefix + "II")
    name_val = struct.Struct(prefix + "Ii")
    view = memoryview(data)
    name_of = strings.get
    start = header.hdr_len + header.type_off
    end = start + header.type_len
    pos = start
    out: list[BtfType] = []
    append = out.append
    type_id = first_id
    try:
        while pos < end:
            if type_id > BTF_MAX_TYPE_ID:
                raise BtfFormatError(f"more than {BTF_MAX_TYPE_ID} types", type_id=type_id, offset=pos)
            if pos + _TYPE_HEADER_SIZE > end:
                raise BtfFormatError("truncated type header", type_id=type_id, offset=pos)
            name_off, info, size_or_type = type_header.unpack_from(data, pos)
            pos += _TYPE_HEADER_SIZE
            kind = (info >> 24) & 0x1F
            vlen = info & 0xFFFF
            kind_flag = bool(info >> 31)
            name = name_of(name_off) if name_off else ""
            if kind == BtfKind.INT:
                if pos + 4 > end:
                    raise BtfFormatError("truncated INT data", type_id=type_id, offset=pos)
                (word,) = u32.unpack_from(data, pos)
                pos += 4
                append(Int(name, size_or_type, IntEncoding((word >> 24) & 0x0F), (word >> 16) & 0xFF, word & 0xFF))
            elif kind == BtfKind.PTR:
                append(Ptr(name, size_or_type))
            elif kind in (BtfKind.STRUCT, BtfKind.UNION):
                need = 12 * vlen
                if pos + need > end:
                    raise BtfFormatError(f"truncated members ({vlen} expected)", type_id=type_id, offset=pos)
                if kind_flag:
                    members = tuple(
                        Member(name_of(m_name) if m_name else "", m_type, m_off & 0xFFFFFF, m_off >> 24)
                        for m_name, m_type, m_off in triple.iter_unpack(view[pos : pos + need])
                    )
                else:
                    members = tuple(
                        Member(name_of(m_name) if m_name else "", m_type, m_off)
                        for m_name, m_type, m_off in triple.iter_unpack(view[pos : pos + need])
                    )
                pos += need
                cls = Struct if kind == BtfKind.STRUCT else Union
                append(cls(name, size_or_type, members, kind_flag))
            elif kind == BtfKind.FUNC_PROTO:
                need = 8 * vlen
                if pos + need > end:
                    raise BtfFormatError(f"truncated parameters ({vlen} expected)", type_id=type_id, offset=pos)
                params = tuple(
                    Param(name_of(p_name) if p_name else "", p_type)
                    for p_name, p_type in pair.iter_unpack(view[pos : pos + need])
                )
                pos += need
                append(FuncProto(name, size_or_type, params))
            elif kind == BtfKind.FUNC:
                if vlen > FuncLinkage.EXTERN:
                    raise BtfFormatError(f"unknown FUNC linkage {vlen}", type_id=type_id, offset=pos - 12)
                append(Func(name, size_or_type, FuncLinkage(vlen)))
            elif kind == BtfKind.TYPEDEF:
                append(Typedef(name, size_or_type))
            elif kind == BtfKind.CONST:
                append(Const(name, size_or_type))
            elif kind == BtfKind.VOLATILE:
                append(Volatile(name, size_or_type))
            elif kind == BtfKind.RESTRICT:
                append(Restrict(name, size_or_type))
            elif kind == BtfKind.ARRAY:
                if pos + 12 > end:
                    raise BtfFormatError("truncated ARRAY data", type_id=type_id, offset=pos)
                elem, index, nelems = triple.unpack_from(data, pos)
                pos += 12
                append(Array(name, elem, index, nelems))
            elif kind == BtfKind.ENUM:
                need = 8 * vlen
                if pos + need > end:
                    raise BtfFormatError(f"truncated enumerators ({vlen} expected)", type_id=type_id, offset=pos)
                # The 32-bit value is signed or not according to kind_flag.
                if kind_flag:
                    values = tuple(
                        EnumValue(name_of(e_name) if e_name else "", e_val)
                        for e_name, e_val in name_val.iter_unpack(view[pos : pos + need])
                    )
                else:
                    values = tuple(
                        EnumValue(name_of(e_name) if e_name else "", e_val)
                        for e_name, e_val in pair.iter_unpack(view[pos : pos + need])
                    )
                pos += need
                append(Enum(name, size_or_type, values, kind_flag))
            elif kind == BtfKind.ENUM64:
                need = 12 * vlen
                if pos + need > end:
                    raise BtfFormatError(f"truncated enumerators ({vlen} expected)", type_id=type_id, offset=pos)
                values64: list[EnumValue] = []
                for e_name, lo, hi in triple.iter_unpack(view[pos : pos + need]):
                    value = (hi << 32) | lo
                    if kind_flag and value >= 1 << 63:
                        value -= 1 << 64
                    values64.append(EnumValue(name_of(e_name) if e_name else "", value))
                pos += need
                append(Enum64(name, size_or_type, tuple(values64), kind_flag))
            elif kind == BtfKind.FWD:
                append(Fwd(name, kind_flag))
            elif kind == BtfKind.VAR:
                if pos + 4 > end:
                    raise BtfFormatError("truncated VAR data", type_id=type_id, offset=pos)
                (linkage,) = u32.unpack_from(data, pos)
                if linkage > VarLinkage.GLOBAL_EXTERN:
                    raise BtfFormatError(f"unknown VAR linkage {linkage}", type_id=type_id, offset=pos)
                pos += 4
                append(Var(name, size_or_type, VarLinkage(linkage)))
            elif kind == BtfKind.DATASEC:
                need = 12 * vlen
                if pos + need > end:
                    raise BtfFormatError(f"truncated secinfos ({vlen} expected)", type_id=type_id, offset=pos)
                secinfos = tuple(VarSecinfo(*rec) for rec in triple.iter_unpack(view[pos : pos + need]))
                pos += need
                append(Datasec(name, size_or_type, secinfos))
            elif kind == BtfKind.FLOAT:
                append(Float(name, size_or_type))
            elif kind == BtfKind.DECL_TAG:
                if pos + 4 > end:
                    raise BtfFormatError("truncated DECL_TAG data", type_id=type_id, offset=pos)
                (component,) = i32.unpack_from(data, pos)
                pos += 4
                append(DeclTag(name, size_or_type, component))
            elif kind == BtfKind.TYPE_TAG:
                append(TypeTag(name, size_or_type))
            else:
                raise BtfFormatError(f"unknown BTF kind {kind}", type_id=type_id, offset=pos - 12)
            type_id += 1
    except BtfFormatError as err:
        if err.type_id is None:  # a string lookup failed: say which type named it
            raise BtfFormatError(err.reason, type_id=type_id, offset=pos) from err
        raise
    return out
