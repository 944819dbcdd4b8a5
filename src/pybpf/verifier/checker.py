"""The verifier's entry points: :func:`verify` for instructions, :func:`verify_program` for specs.

``verify`` runs the structural pass (:func:`~pybpf.verifier.structure.check_structure`), then
the path-sensitive exploration (:mod:`pybpf.verifier.explore`), then the combined stack-depth
check over call chains (:mod:`pybpf.verifier.stack_depth`, with the tail-call limit), and
reports the outcome as a :class:`VerifierReport`; it never raises for a rejected program.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import replace

from pybpf.asm.printer import format_insn
from pybpf.btf.btf import Btf
from pybpf.btf.record import special_fields
from pybpf.btf.types import Enum, Enum64, Func, FuncProto, Int
from pybpf.errors import PybpfError, UnknownKfuncError, VerifierError
from pybpf.isa.insn import LabeledInsn, LoadImm64, SourceLine
from pybpf.obj.spec import MapSpec, ObjectSpec, ProgramSpec
from pybpf.platform import BpfProgType, ProgTypeSpec, prog_type_spec
from pybpf.verifier.arena import find_arena
from pybpf.verifier.btf_ctx import TracingArgs, tracing_ctx_args
from pybpf.verifier.calls import check_program_maps
from pybpf.verifier.capabilities import check_unprivileged_load
from pybpf.verifier.explore import Explorer
from pybpf.verifier.global_funcs import GlobalFunc, global_funcs_of
from pybpf.verifier.kfuncs import check_program_kfuncs
from pybpf.verifier.machine import Env, MapInfo, MapResolver, Options, Rejection, SpecAux
from pybpf.verifier.report import Barrier, Diagnostic, VerifierReport
from pybpf.verifier.rewrite import dangling_function_pointer
from pybpf.verifier.stack_depth import check_stack_depth
from pybpf.verifier.structure import BPF_COMPLEXITY_LIMIT_INSNS, StructureConfig, check_structure

MapsArg = Sequence[MapInfo] | Mapping[int, MapInfo] | MapResolver | None


def _resolver(maps: MapsArg) -> MapResolver:
    """Map pseudo ``lddw``s to maps: a callable as given, else by fd/index in ``imm``."""
    if maps is None:
        return lambda _pc, _insn: None
    if callable(maps):
        return maps
    table = maps

    def resolve(_pc: int, insn: LoadImm64) -> MapInfo | None:
        if isinstance(table, Mapping):
            return table.get(insn.imm)
        return table[insn.imm] if 0 <= insn.imm < len(table) else None

    return resolve


def verify(
    insns: Sequence[LabeledInsn],
    *,
    prog_type: ProgTypeSpec | BpfProgType | int = BpfProgType.SOCKET_FILTER,
    maps: MapsArg = None,
    license: str = "GPL",
    log_level: int = 0,
    privileged: bool = True,
    attach_type: int | None = None,
    insn_limit: int = BPF_COMPLEXITY_LIMIT_INSNS,
    func_info: bool = False,
    scalar_returns: frozenset[int] | None = None,
    global_funcs: Mapping[int, GlobalFunc] | None = None,
    sleepable: bool = False,
    test_state_freq: bool = False,
    btf: Btf | None = None,
    ctx_args: TracingArgs | None = None,
    lines: Mapping[int, SourceLine] | None = None,
) -> VerifierReport:
    """Verify a program; the report says whether the kernel's rules accept it, and why not.

    ``func_info``: the program comes with BTF func_info (as objects from clang do); raw
    instructions do not, and the kernel then refuses tail calls and LD_ABS in subprograms.
    ``scalar_returns``: with func_info, the first pcs of the functions BTF says return an int.
    ``global_funcs``: by first pc, the functions BTF says are global (verified on their own
    from their prototype, see :mod:`pybpf.verifier.global_funcs`); without BTF there are none.
    ``sleepable``: loaded with ``BPF_F_SLEEPABLE``. ``test_state_freq``: loaded with
    ``BPF_F_TEST_STATE_FREQ``, a state stored at every prune point (the kernel's selftests use it
    to test pruning without :mod:`~pybpf.verifier.states`' checkpoint spacing). ``btf``: the
    program's BTF (the struct types ``bpf_obj_new`` allocates). ``ctx_args``: a BTF tracing
    program's context typed from its target (see :mod:`pybpf.verifier.btf_ctx`). ``lines``: BTF
    line-info records by pc; an instruction without a line of its own has that of the last
    record at or before it (looked up only for a diagnostic)."""
    spec = prog_type if isinstance(prog_type, ProgTypeSpec) else prog_type_spec(int(prog_type))
    options = Options(spec, license, privileged, log_level, attach_type, sleepable, test_state_freq, ctx_args)
    table = {labeled.pc: labeled for labeled in insns}
    resolver = _resolver(maps)
    try:
        if not privileged:
            check_unprivileged_load(insns, spec, resolver)
        config = (StructureConfig(func_info=func_info, scalar_returns=scalar_returns) if privileged
                  else StructureConfig.unprivileged(func_info=func_info, scalar_returns=scalar_returns))
        arena = find_arena(insns, resolver, privileged=privileged)
        check_program_maps(insns, resolver, spec.prog_type)
        structure = check_structure(insns, config, lines=lines)
        check_program_kfuncs(insns, options)
    except VerifierError as error:
        return _rejected(error, table, 0, 0, ())
    env = Env(options, global_funcs=dict(global_funcs or {}), arena=arena, btf=btf)
    explorer = Explorer(insns, structure, env, resolver, insn_limit, lines=lines or {})
    try:
        explorer.run()
        depths = check_stack_depth(insns, structure, explorer.env.stack_depth, explorer.env.async_callbacks,
                                   private_stack=spec.uses_private_stack(attach_type))
        if privileged and (dangling := dangling_function_pointer(insns, explorer.seen)) is not None:
            raise VerifierError(None, dangling)
    except VerifierError as error:
        rejected = _rejected(error, table, explorer.processed, explorer.states.peak, tuple(explorer.log))
        return replace(rejected, total_states=explorer.states.total,
                       max_states_per_insn=explorer.states.max_per_insn)
    return VerifierReport(True, explorer.processed, explorer.states.peak, (), tuple(explorer.log), depths,
                          frozenset(explorer.seen), dict(explorer.env.ptr_types),
                          barriers_of(explorer.env.spec, explorer.seen), frozenset(explorer.env.arena_alu32),
                          total_states=explorer.states.total, max_states_per_insn=explorer.states.max_per_insn)


def barriers_of(spec: SpecAux | None, seen: Collection[int]) -> tuple[Barrier, ...]:
    """The speculation barriers the kernel's ``convert_ctx_accesses`` would insert: one before
    each instruction a speculative path failed at (even dead ones, which become ``goto -1``), and
    one after each reached store Spectre v4 needs it for (a dead store is no store any more)."""
    if spec is None:
        return ()
    before = [Barrier(pc, False, reason) for pc, reason in spec.nospec.items()]
    after = [Barrier(pc, True, reason) for pc, reason in spec.nospec_result.items() if pc in seen]
    return tuple(sorted(before + after, key=lambda barrier: (barrier.pc, barrier.after)))


def _rejected(error: VerifierError, table: Mapping[int, LabeledInsn], processed: int, states: int,
              log: tuple[str, ...]) -> VerifierReport:
    labeled = table.get(error.pc) if error.pc is not None else None
    path = error.path if isinstance(error, Rejection) else ()
    diagnostic = Diagnostic(error.pc, format_insn(labeled.insn) if labeled else None, error.reason, error.source,
                            path)
    return VerifierReport(False, processed, states, (diagnostic,), (*log, error.reason))


def maps_of(obj: ObjectSpec) -> dict[str, MapInfo]:
    """MapInfo for every map of an object; ``.rodata``/``.kconfig`` are frozen as libbpf does."""
    def info(spec: MapSpec) -> MapInfo:
        frozen = spec.section.startswith(".rodata") or spec.section == ".kconfig"
        inner = info(spec.inner) if spec.inner is not None else None
        fields = None
        if obj.btf is not None and spec.btf_value_type_id:
            # The kernel finds the value's spin lock, timer... in its BTF (btf_parse_fields); a
            # value holding one twice is an object the kernel refuses to create the map for.
            fields = special_fields(obj.btf, spec.btf_value_type_id, dict(spec.var_offsets) or None)
        return MapInfo(spec.type, spec.key_size, spec.value_size, spec.max_entries, spec.map_flags, spec.name, frozen,
                       inner, fields)

    return {name: info(spec) for name, spec in obj.maps.items()}


def verify_program(
    program: ProgramSpec,
    obj: ObjectSpec | None = None,
    *,
    maps: Mapping[str, MapInfo] | None = None,
    prog_type: ProgTypeSpec | BpfProgType | int | None = None,
    log_level: int = 0,
    privileged: bool = True,
    insn_limit: int = BPF_COMPLEXITY_LIMIT_INSNS,
    test_state_freq: bool = False,
    target_btf: Btf | None = None,
) -> VerifierReport:
    """Verify a loaded :class:`ProgramSpec`, resolving its map references through ``obj``'s maps.

    ``target_btf`` (vmlinux) types a BTF tracing program's context from its attach target's
    prototype, as the kernel does (:mod:`pybpf.verifier.btf_ctx`); without it those context
    slots are numbers.

    Raises :class:`~pybpf.errors.UnknownKfuncError` when the program calls a kfunc pybpf's
    table does not know (the object loader could not resolve it)."""
    unknown = program.unknown_kfuncs()
    if unknown:
        raise UnknownKfuncError(f"kfunc {unknown[0]!r} is not known to pybpf (see pybpf.platform.kfuncs)",
                                symbol=unknown[0])
    known = dict(maps_of(obj)) if obj is not None else {}
    known.update(maps or {})
    by_pc = {ref.pc: ref for ref in program.map_references}

    def resolve(pc: int, insn: LoadImm64) -> MapInfo | None:
        reference = by_pc.get(pc)
        return known.get(reference.map_name) if reference is not None else None

    resolver: Callable[[int, LoadImm64], MapInfo | None] = resolve

    def patched() -> Sequence[LabeledInsn]:
        # A MAP_VALUE reference's final offset lives in the spec, not in the raw instruction.
        if not by_pc:
            return program.instructions
        out = list(program.instructions)
        for index, labeled in enumerate(out):
            reference = by_pc.get(labeled.pc)
            insn = labeled.insn
            if reference is not None and isinstance(insn, LoadImm64):
                insn = LoadImm64(insn.dst, 0, reference.offset, reference.src)
                out[index] = LabeledInsn(labeled.pc, insn, labeled.line)
        return out

    chosen = prog_type if prog_type is not None else program.section_info.spec
    attach = int(program.attach_type) if program.attach_type is not None else None
    return verify(patched(), prog_type=chosen, maps=resolver, license=program.license, log_level=log_level,
                  privileged=privileged, attach_type=attach, insn_limit=insn_limit, func_info=bool(program.func_info),
                  scalar_returns=_scalar_returns(program, obj), global_funcs=_global_funcs(program, obj, chosen),
                  sleepable=program.sleepable, test_state_freq=test_state_freq,
                  btf=obj.btf if obj is not None else None,
                  ctx_args=tracing_ctx_args(target_btf, attach, program.attach_to) if target_btf is not None else None,
                  lines={record.pc: record.source for record in program.line_info})


def _global_funcs(program: ProgramSpec, obj: ObjectSpec | None,
                  prog_type: ProgTypeSpec | BpfProgType | int) -> dict[int, GlobalFunc]:
    """The program's global functions from its BTF func_info (none without BTF)."""
    if obj is None or obj.btf is None or not program.func_info:
        return {}
    spec = prog_type if isinstance(prog_type, ProgTypeSpec) else prog_type_spec(int(prog_type))
    try:
        attach = int(program.attach_type) if program.attach_type is not None else None
        return global_funcs_of(obj.btf, tuple((info.pc, info.type_id) for info in program.func_info), spec, attach)
    except PybpfError:
        return {}  # BTF we cannot read: the functions are walked inline


def _scalar_returns(program: ProgramSpec, obj: ObjectSpec | None) -> frozenset[int] | None:
    """First pcs of the program's functions whose BTF return type is an int of at most 8 bytes
    or an enum (``btf_type_is_small_int``/``btf_is_any_enum``); None without BTF."""
    if obj is None or obj.btf is None or not program.func_info:
        return None
    btf = obj.btf
    found: set[int] = set()
    try:
        for info in program.func_info:
            func = btf[info.type_id]
            proto = btf[func.type_id] if isinstance(func, Func) else None
            if not isinstance(proto, FuncProto) or proto.return_type_id == 0:
                continue
            returned = btf.resolved(proto.return_type_id)
            if (isinstance(returned, Int) and returned.size <= 8) or isinstance(returned, Enum | Enum64):
                found.add(info.pc)
    except PybpfError:
        return None  # BTF we cannot read: leave the check to the kernel
    return frozenset(found)
