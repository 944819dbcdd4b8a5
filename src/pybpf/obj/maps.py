"""Map definitions in an object: BTF-defined ``.maps``, legacy ``maps``, and global data sections.

BTF-defined maps follow libbpf's ``bpf_object__init_user_btf_map``: the ``.maps`` DATASEC lists
one VAR per map, whose type is an anonymous struct; each integer attribute is a member of type
"pointer to array of N", and N is the value (``__uint(max_entries, 1024)`` is
``int (*max_entries)[1024]``); ``key``/``value`` are pointers to the key/value type;
``values`` is a trailing zero-length array of pointers (to an inner map definition for
map-in-map, to a function prototype for prog_array) whose slots are filled by ``.rel.maps``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field, replace

from pybpf.btf import Array, Btf, Datasec, Enum, Enum64, FuncProto, Ptr, Struct, Var
from pybpf.errors import BtfError, LoadError, MalformedObjectError, MissingMapError
from pybpf.obj.elf import SHF_ALLOC, SHF_EXECINSTR, SHT_NOBITS, SHT_PROGBITS, ElfObject, ElfSection
from pybpf.obj.spec import MapKind, MapSlotInit, MapSpec, Pinning
from pybpf.platform.uapi_generated import BpfMapFlag, BpfMapType

BTF_MAPS_SECTION = ".maps"
LEGACY_MAPS_SECTION = "maps"
R_BPF_64_64 = 1
R_BPF_64_ABS64 = 2
# struct bpf_map_def: type, key_size, value_size, max_entries, map_flags (u32 each).
_LEGACY_DEF = struct.Struct("<IIIII")
# A .bss larger than this cannot be a real BPF object (the kernel caps map values at
# KMALLOC_MAX_SIZE, 4 MiB on x86-64); refusing it keeps a forged sh_size from allocating gigabytes.
MAX_BSS_SIZE = 16 << 20
_INT_ATTRIBUTES = ("type", "key_size", "value_size", "max_entries", "map_flags", "numa_node", "pinning")


@dataclass(frozen=True, slots=True)
class MapTable:
    """The object's maps, plus where each one lives so relocations can find it."""

    maps: dict[str, MapSpec]
    # (section index, byte offset of the definition) -> map name; data sections use offset -1.
    by_location: dict[tuple[int, int], str]
    # Kconfig extern name -> byte offset of its slot in the ".kconfig" map's value.
    externs: dict[str, int] = field(default_factory=dict)


def is_data_section(section: ElfSection) -> bool:
    """A global data section libbpf turns into an internal ARRAY map."""
    if section.type not in (SHT_PROGBITS, SHT_NOBITS) or not section.flags & SHF_ALLOC:
        return False
    if section.flags & SHF_EXECINSTR:
        return False
    name = section.name
    return name in (".data", ".rodata", ".bss") or name.startswith((".data.", ".rodata.", ".bss."))


def _data_map(file: str, section: ElfSection, btf: Btf | None, elf: ElfObject | None = None) -> MapSpec:
    if section.type == SHT_NOBITS and section.size > MAX_BSS_SIZE:
        raise MalformedObjectError(
            f"zero-filled section of {section.size} bytes is larger than any map value ({MAX_BSS_SIZE})",
            file=file,
            section=section.name,
        )
    rodata = section.name.startswith(".rodata")
    value_type_id = btf.find(section.name) if btf is not None else None
    return MapSpec(
        name=section.name,
        type=BpfMapType.ARRAY,
        key_size=4,
        value_size=section.size,
        max_entries=1,
        map_flags=int(BpfMapFlag.RDONLY_PROG) if rodata else 0,
        kind=MapKind.DATA,
        section=section.name,
        btf_key_type_id=0 if value_type_id is not None else None,
        btf_value_type_id=value_type_id,
        contents=bytes(section.size) if section.type == SHT_NOBITS else section.data,
        frozen=rodata,
        var_offsets=tuple(
            (symbol.name, symbol.value) for symbol in (elf.symbols if elf is not None else ())
            if symbol.shndx == section.index and symbol.type == "STT_OBJECT" and symbol.name
        ),
    )


def _legacy_maps(elf: ElfObject, section: ElfSection) -> list[tuple[int, MapSpec]]:
    symbols = sorted(
        (s for s in elf.symbols if s.shndx == section.index and s.type != "STT_SECTION" and s.name),
        key=lambda s: s.value,
    )
    if not symbols:
        return []
    # Like libbpf: every definition has the same size, the section size divided by the count.
    def_size = section.size // len(symbols)
    if def_size < _LEGACY_DEF.size or section.size % len(symbols):
        raise MalformedObjectError(
            f"{len(symbols)} map definitions do not divide the {section.size}-byte section evenly "
            f"into struct bpf_map_def ({_LEGACY_DEF.size} bytes or more each)",
            file=elf.file,
            section=section.name,
        )
    out = []
    for symbol in symbols:
        if symbol.value + _LEGACY_DEF.size > len(section.data):
            raise MalformedObjectError(
                f"map definition at offset {symbol.value} runs past the section",
                file=elf.file,
                section=section.name,
                symbol=symbol.name,
            )
        map_type, key_size, value_size, max_entries, flags = _LEGACY_DEF.unpack_from(section.data, symbol.value)
        out.append(
            (
                symbol.value,
                MapSpec(
                    name=symbol.name,
                    type=_map_type(map_type, elf.file, section.name, symbol.name),
                    key_size=key_size,
                    value_size=value_size,
                    max_entries=max_entries,
                    map_flags=flags,
                    kind=MapKind.LEGACY,
                    section=section.name,
                ),
            )
        )
    return out


def _map_type(value: int, file: str, section: str, symbol: str) -> BpfMapType:
    try:
        return BpfMapType(value)
    except ValueError:
        raise LoadError(f"unknown map type {value}", file=file, section=section, symbol=symbol) from None


class _BtfMapReader:
    """Reads one BTF map definition struct (recursively for inner maps)."""

    def __init__(self, btf: Btf, file: str) -> None:
        self.btf = btf
        self.file = file

    def error(self, name: str, reason: str) -> LoadError:
        return LoadError(reason, file=self.file, section=BTF_MAPS_SECTION, symbol=name)

    def int_attribute(self, name: str, member: str, type_id: int) -> int:
        pointer = self.btf.resolved(type_id)
        array = self.btf.resolved(pointer.type_id) if isinstance(pointer, Ptr) else None
        if not isinstance(array, Array):
            raise self.error(name, f"attribute '{member}' is not encoded as a pointer to an array (__uint)")
        return array.nelems

    def read(self, name: str, type_id: int, *, inner: bool = False) -> tuple[MapSpec, int | None]:
        """The map spec and, when there is a ``values`` member, its bit offset in the struct."""
        definition = self.btf.resolved(type_id)
        if not isinstance(definition, Struct):
            raise self.error(name, "a .maps variable must be a struct (use __uint/__type/__array)")
        attrs: dict[str, int] = {}
        key_type: int | None = None
        value_type: int | None = None
        inner_spec: MapSpec | None = None
        values_offset: int | None = None
        for member in definition.members:
            if member.name in _INT_ATTRIBUTES:
                attrs[member.name] = self.int_attribute(name, member.name, member.type_id)
            elif member.name in ("key", "value"):
                pointer = self.btf.resolved(member.type_id)
                if not isinstance(pointer, Ptr):
                    raise self.error(name, f"'{member.name}' must be a pointer to the {member.name} type (__type)")
                if member.name == "key":
                    key_type = pointer.type_id
                else:
                    value_type = pointer.type_id
            elif member.name == "map_extra":
                attrs["map_extra"] = self.enum_attribute(name, member.type_id)
            elif member.name == "values":
                if inner:
                    raise self.error(name, "an inner map definition cannot itself have 'values'")
                values_offset = member.bit_offset
                inner_spec = self.values_inner(name, member.type_id)
            else:
                raise self.error(name, f"unknown map attribute '{member.name}'")
        spec = self.build(name, attrs, key_type, value_type, inner_spec, has_values=values_offset is not None)
        return spec, values_offset

    def enum_attribute(self, name: str, type_id: int) -> int:
        """libbpf's ``__ulong(name, value)``: an anonymous enum (64-bit when it must) of one value."""
        record = self.btf.resolved(type_id)
        if not isinstance(record, Enum | Enum64) or len(record.values) != 1:
            raise self.error(name, "'map_extra' must be an enum of one value (__ulong)")
        return record.values[0].value & ((1 << 64) - 1)

    def values_inner(self, name: str, type_id: int) -> MapSpec | None:
        array = self.btf.resolved(type_id)
        pointer = self.btf.resolved(array.type_id) if isinstance(array, Array) else None
        if not isinstance(array, Array) or not isinstance(pointer, Ptr):
            raise self.error(name, "'values' must be an array of pointers (__array)")
        target = self.btf.resolved(pointer.type_id)
        if isinstance(target, FuncProto):
            return None  # prog_array: slots hold programs
        if isinstance(target, Struct):
            spec, _ = self.read(f"{name}.inner", pointer.type_id, inner=True)
            return spec
        raise self.error(name, "'values' must point to a map definition or a function prototype")

    def build(
        self,
        name: str,
        attrs: dict[str, int],
        key_type: int | None,
        value_type: int | None,
        inner: MapSpec | None,
        *,
        has_values: bool = False,
    ) -> MapSpec:
        key_size = attrs.get("key_size", 0)
        value_size = attrs.get("value_size", 0)
        if key_type is not None:
            size = self.btf.size_of(key_type)
            if "key_size" in attrs and attrs["key_size"] != size:
                raise self.error(name, f"key_size {key_size} conflicts with the key type's size {size}")
            key_size = size
        if value_type is not None:
            size = self.btf.size_of(value_type)
            if "value_size" in attrs and attrs["value_size"] != size:
                raise self.error(name, f"value_size {value_size} conflicts with the value type's size {size}")
            value_size = size
        if has_values:
            value_size = 4  # 'values' slots hold fds: of programs (prog_array) or of inner maps
        if "type" not in attrs:
            raise self.error(name, "the map definition has no 'type'")
        pinning = attrs.get("pinning", 0)
        if pinning not in (0, 1):
            raise self.error(name, f"unknown pinning {pinning} (0: none, 1: by name)")
        return MapSpec(
            name=name,
            type=_map_type(attrs["type"], self.file, BTF_MAPS_SECTION, name),
            key_size=key_size,
            value_size=value_size,
            max_entries=attrs.get("max_entries", 0),
            map_flags=attrs.get("map_flags", 0),
            kind=MapKind.BTF,
            section=BTF_MAPS_SECTION,
            btf_key_type_id=key_type,
            btf_value_type_id=value_type,
            pinning=Pinning(pinning),
            numa_node=attrs.get("numa_node", 0),
            inner=inner,
            map_extra=attrs.get("map_extra", 0),
        )


def _btf_maps(elf: ElfObject, section: ElfSection, btf: Btf | None) -> list[tuple[int, MapSpec]]:
    if btf is None:
        raise LoadError("BTF-defined maps need the object's .BTF section", file=elf.file, section=section.name)
    datasec_id = btf.find(BTF_MAPS_SECTION)
    datasec = btf[datasec_id] if datasec_id is not None else None
    if not isinstance(datasec, Datasec):
        raise LoadError("no DATASEC for .maps in BTF", file=elf.file, section=section.name)
    reader = _BtfMapReader(btf, elf.file)
    out = []
    # clang may leave DATASEC offsets zero (libbpf fixes them up); the ELF symbols are authoritative.
    offsets = {s.name: s.value for s in elf.symbols if s.shndx == section.index and s.type != "STT_SECTION"}
    for secinfo in datasec.vars:
        var = btf[secinfo.type_id]
        if not isinstance(var, Var):
            raise LoadError("a .maps DATASEC entry is not a VAR", file=elf.file, section=section.name)
        offset = offsets.get(var.name)
        if offset is None:
            raise LoadError("map has BTF but no ELF symbol", file=elf.file, section=section.name, symbol=var.name)
        spec, values_bits = reader.read(var.name, var.type_id)
        if values_bits is not None:
            spec = replace(spec, slot_inits=_slot_inits(elf, section, offset, values_bits, spec))
        out.append((offset, spec))
    return out


def _slot_inits(
    elf: ElfObject, section: ElfSection, var_offset: int, values_bits: int, spec: MapSpec
) -> tuple[MapSlotInit, ...]:
    """``values = { [i] = &sym }``: one relocation per initialised slot, 8 bytes apart."""
    start = var_offset + values_bits // 8
    inits = []
    for relocation in elf.relocations.get(section.index, ()):
        if relocation.type not in (R_BPF_64_64, R_BPF_64_ABS64):
            raise LoadError(
                f"unexpected relocation type {relocation.type} in .maps", file=elf.file, section=section.name
            )
        if not start <= relocation.offset < start + 8 * max(spec.max_entries, 0):
            continue
        if (relocation.offset - start) % 8:
            raise MalformedObjectError(
                f"'values' relocation at offset {relocation.offset} is not slot-aligned",
                file=elf.file,
                section=section.name,
                symbol=spec.name,
            )
        symbol = elf.symbol(relocation.symbol, section=section.name)
        inits.append(MapSlotInit((relocation.offset - start) // 8, symbol.name))
    return tuple(sorted(inits, key=lambda init: init.index))


def collect_maps(elf: ElfObject, btf: Btf | None) -> MapTable:
    """Every map the object defines, keyed by name, plus their locations for relocation."""
    maps: dict[str, MapSpec] = {}
    by_location: dict[tuple[int, int], str] = {}

    def add(section: ElfSection, offset: int, spec: MapSpec) -> None:
        if spec.name in maps:
            raise LoadError("two maps have the same name", file=elf.file, section=section.name, symbol=spec.name)
        maps[spec.name] = spec
        by_location[(section.index, offset)] = spec.name

    for section in elf.sections:
        try:
            if section.name == BTF_MAPS_SECTION:
                for offset, spec in _btf_maps(elf, section, btf):
                    add(section, offset, spec)
            elif section.name == LEGACY_MAPS_SECTION:
                for offset, spec in _legacy_maps(elf, section):
                    add(section, offset, spec)
            elif is_data_section(section) and section.size:
                add(section, -1, _data_map(elf.file, section, btf, elf))
        except BtfError as error:
            raise LoadError(f"map definitions: {error}", file=elf.file, section=section.name) from error
    _check_inner_names(maps, elf.file)
    for section in elf.sections:
        if section.name == ARENA_SECTION and section.size:
            name = _place_arena_globals(elf.file, section, maps)
            by_location[(section.index, -1)] = name
    return MapTable(maps, by_location)


ARENA_SECTION = ".addr_space.1"
"""Where clang puts global ``__arena`` variables (address space 1)."""
ARENA_PAGE_SIZE = 4096


def arena_size(spec: MapSpec) -> int:
    """The bytes an arena map spans (max_entries pages)."""
    return spec.max_entries * ARENA_PAGE_SIZE


def _place_arena_globals(file: str, section: ElfSection, maps: dict[str, MapSpec]) -> str:
    """Global ``__arena`` variables live in the object's arena map, from its first page on (as
    libbpf of Linux 6.18 places them: ``init_arena_map_data``); they become its ``contents``."""
    arenas = [spec for spec in maps.values() if spec.type == BpfMapType.ARENA]
    if not arenas:
        raise LoadError(
            "to use global __arena variables the ARENA map should be explicitly declared in SEC(\".maps\")",
            file=file,
            section=section.name,
        )
    if len(arenas) > 1:
        raise LoadError("global __arena variables need exactly one ARENA map", file=file, section=section.name)
    arena = arenas[0]
    pages = -(-section.size // ARENA_PAGE_SIZE)
    if pages * ARENA_PAGE_SIZE > arena_size(arena):
        raise LoadError(
            f"declared ARENA map size ({arena_size(arena)}) is too small to hold global __arena variables "
            f"of size {section.size}",
            file=file,
            section=section.name,
        )
    data = bytes(section.size) if section.type == SHT_NOBITS else section.data
    maps[arena.name] = replace(arena, contents=data)
    return arena.name


def _check_inner_names(maps: dict[str, MapSpec], file: str) -> None:
    for spec in maps.values():
        if spec.type in (BpfMapType.ARRAY_OF_MAPS, BpfMapType.HASH_OF_MAPS):
            for init in spec.slot_inits:
                if init.symbol not in maps:
                    raise MissingMapError(
                        f"slot {init.index} refers to '{init.symbol}', which is not a map",
                        file=file,
                        section=spec.section,
                        symbol=spec.name,
                    )
