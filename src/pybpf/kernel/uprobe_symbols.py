"""Where a uprobe goes: the file offset of a function symbol in an ELF binary.

The uprobe PMU takes a path and a *file* offset (``probe_offset``), not a virtual address. The
symbol's ``st_value`` is a virtual address in the binary's own layout; the ``PT_LOAD`` program
header that maps it gives the file offset: ``st_value - p_vaddr + p_offset``. ``.symtab`` is
searched first (it has static functions too), then ``.dynsym`` (all a stripped binary keeps).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile

from pybpf.errors import PybpfError

__all__ = ["ElfSymbol", "SymbolResolutionError", "find_symbol", "symbol_file_offset", "vaddr_to_file_offset"]


class SymbolResolutionError(PybpfError):
    """A uprobe target cannot be found in its binary (no such symbol, no ELF, unmapped address)."""

    def __init__(self, binary: str, symbol: str, reason: str) -> None:
        super().__init__(f"{binary}: {symbol}: {reason}")
        self.binary = binary
        self.symbol = symbol
        self.reason = reason


@dataclass(frozen=True, slots=True)
class ElfSymbol:
    """A defined symbol as found: its table, virtual address, size and binding."""

    name: str
    table: str  # ".symtab" or ".dynsym"
    value: int
    size: int
    binding: str  # STB_GLOBAL, STB_WEAK, STB_LOCAL
    kind: str  # STT_FUNC, STT_GNU_IFUNC, ...


_BINDING_RANK = {"STB_GLOBAL": 0, "STB_WEAK": 1, "STB_LOCAL": 2}


def _matches(entry_name: str, wanted: str) -> bool:
    # .symtab may spell versioned symbols "name@VERSION" or "name@@VERSION".
    return entry_name == wanted or entry_name.split("@", 1)[0] == wanted


def _symbols_named(elf: ELFFile, name: str) -> list[ElfSymbol]:
    found: list[ElfSymbol] = []
    for table in (".symtab", ".dynsym"):
        section = elf.get_section_by_name(table)
        if section is None or not hasattr(section, "iter_symbols"):
            continue
        for symbol in section.iter_symbols():
            if symbol.entry.st_shndx == "SHN_UNDEF" or not _matches(symbol.name, name):
                continue
            entry = symbol.entry
            value, size = int(entry.st_value), int(entry.st_size)
            found.append(ElfSymbol(symbol.name, table, value, size, entry.st_info.bind, entry.st_info.type))
        if found:
            # .symtab holds what .dynsym holds and more: no need to look further.
            break
    return found


def find_symbol(binary: str | os.PathLike[str], name: str) -> ElfSymbol:
    """The defined symbol ``name`` of ``binary`` (globals before weak before locals).

    SymbolResolutionError when it is missing, or when several symbols of that name sit at
    different addresses (two static functions of one name, say).
    """
    path = os.fsdecode(binary)
    try:
        with open(path, "rb") as stream:
            symbols = _symbols_named(ELFFile(stream), name)
    except OSError as error:
        raise SymbolResolutionError(path, name, f"cannot read the binary: {error.strerror}") from error
    except ELFError as error:
        raise SymbolResolutionError(path, name, f"not an ELF file: {error}") from error
    if not symbols:
        raise SymbolResolutionError(path, name, "no such symbol in .symtab or .dynsym")
    best_rank = min(_BINDING_RANK.get(symbol.binding, 3) for symbol in symbols)
    best = [symbol for symbol in symbols if _BINDING_RANK.get(symbol.binding, 3) == best_rank]
    addresses = sorted({symbol.value for symbol in best})
    if len(addresses) > 1:
        listed = ", ".join(hex(address) for address in addresses)
        raise SymbolResolutionError(path, name, f"ambiguous: defined at {listed}; give an offset instead")
    return best[0]


def vaddr_to_file_offset(binary: str | os.PathLike[str], vaddr: int) -> int:
    """The file offset at which the ``PT_LOAD`` segment holding ``vaddr`` stores it."""
    path = os.fsdecode(binary)
    label = hex(vaddr)
    try:
        with open(path, "rb") as stream:
            for segment in ELFFile(stream).iter_segments():
                header = segment.header
                if header.p_type != "PT_LOAD":
                    continue
                start, size = int(header.p_vaddr), int(header.p_filesz)
                if start <= vaddr < start + size:
                    return vaddr - start + int(header.p_offset)
    except OSError as error:
        raise SymbolResolutionError(path, label, f"cannot read the binary: {error.strerror}") from error
    except ELFError as error:
        raise SymbolResolutionError(path, label, f"not an ELF file: {error}") from error
    raise SymbolResolutionError(path, label, "address not in any PT_LOAD segment's file contents")


def symbol_file_offset(binary: str | os.PathLike[str], name: str) -> int:
    """The file offset of symbol ``name`` in ``binary``: what the uprobe PMU's ``probe_offset``
    wants."""
    symbol = find_symbol(binary, name)
    try:
        return vaddr_to_file_offset(binary, symbol.value)
    except SymbolResolutionError as error:
        raise SymbolResolutionError(os.fsdecode(binary), name, error.reason) from error
