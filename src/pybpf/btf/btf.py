"""The :class:`Btf` object: a decoded type table with lookups, sizes and C-like formatting."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Self

from pybpf.btf.parse import BtfHeader, ByteOrder, StringTable, decode_header, decode_types
from pybpf.btf.types import (
    Array,
    BtfKind,
    BtfType,
    Datasec,
    Enum,
    Enum64,
    Float,
    FuncProto,
    Int,
    Member,
    Modifier,
    Ptr,
    Reference,
    Struct,
    Union,
    Var,
    Void,
)
from pybpf.errors import BtfError, BtfFormatError, BtfTypeError

# libbpf's MAX_RESOLVE_DEPTH: a chain of modifiers or nested arrays deeper than this is a loop.
MAX_RESOLVE_DEPTH = 32
_VOID = Void()


@dataclass(frozen=True, slots=True)
class FoundMember:
    """A member found by name, possibly inside anonymous struct/union members.

    ``bit_offset`` is from the start of the outermost struct; ``path`` is the member index at each
    level (what a CO-RE access string would list after the leading array index).
    """

    member: Member
    bit_offset: int
    path: tuple[int, ...]


class Btf:
    """Decoded BTF: ``btf[type_id]`` is a type record, id 0 is ``void``.

    For split BTF (a kernel module's, on top of vmlinux) ids below ``start_id`` are the base's,
    and :attr:`types` covers both, so every id indexes it directly.
    """

    __slots__ = ("_by_name", "_types", "base", "byte_order", "header", "start_id", "strings")

    def __init__(
        self,
        types: Sequence[BtfType],
        strings: StringTable,
        *,
        byte_order: ByteOrder = "little",
        header: BtfHeader | None = None,
        base: Btf | None = None,
    ) -> None:
        self.base = base
        self.start_id = len(base.types) if base is not None else 1
        own = tuple(types)
        self._types: tuple[BtfType, ...] = (base._types if base is not None else (_VOID,)) + own
        self.strings = strings
        self.byte_order = byte_order
        self.header = header
        self._check_references()
        by_name: dict[str, list[int]] = dict(base._by_name) if base is not None else {}
        if base is not None:
            by_name = {name: list(ids) for name, ids in by_name.items()}
        for type_id in range(self.start_id, len(self._types)):
            name = self._types[type_id].name
            if name:
                ids = by_name.get(name)
                if ids is None:
                    by_name[name] = [type_id]
                else:
                    ids.append(type_id)
        self._by_name: dict[str, list[int]] = by_name

    @classmethod
    def from_bytes(cls, data: bytes, base: Btf | None = None) -> Self:
        """Decode a raw ``.BTF`` blob (the section content, or /sys/kernel/btf/* as is).

        With ``base``, ``data`` is split BTF: its ids continue after the base's and its string
        offsets continue after the base's string section.
        """
        data = bytes(data)
        header = decode_header(data)
        if base is not None and base.byte_order != header.byte_order:
            raise BtfFormatError("split BTF and its base have different byte orders", offset=0)
        str_start = header.hdr_len + header.str_off
        strings = StringTable(data[str_start : str_start + header.str_len], base.strings if base else None)
        first_id = len(base.types) if base is not None else 1
        types = decode_types(data, header, strings, first_id)
        return cls(types, strings, byte_order=header.byte_order, header=header, base=base)

    def _check_references(self) -> None:
        count = len(self._types)
        worst = 0
        for type_record in self._types[self.start_id :]:
            if isinstance(type_record, Reference):
                worst = max(worst, type_record.type_id)
            elif isinstance(type_record, Array | FuncProto | Struct | Union | Datasec):
                worst = max(worst, _max_reference(type_record))
        if worst < count:
            return
        for type_id in range(self.start_id, count):  # slow path: find the culprit to name it
            type_record = self._types[type_id]
            if isinstance(type_record, Reference):
                ref = type_record.type_id
            else:
                ref = _max_reference(type_record)
            if ref >= count:
                raise BtfFormatError(f"refers to type id {ref} but there are only {count} types", type_id=type_id)

    # -- the table ---------------------------------------------------------------------------

    @property
    def types(self) -> tuple[BtfType, ...]:
        """Every type indexed by id; ``types[0]`` is void."""
        return self._types

    def __len__(self) -> int:
        return len(self._types)

    def __getitem__(self, type_id: int) -> BtfType:
        if not 0 <= type_id < len(self._types):
            raise BtfTypeError(f"no such type (there are {len(self._types)})", type_id=type_id)
        return self._types[type_id]

    def __iter__(self) -> Iterator[BtfType]:
        return iter(self._types)

    def kind_of(self, type_id: int) -> BtfKind:
        return self[type_id].KIND

    def find_all(self, name: str, kind: BtfKind | None = None) -> tuple[int, ...]:
        """Ids of every type called ``name`` (optionally of one kind), in id order."""
        ids = self._by_name.get(name, ())
        if kind is None:
            return tuple(ids)
        return tuple(i for i in ids if kind == self._types[i].KIND)

    def find(self, name: str, kind: BtfKind | None = None) -> int | None:
        """Id of the first type called ``name`` (optionally of one kind), or None."""
        found = self.find_all(name, kind)
        return found[0] if found else None

    # -- walking -----------------------------------------------------------------------------

    def resolve(self, type_id: int) -> int:
        """Skip typedef/const/volatile/restrict/type_tag and return the id of the underlying type."""
        current = type_id
        for _ in range(MAX_RESOLVE_DEPTH):
            record = self[current]
            if not isinstance(record, Modifier):
                return current
            current = record.type_id
        raise BtfTypeError(f"modifier chain longer than {MAX_RESOLVE_DEPTH} (a loop?)", type_id=type_id)

    def resolved(self, type_id: int) -> BtfType:
        """The record :meth:`resolve` lands on."""
        return self._types[self.resolve(type_id)]

    @property
    def pointer_size(self) -> int:
        """8: BPF is a 64-bit target, and so is every kernel we read BTF from."""
        return 8

    def size_of(self, type_id: int) -> int:
        """Byte size of a type, as libbpf's btf__resolve_size computes it."""
        current = type_id
        multiplier = 1
        for _ in range(MAX_RESOLVE_DEPTH):
            record = self[current]
            if isinstance(record, Int | Struct | Union | Enum | Enum64 | Float | Datasec):
                return multiplier * record.size
            if isinstance(record, Ptr):
                return multiplier * self.pointer_size
            if isinstance(record, Array):
                multiplier *= record.nelems
                current = record.type_id
            elif isinstance(record, Modifier | Var):
                current = record.type_id
            else:
                raise BtfTypeError(f"{record.KIND.name} has no size", type_id=type_id)
        raise BtfTypeError(f"type chain longer than {MAX_RESOLVE_DEPTH} (a loop?)", type_id=type_id)

    def align_of(self, type_id: int, _depth: int = 0) -> int:
        """Natural alignment in bytes, as libbpf's btf__align_of computes it (1 for packed structs)."""
        if _depth > MAX_RESOLVE_DEPTH:
            raise BtfTypeError(f"type nesting deeper than {MAX_RESOLVE_DEPTH} (a loop?)", type_id=type_id)
        record = self[type_id]
        if isinstance(record, Int | Enum | Enum64 | Float):
            return max(1, min(self.pointer_size, record.size))
        if isinstance(record, Ptr):
            return self.pointer_size
        if isinstance(record, Array):
            return self.align_of(record.type_id, _depth + 1)
        if isinstance(record, Modifier | Var):
            return self.align_of(record.type_id, _depth + 1)
        if isinstance(record, Struct | Union):
            widest = 1
            for member in record.members:
                align = self.align_of(member.type_id, _depth + 1)
                widest = max(widest, align)
                # A member off its natural alignment can only come from __attribute__((packed)).
                if member.bitfield_size == 0 and member.bit_offset % (8 * align):
                    return 1
            return 1 if record.size % widest else widest
        raise BtfTypeError(f"{record.KIND.name} has no alignment", type_id=type_id)

    def find_member(self, type_id: int, name: str) -> FoundMember | None:
        """Member ``name`` of a struct/union (typedefs and qualifiers skipped), looking inside
        anonymous struct/union members as C does; None when there is no such member."""
        return self._find_member(type_id, name, 0, (), 0)

    def _find_member(
        self, type_id: int, name: str, base_bits: int, path: tuple[int, ...], depth: int
    ) -> FoundMember | None:
        if depth > MAX_RESOLVE_DEPTH:
            raise BtfTypeError(f"anonymous members nested deeper than {MAX_RESOLVE_DEPTH}", type_id=type_id)
        record = self.resolved(type_id)
        if not isinstance(record, Struct | Union):
            raise BtfTypeError(f"{record.KIND.name} has no members", type_id=type_id)
        # In member order, descending into anonymous members where they stand, as libbpf does.
        for index, member in enumerate(record.members):
            if member.name == name:
                return FoundMember(member, base_bits + member.bit_offset, (*path, index))
            if not member.name and isinstance(self.resolved(member.type_id), Struct | Union):
                found = self._find_member(
                    member.type_id, name, base_bits + member.bit_offset, (*path, index), depth + 1
                )
                if found is not None:
                    return found
        return None

    def format_type(self, type_id: int, name: str = "") -> str:
        """A C-like spelling: ``struct iphdr *``, ``unsigned int [4]``, ``int (*)(int, char *)``.

        With ``name``, a declaration of that name (``int (*fn)(void)``).
        """
        from pybpf.btf.format import format_c_type

        return format_c_type(self, type_id, name)

    def __repr__(self) -> str:
        return f"<Btf {len(self._types) - 1} types, {self.byte_order}-endian>"


def _max_reference(record: BtfType) -> int:
    if isinstance(record, Array):
        return max(record.type_id, record.index_type_id)
    if isinstance(record, FuncProto):
        return max([record.return_type_id, *(p.type_id for p in record.params)])
    if isinstance(record, Struct | Union):
        return max((m.type_id for m in record.members), default=0)
    if isinstance(record, Datasec):
        return max((v.type_id for v in record.vars), default=0)
    return 0


__all__ = ["MAX_RESOLVE_DEPTH", "Btf", "BtfError", "FoundMember"]
