"""``load()``: an object file's spec instantiated in user space.

The steps, in libbpf's order: create the maps (global data maps filled with their initial
contents, ``.rodata`` frozen), then for each program apply its CO-RE relocations (against
``vmlinux_btf`` when given), check that it only calls helpers its type allows, convert its
context accesses (:mod:`pybpf.runtime.context`), and prepare an interpreter whose map ``lddw``
instructions resolve through the map registry; finally fill the slots of prog arrays (with
programs) and of array/hash of maps (with the object's other maps) from their ``values = {...}``
initialisers, as libbpf's init_prog_array_slots/init_map_in_map_slots do. All programs and maps
share one address space; every map, prog arrays included, comes from :func:`create_map`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from pybpf.btf import Btf
from pybpf.errors import LoadError, MapError, ProgramRejectedError
from pybpf.isa.insn import Call
from pybpf.obj import MapKind, MapSpec, ObjectSpec, ProgramSpec, load_spec
from pybpf.platform.progtypes import ProgTypeSpec, prog_type_spec
from pybpf.platform.uapi_generated import BpfProgType, HelperId
from pybpf.runtime.context import convert_ctx_access
from pybpf.runtime.helpers.registry import HelperTable, default_helpers
from pybpf.runtime.helpers.services import RuntimeServices
from pybpf.runtime.maps import ArrayOfMapsMap, HashOfMapsMap, Map, MapDef, ProgArrayMap, create_map
from pybpf.runtime.object import Object
from pybpf.runtime.program import Engine, Program, check_engine
from pybpf.runtime.progtypes import NO_CONTEXT_CONVERSION
from pybpf.runtime.relocate import POISON_HELPER, MapResolver, apply_core
from pybpf.verifier import VerifierReport, verify_program
from pybpf.verifier.rewrite import eliminate_dead_code, rewrite_program
from pybpf.vm.interpreter import Interpreter
from pybpf.vm.memory import AddressSpace

DATA_KEY = bytes(4)
"""The one key of a global data map."""


class ObjectLoadError(LoadError):
    """An object that parses but cannot be instantiated in user space (map, helper, program)."""


def _read_btf(source: Btf | str | os.PathLike[str] | bytes | None) -> Btf | None:
    if source is None or isinstance(source, Btf):
        return source
    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    return Btf.from_bytes(data)


def load(
    source: str | os.PathLike[str] | bytes,
    *,
    vmlinux_btf: Btf | str | os.PathLike[str] | bytes | None = None,
    ncpus: int | None = None,
    seed: int | None = None,
    prog_types: Mapping[str, BpfProgType] | None = None,
    engine: Engine = "interp",
    verify: bool = True,
) -> Object:
    """Load a BPF ELF object (path or bytes) into user space: maps created, programs ready to run.

    ``vmlinux_btf`` is the target of CO-RE relocations (a :class:`Btf`, or a raw BTF file such
    as ``/sys/kernel/btf/vmlinux``); without it they resolve against the object's own BTF.
    ``ncpus`` is the number of virtual CPUs (per-CPU maps); ``seed`` makes
    bpf_get_prandom_u32 deterministic; ``prog_types`` overrides the type a program's section
    implies (by program name), as ``bpftool prog load ... type`` does. ``engine`` is what runs
    the programs by default (``"interp"`` or ``"jit"``, compiled on a program's first run);
    ``Program.test_run(..., engine=...)`` overrides it per call. Every program is first checked
    by :mod:`pybpf.verifier` with the kernel's rules (ProgramRejectedError when it fails);
    ``verify=False`` is the explicit opt-out that runs unverified code.
    """
    check_engine(engine)
    spec = load_spec(source)
    target = _read_btf(vmlinux_btf)
    memory = AddressSpace()
    services = RuntimeServices(memory, cpus=ncpus, seed=seed)
    maps: dict[str, Map] = {}
    try:
        for map_spec in spec.maps.values():
            maps[map_spec.name] = _create_map(spec, map_spec, memory, services.cpus)
            services.maps.register(maps[map_spec.name], map_spec.name)
        available = default_helpers()
        programs: dict[str, Program] = {}
        for number, program_spec in enumerate(spec.programs.values(), start=1):
            override = (prog_types or {}).get(program_spec.name)
            if override is not None:
                program_spec = replace(program_spec, prog_type=override)
            programs[program_spec.name] = _prepare(
                spec, program_spec, maps, services=services, target=target, available=available, number=number,
                verify=verify,
            )
            programs[program_spec.name].engine = engine
        for map_spec in spec.maps.values():
            _fill_slots(spec, map_spec, maps[map_spec.name], maps, programs)
    except BaseException:
        for created in maps.values():
            created.close()
        services.close()
        raise
    return Object(spec, memory, services, programs, maps)


def _create_map(spec: ObjectSpec, map_spec: MapSpec, memory: AddressSpace, ncpus: int) -> Map:
    file = spec.elf.file
    try:
        created = create_map(MapDef.from_spec(map_spec, spec.btf), memory, ncpus)
        if map_spec.kind is MapKind.DATA and map_spec.contents is not None:
            created.update_raw(DATA_KEY, map_spec.contents)
            if map_spec.frozen:
                created.freeze()
    except MapError as error:
        raise ObjectLoadError(f"map {map_spec.name!r}: {error}", file=file, symbol=map_spec.name) from error
    return created


def _verify(spec: ObjectSpec, program: ProgramSpec, type_spec: ProgTypeSpec) -> VerifierReport:
    """Refuse a program the verifier rejects, naming the instruction, the reason and the C line."""
    report = verify_program(program, spec, prog_type=type_spec)
    error = report.error
    if not report.accepted and error is not None:
        raise ProgramRejectedError(program.name, error.pc, error.reason.splitlines()[-1], error.source, report)
    return report


def _prepare(
    spec: ObjectSpec,
    program: ProgramSpec,
    maps: dict[str, Map],
    *,
    services: RuntimeServices,
    target: Btf | None,
    available: HelperTable,
    number: int,
    verify: bool = True,
) -> Program:
    file = spec.elf.file
    type_spec = (
        program.section_info.spec
        if program.prog_type == program.section_info.prog_type
        else prog_type_spec(program.prog_type)
    )
    insns = apply_core(program, program.instructions, spec.btf, target)
    relocated = replace(program, instructions=tuple(insns))
    for item in insns:
        insn = item.insn
        if isinstance(insn, Call) and insn.helper != POISON_HELPER and not type_spec.allows_helper(insn.helper):
            try:
                helper_name = f"bpf_{HelperId(insn.helper).name.lower()}"
            except ValueError:
                helper_name = f"helper {insn.helper}"
            raise ObjectLoadError(
                f"pc {item.pc}: {helper_name} is not allowed in {type_spec.name} programs",
                file=file,
                symbol=program.name,
            )
    conversion = None
    if program.prog_type not in NO_CONTEXT_CONVERSION:
        conversion = convert_ctx_access(insns, type_spec.context)
        insns = conversion.insns
    if verify:
        # After the rewrite's own checks (which name the context field), before anything runs.
        report = _verify(spec, relocated, type_spec)
        # The kernel's dead-code rewrites apply to the verified (relocated) program; the context
        # conversion then runs again on what is left, so runs use the reduced program.
        reduced = rewrite_program(relocated, eliminate_dead_code(relocated.instructions, report.seen))
        if reduced is not relocated:
            program = relocated = reduced
            insns = reduced.instructions
            if program.prog_type not in NO_CONTEXT_CONVERSION:
                conversion = convert_ctx_access(insns, type_spec.context)
                insns = conversion.insns

    def pointer(name: str) -> int:
        found = maps.get(name)
        if found is None:
            raise ObjectLoadError(f"program refers to unknown map {name!r}", file=file, symbol=program.name)
        return services.maps.register(found, name)

    def value_address(name: str) -> int:
        found = maps.get(name)
        address = found.lookup_address(DATA_KEY) if found is not None else 0
        if not address:
            raise ObjectLoadError(f"map {name!r} has no value at index 0 to point into", file=file, symbol=program.name)
        return int(address)

    interpreter = Interpreter(
        insns,
        helpers=available.restricted(set(type_spec.helpers)),
        resolver=MapResolver(program.name, program.map_references, pointer, value_address),
        memory=services.memory,
        name=program.name,
    )
    return Program(program, type_spec, interpreter, services=services, conversion=conversion, program_id=number)


def _fill_slots(
    spec: ObjectSpec, map_spec: MapSpec, created: Map, maps: dict[str, Map], programs: dict[str, Program]
) -> None:
    if not map_spec.slot_inits:
        return
    file = spec.elf.file
    for init in map_spec.slot_inits:
        value: object
        if isinstance(created, ProgArrayMap):
            value = programs.get(init.symbol)
            what = "program"
        elif isinstance(created, ArrayOfMapsMap | HashOfMapsMap):
            value = maps.get(init.symbol)
            what = "map"
        else:
            raise ObjectLoadError(
                f"map {map_spec.name!r}: a {map_spec.type.name} map cannot have a values initialiser",
                file=file,
                symbol=map_spec.name,
            )
        if value is None:
            raise ObjectLoadError(
                f"map {map_spec.name!r} slot {init.index}: no {what} {init.symbol!r}", file=file, symbol=map_spec.name
            )
        try:
            # libbpf's slot keys are the u32 index, for hash of maps as well.
            slot_key = init.index.to_bytes(created.key_size, "little")
        except OverflowError:
            raise ObjectLoadError(
                f"map {map_spec.name!r}: slot {init.index} does not fit its {created.key_size}-byte key",
                file=file,
                symbol=map_spec.name,
            ) from None
        try:
            created.update(slot_key, value)
        except MapError as error:
            raise ObjectLoadError(
                f"map {map_spec.name!r} slot {init.index} ({init.symbol!r}): {error}", file=file, symbol=map_spec.name
            ) from error
