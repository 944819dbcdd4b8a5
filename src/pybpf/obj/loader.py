"""``load_spec``: ELF object bytes -> :class:`~pybpf.obj.spec.ObjectSpec`, deterministically."""

from __future__ import annotations

import os
import struct
from collections.abc import Container
from pathlib import Path

from pybpf.btf import Btf
from pybpf.btf.ext import BtfExt
from pybpf.errors import BtfError, LoadError, NotSupportedError, UnknownSectionError, UnsupportedExternError
from pybpf.obj.elf import SHN_UNDEF, ElfObject, read_elf
from pybpf.obj.kconfig import collect_kconfig
from pybpf.obj.ksyms import collect_ksyms
from pybpf.obj.maps import collect_maps
from pybpf.obj.programs import TEXT_SECTION, Linker, read_functions
from pybpf.obj.spec import ElfMetadata, ObjectSpec, ProgramSpec
from pybpf.platform import SectionInfo, parse_section

LICENSE_SECTION = "license"
VERSION_SECTION = "version"


def _read_btf(elf: ElfObject) -> tuple[Btf | None, BtfExt | None]:
    btf_section = elf.section_by_name(".BTF")
    if btf_section is None:
        return None, None
    try:
        btf = Btf.from_bytes(btf_section.data)
    except BtfError as error:
        raise BtfError(f"BTF does not parse: {error}", file=elf.file, section=".BTF") from error
    ext_section = elf.section_by_name(".BTF.ext")
    if ext_section is None:
        return btf, None
    try:
        return btf, BtfExt.from_bytes(ext_section.data, btf)
    except BtfError as error:
        raise BtfError(f".BTF.ext does not parse: {error}", file=elf.file, section=".BTF.ext") from error


def _license(elf: ElfObject) -> str:
    section = elf.section_by_name(LICENSE_SECTION)
    if section is None:
        return ""
    text = section.data.split(b"\0", 1)[0]
    try:
        return text.decode("ascii")
    except UnicodeDecodeError:
        raise LoadError("the license is not ASCII text", file=elf.file, section=LICENSE_SECTION) from None


def _kern_version(elf: ElfObject) -> int:
    section = elf.section_by_name(VERSION_SECTION)
    if section is None:
        return 0
    if len(section.data) != 4:
        raise LoadError(
            f"the version section must hold one u32, not {len(section.data)} bytes",
            file=elf.file,
            section=VERSION_SECTION,
        )
    (version,) = struct.unpack("<I", section.data)
    return int(version)


def _section_info(section: str, file: str) -> SectionInfo:
    """platform.parse_section, with the file named in its errors."""
    try:
        return parse_section(section)
    except UnknownSectionError as error:
        raise UnknownSectionError(section, error.reason, file=file) from None
    except NotSupportedError as error:
        raise LoadError(f"program type not supported: {error}", file=file, section=section) from None


def _reject_externs(elf: ElfObject, known: Container[str]) -> None:
    """Kconfig externs and kfuncs are resolved; any other extern is refused, naming it."""
    for symbol in elf.symbols:
        if symbol.shndx == SHN_UNDEF and symbol.name and symbol.bind in ("STB_GLOBAL", "STB_WEAK"):
            if symbol.name in known:
                continue
            raise UnsupportedExternError(
                "extern symbols other than Kconfig values (.kconfig) and kfuncs (__ksym functions) are not supported",
                file=elf.file,
                symbol=symbol.name,
            )


def load_spec(source: str | os.PathLike[str] | bytes, *, name: str | None = None) -> ObjectSpec:
    """Parse a BPF ELF object (a path, or its bytes) into an :class:`ObjectSpec`.

    The object's ``name`` defaults to the file name without ``.o`` (``"object"`` for bytes).
    Only :class:`~pybpf.errors.LoadError` subclasses escape.
    """
    if isinstance(source, bytes | bytearray | memoryview):
        data, file = bytes(source), name or "<bytes>"
        default_name = "object"
    else:
        path = Path(source)
        try:
            data = path.read_bytes()
        except OSError as error:
            raise LoadError(f"cannot read the file: {error.strerror or error}", file=str(path)) from error
        file, default_name = str(path), path.name.removesuffix(".o")
    return _load(data, file, name or default_name)


def _load(data: bytes, file: str, name: str) -> ObjectSpec:
    elf = read_elf(data, file)
    btf, btf_ext = _read_btf(elf)
    kconfig_map, kconfig = collect_kconfig(elf, btf)
    ksyms = collect_ksyms(elf, btf)
    _reject_externs(elf, kconfig.keys() | ksyms.keys())
    license_text = _license(elf)
    kern_version = _kern_version(elf)
    maps = collect_maps(elf, btf)
    if kconfig_map is not None:
        if kconfig_map.name in maps.maps:
            raise LoadError("two maps have the same name", file=file, symbol=kconfig_map.name)
        maps.maps[kconfig_map.name] = kconfig_map
        maps.externs.update((name, extern.offset) for name, extern in kconfig.items())
    functions = read_functions(elf, maps, ksyms)
    linker = Linker(file, functions, btf, btf_ext)
    programs: dict[str, ProgramSpec] = {}
    for function in functions:
        if function.section.name == TEXT_SECTION:
            continue
        info = _section_info(function.section.name, file)
        linked = linker.link(function)
        programs[function.name] = ProgramSpec(
            name=function.name,
            section=function.section.name,
            section_info=info,
            prog_type=info.prog_type,
            attach_type=info.expected_attach_type,
            attach_to=info.target or "",
            instructions=linked.instructions,
            license=license_text,
            kern_version=kern_version,
            map_references=linked.map_references,
            func_info=linked.func_info,
            line_info=linked.line_info,
            core_relocations=linked.core_relocations,
            subprograms=linked.subprograms,
            sleepable=info.sleepable,
            kfunc_references=linked.kfunc_references,
        )
    metadata = ElfMetadata(
        file=file,
        sections=tuple(section.name for section in elf.sections),
        btf_raw=elf.section_by_name(".BTF").data if btf is not None else None,  # type: ignore[union-attr]
        btf_ext_raw=elf.section_by_name(".BTF.ext").data if btf_ext is not None else None,  # type: ignore[union-attr]
    )
    return ObjectSpec(name, programs, maps.maps, license_text, kern_version, btf, btf_ext, metadata, kconfig, ksyms)
