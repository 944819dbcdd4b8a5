"""An object's BTF made acceptable to the kernel: DATASEC fix-up and sanitisation, on raw bytes.

clang writes every DATASEC with ``size = 0`` and its variables at ``offset = 0``: it cannot know
where the assembler will put them. libbpf fills them in from the ELF before BPF_BTF_LOAD (the
kernel rejects a zero-sized DATASEC), and so does :func:`fix_datasecs`: the size is the
section's, each variable's offset its symbol's value, and the variables are sorted by offset
(the kernel wants them in increasing, non-overlapping order).

:func:`sanitize` rewrites the kinds an older kernel does not know into kinds it does, record
for record of the same size so that every type id stays valid (libbpf's
``bpf_object__sanitize_btf``). Only the kinds listed in ``missing`` are touched.

The BTF is edited in place in its wire format rather than re-encoded from :class:`pybpf.btf.Btf`:
that keeps every type id and string offset exactly as the object's ``.BTF.ext`` refers to them.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass
from enum import IntEnum

from pybpf.errors import BtfFormatError, NotSupportedError

BTF_MAGIC = 0xEB9F
_HEADER = struct.Struct("<HBBIIIII")  # magic, version, flags, hdr_len, type_off, type_len, str_off, str_len
_TYPE = struct.Struct("<III")  # name_off, info, size_or_type
_U32 = struct.Struct("<I")
_SECINFO = struct.Struct("<III")  # type, offset, size


class Kind(IntEnum):
    """``BTF_KIND_*`` numbers as they appear in ``info`` bits 24-28."""

    INT = 1
    PTR = 2
    ARRAY = 3
    STRUCT = 4
    UNION = 5
    ENUM = 6
    FWD = 7
    TYPEDEF = 8
    VOLATILE = 9
    CONST = 10
    RESTRICT = 11
    FUNC = 12
    FUNC_PROTO = 13
    VAR = 14
    DATASEC = 15
    FLOAT = 16
    DECL_TAG = 17
    TYPE_TAG = 18
    ENUM64 = 19


class VarLinkage(IntEnum):
    """``BTF_VAR_*`` and ``BTF_FUNC_*`` linkage values."""

    STATIC = 0
    GLOBAL = 1
    EXTERN = 2


# Bytes that follow the 12-byte btf_type header: a fixed part and a per-vlen part.
_EXTRA: dict[int, tuple[int, int]] = {
    Kind.INT: (4, 0),
    Kind.ARRAY: (12, 0),
    Kind.STRUCT: (0, 12),
    Kind.UNION: (0, 12),
    Kind.ENUM: (0, 8),
    Kind.FUNC_PROTO: (0, 8),
    Kind.VAR: (4, 0),
    Kind.DATASEC: (0, 12),
    Kind.DECL_TAG: (4, 0),
    Kind.ENUM64: (0, 12),
}


def _info(kind: int, vlen: int, kind_flag: bool = False) -> int:
    return (int(kind_flag) << 31) | (kind << 24) | (vlen & 0xFFFF)


@dataclass(frozen=True, slots=True)
class _Record:
    type_id: int
    offset: int  # of the btf_type header, from the start of the blob
    kind: int
    vlen: int
    kind_flag: bool
    name_off: int
    size: int  # of the whole record, header included


class RawBtf:
    """A mutable copy of a BTF blob with its record index and string table."""

    def __init__(self, data: bytes) -> None:
        if len(data) < _HEADER.size:
            raise BtfFormatError("BTF blob shorter than its header")
        magic, _version, _flags, hdr_len, type_off, type_len, str_off, str_len = _HEADER.unpack_from(data)
        if magic != BTF_MAGIC:
            raise BtfFormatError(f"bad BTF magic {magic:#x} (only little-endian BTF is loaded)")
        self.data = bytearray(data)
        self.type_start = hdr_len + type_off
        self.type_end = self.type_start + type_len
        self.str_start = hdr_len + str_off
        self.str_end = self.str_start + str_len
        if self.type_end > len(data) or self.str_end > len(data):
            raise BtfFormatError("BTF sections run past the end of the blob")
        self.records = list(self._walk())

    def _walk(self) -> Iterator[_Record]:
        offset, type_id = self.type_start, 1
        while offset < self.type_end:
            name_off, info, _ = _TYPE.unpack_from(self.data, offset)
            kind, vlen, kind_flag = (info >> 24) & 0x1F, info & 0xFFFF, bool(info >> 31)
            fixed, per_item = _EXTRA.get(kind, (0, 0))
            size = _TYPE.size + fixed + per_item * vlen
            yield _Record(type_id, offset, kind, vlen, kind_flag, name_off, size)
            offset += size
            type_id += 1
        if offset != self.type_end:
            raise BtfFormatError("BTF type section ends inside a record")

    def string(self, offset: int) -> str:
        start = self.str_start + offset
        end = self.data.index(0, start, self.str_end)
        return self.data[start:end].decode("utf-8", errors="replace")

    def strings(self) -> dict[str, int]:
        """Each string of the table to its (first) offset."""
        table: dict[str, int] = {}
        raw = bytes(self.data[self.str_start : self.str_end])
        position = 0
        for piece in raw.split(b"\0"):
            table.setdefault(piece.decode("utf-8", errors="replace"), position)
            position += len(piece) + 1
        return table

    def rename_dots(self, name_off: int) -> None:
        """Replace '.' by '_' in the string at ``name_off`` (in place: same length)."""
        start = self.str_start + name_off
        end = self.data.index(0, start, self.str_end)
        self.data[start:end] = self.data[start:end].replace(b".", b"_")

    def identifier(self) -> int:
        """The offset of some string that is a valid C identifier (for names the kernel demands)."""
        for text, offset in self.strings().items():
            if text.isidentifier() and text.isascii():
                return offset
        raise NotSupportedError("the BTF string table holds no identifier to name sanitised types with")

    def record(self, type_id: int) -> _Record:
        return self.records[type_id - 1]

    def set_header(self, record: _Record, kind: int, vlen: int, size_or_type: int, *, kind_flag: bool = False) -> None:
        _TYPE.pack_into(self.data, record.offset, record.name_off, _info(kind, vlen, kind_flag), size_or_type)

    def to_bytes(self) -> bytes:
        return bytes(self.data)


def fix_datasecs(
    raw: RawBtf,
    section_sizes: Mapping[str, int],
    symbol_offsets: Callable[[str, str], int | None],
) -> None:
    """Give each DATASEC its ELF section's size and each of its variables its symbol's offset.

    ``symbol_offsets(section, name)`` is the value of symbol ``name`` in ``section`` (None when
    the ELF has no such symbol: the entry keeps its offset, as libbpf does for externs).
    DATASECs whose section the object lacks are left alone.
    """
    for record in raw.records:
        if record.kind != Kind.DATASEC:
            continue
        section = raw.string(record.name_off)
        size = section_sizes.get(section)
        if size is None:
            continue
        entries = []
        base = record.offset + _TYPE.size
        for index in range(record.vlen):
            type_id, offset, var_size = _SECINFO.unpack_from(raw.data, base + index * _SECINFO.size)
            var = raw.record(type_id) if 0 < type_id <= len(raw.records) else None
            if var is not None and var.kind == Kind.VAR:
                found = symbol_offsets(section, raw.string(var.name_off))
                if found is not None:
                    offset = found
            entries.append((type_id, offset, var_size))
        entries.sort(key=lambda entry: entry[1])
        for index, entry in enumerate(entries):
            _SECINFO.pack_into(raw.data, base + index * _SECINFO.size, *entry)
        raw.set_header(record, Kind.DATASEC, record.vlen, size)


def sanitize(raw: RawBtf, missing: Collection[Kind], *, func_global: bool = True) -> None:
    """Rewrite the kinds in ``missing`` into older ones of the same record size (libbpf's choices).

    VAR becomes INT and DATASEC a STRUCT (same member layout); FUNC_PROTO becomes ENUM and FUNC a
    TYPEDEF; FLOAT an empty STRUCT of its size; DECL_TAG an INT; TYPE_TAG a CONST (ENUM64: NotSupportedError).
    ``func_global=False`` turns global FUNCs static (kernels before 5.6 knew only static).
    """
    for record in raw.records:
        kind = record.kind
        if kind not in missing:
            if kind == Kind.FUNC and not func_global and record.vlen == VarLinkage.GLOBAL:
                _, _, type_id = _TYPE.unpack_from(raw.data, record.offset)
                raw.set_header(record, Kind.FUNC, VarLinkage.STATIC, type_id)
            continue
        body = record.offset + _TYPE.size
        match kind:
            case Kind.VAR | Kind.DECL_TAG:
                # INT size 1, 8 bits, no encoding: 4 extra bytes like VAR's linkage or the tag index.
                raw.set_header(record, Kind.INT, 0, 1)
                _U32.pack_into(raw.data, body, 8)
            case Kind.DATASEC:
                # var_secinfo {type, offset, size} becomes btf_member {name, type, bit offset}: each
                # member named as its variable, of the variable's (now INT) type; dots in the
                # section name are not valid in a struct name.
                size = _TYPE.unpack_from(raw.data, record.offset)[2]
                for index in range(record.vlen):
                    where = body + index * _SECINFO.size
                    type_id, offset, _ = _SECINFO.unpack_from(raw.data, where)
                    var = raw.record(type_id) if 0 < type_id <= len(raw.records) else None
                    _SECINFO.pack_into(raw.data, where, var.name_off if var else 0, type_id, offset * 8)
                raw.rename_dots(record.name_off)
                raw.set_header(record, Kind.STRUCT, record.vlen, size)
            case Kind.FUNC_PROTO:
                # btf_param {name, type} reads as btf_enum {name, val}; enumerators need names,
                # so unnamed parameters borrow any identifier of the string table.
                for index in range(record.vlen):
                    where = body + index * 8
                    if _U32.unpack_from(raw.data, where)[0] == 0:
                        _U32.pack_into(raw.data, where, raw.identifier())
                raw.set_header(record, Kind.ENUM, record.vlen, 4)
            case Kind.FUNC:
                _, _, type_id = _TYPE.unpack_from(raw.data, record.offset)
                raw.set_header(record, Kind.TYPEDEF, 0, type_id)
            case Kind.FLOAT:
                size = _TYPE.unpack_from(raw.data, record.offset)[2]
                raw.set_header(record, Kind.STRUCT, 0, size)
            case Kind.TYPE_TAG:
                _, _, type_id = _TYPE.unpack_from(raw.data, record.offset)
                raw.set_header(record, Kind.CONST, 0, type_id)
            case Kind.ENUM64:
                # No same-sized older kind exists without adding types (libbpf appends an INT).
                raise NotSupportedError("this kernel's BTF has no ENUM64 and pybpf cannot sanitise it")
            case _:
                pass


KSYMS_SECTION = ".ksyms"
_KSYM_VAR_NAME = "dummy_ksym"
_BTF_VAR_GLOBAL_ALLOCATED = 1


def fix_ksyms(raw: RawBtf) -> RawBtf:
    """The BTF with its ``.ksyms`` DATASEC made loadable, as libbpf does before BPF_BTF_LOAD.

    The kernel wants every DATASEC entry to be an allocated VAR, but clang lists kfunc externs
    there as FUNCs with unnamed parameters. libbpf appends one 4-byte ``dummy_ksym`` VAR, points
    every entry at it (4 bytes apart), names the unnamed parameters after it and makes the
    extern FUNCs global. Returns a new blob (a type is appended, which moves the strings); the
    same one when there is no ``.ksyms`` DATASEC."""
    datasec = next((r for r in raw.records if r.kind == Kind.DATASEC and raw.string(r.name_off) == KSYMS_SECTION),
                   None)
    if datasec is None or datasec.vlen == 0:
        return raw
    int_id = next((r.type_id for r in raw.records if r.kind == Kind.INT
                   and _TYPE.unpack_from(raw.data, r.offset)[2] == 4), None)
    if int_id is None:
        raise NotSupportedError("the object's BTF has no 4-byte int to type the .ksyms placeholders with")
    name_off = raw.str_end - raw.str_start
    var_id = len(raw.records) + 1
    var = _TYPE.pack(name_off, _info(Kind.VAR, 0), int_id) + _U32.pack(_BTF_VAR_GLOBAL_ALLOCATED)
    base = datasec.offset + _TYPE.size
    for index in range(datasec.vlen):
        where = base + index * _SECINFO.size
        type_id, _, _ = _SECINFO.unpack_from(raw.data, where)
        entry = raw.record(type_id) if 0 < type_id <= len(raw.records) else None
        if entry is not None and entry.kind == Kind.FUNC:
            _, _, proto_id = _TYPE.unpack_from(raw.data, entry.offset)
            raw.set_header(entry, Kind.FUNC, VarLinkage.GLOBAL, proto_id)
            proto = raw.record(proto_id) if 0 < proto_id <= len(raw.records) else None
            if proto is not None and proto.kind == Kind.FUNC_PROTO:
                for param in range(proto.vlen):
                    at = proto.offset + _TYPE.size + param * 8
                    param_name, param_type = struct.unpack_from("<II", raw.data, at)
                    if param_type and not param_name:
                        _U32.pack_into(raw.data, at, name_off)
        _SECINFO.pack_into(raw.data, where, var_id, index * 4, 4)
    raw.set_header(datasec, Kind.DATASEC, datasec.vlen, datasec.vlen * 4)
    data = raw.data
    _magic, version, flags, hdr_len, *_ = _HEADER.unpack_from(data)
    strings = bytes(data[raw.str_start:raw.str_end]) + _KSYM_VAR_NAME.encode() + b"\0"
    types = bytes(data[raw.type_start:raw.type_end]) + var
    # The new layout: header, types, then strings (as clang and libbpf write BTF).
    header = _HEADER.pack(BTF_MAGIC, version, flags, hdr_len, 0, len(types), len(types), len(strings))
    return RawBtf(header + bytes(data[_HEADER.size:hdr_len]) + types + strings)
