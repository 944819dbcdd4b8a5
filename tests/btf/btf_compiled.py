"""A compiled test object's BTF sections (shared by the btf tests; not a conftest so it imports by a unique name)."""

from __future__ import annotations

from pathlib import Path

from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection

PROGS = Path(__file__).parent / "progs"
VMLINUX = Path("/sys/kernel/btf/vmlinux")
CLANG = "clang-19"


class CompiledObject:
    """A clang-built BPF object: its path, sections and symbols."""

    def __init__(self, path: Path, source: Path) -> None:
        self.path = path
        self.source = source
        with path.open("rb") as stream:
            elf = ELFFile(stream)
            self.sections = {section.name: section.data() for section in elf.iter_sections()}
            symtab = elf.get_section_by_name(".symtab")
            assert isinstance(symtab, SymbolTableSection), f"{path}: no symbol table"
            self.symbols = {
                sym.name: (elf.get_section(sym["st_shndx"]).name, sym["st_value"], sym["st_size"])
                for sym in symtab.iter_symbols()
                if isinstance(sym["st_shndx"], int) and sym["st_shndx"] > 0 and sym.name
            }

    @property
    def btf_bytes(self) -> bytes:
        return self.sections[".BTF"]

    @property
    def btf_ext_bytes(self) -> bytes:
        return self.sections[".BTF.ext"]

    def symbol_bytes(self, name: str) -> bytes:
        section, offset, size = self.symbols[name]
        return self.sections[section][offset : offset + size]

    def layout(self, name: str) -> int:
        """A `LAYOUT(name, ...)` constant the C file recorded in .rodata (clang's own numbers)."""
        return int.from_bytes(self.symbol_bytes(f"layout_{name}"), "little")
