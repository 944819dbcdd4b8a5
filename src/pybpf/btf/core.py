"""CO-RE relocation resolution, as libbpf's ``bpf_core_calc_relo_insn`` does it.

Given the program's (local) BTF, one :class:`~pybpf.btf.ext.CoreRelo` and a target BTF (the
kernel's vmlinux, or by default the program's own), compute the value the instruction must carry:

1. parse the access string against the local root type into a :class:`CoreSpec`: the leading
   index is pointer arithmetic on the root, then one member or array index per level;
2. collect target candidates: types of the same kind whose essential name (flavour suffix
   ``___x`` dropped) equals the local one's;
3. match the spec on each candidate: members by exact name, through anonymous members, with
   compatible types; array indices within bounds (flexible arrays excepted);
4. compute the value from the matched spec (offset, size, existence, signedness, bitfield shifts,
   type id / size, enumerator value). All matching candidates must agree.

No match is a result, not an error: existence relocations yield 0, the rest are *poisoned* (the
loader makes such instructions fail verification only if they are reached). Patching
instructions is the loader's job; this module only computes numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

from pybpf.btf.btf import Btf
from pybpf.btf.core_match import essential_name, fields_are_compat, types_are_compat, types_match
from pybpf.btf.ext import CoreRelo, CoreReloKind
from pybpf.btf.types import Array, Enum, Enum64, Int, Struct, Union
from pybpf.errors import BtfError, CoreReloError

# libbpf's BPF_CORE_SPEC_MAX_LEN: deeper accessor chains are rejected.
CORE_SPEC_MAX_LEN = 64
_EXISTENCE_KINDS = (
    CoreReloKind.FIELD_EXISTS,
    CoreReloKind.TYPE_EXISTS,
    CoreReloKind.TYPE_MATCHES,
    CoreReloKind.ENUMVAL_EXISTS,
)


@dataclass(frozen=True, slots=True)
class CoreAccessor:
    """One step of a spec. For a member: ``type_id`` is the struct/union, ``index`` the member,
    ``name`` its name. For an array index (and the root): ``type_id`` is the element type and
    ``name`` is None. For an enumerator: the enum, its index and the enumerator's name."""

    type_id: int
    index: int
    name: str | None


@dataclass(frozen=True, slots=True)
class CoreSpec:
    """An access string resolved against one BTF.

    ``raw`` holds every index (anonymous members included), ``accessors`` only the named members
    and array indices that matching compares; ``bit_offset`` is from the root pointer.
    """

    root_type_id: int
    kind: CoreReloKind
    raw: tuple[int, ...]
    accessors: tuple[CoreAccessor, ...]
    bit_offset: int


@dataclass(frozen=True, slots=True)
class CoreReloResult:
    """What the relocated instruction must carry.

    ``value`` is the new immediate/offset (0 when ``poison``); ``local_value`` is what the same
    relocation computes on the local BTF, i.e. what the compiler put in the instruction (the
    loader may check the instruction against it when ``validate``). For a non-bitfield
    FIELD_BYTE_OFFSET, ``field_size``/``local_field_size`` are the field's sizes, so the loader can
    adjust a load's width when the field grew or shrank.
    """

    relo: CoreRelo
    value: int
    local_value: int
    poison: bool = False
    reason: str = ""
    target_type_id: int | None = None
    target_spec: CoreSpec | None = None
    validate: bool = True
    field_size: int | None = None
    local_field_size: int | None = None

    @property
    def found(self) -> bool:
        """Whether a target type matched (existence relocations may be valid and not found)."""
        return self.target_type_id is not None


@dataclass(frozen=True, slots=True)
class _Value:
    value: int
    validate: bool = True
    field_size: int | None = None
    poison: bool = False


def parse_access_string(access_str: str, *, type_id: int | None = None) -> tuple[int, ...]:
    """``"0:1:2"`` -> ``(0, 1, 2)``; raises CoreReloError on anything else."""
    parts = access_str.split(":")
    if not access_str or not all(part.isdigit() and part.isascii() for part in parts):
        raise CoreReloError("malformed access string", type_id=type_id, access_str=access_str)
    if len(parts) > CORE_SPEC_MAX_LEN:
        raise CoreReloError(f"more than {CORE_SPEC_MAX_LEN} accessors", type_id=type_id, access_str=access_str)
    return tuple(int(part) for part in parts)


def parse_core_spec(btf: Btf, type_id: int, access_str: str, kind: CoreReloKind) -> CoreSpec:
    """Resolve ``access_str`` against the local root ``type_id`` (libbpf's bpf_core_parse_spec)."""

    def fail(reason: str) -> CoreReloError:
        return CoreReloError(reason, type_id=type_id, access_str=access_str)

    raw = parse_access_string(access_str, type_id=type_id)
    try:
        if kind.is_type_based:
            if raw != (0,):
                raise fail("type relocations take the access string '0'")
            return CoreSpec(type_id, kind, raw, (), 0)
        current = btf.resolve(type_id)
        root = btf[current]
        if kind.is_enumval_based:
            if not isinstance(root, Enum | Enum64) or len(raw) > 1 or raw[0] >= len(root.values):
                raise fail("enumerator relocation needs an enum and one enumerator index")
            return CoreSpec(type_id, kind, raw, (CoreAccessor(current, raw[0], root.values[raw[0]].name),), 0)
        accessors = [CoreAccessor(current, raw[0], None)]
        bit_offset = raw[0] * btf.size_of(current) * 8
        for index in raw[1:]:
            current = btf.resolve(current)
            record = btf[current]
            if isinstance(record, Struct | Union):
                if index >= len(record.members):
                    raise fail(f"member index {index} past the {len(record.members)} members of [{current}]")
                member = record.members[index]
                bit_offset += member.bit_offset
                if member.name:  # anonymous members only contribute their offset
                    accessors.append(CoreAccessor(current, index, member.name))
                current = member.type_id
            elif isinstance(record, Array):
                element = btf.resolve(record.type_id)
                if not _is_flex_array(btf, accessors[-1], record) and index >= record.nelems:
                    raise fail(f"array index {index} past the {record.nelems} elements of [{current}]")
                accessors.append(CoreAccessor(element, index, None))
                bit_offset += index * btf.size_of(element) * 8
                current = element
            else:
                raise fail(f"index {index} applied to a {record.KIND.name}")
    except CoreReloError:
        raise
    except BtfError as err:
        raise fail(str(err)) from err
    return CoreSpec(type_id, kind, raw, tuple(accessors), bit_offset)


def _is_flex_array(btf: Btf, previous: CoreAccessor, array: Array) -> bool:
    """A zero-length array that is the last member of its struct may be indexed past its end."""
    if previous.name is None or array.nelems != 0:
        return False
    parent = btf[previous.type_id]
    return isinstance(parent, Struct | Union) and previous.index == len(parent.members) - 1


class CoreResolver:
    """Resolves many relocations against one target, indexing its names by essential name once."""

    __slots__ = ("_flavoured", "target")

    def __init__(self, target: Btf) -> None:
        self.target = target
        flavoured: dict[str, list[int]] = {}
        for type_id in range(1, len(target)):
            name = target.types[type_id].name
            if "___" in name:
                base = essential_name(name)
                if base != name:
                    flavoured.setdefault(base, []).append(type_id)
        self._flavoured = flavoured

    def candidates(self, local: Btf, type_id: int) -> tuple[int, ...]:
        """Target ids whose kind and essential name match local type ``type_id``."""
        local_type = local[type_id]
        wanted = essential_name(local_type.name)
        ids = set(self.target.find_all(wanted)) | set(self._flavoured.get(wanted, ()))
        return tuple(
            i for i in sorted(ids) if _kind_compatible(local_type.KIND, self.target.types[i].KIND)
        )

    def resolve(self, local: Btf, relo: CoreRelo) -> CoreReloResult:
        """The value for ``relo`` (see the module docstring); CoreReloError when it is ill-formed
        or its candidates disagree."""
        try:
            return self._resolve(local, relo)
        except CoreReloError:
            raise
        except BtfError as err:
            raise CoreReloError(str(err), type_id=relo.type_id, access_str=relo.access_str) from err

    def _resolve(self, local: Btf, relo: CoreRelo) -> CoreReloResult:
        local_spec = parse_core_spec(local, relo.type_id, relo.access_str, relo.kind)
        if relo.kind == CoreReloKind.TYPE_ID_LOCAL:
            # Needs no target: the id of the type in the program's own BTF.
            return CoreReloResult(relo, relo.type_id, relo.type_id, validate=False)
        local_name = local[relo.type_id].name
        if not local_name:
            raise CoreReloError("anonymous root types cannot be relocated", type_id=relo.type_id)
        local_value = _calc_value(local, local_spec, relo)
        candidates = self.candidates(local, relo.type_id)
        chosen: tuple[int, CoreSpec, _Value] | None = None
        for candidate in candidates:
            target_spec = _match_spec(local, local_spec, self.target, candidate)
            if target_spec is None:
                continue
            value = _calc_value(self.target, target_spec, relo)
            if chosen is None:
                chosen = (candidate, target_spec, value)
                continue
            if target_spec.bit_offset != chosen[1].bit_offset:
                raise CoreReloError(
                    f"field offset ambiguity: candidates [{chosen[0]}] and [{candidate}] give bit offsets "
                    f"{chosen[1].bit_offset} and {target_spec.bit_offset}",
                    type_id=relo.type_id,
                    access_str=relo.access_str,
                )
            if (value.value, value.poison) != (chosen[2].value, chosen[2].poison):
                raise CoreReloError(
                    f"candidates [{chosen[0]}] and [{candidate}] give different values",
                    type_id=relo.type_id,
                    access_str=relo.access_str,
                )
        if chosen is None:
            reason = (
                f"no {local[relo.type_id].KIND.name} named {essential_name(local_name)!r} in the target"
                if not candidates
                else f"none of {len(candidates)} candidate(s) matches the access {relo.access_str!r}"
            )
            poison = relo.kind not in _EXISTENCE_KINDS and not relo.kind.is_type_based
            return CoreReloResult(
                relo,
                0,
                local_value.value,
                poison=poison,
                reason=reason,
                validate=local_value.validate,
                local_field_size=local_value.field_size,
            )
        candidate, target_spec, value = chosen
        return CoreReloResult(
            relo,
            value.value,
            local_value.value,
            poison=value.poison,
            target_type_id=candidate,
            target_spec=target_spec,
            validate=local_value.validate,
            field_size=value.field_size,
            local_field_size=local_value.field_size,
        )


def resolve_core_relo(local: Btf, relo: CoreRelo, target: Btf | None = None) -> CoreReloResult:
    """Resolve one relocation; ``target`` defaults to ``local`` itself. For many relocations
    against one target, build a :class:`CoreResolver` once instead."""
    return CoreResolver(target if target is not None else local).resolve(local, relo)


def _kind_compatible(local_kind: int, target_kind: int) -> bool:
    enums = (Enum.KIND, Enum64.KIND)
    return local_kind == target_kind or (local_kind in enums and target_kind in enums)


# -- matching a local spec on a target candidate ------------------------------------------------


def _match_spec(local: Btf, local_spec: CoreSpec, target: Btf, candidate: int) -> CoreSpec | None:
    kind = local_spec.kind
    if kind.is_type_based:
        if kind == CoreReloKind.TYPE_MATCHES:
            matched = types_match(local, local_spec.root_type_id, target, candidate)
        else:
            matched = types_are_compat(local, local_spec.root_type_id, target, candidate)
        return CoreSpec(candidate, kind, (0,), (), 0) if matched else None
    if kind.is_enumval_based:
        wanted = local_spec.accessors[0].name or ""
        enum_id = target.resolve(candidate)
        enum = target[enum_id]
        if not isinstance(enum, Enum | Enum64):
            return None
        for index, value in enumerate(enum.values):
            if essential_name(value.name) == essential_name(wanted):
                return CoreSpec(candidate, kind, (index,), (CoreAccessor(enum_id, index, value.name),), 0)
        return None
    return _match_field_spec(local, local_spec, target, candidate)


@dataclass(slots=True)
class _SpecBuilder:
    """The target spec under construction (mutable while one candidate is being matched)."""

    raw: list[int]
    accessors: list[CoreAccessor]
    bit_offset: int = 0


def _match_field_spec(local: Btf, local_spec: CoreSpec, target: Btf, candidate: int) -> CoreSpec | None:
    spec = _SpecBuilder([], [])
    target_id = candidate
    for position, local_acc in enumerate(local_spec.accessors):
        if local_acc.name is not None:
            next_id = _match_member(local, local_acc, target, target_id, spec)
            if next_id is None:
                return None
            target_id = next_id
            continue
        if position > 0:
            target_id = target.resolve(target_id)
            array = target[target_id]
            if not isinstance(array, Array):
                return None
            if not _is_flex_array(target, spec.accessors[-1], array) and local_acc.index >= array.nelems:
                return None
            target_id = target.resolve(array.type_id)
        if len(spec.raw) >= CORE_SPEC_MAX_LEN:
            raise CoreReloError(f"more than {CORE_SPEC_MAX_LEN} accessors", type_id=local_spec.root_type_id)
        spec.accessors.append(CoreAccessor(target_id, local_acc.index, None))
        spec.raw.append(local_acc.index)
        spec.bit_offset += local_acc.index * target.size_of(target_id) * 8
    return CoreSpec(candidate, local_spec.kind, tuple(spec.raw), tuple(spec.accessors), spec.bit_offset)


def _match_member(
    local: Btf, local_acc: CoreAccessor, target: Btf, target_id: int, spec: _SpecBuilder, *, depth: int = 0
) -> int | None:
    """Find the member named like ``local_acc`` in target composite ``target_id``, descending into
    anonymous members; on success extend ``spec`` and return the member's type id."""
    if depth > CORE_SPEC_MAX_LEN:
        raise CoreReloError(f"anonymous members nest deeper than {CORE_SPEC_MAX_LEN}", type_id=target_id)
    target_id = target.resolve(target_id)
    composite = target[target_id]
    if not isinstance(composite, Struct | Union):
        return None
    local_parent = local[local_acc.type_id]
    if not isinstance(local_parent, Struct | Union):
        return None
    local_member = local_parent.members[local_acc.index]
    for index, member in enumerate(composite.members):
        if len(spec.raw) >= CORE_SPEC_MAX_LEN:
            raise CoreReloError(f"more than {CORE_SPEC_MAX_LEN} accessors", type_id=target_id)
        # Tentatively step into this member; undo below if it is not the one.
        spec.bit_offset += member.bit_offset
        spec.raw.append(index)
        if not member.name:
            found = _match_member(local, local_acc, target, member.type_id, spec, depth=depth + 1)
            if found is not None:
                return found
        elif member.name == local_member.name:
            if not fields_are_compat(local, local_member.type_id, target, member.type_id):
                return None
            spec.accessors.append(CoreAccessor(target_id, index, member.name))
            return member.type_id
        spec.bit_offset -= member.bit_offset
        spec.raw.pop()
    return None


# -- computing values ---------------------------------------------------------------------------


def _calc_value(btf: Btf, spec: CoreSpec, relo: CoreRelo) -> _Value:
    kind = relo.kind
    if kind.is_field_based:
        return _calc_field(btf, spec, relo)
    if kind.is_type_based:
        if kind == CoreReloKind.TYPE_ID_TARGET:
            return _Value(spec.root_type_id)
        if kind == CoreReloKind.TYPE_SIZE:
            return _Value(btf.size_of(spec.root_type_id))
        return _Value(1)  # TYPE_EXISTS, TYPE_MATCHES
    if kind == CoreReloKind.ENUMVAL_EXISTS:
        return _Value(1)
    accessor = spec.accessors[0]
    enum = btf[accessor.type_id]
    if not isinstance(enum, Enum | Enum64):
        raise CoreReloError("enumerator relocation on a non-enum", type_id=accessor.type_id)
    return _Value(enum.values[accessor.index].value)


def _calc_field(btf: Btf, spec: CoreSpec, relo: CoreRelo) -> _Value:
    kind = relo.kind
    if kind == CoreReloKind.FIELD_EXISTS:
        return _Value(1)
    accessor = spec.accessors[-1]
    if accessor.name is None:  # the access ends on an array element (or the root itself)
        size = btf.size_of(accessor.type_id)
        if kind == CoreReloKind.FIELD_BYTE_OFFSET:
            return _Value(spec.bit_offset // 8, field_size=size)
        if kind == CoreReloKind.FIELD_BYTE_SIZE:
            return _Value(size)
        raise CoreReloError(
            f"{kind.name} needs a struct member, the access ends on an array element",
            type_id=relo.type_id,
            access_str=relo.access_str,
        )
    parent = btf[accessor.type_id]
    if not isinstance(parent, Struct | Union):
        raise CoreReloError("member accessor on a non-composite", type_id=accessor.type_id)
    member = parent.members[accessor.index]
    field_type = btf.resolved(member.type_id)
    bit_offset = spec.bit_offset
    bit_size = member.bitfield_size
    if bit_size:
        # The narrowest aligned load (of at least the declared type's size) that covers the bits.
        byte_size = btf.size_of(member.type_id)
        byte_offset = bit_offset // 8 // byte_size * byte_size
        while bit_offset + bit_size - byte_offset * 8 > byte_size * 8:
            if byte_size >= 8:
                raise CoreReloError(
                    "bitfield cannot be read with one 64-bit load", type_id=relo.type_id, access_str=relo.access_str
                )
            byte_size *= 2
            byte_offset = bit_offset // 8 // byte_size * byte_size
    else:
        byte_size = btf.size_of(member.type_id)
        byte_offset = bit_offset // 8
        bit_size = byte_size * 8
    # Bitfield offsets and sizes are the loader's choice and may differ from the compiler's.
    validate = not member.bitfield_size
    if kind == CoreReloKind.FIELD_BYTE_OFFSET:
        return _Value(byte_offset, validate, None if member.bitfield_size else byte_size)
    if kind == CoreReloKind.FIELD_BYTE_SIZE:
        return _Value(byte_size, validate)
    if kind == CoreReloKind.FIELD_SIGNED:
        signed = (isinstance(field_type, Enum | Enum64) and field_type.signed) or (
            isinstance(field_type, Int) and field_type.is_signed
        )
        return _Value(int(signed))
    if kind == CoreReloKind.FIELD_LSHIFT_U64:
        if btf.byte_order == "little":
            return _Value(64 - (bit_offset + bit_size - byte_offset * 8), validate)
        return _Value((8 - byte_size) * 8 + (bit_offset - byte_offset * 8), validate)
    return _Value(64 - bit_size)  # FIELD_RSHIFT_U64
