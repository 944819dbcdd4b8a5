"""BTF type records: one frozen dataclass per kind, as include/uapi/linux/btf.h defines them.

A record holds decoded values only; references to other types are type ids (ints) into the
owning :class:`~pybpf.btf.btf.Btf`, never Python references, so records are cheap, hashable and
safe to build from hostile input (a reference loop is just two ints).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, IntFlag
from typing import ClassVar

BTF_MAGIC = 0xEB9F
BTF_VERSION = 1
BTF_HEADER_SIZE = 24
# The kernel's limits (include/linux/btf.h); a name or vlen beyond them is malformed.
BTF_MAX_VLEN = 0xFFFF
BTF_MAX_TYPE_ID = 0xFFFFF


class BtfKind(IntEnum):
    """BTF_KIND_* from include/uapi/linux/btf.h."""

    UNKN = 0
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


class IntEncoding(IntFlag):
    """BTF_INT_* encoding bits of an INT type."""

    SIGNED = 1 << 0
    CHAR = 1 << 1
    BOOL = 1 << 2


class FuncLinkage(IntEnum):
    """enum btf_func_linkage."""

    STATIC = 0
    GLOBAL = 1
    EXTERN = 2


class VarLinkage(IntEnum):
    """BTF_VAR_* linkage of a VAR."""

    STATIC = 0
    GLOBAL_ALLOCATED = 1
    GLOBAL_EXTERN = 2


@dataclass(frozen=True, slots=True)
class Void:
    """Type id 0: ``void``. It has no record in the blob."""

    KIND: ClassVar[BtfKind] = BtfKind.UNKN
    name: str = ""


@dataclass(frozen=True, slots=True)
class Int:
    """An integer; ``offset`` and ``bits`` locate the value inside ``size`` bytes (offset is 0 in practice)."""

    KIND: ClassVar[BtfKind] = BtfKind.INT
    name: str
    size: int
    encoding: IntEncoding
    offset: int
    bits: int

    @property
    def is_signed(self) -> bool:
        return bool(self.encoding & IntEncoding.SIGNED)

    @property
    def is_char(self) -> bool:
        return bool(self.encoding & IntEncoding.CHAR)

    @property
    def is_bool(self) -> bool:
        return bool(self.encoding & IntEncoding.BOOL)


@dataclass(frozen=True, slots=True)
class Ptr:
    KIND: ClassVar[BtfKind] = BtfKind.PTR
    name: str
    type_id: int


@dataclass(frozen=True, slots=True)
class Array:
    """``nelems`` elements of ``type_id``; ``index_type_id`` is clang's __ARRAY_SIZE_TYPE__ int."""

    KIND: ClassVar[BtfKind] = BtfKind.ARRAY
    name: str
    type_id: int
    index_type_id: int
    nelems: int


@dataclass(frozen=True, slots=True)
class Member:
    """A struct/union member. ``bit_offset`` is from the start of the enclosing struct;
    ``bitfield_size`` is 0 unless the member is a bitfield (only set when the struct's kind_flag is)."""

    name: str
    type_id: int
    bit_offset: int
    bitfield_size: int = 0


@dataclass(frozen=True, slots=True)
class Struct:
    KIND: ClassVar[BtfKind] = BtfKind.STRUCT
    name: str
    size: int
    members: tuple[Member, ...]
    kind_flag: bool = False


@dataclass(frozen=True, slots=True)
class Union:
    KIND: ClassVar[BtfKind] = BtfKind.UNION
    name: str
    size: int
    members: tuple[Member, ...]
    kind_flag: bool = False


@dataclass(frozen=True, slots=True)
class EnumValue:
    """An enumerator; ``value`` is already sign-interpreted according to the enum's ``signed`` flag."""

    name: str
    value: int


@dataclass(frozen=True, slots=True)
class Enum:
    KIND: ClassVar[BtfKind] = BtfKind.ENUM
    name: str
    size: int
    values: tuple[EnumValue, ...]
    signed: bool = False


@dataclass(frozen=True, slots=True)
class Enum64:
    KIND: ClassVar[BtfKind] = BtfKind.ENUM64
    name: str
    size: int
    values: tuple[EnumValue, ...]
    signed: bool = False


@dataclass(frozen=True, slots=True)
class Fwd:
    """A forward declaration of a struct (or a union when ``is_union``)."""

    KIND: ClassVar[BtfKind] = BtfKind.FWD
    name: str
    is_union: bool = False


@dataclass(frozen=True, slots=True)
class Typedef:
    KIND: ClassVar[BtfKind] = BtfKind.TYPEDEF
    name: str
    type_id: int


@dataclass(frozen=True, slots=True)
class Volatile:
    KIND: ClassVar[BtfKind] = BtfKind.VOLATILE
    name: str
    type_id: int


@dataclass(frozen=True, slots=True)
class Const:
    KIND: ClassVar[BtfKind] = BtfKind.CONST
    name: str
    type_id: int


@dataclass(frozen=True, slots=True)
class Restrict:
    KIND: ClassVar[BtfKind] = BtfKind.RESTRICT
    name: str
    type_id: int


@dataclass(frozen=True, slots=True)
class Func:
    """A function; ``type_id`` is its FUNC_PROTO."""

    KIND: ClassVar[BtfKind] = BtfKind.FUNC
    name: str
    type_id: int
    linkage: FuncLinkage = FuncLinkage.STATIC


@dataclass(frozen=True, slots=True)
class Param:
    """A FUNC_PROTO parameter; a trailing ``Param("", 0)`` means ``...``."""

    name: str
    type_id: int


@dataclass(frozen=True, slots=True)
class FuncProto:
    KIND: ClassVar[BtfKind] = BtfKind.FUNC_PROTO
    name: str
    return_type_id: int
    params: tuple[Param, ...]

    @property
    def is_variadic(self) -> bool:
        return bool(self.params) and self.params[-1].type_id == 0 and not self.params[-1].name


@dataclass(frozen=True, slots=True)
class Var:
    KIND: ClassVar[BtfKind] = BtfKind.VAR
    name: str
    type_id: int
    linkage: VarLinkage = VarLinkage.STATIC


@dataclass(frozen=True, slots=True)
class VarSecinfo:
    """One variable (or extern function) placed in a DATASEC at byte ``offset``."""

    type_id: int
    offset: int
    size: int


@dataclass(frozen=True, slots=True)
class Datasec:
    KIND: ClassVar[BtfKind] = BtfKind.DATASEC
    name: str
    size: int
    vars: tuple[VarSecinfo, ...]


@dataclass(frozen=True, slots=True)
class Float:
    KIND: ClassVar[BtfKind] = BtfKind.FLOAT
    name: str
    size: int


@dataclass(frozen=True, slots=True)
class DeclTag:
    """A ``btf_decl_tag`` on ``type_id``; ``component_idx`` is -1 for the type itself, else the
    member or parameter index."""

    KIND: ClassVar[BtfKind] = BtfKind.DECL_TAG
    name: str
    type_id: int
    component_idx: int


@dataclass(frozen=True, slots=True)
class TypeTag:
    KIND: ClassVar[BtfKind] = BtfKind.TYPE_TAG
    name: str
    type_id: int


BtfType = (
    Void
    | Int
    | Ptr
    | Array
    | Struct
    | Union
    | Enum
    | Enum64
    | Fwd
    | Typedef
    | Volatile
    | Const
    | Restrict
    | Func
    | FuncProto
    | Var
    | Datasec
    | Float
    | DeclTag
    | TypeTag
)
Composite = Struct | Union
AnyEnum = Enum | Enum64
# Kinds that only rename or qualify another type; resolve() walks through them.
Modifier = Typedef | Volatile | Const | Restrict | TypeTag
# Kinds whose third header word is a type id (the rest use it as a size or not at all).
Reference = Ptr | Typedef | Volatile | Const | Restrict | Func | Var | DeclTag | TypeTag
