"""The pure blueprints an ELF object turns into: ``ObjectSpec``, ``ProgramSpec``, ``MapSpec``.

Everything here is plain data computed from the object's bytes alone (cilium/ebpf's rule: the same
ELF gives the same spec on every machine). Nothing refers to a file descriptor or to the running
kernel; the instantiation stage turns these into live maps and programs, and applies the
relocation records listed here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum, IntEnum

from pybpf.btf import Btf
from pybpf.btf.ext import BtfExt, CoreReloKind
from pybpf.isa import LabeledInsn, LoadImm64, PseudoSrc, SourceLine
from pybpf.platform import SectionInfo
from pybpf.platform.kfuncs import kfunc_by_name
from pybpf.platform.uapi_generated import BpfAttachType, BpfMapType, BpfProgType

# The section (and map) name of libbpf's Kconfig externs.
KCONFIG_SECTION = ".kconfig"
# The DATASEC listing kernel-symbol externs (``__ksym``).
KSYMS_SECTION = ".ksyms"


class Pinning(Enum):
    """LIBBPF_PIN_* for BTF-defined maps: where (if anywhere) the map is pinned on bpffs."""

    NONE = 0
    BY_NAME = 1


class MapKind(Enum):
    """Where a map definition came from in the object."""

    BTF = "btf"  # a variable in the ".maps" section, described by BTF
    LEGACY = "legacy"  # a struct bpf_map_def in the "maps" section
    DATA = "data"  # a global data section (.data, .rodata, .bss, .data.*, .rodata.*)


@dataclass(frozen=True, slots=True)
class MapSlotInit:
    """One declarative ``values = { [index] = &symbol }`` slot of a prog_array or map-in-map.

    ``symbol`` names a program (prog_array) or a map (array/hash of maps); the instantiation
    stage puts that object's fd in slot ``index``.
    """

    index: int
    symbol: str


@dataclass(frozen=True, slots=True)
class MapSpec:
    """A map to create. ``max_entries`` etc. are as the object declares them (0 when unset).

    Global data maps are named by their ELF section (``.data``, ``.rodata``, ``.bss``,
    ``.data.stats``), as cilium/ebpf does; libbpf's kernel-visible name (``<obj[:8]>.data``, or the
    section name for ``.data.*``) is for the instantiation stage to derive, since the kernel caps
    names at 15 characters. Their key is a u32 index 0 and their value the whole section.
    """

    name: str
    type: BpfMapType
    key_size: int
    value_size: int
    max_entries: int
    map_flags: int = 0
    kind: MapKind = MapKind.BTF
    section: str = ".maps"
    btf_key_type_id: int | None = None
    btf_value_type_id: int | None = None
    pinning: Pinning = Pinning.NONE
    numa_node: int = 0
    inner: MapSpec | None = None
    # Global data: the section's initial bytes (all zeroes for .bss). None for ordinary maps.
    contents: bytes | None = None
    # prog_array / map-in-map slots initialised by symbol.
    slot_inits: tuple[MapSlotInit, ...] = ()
    # .rodata and .rodata.*: the loader freezes the map after filling it (BPF_MAP_FREEZE).
    frozen: bool = False
    # BTF-defined ``map_extra`` (libbpf's __ulong): a bloom filter's hash count, an arena's user address.
    map_extra: int = 0
    # Global data: each variable's offset in the section, from the ELF symbols (clang leaves the
    # DATASEC's offsets to the loader, as libbpf fixes them up).
    var_offsets: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True, slots=True)
class MapReference:
    """An ``lddw`` at ``pc`` that must be patched with map ``map_name``'s fd.

    ``src`` is ``PseudoSrc.MAP_FD`` (the instruction loads the map pointer) or
    ``PseudoSrc.MAP_VALUE`` (it loads ``&value[offset]``, for global data). ``offset`` is already
    the final value offset (the symbol's offset added to the instruction's immediate, as libbpf
    does); the instruction in ``ProgramSpec.instructions`` still holds the object's raw immediate.
    """

    pc: int
    map_name: str
    src: PseudoSrc
    offset: int = 0
    symbol: str = ""


@dataclass(frozen=True, slots=True)
class KsymExtern:
    """One ``extern`` kfunc of the object (see :mod:`pybpf.obj.ksyms`).

    ``kfunc_id`` is pybpf's id for the name (:data:`pybpf.platform.KFUNC_PROTOS`), 0 when the
    table does not know it; ``index`` its position among the object's kfunc externs (libbpf's
    poison calls carry it); ``btf_type_id`` its FUNC in the object's BTF.
    """

    name: str
    index: int
    weak: bool
    kfunc_id: int
    btf_type_id: int


@dataclass(frozen=True, slots=True)
class KfuncReference:
    """A site at ``pc`` naming kfunc ``name``: a ``call`` (``address`` False), or an ``lddw`` of its address.

    The instruction in ``ProgramSpec.instructions`` holds pybpf's resolution (see
    :mod:`pybpf.obj.ksyms`); the kernel backend re-resolves the name in the kernel's BTF.
    """

    pc: int
    name: str
    weak: bool = False
    address: bool = False

    @property
    def resolved(self) -> bool:
        """Whether pybpf's kfunc table knows the name."""
        return kfunc_by_name(self.name) is not None


@dataclass(frozen=True, slots=True)
class FuncInfo:
    """A BTF func_info record: the function starting at ``pc`` has BTF type ``type_id``."""

    pc: int
    type_id: int
    name: str = ""


@dataclass(frozen=True, slots=True)
class LineInfo:
    """A BTF line_info record rebased to the program: the instruction at ``pc`` starts ``source``.

    The kernel wants string offsets into the object's BTF; the instantiation stage re-derives
    them from the strings (``source.file``, ``source.text``) and ``ObjectSpec.btf``.
    """

    pc: int
    source: SourceLine


@dataclass(frozen=True, slots=True)
class CoreRelocation:
    """A CO-RE relocation for the instruction at ``pc`` (a slot index in the program).

    ``type_id`` is the local (object BTF) root type, ``access`` the access string ("0:1:2").
    """

    pc: int
    type_id: int
    access: str
    kind: CoreReloKind


@dataclass(frozen=True, slots=True)
class SubprogramRange:
    """Where a ``.text`` function was appended: slots ``[start, end)`` of the program."""

    name: str
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class ProgramSpec:
    """One loadable program: the main function followed by every ``.text`` function it reaches.

    Calls (``CallLocal``) and function addresses (``lddw`` with ``PseudoSrc.FUNC``) already hold
    the pc-relative offsets inside this instruction list. ``pc`` fields of every record count
    slots from the program's first instruction.
    """

    name: str
    section: str
    section_info: SectionInfo  # platform.parse_section(section): type, flags, ProgTypeSpec
    prog_type: BpfProgType
    attach_type: BpfAttachType | None
    attach_to: str
    instructions: tuple[LabeledInsn, ...]
    license: str
    kern_version: int = 0
    map_references: tuple[MapReference, ...] = ()
    func_info: tuple[FuncInfo, ...] = ()
    line_info: tuple[LineInfo, ...] = ()
    core_relocations: tuple[CoreRelocation, ...] = ()
    subprograms: tuple[SubprogramRange, ...] = ()
    sleepable: bool = False
    kfunc_references: tuple[KfuncReference, ...] = ()

    def unknown_kfuncs(self) -> tuple[str, ...]:
        """Names of the non-weak kfuncs this program calls that pybpf's table does not know."""
        return tuple(dict.fromkeys(ref.name for ref in self.kfunc_references if not ref.weak and not ref.resolved))

    @property
    def slot_count(self) -> int:
        """Length of the program in 8-byte slots (``lddw`` counts two)."""
        if not self.instructions:
            return 0
        last = self.instructions[-1]
        return last.pc + (2 if isinstance(last.insn, LoadImm64) else 1)


class KconfigKind(IntEnum):
    """libbpf's enum kcfg_type: how a Kconfig value is stored in an extern of that C type."""

    KCFG_UNKNOWN = 0
    KCFG_CHAR = 1
    KCFG_BOOL = 2
    KCFG_INT = 3
    KCFG_TRISTATE = 4
    KCFG_CHAR_ARR = 5


@dataclass(frozen=True, slots=True)
class KconfigExtern:
    """One ``extern`` in ``.kconfig``: where it lives in the map value and how it is encoded."""

    name: str
    offset: int
    size: int
    kind: KconfigKind
    signed: bool = False
    weak: bool = False


@dataclass(frozen=True, slots=True)
class ElfMetadata:
    """Raw facts about the ELF file that later stages need (and nothing the OS decides)."""

    file: str
    sections: tuple[str, ...]
    btf_raw: bytes | None = None
    btf_ext_raw: bytes | None = None


@dataclass(frozen=True, slots=True)
class ObjectSpec:
    """An ELF object, parsed: its programs by function name and its maps by name."""

    name: str
    programs: dict[str, ProgramSpec]
    maps: dict[str, MapSpec]
    license: str
    kern_version: int
    btf: Btf | None
    btf_ext: BtfExt | None = field(repr=False, default=None)
    elf: ElfMetadata = field(repr=False, default_factory=lambda: ElfMetadata("", ()))
    # Kconfig externs by name; their values live in the ".kconfig" map (see pybpf.obj.kconfig).
    kconfig: dict[str, KconfigExtern] = field(repr=False, default_factory=dict)
    # Kernel-function externs (``__ksym``) by name (see pybpf.obj.ksyms).
    ksyms: dict[str, KsymExtern] = field(repr=False, default_factory=dict)
