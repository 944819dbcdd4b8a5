"""``load()``: an object file's spec instantiated in user space.

The steps, in libbpf's order: create the maps (global data maps filled with their initial
contents, ``.rodata`` frozen), then for each program apply its CO-RE relocations (against
``vmlinux_btf`` when given; else against :func:`~pybpf.runtime.kernel_btf.model_btf` for the
kernel structs pybpf lays out itself, such as ``struct bpf_map``), check that it only calls
helpers its type allows, convert its context accesses (:mod:`pybpf.runtime.context`), and
prepare an interpreter whose map ``lddw`` instructions resolve through the map registry;
finally fill the slots of prog arrays (with programs) and of array/hash of maps (with the
object's other maps) from their ``values = {...}`` initialisers, as libbpf's
init_prog_array_slots/init_map_in_map_slots do. All programs and maps share one address
space; every map, prog arrays included, comes from :func:`create_map`.

Each program also gets its engine here (see :func:`load`): the JIT for verified programs, the
interpreter otherwise, and whether its native code may drop the runtime bounds checks
(:func:`unchecked_native_hazard` explains when a verified program must keep them).
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from pybpf.btf import Btf
from pybpf.errors import LoadError, MapError, ProgramRejectedError, UnknownKfuncError
from pybpf.isa.insn import Atomic, Call, CallKfunc, CallLocal, CallReg, Exit, LabeledInsn, LoadImm64, Reg, Store
from pybpf.isa.opcodes import AtomicCode, PseudoSrc
from pybpf.obj import MapKind, MapSpec, ObjectSpec, ProgramSpec, load_spec
from pybpf.obj.kconfig import KconfigValue, resolve_kconfig
from pybpf.obj.ksyms import POISON_CALL_KFUNC_BASE
from pybpf.platform.context import Conversion
from pybpf.platform.helper_types import RetType
from pybpf.platform.helpers import HELPER_PROTOS
from pybpf.platform.kfunc_types import KfuncRetKind
from pybpf.platform.kfuncs import KFUNC_PROTOS
from pybpf.platform.progtypes import ProgTypeSpec, prog_type_spec
from pybpf.platform.uapi_generated import BpfProgType, HelperId
from pybpf.runtime.context import CtxPtr, RewriteResult, convert_ctx_access, track_context
from pybpf.runtime.context.dataflow import MAYBE_CTX
from pybpf.runtime.context.rewrite import moved_ptr_types
from pybpf.runtime.helpers.kfuncs import kfunc_table
from pybpf.runtime.helpers.object_kfuncs import object_kfuncs
from pybpf.runtime.helpers.registry import HelperTable, default_helpers
from pybpf.runtime.helpers.services import RuntimeServices
from pybpf.runtime.kernel_btf import model_btf
from pybpf.runtime.maps import ArenaMap, ArrayOfMapsMap, HashOfMapsMap, Map, MapDef, ProgArrayMap, create_map
from pybpf.runtime.object import Object
from pybpf.runtime.program import Engine, Program, check_engine
from pybpf.runtime.progtypes import NO_CONTEXT_CONVERSION
from pybpf.runtime.relocate import POISON_HELPER, MapResolver, apply_core
from pybpf.verifier import RegType, VerifierReport, verify_program
from pybpf.verifier.arena import rewrite_arena_accesses
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
    engine: Engine | None = None,
    verify: bool = True,
    jit_bounds_checks: bool = False,
    kconfig: Mapping[str, KconfigValue] | None = None,
) -> Object:
    """Load a BPF ELF object (path or bytes) into user space: maps created, programs ready to run.

    ``vmlinux_btf`` is the target of CO-RE relocations (a :class:`Btf`, or a raw BTF file such
    as ``/sys/kernel/btf/vmlinux``); without it they resolve against the object's own BTF,
    except for the kernel structs pybpf lays out itself (``struct bpf_map``, ``struct
    vm_area_struct``: :mod:`pybpf.platform.kernel_types`), which resolve against that layout.
    ``ncpus`` is the number of virtual CPUs (per-CPU maps); ``seed`` makes
    bpf_get_prandom_u32 deterministic; ``prog_types`` overrides the type a program's section
    implies (by program name), as ``bpftool prog load ... type`` does.

    Every program is first checked by :mod:`pybpf.verifier` with the kernel's rules
    (ProgramRejectedError when it fails); ``verify=False`` is the explicit opt-out that runs
    unverified code. ``engine`` is what runs the programs by default: None (the default) means
    the LLVM JIT for verified programs and the interpreter when ``verify=False``, so unverified
    code never runs as native code unless asked for; ``"interp"`` or ``"jit"`` forces one.
    ``Program.test_run(..., engine=...)`` overrides it per call. The JIT compiles on a
    program's first run; if it cannot compile a program that got it by default
    (NotSupportedError), that program falls back to the interpreter and
    ``Program.engine_reason`` says why.

    Native code of a verified program runs without the per-access bounds checks (the verifier
    proved every access in bounds) unless ``jit_bounds_checks=True`` keeps them as defence in
    depth, or the program does something whose safety the verifier does not prove
    (:func:`unchecked_native_hazard`). Unverified programs under the JIT always keep them.
    ``kconfig`` overrides Kconfig extern values by name (``{"CONFIG_HZ": 250}``); the others
    come from the running kernel, as libbpf fills them (:mod:`pybpf.obj.kconfig`).
    """
    if engine is not None:
        check_engine(engine)
    spec = resolve_kconfig(load_spec(source), kconfig)
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
                verify=verify, engine=engine, jit_bounds_checks=jit_bounds_checks,
            )
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
        if isinstance(created, ArenaMap):
            created.write_globals(map_spec.contents or b"")  # libbpf copies them to its start
        elif map_spec.kind is MapKind.DATA and map_spec.contents is not None:
            created.update_raw(DATA_KEY, map_spec.contents)
            if map_spec.frozen:
                created.freeze()
    except MapError as error:
        raise ObjectLoadError(f"map {map_spec.name!r}: {error}", file=file, symbol=map_spec.name) from error
    return created


def _program_arena(program: ProgramSpec, maps: Mapping[str, Map]) -> ArenaMap | None:
    """The arena map the program refers to (the verifier refuses a second one)."""
    for ref in program.map_references:
        found = maps.get(ref.map_name)
        if isinstance(found, ArenaMap):
            return found
    return None


def _poison(helper: int) -> bool:
    """libbpf's poison calls (a failed CO-RE relocation, a missing __weak kfunc): refused only if reached."""
    return helper == POISON_HELPER or POISON_CALL_KFUNC_BASE <= helper < POISON_CALL_KFUNC_BASE + (1 << 16)


def _verify(spec: ObjectSpec, program: ProgramSpec, type_spec: ProgTypeSpec, target: Btf | None) -> VerifierReport:
    """Refuse a program the verifier rejects, naming the instruction, the reason and the C line.
    ``target`` (vmlinux, when given) types a BTF tracing program's arguments."""
    report = verify_program(program, spec, prog_type=type_spec, target_btf=target)
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
    engine: Engine | None = None,
    jit_bounds_checks: bool = False,
) -> Program:
    file = spec.elf.file
    type_spec = (
        program.section_info.spec
        if program.prog_type == program.section_info.prog_type
        else prog_type_spec(program.prog_type)
    )
    unknown = program.unknown_kfuncs()
    if unknown:
        # The object loader could not resolve it: pybpf has no prototype or implementation.
        raise UnknownKfuncError(
            f"program {program.name!r} calls kfunc {unknown[0]!r}, which pybpf does not implement "
            "(see pybpf.platform.kfuncs)",
            file=file,
            symbol=unknown[0],
        )
    arena = _program_arena(program, maps)
    insns = apply_core(program, program.instructions, spec.btf, target, model_btf())
    relocated = replace(program, instructions=tuple(insns))
    for item in insns:
        insn = item.insn
        if isinstance(insn, Call) and not _poison(insn.helper) and not type_spec.allows_helper(insn.helper):
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
    convertible = program.prog_type not in NO_CONTEXT_CONVERSION
    if verify:
        # The kernel's order: verify, apply the dead-code rewrites, then convert the context
        # accesses the verifier saw (its per-instruction PTR_TO_CTX record, insn_aux_data's
        # ptr_type), so the conversion is exact on every path the verifier proved safe.
        report = _verify(spec, relocated, type_spec, target)
        dead = eliminate_dead_code(relocated.instructions, report.seen)
        reduced = rewrite_program(relocated, dead)
        ptr_types: Mapping[int, RegType] = report.ptr_types
        arena_alu32: Collection[int] = report.arena_alu32
        if reduced is not relocated:
            program = relocated = reduced
            ptr_types = moved_ptr_types(ptr_types, dead.pc_map)
            arena_alu32 = {dead.pc_map[pc] for pc in arena_alu32 if pc in dead.pc_map}
        insns = relocated.instructions
        if arena is not None:
            insns = rewrite_arena_accesses(insns, ptr_types, arena_alu32, no_user_conv=arena.no_user_conv)
        if convertible:
            conversion = convert_ctx_access(insns, type_spec.context, ptr_types=ptr_types)
            insns = conversion.insns
    elif convertible:
        # Unverified: the conversion's own dataflow finds the context accesses (and refuses a
        # program where it cannot tell them apart).
        conversion = convert_ctx_access(insns, type_spec.context)
        insns = conversion.insns

    def pointer(name: str) -> int:
        found = maps.get(name)
        if found is None:
            raise ObjectLoadError(f"program refers to unknown map {name!r}", file=file, symbol=program.name)
        return services.maps.register(found, name)

    def value_address(name: str) -> int:
        found = maps.get(name)
        if isinstance(found, ArenaMap):
            return found.user_vm_start  # a global __arena variable's user-space address
        address = found.lookup_address(DATA_KEY) if found is not None else 0
        if not address:
            raise ObjectLoadError(f"map {name!r} has no value at index 0 to point into", file=file, symbol=program.name)
        return int(address)

    interpreter = Interpreter(
        insns,
        helpers={**available.restricted(set(type_spec.helpers)), **kfunc_table(type_spec.prog_type),
                 **object_kfuncs(spec.btf, type_spec.prog_type)},
        resolver=MapResolver(program.name, program.map_references, pointer, value_address),
        memory=services.memory,
        name=program.name,
        arena=arena.memory if arena is not None else None,
    )
    hazard = unchecked_native_hazard(relocated.instructions, conversion, program.prog_type) if verify else None
    return Program(
        program,
        type_spec,
        interpreter,
        services=services,
        conversion=conversion,
        program_id=number,
        engine=engine,
        verified=verify,
        jit_bounds_checks=jit_bounds_checks or hazard is not None,
        bounds_checks_reason=hazard,
    )


# What a helper's result points to when the verifier bounds accesses through it: a map value
# (value_size), ringbuf memory (its reserved size) or a dynptr slice (its constant length).
# Sockets and BTF objects it does not bound.
_BOUNDED_RETURNS = frozenset({
    RetType.INTEGER, RetType.VOID, RetType.PTR_TO_MAP_VALUE_OR_NULL, RetType.PTR_TO_MEM_OR_NULL,
    RetType.PTR_TO_DYNPTR_MEM_OR_NULL,
})
# Context pointer fields whose target the verifier reads and writes without a layout check.
_UNBOUNDED_FIELDS = frozenset({
    Conversion.SOCKET, Conversion.SOCKET_OR_NULL, Conversion.SOCK_COMMON_OR_NULL, Conversion.FLOW_KEYS,
})
# Helpers whose callbacks run later and are not verified (see pybpf.verifier's known differences).
_UNVERIFIED_CALLBACKS = frozenset({HelperId.TIMER_SET_CALLBACK})


def unchecked_native_hazard(
    insns: Sequence[LabeledInsn], conversion: RewriteResult | None, prog_type: BpfProgType
) -> str | None:
    """Why a verified program's native code must keep its bounds checks, or None if it may drop them.

    Dropping them is sound when every access the native code makes is one the verifier bounded
    (stack, map values, ringbuf memory, packet, context). Two things stand between the verdict
    and the code that runs:

    * The verifier's known gaps: it reads and writes sockets, flow keys and ``PTR_TO_BTF_ID``
      objects without a layout check, and does not verify timer callbacks. A
      program that can reach such a pointer or callback keeps the checks.
    * Context conversion. The verifier checks the *relocated* instructions against the uapi
      context; runs use the *converted* ones, where a load of a pointer field (``ctx->data``)
      became an 8-byte load of the internal image's slot (:mod:`pybpf.runtime.context`). That
      rewrite is one instruction for one, same pcs, and the image holds the uapi struct, so a
      verified access stays in bounds, provided the rewrite's own dataflow finds every context
      access the verifier saw. It follows the context through registers and the function's own
      stack slots at fixed offsets, as the verifier does, but not into another frame's stack,
      nor out of a function through r0. With bpf-to-bpf calls or callbacks, a context pointer
      spilled to memory (a callee may read it through a pointer to the caller's stack) or
      returned in r0 could reach an access the rewrite left unconverted: a 4-byte uapi load
      the verifier typed as a packet pointer, which unchecked code would dereference as an
      address. Such programs keep the checks, unless the conversion was made from the
      verifier's own per-pc pointer types (``conversion.by_verifier``: the accesses converted
      are exactly those it checked as context accesses, on every path it explored, and it
      refused any instruction that also accessed something else). Programs whose context is a
      plain caller-sized buffer (``BPF_PROG_TYPE_SYSCALL``, no conversion) keep them too.
    """
    if conversion is None:
        return f"the {prog_type.name.lower()} context is a caller-sized buffer, not a checked layout"
    for item in insns:
        insn = item.insn
        if isinstance(insn, LoadImm64) and insn.src is PseudoSrc.BTF_ID:
            return f"pc {item.pc}: a kernel object (ksym) whose layout the verifier does not check"
        if isinstance(insn, Call):
            proto = HELPER_PROTOS.get(insn.helper)
            if proto is not None and proto.ret not in _BOUNDED_RETURNS:
                return f"pc {item.pc}: bpf_{proto.name} returns a pointer the verifier does not bound"
            if insn.helper in _UNVERIFIED_CALLBACKS:
                return f"pc {item.pc}: a callback the verifier does not verify"
        if isinstance(insn, CallKfunc):
            kfunc = KFUNC_PROTOS.get(insn.btf_id)
            if kfunc is not None and kfunc.ret is KfuncRetKind.BTF_ID:
                return f"pc {item.pc}: {kfunc.name} returns a kernel object the verifier does not bound"
    layout = conversion.layout.uapi
    for access in conversion.accesses:
        if layout.field(access.field).conversion in _UNBOUNDED_FIELDS:
            return f"pc {access.pc}: {layout.name}.{access.field} points to an object the verifier does not bound"
    if conversion.by_verifier:
        return None  # converted where the verifier saw PTR_TO_CTX: no access escapes the rewrite
    return _context_escape(insns)


def _context_escape(insns: Sequence[LabeledInsn]) -> str | None:
    """Where the context pointer may leave what the conversion's dataflow follows (see above)."""
    has_functions = any(
        isinstance(item.insn, CallLocal | CallReg)
        or (isinstance(item.insn, LoadImm64) and item.insn.src is PseudoSrc.FUNC)
        for item in insns
    )
    if not has_functions:
        return None  # one frame: the dataflow sees every spill and fill of the context

    def holds_context(value: object) -> bool:
        return isinstance(value, CtxPtr) or value is MAYBE_CTX

    states = track_context(insns)
    for item in insns:
        state = states.get(item.pc)
        if state is None:
            continue  # unreachable: the verifier never saw it run either
        insn = item.insn
        stored: Reg | None = None
        if isinstance(insn, Store):
            stored = insn.src if isinstance(insn.src, Reg) else None
        elif isinstance(insn, Atomic):
            stored = insn.src if insn.op is not AtomicCode.LOAD_ACQ else None  # LOAD_ACQ: src is the address
        if stored is not None and holds_context(state.reg(stored)):
            return f"pc {item.pc}: the context pointer is stored to memory in a program with functions"
        if isinstance(insn, Exit) and holds_context(state.reg(Reg.R0)):
            return f"pc {item.pc}: a function returns the context pointer"
    return None


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
