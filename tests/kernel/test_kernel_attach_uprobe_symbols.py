"""Uprobe targets: a symbol's file offset, checked against ``nm`` and ``readelf`` on binaries
gcc builds in tmp_path (position-dependent, PIE, stripped to ``.dynsym``)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from pybpf.kernel.uprobe_symbols import (
    SymbolResolutionError,
    find_symbol,
    symbol_file_offset,
    vaddr_to_file_offset,
)

pytestmark = pytest.mark.skipif(
    not all(shutil.which(tool) for tool in ("gcc", "nm", "readelf", "strip")),
    reason="needs gcc, nm, readelf and strip to build and inspect test binaries",
)

SOURCE = """
__attribute__((noinline, used)) int probe_me(int x) { return x * 3; }
__attribute__((noinline, used)) static int hidden_helper(int x) { return x + 1; }
int main(int argc, char **argv) { (void)argv; return probe_me(argc) + hidden_helper(argc); }
"""


def _build(tmp_path: Path, name: str, *flags: str, source: str = SOURCE, extra: tuple[Path, ...] = ()) -> Path:
    main = tmp_path / f"{name}.c"
    main.write_text(source)
    binary = tmp_path / name
    subprocess.run(["gcc", "-O1", *flags, "-o", str(binary), str(main), *map(str, extra)], check=True)
    return binary


def _nm_address(binary: Path, symbol: str, *, dynamic: bool = False) -> int:
    args = ["nm", "-D"] if dynamic else ["nm"]
    output = subprocess.run([*args, str(binary)], check=True, capture_output=True, text=True).stdout
    # nm -D spells dynamic symbols with their version ("getpid@@GLIBC_2.2.5").
    addresses = {
        int(line.split()[0], 16)
        for line in output.splitlines()
        if len(line.split()) == 3 and line.split()[-1].split("@", 1)[0] == symbol
    }
    assert len(addresses) == 1, f"{symbol}: {sorted(addresses)}"
    return addresses.pop()


def _expected_offset(binary: Path, address: int) -> int:
    """What readelf's LOAD program headers say the file offset of ``address`` is."""
    output = subprocess.run(["readelf", "-lW", str(binary)], check=True, capture_output=True, text=True).stdout
    for line in output.splitlines():
        fields = line.split()
        if not fields or fields[0] != "LOAD":
            continue
        offset, vaddr, _, filesz = (int(value, 16) for value in fields[1:5])
        if vaddr <= address < vaddr + filesz:
            return address - vaddr + offset
    raise AssertionError(f"{address:#x} in no LOAD segment:\n{output}")


@pytest.mark.parametrize(
    "flags",
    [("-no-pie",), ("-fPIE", "-pie")],
    ids=["no-pie", "pie"],
)
@pytest.mark.parametrize("symbol", ["probe_me", "hidden_helper", "main"])
def test_symbol_offset_matches_nm_and_readelf(tmp_path: Path, flags: tuple[str, ...], symbol: str) -> None:
    binary = _build(tmp_path, "target", *flags)
    address = _nm_address(binary, symbol)
    assert find_symbol(binary, symbol).value == address
    assert find_symbol(binary, symbol).table == ".symtab"
    assert symbol_file_offset(binary, symbol) == _expected_offset(binary, address)


def test_position_dependent_offset_is_not_the_address(tmp_path: Path) -> None:
    # In a non-PIE x86_64/aarch64 binary text sits at 0x400000+, file offsets are small.
    binary = _build(tmp_path, "target", "-no-pie")
    address = _nm_address(binary, "probe_me")
    offset = symbol_file_offset(binary, "probe_me")
    assert offset != address
    assert vaddr_to_file_offset(binary, address) == offset


def test_stripped_binary_uses_dynsym(tmp_path: Path) -> None:
    binary = _build(tmp_path, "target", "-rdynamic")
    subprocess.run(["strip", "--strip-all", str(binary)], check=True)
    found = find_symbol(binary, "probe_me")
    assert found.table == ".dynsym"
    address = _nm_address(binary, "probe_me", dynamic=True)
    assert symbol_file_offset(binary, "probe_me") == _expected_offset(binary, address)
    with pytest.raises(SymbolResolutionError, match="no such symbol"):
        symbol_file_offset(binary, "hidden_helper")  # a static function is gone with .symtab


def test_libc_symbol_in_a_shared_library() -> None:
    output = subprocess.run(["gcc", "-print-file-name=libc.so.6"], check=True, capture_output=True, text=True)
    libc = Path(output.stdout.strip())
    if not libc.is_absolute() or not libc.exists():
        pytest.skip("gcc does not know where libc.so.6 is")
    libc = libc.resolve()
    address = _nm_address(libc, "getpid", dynamic=True)
    assert symbol_file_offset(libc, "getpid") == _expected_offset(libc, address)


def test_missing_symbol_and_not_elf(tmp_path: Path) -> None:
    binary = _build(tmp_path, "target")
    with pytest.raises(SymbolResolutionError, match="no such symbol") as caught:
        symbol_file_offset(binary, "does_not_exist")
    assert caught.value.symbol == "does_not_exist"
    text = tmp_path / "text"
    text.write_text("hello")
    with pytest.raises(SymbolResolutionError, match="not an ELF"):
        symbol_file_offset(text, "main")
    with pytest.raises(SymbolResolutionError, match="cannot read"):
        symbol_file_offset(tmp_path / "absent", "main")
    with pytest.raises(SymbolResolutionError, match="PT_LOAD"):
        vaddr_to_file_offset(binary, 0xFFFF_FFFF_0000)


def test_two_static_functions_of_one_name_are_ambiguous(tmp_path: Path) -> None:
    other = tmp_path / "other.c"
    other.write_text(
        "__attribute__((noinline, used)) static int dup(int x) { return x - 7; }\n"
        "int call_other(int x) { return dup(x); }\n"
    )
    source = (
        "__attribute__((noinline, used)) static int dup(int x) { return x + 5; }\n"
        "int call_other(int x);\nint main(int c, char **v) { (void)v; return dup(c) + call_other(c); }\n"
    )
    binary = _build(tmp_path, "twice", source=source, extra=(other,))
    with pytest.raises(SymbolResolutionError, match="ambiguous"):
        symbol_file_offset(binary, "dup")


def test_versioned_symtab_names_match_their_base_name(tmp_path: Path) -> None:
    binary = _build(tmp_path, "target")
    output = subprocess.run(["nm", str(binary)], check=True, capture_output=True, text=True).stdout
    versioned = [line.split()[-1] for line in output.splitlines() if re.search(r"@", line.split()[-1])]
    assert versioned, "nm lists the versioned imports of a dynamically linked binary"
    # Undefined imports such as "__libc_start_main@GLIBC_2.34" are never uprobe targets.
    for name in versioned:
        with pytest.raises(SymbolResolutionError):
            find_symbol(binary, name.split("@", 1)[0])
