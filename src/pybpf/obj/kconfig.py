"""Kconfig externs: ``extern ... __kconfig`` variables, laid out in a read-only ``.kconfig`` map.

Semantics follow libbpf (``bpf_object__collect_externs`` and ``bpf_object__resolve_externs``):
the ``.kconfig`` DATASEC in the object's BTF lists the extern VARs; each gets a slot in one
array map value (sorted by alignment, widest first, then by name), and every ``lddw`` that
relocates against the extern becomes a map-value load of its slot. The values are filled in at
instantiation (the only part that reads the host): ``LINUX_KERNEL_VERSION`` from ``uname -r``,
``LINUX_HAS_*`` from feature knowledge, ``CONFIG_*`` from ``/proc/config.gz`` or
``/boot/config-$(uname -r)``. An extern nobody knows is 0 when ``__weak`` and an error otherwise.
"""

from __future__ import annotations

import gzip
import os
import platform
import re
import struct
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from pybpf.btf import Btf
from pybpf.btf.types import Array, Datasec, Enum, Int, Var
from pybpf.errors import BtfError, LoadError, UnsupportedExternError
from pybpf.obj.elf import SHN_UNDEF, ElfObject
from pybpf.obj.spec import KCONFIG_SECTION, KconfigExtern, KconfigKind, MapKind, MapSpec, ObjectSpec
from pybpf.platform.uapi_generated import BpfMapFlag, BpfMapType

# The C enum libbpf's bpf_helpers.h declares for tristate externs; only this name means tristate.
_TRISTATE_ENUM = "libbpf_tristate"
_TRISTATE = {"n": 0, "y": 1, "m": 2}  # TRI_NO, TRI_YES, TRI_MODULE
_RELEASE = re.compile(r"(\d+)\.(\d+)(?:\.(\d+))?")
KconfigValue = int | str | bool


def kernel_version_code(release: str) -> int:
    """KERNEL_VERSION(a, b, c) of a ``uname -r`` string; the sublevel saturates at 255 as in the kernel."""
    match = _RELEASE.match(release)
    if match is None:
        raise LoadError(f"cannot read a kernel version from release {release!r}", symbol="LINUX_KERNEL_VERSION")
    major, minor, patch = int(match[1]), int(match[2]), int(match[3] or 0)
    return (major << 16) + (minor << 8) + min(patch, 255)


def _kind(btf: Btf, name: str, type_id: int, file: str) -> tuple[KconfigKind, bool]:
    record = btf.resolved(type_id)
    if isinstance(record, Int):
        if record.is_bool and record.size == 1:
            return KconfigKind.KCFG_BOOL, False
        if record.size == 1:  # libbpf: any one-byte integer takes y/n/m as a character
            return KconfigKind.KCFG_CHAR, record.is_signed
        if record.size in (2, 4, 8):
            return KconfigKind.KCFG_INT, record.is_signed
    if isinstance(record, Enum) and record.name == _TRISTATE_ENUM:
        return KconfigKind.KCFG_TRISTATE, False
    if isinstance(record, Array):
        element = btf.resolved(record.type_id)
        if isinstance(element, Int) and element.size == 1 and record.nelems > 0:
            return KconfigKind.KCFG_CHAR_ARR, False
    raise UnsupportedExternError(
        f"Kconfig extern of type {btf.format_type(type_id)!r} is not supported", file=file, symbol=name
    )


def collect_kconfig(elf: ElfObject, btf: Btf | None) -> tuple[MapSpec | None, dict[str, KconfigExtern]]:
    """The ``.kconfig`` map (contents all zero: values come at instantiation) and its externs by name."""
    datasec_id = btf.find(KCONFIG_SECTION) if btf is not None else None
    if btf is None or datasec_id is None:
        return None, {}
    datasec = btf[datasec_id]
    if not isinstance(datasec, Datasec):
        raise LoadError("the .kconfig BTF type is not a DATASEC", file=elf.file, section=KCONFIG_SECTION)
    weak = {s.name for s in elf.symbols if s.shndx == SHN_UNDEF and s.bind == "STB_WEAK"}
    entries: list[tuple[int, str, int, int]] = []  # (alignment, name, size, var type id)
    try:
        for secinfo in datasec.vars:
            var = btf[secinfo.type_id]
            if not isinstance(var, Var):
                raise LoadError("a .kconfig DATASEC entry is not a VAR", file=elf.file, section=KCONFIG_SECTION)
            entries.append((btf.align_of(var.type_id), var.name, btf.size_of(var.type_id), var.type_id))
        # libbpf's layout: widest alignment first, then by name, so the same object gives the same offsets.
        entries.sort(key=lambda entry: (-entry[0], entry[1]))
        externs: dict[str, KconfigExtern] = {}
        offset = 0
        for align, name, size, type_id in entries:
            offset = -(-offset // align) * align
            kind, signed = _kind(btf, name, type_id, elf.file)
            externs[name] = KconfigExtern(name, offset, size, kind, signed, name in weak)
            offset += size
    except BtfError as error:
        raise LoadError(f"Kconfig externs: {error}", file=elf.file, section=KCONFIG_SECTION) from error
    value_size = max(8, -(-offset // 8) * 8)
    spec = MapSpec(
        name=KCONFIG_SECTION,
        type=BpfMapType.ARRAY,
        key_size=4,
        value_size=value_size,
        max_entries=1,
        map_flags=int(BpfMapFlag.RDONLY_PROG),
        kind=MapKind.DATA,
        section=KCONFIG_SECTION,
        contents=bytes(value_size),
        frozen=True,
    )
    return spec, externs


# -- instantiation: the host's values ---------------------------------------------------------


def parse_kernel_config(text: str) -> dict[str, str]:
    """``CONFIG_X=value`` lines of a kernel .config; ``# CONFIG_X is not set`` lines are absent, as in libbpf."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        name, sep, value = line.strip().partition("=")
        if sep and name.startswith("CONFIG_"):
            values[name] = value
    return values


def read_host_config(release: str) -> str | None:
    """The running kernel's .config text: /proc/config.gz, else /boot/config-<release>; None if neither."""
    try:
        return gzip.decompress(Path("/proc/config.gz").read_bytes()).decode("utf-8", "replace")
    except (OSError, EOFError, gzip.BadGzipFile):
        pass
    try:
        return Path(f"/boot/config-{release}").read_text("utf-8", "replace")
    except OSError:
        return None


def _encode(extern: KconfigExtern, value: KconfigValue, file: str) -> bytes:
    def bad(reason: str) -> LoadError:
        return LoadError(f"Kconfig value {value!r}: {reason}", file=file, symbol=extern.name)

    if isinstance(value, str) and extern.kind is not KconfigKind.KCFG_CHAR_ARR:
        if value in _TRISTATE:
            if extern.kind is KconfigKind.KCFG_TRISTATE:
                return struct.pack("<I", _TRISTATE[value])
            if extern.kind is KconfigKind.KCFG_CHAR:
                return value.encode()
            if extern.kind is KconfigKind.KCFG_BOOL and value != "m":
                return bytes([value == "y"])
            raise bad(f"a tristate does not fit a {extern.kind.name} extern")
        try:
            value = int(value, 0)
        except ValueError:
            raise bad(f"not a number for a {extern.kind.name} extern") from None
    if extern.kind is KconfigKind.KCFG_CHAR_ARR:
        if not isinstance(value, str):
            raise bad("a string extern needs a string value")
        text = value[1:-1] if len(value) >= 2 and value[0] == value[-1] == '"' else value
        # libbpf truncates to fit, always keeping the terminating NUL.
        return text.encode()[: extern.size - 1].ljust(extern.size, b"\0")
    number = int(value)
    if extern.kind is KconfigKind.KCFG_TRISTATE:
        if number not in _TRISTATE.values():
            raise bad("not a tristate")
        return struct.pack("<I", number)
    if extern.kind is KconfigKind.KCFG_BOOL and number not in (0, 1):
        raise bad("not a bool")
    bits = extern.size * 8
    low, high = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if extern.signed else (0, (1 << bits) - 1)
    if not low <= number <= high:
        raise bad(f"out of range for a {extern.size}-byte extern")
    return number.to_bytes(extern.size, "little", signed=extern.signed)


def _syscall_wrapper(version: int) -> bool:
    # Since 4.17 (x86-64) and 5.0 (arm64) syscalls enter through __<arch>_sys_* wrappers
    # (libbpf probes for the wrapper symbol; the architecture and version decide it).
    machine = platform.machine()
    if machine in ("x86_64", "AMD64"):
        return version >= (4 << 16) + (17 << 8)
    if machine in ("aarch64", "arm64", "s390x"):
        return version >= 5 << 16
    return False


def resolve_kconfig(
    spec: ObjectSpec,
    overrides: Mapping[str, KconfigValue] | None = None,
    *,
    release: str | None = None,
    config_text: str | None = None,
) -> ObjectSpec:
    """``spec`` with its ``.kconfig`` map holding the values; unchanged when it has no externs.

    ``overrides`` (by extern name) win over the host; ``release`` and ``config_text`` replace
    ``uname -r`` and the kernel's .config (tests). Raises LoadError naming an unknown non-weak extern.
    """
    if not spec.kconfig:
        return spec
    host_release = release if release is not None else os.uname().release
    version = kernel_version_code(host_release)
    known: dict[str, KconfigValue] = {
        "LINUX_KERNEL_VERSION": version,
        "LINUX_HAS_BPF_COOKIE": version >= (5 << 16) + (15 << 8),  # bpf_get_attach_cookie, 5.15
        "LINUX_HAS_SYSCALL_WRAPPER": _syscall_wrapper(version),
    }
    if any(name.startswith("CONFIG_") and name not in (overrides or {}) for name in spec.kconfig):
        text = config_text if config_text is not None else read_host_config(host_release)
        if text is not None:
            known.update(parse_kernel_config(text))
    known.update(overrides or {})
    kconfig_map = spec.maps[KCONFIG_SECTION]
    contents = bytearray(kconfig_map.value_size)
    for extern in spec.kconfig.values():
        value = known.get(extern.name)
        if value is None:
            if extern.weak:
                continue  # libbpf leaves an unknown __weak extern zero
            raise LoadError("Kconfig extern has no value (and is not __weak)", file=spec.elf.file, symbol=extern.name)
        contents[extern.offset : extern.offset + extern.size] = _encode(extern, value, spec.elf.file)
    maps = dict(spec.maps)
    maps[KCONFIG_SECTION] = replace(kconfig_map, contents=bytes(contents))
    return replace(spec, maps=maps)
