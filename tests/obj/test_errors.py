"""load_spec on broken objects: each failure is a typed LoadError naming file, section, symbol."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection

from pybpf.errors import (
    BtfError,
    LoadError,
    MissingMapError,
    NotElfError,
    TruncatedObjectError,
    UndefinedSymbolError,
    UnknownRelocationError,
    UnknownSectionError,
    UnsupportedExternError,
    WrongMachineError,
)
from pybpf.obj import load_spec

PROGS = Path(__file__).resolve().parent.parent / "progs"
E_MACHINE_OFFSET = 18  # Elf64_Ehdr.e_machine
EI_CLASS, EI_DATA = 4, 5


def blob(name: str) -> bytearray:
    return bytearray((PROGS / name).read_bytes())


def section_offset(data: bytes | bytearray, name: str) -> int:
    section = ELFFile(io.BytesIO(bytes(data))).get_section_by_name(name)
    assert section is not None
    return int(section["sh_offset"])


def patch_relocation(
    data: bytearray, rel_section: str, index: int, *, rtype: int | None = None, sym: int | None = None
) -> bytearray:
    """Rewrite one Elf64_Rel entry's type and/or symbol index in place."""
    where = section_offset(data, rel_section) + 16 * index + 8
    (info,) = struct.unpack_from("<Q", data, where)
    old_sym, old_type = info >> 32, info & 0xFFFFFFFF
    new_sym = old_sym if sym is None else sym
    new_type = old_type if rtype is None else rtype
    struct.pack_into("<Q", data, where, (new_sym << 32) | new_type)
    return data


def symbol_index(data: bytes | bytearray, name: str) -> int:
    table = ELFFile(io.BytesIO(bytes(data))).get_section_by_name(".symtab")
    assert isinstance(table, SymbolTableSection)
    for index, symbol in enumerate(table.iter_symbols()):
        if symbol.name == name:
            return index
    raise AssertionError(name)


def test_not_elf() -> None:
    with pytest.raises(NotElfError, match="not an ELF file") as info:
        load_spec(b"#!/bin/sh\necho hello\n", name="script")
    assert info.value.file == "script"


def test_missing_file_is_a_load_error(tmp_path: Path) -> None:
    with pytest.raises(LoadError, match="cannot read the file") as info:
        load_spec(tmp_path / "absent.o")
    assert info.value.file is not None and info.value.file.endswith("absent.o")


def test_wrong_machine() -> None:
    data = blob("xdp_lb.o")
    struct.pack_into("<H", data, E_MACHINE_OFFSET, 62)  # EM_X86_64
    with pytest.raises(WrongMachineError, match="EM_BPF"):
        load_spec(bytes(data))


@pytest.mark.parametrize(("byte", "value", "message"), [(EI_CLASS, 1, "ELFCLASS32"), (EI_DATA, 2, "big-endian")])
def test_wrong_class_or_byte_order(byte: int, value: int, message: str) -> None:
    data = blob("xdp_lb.o")
    data[byte] = value
    with pytest.raises(WrongMachineError, match=message):
        load_spec(bytes(data))


@pytest.mark.parametrize("keep", [10, 63, 64, 1000, 4000])
def test_truncated(keep: int) -> None:
    data = (PROGS / "xdp_lb.o").read_bytes()[:keep]
    with pytest.raises(TruncatedObjectError):
        load_spec(data, name="cut.o")


def test_unknown_relocation_type() -> None:
    data = patch_relocation(blob("bpf2bpf.o"), ".relsocket", 0, rtype=99)
    with pytest.raises(UnknownRelocationError, match="unknown relocation type 99") as info:
        load_spec(bytes(data), name="bpf2bpf.o")
    assert info.value.section == "socket" and info.value.file == "bpf2bpf.o"


def test_relocation_to_undefined_symbol() -> None:
    data = patch_relocation(blob("xdp_lb.o"), ".relxdp", 0, sym=0)
    with pytest.raises(UndefinedSymbolError, match="not defined") as info:
        load_spec(bytes(data))
    assert info.value.section == "xdp"


def test_reference_to_something_that_is_not_a_map() -> None:
    data = blob("xdp_lb.o")
    data = patch_relocation(data, ".relxdp", 0, sym=symbol_index(data, "LICENSE"))
    with pytest.raises(MissingMapError, match="not a map") as info:
        load_spec(bytes(data))
    assert info.value.symbol == "LICENSE" and info.value.section == "xdp"


def test_unknown_program_section() -> None:
    data = blob("tc_mark.o")
    strtab = section_offset(data, ".strtab")
    # Section names live in .strtab; rename "tc" (its own string, or the tail of ".reltc").
    position = data.index(b"tc\0", strtab)
    data[position : position + 2] = b"zz"
    with pytest.raises(UnknownSectionError, match="unknown program section") as info:
        load_spec(bytes(data), name="tc_mark.o")
    assert info.value.section == "zz" and info.value.file == "tc_mark.o"


def test_btf_that_does_not_parse() -> None:
    data = blob("xdp_lb.o")
    struct.pack_into("<H", data, section_offset(data, ".BTF"), 0x1234)  # bad magic
    with pytest.raises(BtfError, match="BTF does not parse") as info:
        load_spec(bytes(data))
    assert info.value.section == ".BTF"


def test_extern_outside_kconfig_and_ksyms_is_not_supported() -> None:
    # Renaming the .kconfig DATASEC (in the BTF strings) leaves an extern no section resolves.
    data = blob("kconfig_extern.o")
    btf = section_offset(data, ".BTF")
    at = data.index(b".kconfig\0", btf)
    data[at : at + 9] = b".kconfih\0"
    with pytest.raises(UnsupportedExternError, match="not supported") as info:
        load_spec(bytes(data))
    assert info.value.symbol == "LINUX_KERNEL_VERSION"
