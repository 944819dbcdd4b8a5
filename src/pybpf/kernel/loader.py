"""``load()``: an object file's spec instantiated in the kernel, the way libbpf does it.

The steps, in libbpf's order:

1. BTF: DATASEC sizes and variable offsets fixed up from the ELF (:mod:`~pybpf.kernel.btf_fixup`),
   then BPF_BTF_LOAD. If the kernel refuses it, the kinds it lacks are probed and sanitised away
   and the load is retried; if it still refuses, the object loads without BTF (as libbpf does
   for objects that need BTF for nothing essential).
2. Maps: inner-map templates first, then every map with its BTF key/value type ids (retried
   without BTF if the kernel refuses them), under its kernel-visible name (libbpf's
   ``<obj[:8]>.data`` for global data, 15-character cap). Global data maps get their initial
   contents, and ``.rodata`` is frozen.
3. Programs: CO-RE relocations against the running kernel's BTF (``/sys/kernel/btf/vmlinux``,
   read only when some program needs it), map ``lddw`` patched with the real fds, loaded with
   func_info/line_info, the program type and expected attach type; a refusal raises
   :class:`~pybpf.errors.VerifierRejectedError` with the verifier's whole log.
4. prog_array and map-in-map slots filled from their ``values = {...}`` initialisers.

Everything created is closed again if a later step fails.
"""

from __future__ import annotations

import os
import re
import struct
from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path

from pybpf.btf import Btf, BtfKind, CoreResolver
from pybpf.errors import BpfCommandError, BtfError, LoadError, NotSupportedError, PermissionDeniedError
from pybpf.isa import encode_program
from pybpf.kernel.arena import KernelArena
from pybpf.kernel.btf_fixup import Kind, RawBtf, VarLinkage, fix_datasecs, fix_ksyms, sanitize
from pybpf.kernel.fd import Fd
from pybpf.kernel.features import btf_kind_supported
from pybpf.kernel.map_api import KernelMap, ValueCodec, possible_cpus
from pybpf.kernel.maps import map_create, map_freeze, map_update
from pybpf.kernel.object import KernelObject, KernelProgram
from pybpf.kernel.objects import btf_load
from pybpf.kernel.progs import prog_load_with_log
from pybpf.kernel.relocate import apply_core, apply_kfuncs, apply_map_fds
from pybpf.kernel.syscall import RawSyscall
from pybpf.kernel.uapi import BPF_OBJ_NAME_LEN, BpfAttachType, BpfMapType, BpfProgLoadFlag, BpfProgType
from pybpf.obj import MapKind, MapSpec, ObjectSpec, ProgramSpec, load_spec
from pybpf.obj.elf import ElfObject, read_elf
from pybpf.obj.kconfig import KconfigValue, resolve_kconfig
from pybpf.obj.spec import KCONFIG_SECTION
from pybpf.platform.section import SectionFlag

VMLINUX_BTF = Path("/sys/kernel/btf/vmlinux")
"""Where the running kernel publishes its own BTF (the target of CO-RE relocations)."""

DATA_KEY = bytes(4)
"""The one key of a global data map."""

_FUNC_INFO = struct.Struct("<II")  # insn_off (in slots), type_id
_LINE_INFO = struct.Struct("<IIII")  # insn_off, file_name_off, line_off, line_col
_NAME_CHARS = re.compile(r"[^A-Za-z0-9_.]")
_MAP_IN_MAP = (BpfMapType.ARRAY_OF_MAPS, BpfMapType.HASH_OF_MAPS)
# How libbpf names the kernel BTF type a BTF-attached program targets, by attach type.
_ATTACH_BTF_NAMES: dict[BpfAttachType | None, tuple[str, BtfKind]] = {
    BpfAttachType.TRACE_RAW_TP: ("btf_trace_", BtfKind.TYPEDEF),
    BpfAttachType.LSM_MAC: ("bpf_lsm_", BtfKind.FUNC),
    BpfAttachType.LSM_CGROUP: ("bpf_lsm_", BtfKind.FUNC),
    BpfAttachType.TRACE_ITER: ("bpf_iter_", BtfKind.FUNC),
}


class KernelLoadError(LoadError):
    """An object that parses but cannot be instantiated in the kernel; ``__cause__`` is the bpf(2) error."""


def kernel_map_name(object_name: str, spec: MapSpec) -> str:
    """The name the kernel gets for ``spec``: libbpf's choice, at most 15 characters.

    Global data maps of the plain sections are ``<object name[:n]><section>`` (``n`` so that the
    whole fits, the section counted as at least 7 characters); ``.data.<x>``-style sections
    keep their own name. Characters the kernel refuses become ``_``.
    """
    if spec.kind is MapKind.DATA:
        section = spec.name
        suffix_len = max(7, len(section))
        prefix_len = 0 if "." in section[1:] else min(BPF_OBJ_NAME_LEN - suffix_len - 1, len(object_name))
        name = object_name[: max(prefix_len, 0)] + section[:suffix_len]
    else:
        name = spec.name
    return _NAME_CHARS.sub("_", name)[: BPF_OBJ_NAME_LEN - 1]


def _read_target_btf(source: Btf | str | os.PathLike[str] | bytes | None) -> Btf:
    if isinstance(source, Btf):
        return source
    if isinstance(source, bytes):
        return Btf.from_bytes(source)
    path = VMLINUX_BTF if source is None else Path(source)
    try:
        return Btf.from_bytes(path.read_bytes())
    except OSError as error:
        raise NotSupportedError(f"CO-RE needs the kernel's BTF, and {path} cannot be read: {error}") from error


class _Instantiation:
    """One load in progress: what was created so far, closed on failure by ``stack``."""

    def __init__(
        self,
        spec: ObjectSpec,
        elf: ElfObject,
        stack: ExitStack,
        *,
        codec: ValueCodec | None,
        ncpus: int,
        vmlinux_btf: Btf | str | os.PathLike[str] | bytes | None,
        log_level: int,
        syscall: RawSyscall | None,
    ) -> None:
        self.spec = spec
        self.elf = elf
        self.stack = stack
        self.codec = codec
        self.ncpus = ncpus
        self.vmlinux_source = vmlinux_btf
        self.log_level = log_level
        self.syscall = syscall
        self.btf_fd: Fd | None = None
        self.strings: dict[str, int] = {}
        self.maps: dict[str, KernelMap] = {}
        self.programs: dict[str, KernelProgram] = {}
        self._resolver: CoreResolver | None = None
        self._target: Btf | None = None

    def error(self, reason: str, symbol: str | None = None) -> KernelLoadError:
        return KernelLoadError(reason, file=self.spec.elf.file, symbol=symbol)

    # -- BTF --------------------------------------------------------------------------------------

    def load_btf(self) -> None:
        raw_bytes = self.spec.elf.btf_raw
        if raw_bytes is None:
            return
        raw = RawBtf(raw_bytes)
        self.strings = raw.strings()
        sizes = {section.name: section.size for section in self.elf.sections}
        index_of = {section.name: section.index for section in self.elf.sections}
        symbols: dict[tuple[int, str], int] = {
            (symbol.shndx, symbol.name): symbol.value for symbol in self.elf.symbols if symbol.type != "STT_SECTION"
        }

        kconfig = self.spec.kconfig
        if kconfig:
            # libbpf's layout of the .kconfig DATASEC: the map value's size, each extern at its slot.
            sizes[KCONFIG_SECTION] = self.spec.maps[KCONFIG_SECTION].value_size

        def symbol_offset(section: str, name: str) -> int | None:
            if section == KCONFIG_SECTION and name in kconfig:
                return kconfig[name].offset
            index = index_of.get(section)
            return None if index is None else symbols.get((index, name))

        fix_datasecs(raw, sizes, symbol_offset)
        raw = fix_ksyms(raw)
        for record in raw.records:
            # The kernel refuses extern VARs; libbpf makes resolved Kconfig externs allocated globals.
            if record.kind == Kind.VAR and raw.string(record.name_off) in kconfig:
                struct.pack_into("<I", raw.data, record.offset + 12, VarLinkage.GLOBAL)
        try:
            self.btf_fd = btf_load(raw.to_bytes(), syscall=self.syscall)
        except PermissionDeniedError:
            raise  # no privileges: nothing else will load either
        except BpfCommandError:
            missing = missing_btf_kinds(syscall=self.syscall)
            try:
                if not missing:
                    raise
                sanitize(raw, missing)
                self.btf_fd = btf_load(raw.to_bytes(), syscall=self.syscall)
            except (BpfCommandError, NotSupportedError):
                # libbpf goes on without BTF: maps and programs lose their type information only.
                self.btf_fd = None
                self.strings = {}
                return
        self.stack.callback(self.btf_fd.close)

    # -- maps -------------------------------------------------------------------------------------

    def _create(self, spec: MapSpec, *, inner_fd: Fd | None) -> tuple[Fd, bool]:
        """The map's fd, and whether it was created with BTF type ids."""

        def create(btf_fd: Fd | None, key_type_id: int, value_type_id: int) -> Fd:
            return map_create(
                spec.type,
                spec.key_size,
                spec.value_size,
                spec.max_entries,
                map_flags=spec.map_flags,
                name=kernel_map_name(self.spec.name, spec),
                inner_map_fd=inner_fd,
                numa_node=spec.numa_node,
                btf_fd=btf_fd,
                btf_key_type_id=key_type_id,
                btf_value_type_id=value_type_id,
                map_extra=spec.map_extra,
                syscall=self.syscall,
            )

        if self.btf_fd is not None and spec.btf_value_type_id is not None and spec.kind is not MapKind.LEGACY:
            try:
                return create(self.btf_fd, spec.btf_key_type_id or 0, spec.btf_value_type_id), True
            except PermissionDeniedError:
                raise
            except BpfCommandError:
                # Some map types take no element BTF (queues, stacks, keyless maps): libbpf retries
                # without it too.
                pass
        return create(None, 0, 0), False

    def create_maps(self) -> None:
        for spec in self.spec.maps.values():
            inner_fd = None
            try:
                if spec.type in _MAP_IN_MAP:
                    if spec.inner is None:
                        raise self.error("a map of maps needs an inner map definition", spec.name)
                    inner_fd, _ = self._create(spec.inner, inner_fd=None)
                fd, typed = self._create(spec, inner_fd=inner_fd)
            except BpfCommandError as error:
                # The errno's class stays (PermissionDeniedError...); the note names the map.
                error.add_note(f"while creating map {spec.name!r} ({self.spec.elf.file})")
                raise
            finally:
                if inner_fd is not None:
                    inner_fd.close()
            self.stack.callback(fd.close)
            created = KernelMap(
                fd,
                name=spec.name,
                map_type=spec.type,
                key_size=spec.key_size,
                value_size=spec.value_size,
                max_entries=spec.max_entries,
                map_flags=spec.map_flags,
                # Typed keys and values are a user-space matter: the object's BTF types them even
                # when the kernel would not take them (queues, stacks: libbpf's no-BTF retry).
                btf=self.spec.btf if typed or spec.btf_value_type_id else None,
                btf_key_type_id=spec.btf_key_type_id or 0,
                btf_value_type_id=spec.btf_value_type_id or 0,
                ncpus=self.ncpus,
                codec=self.codec,
                syscall=self.syscall,
            )
            self.maps[spec.name] = created
            if spec.type == BpfMapType.ARENA:
                # As libbpf: map it now (the kernel needs its user address before any program
                # using it loads), then copy the global __arena variables to its first page(s).
                created.arena = KernelArena(fd, spec.max_entries, map_extra=spec.map_extra, map_flags=spec.map_flags)
                self.stack.callback(created.arena.close)
                if spec.contents:
                    created.arena.write(created.arena.user_vm_start, spec.contents)
            elif spec.kind is MapKind.DATA and spec.contents is not None:
                try:
                    map_update(fd, DATA_KEY, spec.contents, syscall=self.syscall)
                    if spec.frozen:
                        map_freeze(fd, syscall=self.syscall)
                        created.frozen = True
                except BpfCommandError as error:
                    raise self.error(f"map {spec.name!r}: initial contents: {error}", spec.name) from error

    # -- programs ---------------------------------------------------------------------------------

    def target_btf(self) -> Btf:
        if self._target is None:
            self._target = _read_target_btf(self.vmlinux_source)
        return self._target

    def resolver(self) -> CoreResolver:
        if self._resolver is None:
            self._resolver = CoreResolver(self.target_btf())
        return self._resolver

    def attach_btf_id(self, program: ProgramSpec) -> int:
        """The kernel BTF id fentry/fexit/tp_btf/LSM/iter programs name at load (libbpf's lookup)."""
        if not program.section_info.flags & SectionFlag.ATTACH_BTF or not program.attach_to:
            return 0
        prefix, kind = _ATTACH_BTF_NAMES.get(program.attach_type, ("", BtfKind.FUNC))
        name = prefix + program.attach_to
        found = self.target_btf().find(name, kind)
        if found is None:
            raise self.error(f"the kernel's BTF has no {kind.name} {name!r} to attach to", program.name)
        return found

    def _func_info(self, program: ProgramSpec) -> bytes:
        return b"".join(_FUNC_INFO.pack(record.pc, record.type_id) for record in program.func_info)

    def _line_info(self, program: ProgramSpec) -> bytes:
        records = []
        for record in program.line_info:
            source = record.source
            file_off = self.strings.get(source.file)
            line_off = self.strings.get(source.text)
            if file_off is None or line_off is None:
                # A string the BTF does not hold cannot be named; the kernel needs all or none.
                return b""
            line_col = (source.line << 10) | (source.column & 0x3FF)
            records.append(_LINE_INFO.pack(record.pc, file_off, line_off, line_col))
        return b"".join(records)

    def load_program(self, program: ProgramSpec, prog_type: BpfProgType) -> None:
        fds = {name: created.fileno() for name, created in self.maps.items()}
        resolver = self.resolver() if program.core_relocations else None
        insns = apply_core(program, program.instructions, self.spec.btf, resolver)
        insns = apply_map_fds(program, insns, fds)
        if program.kfunc_references:
            insns = apply_kfuncs(program, insns, self.target_btf())
        with_btf = self.btf_fd is not None
        name = _NAME_CHARS.sub("_", program.name)[: BPF_OBJ_NAME_LEN - 1]
        flags = int(BpfProgLoadFlag.SLEEPABLE) if program.sleepable else 0
        if program.section_info.xdp_frags:
            flags |= int(BpfProgLoadFlag.XDP_HAS_FRAGS)
        try:
            loaded = prog_load_with_log(
                prog_type,
                encode_program(insns),
                program.license or self.spec.license,
                log_level=self.log_level,
                expected_attach_type=program.attach_type,
                btf_fd=self.btf_fd if with_btf else None,
                func_info=self._func_info(program) if with_btf else b"",
                line_info=self._line_info(program) if with_btf else b"",
                name=name,
                prog_flags=flags,
                kern_version=program.kern_version,
                attach_btf_id=self.attach_btf_id(program),
                syscall=self.syscall,
            )
        except BpfCommandError as error:
            error.add_note(f"while loading program {program.name!r} ({self.spec.elf.file})")
            raise
        self.stack.callback(loaded.fd.close)
        self.programs[program.name] = KernelProgram(
            program, loaded.fd, prog_type=prog_type, kernel_name=name, log=loaded.log, syscall=self.syscall
        )

    # -- slots ------------------------------------------------------------------------------------

    def fill_slots(self) -> None:
        for spec in self.spec.maps.values():
            for init in spec.slot_inits:
                if spec.type is BpfMapType.PROG_ARRAY:
                    target: KernelProgram | KernelMap | None = self.programs.get(init.symbol)
                else:
                    target = self.maps.get(init.symbol)
                if target is None:
                    raise self.error(f"{spec.name!r} slot {init.index}: no program or map {init.symbol!r}", spec.name)
                key = init.index.to_bytes(4, "little")
                value = target.fileno().to_bytes(4, "little")
                try:
                    map_update(self.maps[spec.name].fd, key, value, syscall=self.syscall)
                except BpfCommandError as error:
                    raise self.error(f"{spec.name!r} slot {init.index}: {error}", spec.name) from error


def missing_btf_kinds(*, syscall: RawSyscall | None = None) -> frozenset[Kind]:
    """The BTF kinds this kernel refuses (probed by loading one tiny BTF blob per kind)."""
    return frozenset(kind for kind in Kind if not btf_kind_supported(kind, syscall=syscall))


def load(
    source: str | os.PathLike[str] | bytes,
    *,
    vmlinux_btf: Btf | str | os.PathLike[str] | bytes | None = None,
    ncpus: int | None = None,
    prog_types: Mapping[str, BpfProgType] | None = None,
    codec: ValueCodec | None = None,
    log_level: int = 0,
    syscall: RawSyscall | None = None,
    kconfig: Mapping[str, KconfigValue] | None = None,
) -> KernelObject:
    """Load a BPF ELF object (path or bytes) into the kernel: maps created, programs loaded.

    ``vmlinux_btf`` is the target of CO-RE relocations (default: the running kernel's);
    ``ncpus`` overrides the number of possible CPUs per-CPU values are split into (it must be
    the kernel's for bpf(2) to agree); ``prog_types`` overrides the type a program's section
    implies; ``codec`` gives maps typed keys and values (see :class:`ValueCodec`);
    ``log_level`` > 0 keeps the verifier log of successful loads in ``program.log``.
    ``kconfig`` overrides Kconfig extern values by name (``{"CONFIG_HZ": 250}``); the others
    come from the running kernel, as libbpf fills them (:mod:`pybpf.obj.kconfig`).
    """
    spec = resolve_kconfig(load_spec(source), kconfig)
    data = bytes(source) if isinstance(source, bytes | bytearray | memoryview) else Path(source).read_bytes()
    elf = read_elf(data, spec.elf.file)
    with ExitStack() as stack:
        work = _Instantiation(
            spec,
            elf,
            stack,
            codec=codec,
            ncpus=possible_cpus() if ncpus is None else ncpus,
            vmlinux_btf=vmlinux_btf,
            log_level=log_level,
            syscall=syscall,
        )
        try:
            work.load_btf()
        except BtfError as error:
            raise work.error(f"BTF: {error}") from error
        work.create_maps()
        for program in spec.programs.values():
            override = (prog_types or {}).get(program.name)
            if override is not None:
                program = replace(program, prog_type=override, attach_type=None)
            work.load_program(program, program.prog_type)
        work.fill_slots()
        # Success: the object owns the descriptors now, so the stack must not close them.
        stack.pop_all()
        return KernelObject(spec, work.programs, work.maps, btf_fd=work.btf_fd)
