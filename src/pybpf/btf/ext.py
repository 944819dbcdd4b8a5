"""Decode ``.BTF.ext``: per-section func_info, line_info and CO-RE relocation records.

Layout (libbpf's ``struct btf_ext_header``): magic, version, flags, hdr_len, then offset/length
pairs (relative to the end of the header) for func_info, line_info and, when hdr_len allows,
core_relo. Each of those sections is a u32 record size followed by blocks of
``{u32 sec_name_off; u32 num_info; record[num_info]}``; names and strings live in the ``.BTF``
string table, which is why decoding needs the object's :class:`~pybpf.btf.btf.Btf`.

Instruction offsets are kept in BYTES as stored; ``pc`` properties give the 8-byte slot index.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from enum import IntEnum
from types import MappingProxyType
from typing import Self, TypeVar

from pybpf.btf.btf import Btf
from pybpf.btf.parse import detect_byte_order
from pybpf.errors import BtfError, BtfFormatError

INSN_SIZE = 8
_EXT_HEADER_MIN = 24  # up to line_info_len
_EXT_HEADER_CORE = 32  # with core_relo_off/len
_LINE_NUMBER_SHIFT = 10
_COLUMN_MASK = (1 << _LINE_NUMBER_SHIFT) - 1


class CoreReloKind(IntEnum):
    """enum bpf_core_relo_kind (libbpf / include/uapi/linux/bpf.h)."""

    FIELD_BYTE_OFFSET = 0
    FIELD_BYTE_SIZE = 1
    FIELD_EXISTS = 2
    FIELD_SIGNED = 3
    FIELD_LSHIFT_U64 = 4
    FIELD_RSHIFT_U64 = 5
    TYPE_ID_LOCAL = 6
    TYPE_ID_TARGET = 7
    TYPE_EXISTS = 8
    TYPE_SIZE = 9
    ENUMVAL_EXISTS = 10
    ENUMVAL_VALUE = 11
    TYPE_MATCHES = 12

    @property
    def is_field_based(self) -> bool:
        return self <= CoreReloKind.FIELD_RSHIFT_U64

    @property
    def is_type_based(self) -> bool:
        return CoreReloKind.TYPE_ID_LOCAL <= self <= CoreReloKind.TYPE_SIZE or self == CoreReloKind.TYPE_MATCHES

    @property
    def is_enumval_based(self) -> bool:
        return self in (CoreReloKind.ENUMVAL_EXISTS, CoreReloKind.ENUMVAL_VALUE)


@dataclass(frozen=True, slots=True)
class LineInfo:
    """A source position: file name, 1-based line, 1-based column (0 = unknown), and the line's text."""

    file: str
    line: int
    column: int
    text: str


@dataclass(frozen=True, slots=True)
class LineInfoRecord:
    """One line_info record: the instruction at byte offset ``insn_off`` comes from ``line_info``."""

    insn_off: int
    line_info: LineInfo

    @property
    def pc(self) -> int:
        return self.insn_off // INSN_SIZE


@dataclass(frozen=True, slots=True)
class FuncInfo:
    """A function starts at byte offset ``insn_off``; ``type_id`` is its BTF FUNC."""

    insn_off: int
    type_id: int

    @property
    def pc(self) -> int:
        return self.insn_off // INSN_SIZE


@dataclass(frozen=True, slots=True)
class CoreRelo:
    """A CO-RE relocation of the instruction at byte offset ``insn_off``.

    ``type_id`` is the root type in the local BTF; ``access_str`` is the accessor spec
    (``"0:1:2"``: array index on the root, then member/array indices).
    """

    insn_off: int
    type_id: int
    access_str: str
    kind: CoreReloKind

    @property
    def pc(self) -> int:
        return self.insn_off // INSN_SIZE


@dataclass(frozen=True, slots=True)
class BtfExtHeader:
    magic: int
    version: int
    flags: int
    hdr_len: int
    func_info_off: int
    func_info_len: int
    line_info_off: int
    line_info_len: int
    core_relo_off: int = 0
    core_relo_len: int = 0


_Record = TypeVar("_Record")


@dataclass(frozen=True, slots=True)
class BtfExt:
    """Decoded ``.BTF.ext``: records per ELF section name, in stored order."""

    header: BtfExtHeader
    func_info: Mapping[str, tuple[FuncInfo, ...]]
    line_info: Mapping[str, tuple[LineInfoRecord, ...]]
    core_relos: Mapping[str, tuple[CoreRelo, ...]]

    @classmethod
    def from_bytes(cls, data: bytes, btf: Btf) -> Self:
        """Decode ``data``; section names, file names and line text come from ``btf``'s strings."""
        return cls(*decode_btf_ext(bytes(data), btf))

    def line_table(self, section: str) -> dict[int, LineInfo]:
        """pc (8-byte slot index) -> source line for one section; empty when it has none."""
        return {record.pc: record.line_info for record in self.line_info.get(section, ())}

    def func_table(self, section: str) -> dict[int, int]:
        """pc -> FUNC type id of each function starting in one section."""
        return {record.pc: record.type_id for record in self.func_info.get(section, ())}

    @property
    def sections(self) -> tuple[str, ...]:
        """Every section name that has any record, in first-seen order."""
        seen: dict[str, None] = {}
        for table in (self.func_info, self.line_info, self.core_relos):
            seen.update(dict.fromkeys(table))
        return tuple(seen)


def decode_btf_ext(
    data: bytes, btf: Btf
) -> tuple[
    BtfExtHeader,
    Mapping[str, tuple[FuncInfo, ...]],
    Mapping[str, tuple[LineInfoRecord, ...]],
    Mapping[str, tuple[CoreRelo, ...]],
]:
    order = detect_byte_order(data, ".BTF.ext")
    prefix = "<" if order == "little" else ">"
    if len(data) < 8:
        raise BtfFormatError(f"truncated .BTF.ext header: {len(data)} bytes", offset=0)
    magic, version, flags, hdr_len = struct.unpack_from(prefix + "HBBI", data, 0)
    if version != 1:
        raise BtfFormatError(f"unsupported .BTF.ext version {version}", offset=2)
    if hdr_len < _EXT_HEADER_MIN or hdr_len > len(data):
        raise BtfFormatError(f".BTF.ext hdr_len {hdr_len} is out of range (blob is {len(data)} bytes)", offset=4)
    offsets = struct.unpack_from(prefix + "IIII", data, 8)
    core = struct.unpack_from(prefix + "II", data, 24) if hdr_len >= _EXT_HEADER_CORE else (0, 0)
    header = BtfExtHeader(magic, version, flags, hdr_len, *offsets, *core)
    body = data[hdr_len:]
    strings = btf.strings.get
    u32_pair = struct.Struct(prefix + "II")
    u32_quad = struct.Struct(prefix + "IIII")

    def read_func(rec: bytes, _where: int) -> FuncInfo:
        insn_off, type_id = u32_pair.unpack_from(rec, 0)
        return FuncInfo(insn_off, type_id)

    def read_line(rec: bytes, where: int) -> LineInfoRecord:
        insn_off, file_off, line_off, line_col = u32_quad.unpack_from(rec, 0)
        try:
            file_name, text = strings(file_off), strings(line_off)
        except BtfError as err:
            raise BtfFormatError(f"line_info record: {err}", offset=where) from err
        line, column = line_col >> _LINE_NUMBER_SHIFT, line_col & _COLUMN_MASK
        return LineInfoRecord(insn_off, LineInfo(file_name, line, column, text))

    def read_relo(rec: bytes, where: int) -> CoreRelo:
        insn_off, type_id, access_off, kind = u32_quad.unpack_from(rec, 0)
        if kind > max(CoreReloKind):
            raise BtfFormatError(f"unknown CO-RE relocation kind {kind}", offset=where)
        try:
            access = strings(access_off)
        except BtfError as err:
            raise BtfFormatError(f"core_relo record: {err}", offset=where) from err
        return CoreRelo(insn_off, type_id, access, CoreReloKind(kind))

    reader = _InfoReader(body, hdr_len, prefix, strings)
    func_info = reader.decode(header.func_info_off, header.func_info_len, 8, "func_info", read_func)
    line_info = reader.decode(header.line_info_off, header.line_info_len, 16, "line_info", read_line)
    core_relos = reader.decode(header.core_relo_off, header.core_relo_len, 16, "core_relo", read_relo)
    return header, func_info, line_info, core_relos


@dataclass(frozen=True, slots=True)
class _InfoReader:
    """Decodes one info section: ``u32 rec_size`` then ``{name_off, count, records}`` blocks."""

    body: bytes
    hdr_len: int
    prefix: str
    strings: Callable[[int], str]

    def decode(
        self, off: int, length: int, min_rec_size: int, what: str, read: Callable[[bytes, int], _Record]
    ) -> Mapping[str, tuple[_Record, ...]]:
        if length == 0:
            return MappingProxyType({})
        base = self.hdr_len + off
        if off + length > len(self.body):
            raise BtfFormatError(f"{what} [{off}, {off + length}) runs past the end ({len(self.body)})", offset=base)
        chunk = self.body[off : off + length]
        if length < 4:
            raise BtfFormatError(f"{what} is {length} bytes, too short for its record size", offset=base)
        (rec_size,) = struct.unpack_from(self.prefix + "I", chunk, 0)
        # Records may grow in later versions: take the known prefix, skip the rest (libbpf does).
        if rec_size < min_rec_size or rec_size % 4:
            raise BtfFormatError(f"{what} record size {rec_size} (want a multiple of 4 >= {min_rec_size})", offset=base)
        out: dict[str, tuple[_Record, ...]] = {}
        for name, records in self._blocks(chunk, base, rec_size, what, read):
            out[name] = out.get(name, ()) + records
        return MappingProxyType(out)

    def _blocks(
        self, chunk: bytes, base: int, rec_size: int, what: str, read: Callable[[bytes, int], _Record]
    ) -> Iterator[tuple[str, tuple[_Record, ...]]]:
        pos = 4
        block = struct.Struct(self.prefix + "II")
        while pos < len(chunk):
            if pos + block.size > len(chunk):
                raise BtfFormatError(f"truncated {what} block header", offset=base + pos)
            name_off, count = block.unpack_from(chunk, pos)
            if count == 0:
                raise BtfFormatError(f"{what} block with no records", offset=base + pos)
            try:
                name = self.strings(name_off)
            except BtfError as err:
                raise BtfFormatError(f"{what} section name: {err}", offset=base + pos) from err
            pos += block.size
            end = pos + count * rec_size
            if end > len(chunk):
                raise BtfFormatError(f"{what} block for {name!r} has {count} records past the end", offset=base + pos)
            records = tuple(read(chunk[at : at + rec_size], base + at) for at in range(pos, end, rec_size))
            pos = end
            yield name, records
