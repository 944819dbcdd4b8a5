"""The ELF layer: pyelftools behind a wall of typed errors, read eagerly into plain records.

pyelftools parses lazily and, on hostile input, raises whatever its internals trip over
(``ELFError``, construct's ``StreamError``, ``struct.error``, ``ValueError``, ``UnicodeDecodeError``...).
Everything that touches pyelftools lives in this module and runs inside :func:`_guard`, which
turns any of those into a :class:`~pybpf.errors.LoadError` naming the file and the section being
read. The rest of the loader only sees :class:`ElfObject`.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from elftools.common.exceptions import ELFError
from elftools.construct.core import ConstructError
from elftools.elf.elffile import ELFFile
from elftools.elf.relocation import RelocationSection
from elftools.elf.sections import SymbolTableSection

from pybpf.errors import (
    LoadError,
    MalformedObjectError,
    NotElfError,
    TruncatedObjectError,
    WrongMachineError,
)

ELF_MAGIC = b"\x7fELF"
EM_BPF = 247
# Special section indices (include/uapi/linux/elf.h).
SHN_UNDEF = 0
SHN_ABS = 0xFFF1
SHN_COMMON = 0xFFF2
_SPECIAL_SHNDX = {"SHN_UNDEF": SHN_UNDEF, "SHN_ABS": SHN_ABS, "SHN_COMMON": SHN_COMMON}
# Section flags and types we test for.
SHF_WRITE = 0x1
SHF_ALLOC = 0x2
SHF_EXECINSTR = 0x4
SHT_PROGBITS = "SHT_PROGBITS"
SHT_NOBITS = "SHT_NOBITS"
SHT_REL = "SHT_REL"

# What pyelftools (and the stdlib underneath it) raises on malformed input.
_PARSE_ERRORS: tuple[type[BaseException], ...] = (
    ELFError,
    ConstructError,
    struct.error,
    ValueError,
    IndexError,
    KeyError,
    TypeError,
    AttributeError,
    UnicodeDecodeError,
    OverflowError,
    EOFError,
    RecursionError,
    ZeroDivisionError,
)

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class ElfSection:
    """One section header plus its contents (``data`` is empty for SHT_NOBITS)."""

    index: int
    name: str
    type: str  # pyelftools' spelling: "SHT_PROGBITS", "SHT_NOBITS", "SHT_REL"...
    flags: int
    size: int
    link: int
    info: int
    data: bytes

    @property
    def is_code(self) -> bool:
        return self.type == SHT_PROGBITS and bool(self.flags & SHF_EXECINSTR)


@dataclass(frozen=True, slots=True)
class ElfSymbol:
    """One symbol table entry. ``shndx`` is the section index or SHN_UNDEF/SHN_ABS/SHN_COMMON."""

    index: int
    name: str
    type: str  # "STT_FUNC", "STT_OBJECT", "STT_SECTION", "STT_NOTYPE", "STT_FILE"...
    bind: str  # "STB_LOCAL", "STB_GLOBAL", "STB_WEAK"
    shndx: int
    value: int
    size: int


@dataclass(frozen=True, slots=True)
class ElfRelocation:
    """One SHT_REL entry (BPF objects carry no addends; the addend is in the instruction)."""

    offset: int
    type: int
    symbol: int


@dataclass(frozen=True, slots=True)
class ElfObject:
    """The parts of an ELF file the BPF loader reads."""

    file: str
    sections: tuple[ElfSection, ...]
    symbols: tuple[ElfSymbol, ...]
    # Target section index -> its relocations, in file order.
    relocations: dict[int, tuple[ElfRelocation, ...]]

    def section_by_name(self, name: str) -> ElfSection | None:
        for section in self.sections:
            if section.name == name:
                return section
        return None

    def symbol(self, index: int, *, section: str | None = None) -> ElfSymbol:
        if not 0 <= index < len(self.symbols):
            raise MalformedObjectError(
                f"relocation refers to symbol index {index}, but the symbol table has {len(self.symbols)}",
                file=self.file,
                section=section,
            )
        return self.symbols[index]

    def section_name(self, index: int) -> str:
        if 0 <= index < len(self.sections):
            return self.sections[index].name
        return f"#{index}"


@contextmanager
def _guard(file: str, what: str, section: str | None = None) -> Iterator[None]:
    try:
        yield
    except LoadError:
        raise
    except _PARSE_ERRORS as error:
        raise MalformedObjectError(f"cannot read {what}: {error}", file=file, section=section) from error


def _read(file: str, what: str, section: str | None, thunk: Callable[[], _T]) -> _T:
    with _guard(file, what, section):
        return thunk()


def _check_header(data: bytes, file: str) -> None:
    if len(data) < 4 or data[:4] != ELF_MAGIC:
        raise NotElfError("not an ELF file (bad magic number)", file=file)
    # 64 bytes is the size of an ELF64 header; anything shorter cannot describe a BPF object.
    if len(data) < 64:
        raise TruncatedObjectError(f"the ELF header is truncated ({len(data)} bytes, 64 needed)", file=file)


def _check_identity(elf: Any, file: str) -> None:
    if elf.elfclass != 64:
        raise WrongMachineError(f"ELFCLASS{elf.elfclass} object; BPF objects are ELFCLASS64", file=file)
    if not elf.little_endian:
        raise WrongMachineError(
            "big-endian object; pybpf loads little-endian BPF objects (clang -target bpfel)", file=file
        )
    machine = elf.header.e_machine
    if machine not in ("EM_BPF", EM_BPF):
        raise WrongMachineError(f"machine is {machine}, not EM_BPF ({EM_BPF})", file=file)


def _section_bytes(raw: Any, data: bytes, file: str, name: str) -> bytes:
    if raw["sh_type"] == SHT_NOBITS:
        return b""
    offset, size = raw["sh_offset"], raw["sh_size"]
    if offset + size > len(data):
        raise TruncatedObjectError(
            f"section data [{offset:#x}, {offset + size:#x}) runs past the end of the file ({len(data):#x} bytes)",
            file=file,
            section=name,
        )
    return data[offset : offset + size]


def _read_sections(elf: Any, data: bytes, file: str) -> list[ElfSection]:
    sections: list[ElfSection] = []
    count = _read(file, "the section headers", None, elf.num_sections)
    # Each header is 64 bytes; refuse a count the file cannot hold before iterating it.
    if elf.header.e_shoff + count * elf.header.e_shentsize > len(data):
        raise TruncatedObjectError(f"{count} section headers run past the end of the file", file=file)
    for index in range(count):
        with _guard(file, f"section header {index}"):
            raw = elf.get_section(index)
            name = str(raw.name)
        header = raw.header
        sections.append(
            ElfSection(
                index=index,
                name=name,
                type=str(header["sh_type"]),
                flags=int(header["sh_flags"]),
                size=int(header["sh_size"]),
                link=int(header["sh_link"]),
                info=int(header["sh_info"]),
                data=_section_bytes(header, data, file, name),
            )
        )
    return sections


def _read_symbols(elf: Any, file: str) -> list[ElfSymbol]:
    table = _read(file, "the symbol table", ".symtab", lambda: elf.get_section_by_name(".symtab"))
    if not isinstance(table, SymbolTableSection):
        raise MalformedObjectError("the object has no symbol table", file=file, section=".symtab")
    symbols: list[ElfSymbol] = []
    with _guard(file, "the symbol table", ".symtab"):
        for index in range(table.num_symbols()):
            entry = table.get_symbol(index)
            shndx = entry["st_shndx"]
            symbols.append(
                ElfSymbol(
                    index=index,
                    name=entry.name,
                    type=str(entry["st_info"]["type"]),
                    bind=str(entry["st_info"]["bind"]),
                    shndx=_SPECIAL_SHNDX.get(shndx, SHN_ABS) if isinstance(shndx, str) else int(shndx),
                    value=int(entry["st_value"]),
                    size=int(entry["st_size"]),
                )
            )
    return symbols


def _read_relocations(elf: Any, sections: list[ElfSection], file: str) -> dict[int, tuple[ElfRelocation, ...]]:
    relocations: dict[int, tuple[ElfRelocation, ...]] = {}
    for section in sections:
        if section.type == "SHT_RELA":
            raise MalformedObjectError("RELA relocations are not used by BPF objects", file=file, section=section.name)
        if section.type != SHT_REL:
            continue
        with _guard(file, "a relocation section", section.name):
            raw = elf.get_section(section.index)
        if not isinstance(raw, RelocationSection):
            raise MalformedObjectError("not a relocation section", file=file, section=section.name)
        with _guard(file, "relocations", section.name):
            entries = tuple(
                ElfRelocation(int(rel["r_offset"]), int(rel["r_info_type"]), int(rel["r_info_sym"]))
                for rel in raw.iter_relocations()
            )
        if not 0 < section.info < len(sections):
            raise MalformedObjectError(
                f"relocations apply to section index {section.info}, which does not exist",
                file=file,
                section=section.name,
            )
        relocations[section.info] = relocations.get(section.info, ()) + entries
    return relocations


def read_elf(data: bytes, file: str) -> ElfObject:
    """Parse ``data`` as a 64-bit little-endian EM_BPF relocatable object."""
    _check_header(data, file)
    elf = _read(file, "the ELF header", None, lambda: ELFFile(io.BytesIO(data)))
    with _guard(file, "the ELF header"):
        _check_identity(elf, file)
    sections = _read_sections(elf, data, file)
    symbols = _read_symbols(elf, file)
    relocations = _read_relocations(elf, sections, file)
    return ElfObject(file, tuple(sections), tuple(symbols), relocations)
