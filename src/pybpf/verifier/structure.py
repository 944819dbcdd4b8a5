"""Structural checks done before any path exploration (the kernel's ``check_subprogs``/``check_cfg``).

:func:`check_structure` either returns the program's :class:`ProgramStructure` (functions,
loops) or raises :class:`~pybpf.errors.VerifierError` with the kernel's wording. The checks run
in the kernel's order, so the first error reported is the one the kernel's log would end with:

1. program size (``bpf_prog_load``: E2BIG, no log line; we say why);
2. call targets (``add_subprog``: "call to invalid destination");
3. per-function jump ranges and the last instruction (``check_subprogs``), then, for a program
   loaded without BTF func_info, no tail call or LD_ABS in a subprogram
   (``check_abnormal_return``: the kernel needs BTF to know such a function returns an int);
   then opcodes the kernel has no rules for: ``callx`` ("unknown opcode 8d", from
   ``resolve_pseudo_ldimm64``, so even where no path reaches it);
4. the depth-first walk (``check_cfg``): back-edges when loops are not allowed, then
   "unreachable insn N" and "jump into the middle of ldimm64 insn N";
5. writes to the frame pointer ("frame pointer is read only"). The kernel finds these while
   exploring paths, so it accepts them in code its exploration proves dead; we reject them
   everywhere (a conservative difference).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pybpf.errors import VerifierError
from pybpf.isa.insn import (
    AddrSpaceCast,
    Atomic,
    Bin,
    Call,
    CallKfunc,
    CallReg,
    Endian,
    Exit,
    Goto,
    Instruction,
    LabeledInsn,
    Load,
    LoadImm64,
    Neg,
    PacketLoad,
    Reg,
    slot_count,
)
from pybpf.isa.opcodes import ATOMIC_FETCH, AtomicCode
from pybpf.platform import HelperId
from pybpf.verifier.cfg import (
    Subprog,
    branch_target,
    by_pc,
    call_target,
    slot_total,
    subprogs,
    walk,
)

# (Enum members read through their class are slow on Python 3.11: see pybpf.verifier.state.)
_R10 = Reg.R10

BPF_COMPLEXITY_LIMIT_INSNS = 1_000_000
"""Largest program a privileged (CAP_BPF) loader may submit, in slots."""
BPF_COMPLEXITY_LIMIT_JMP_SEQ = 8192
"""Most branch states waiting to be explored at once (the kernel's ``push_stack`` limit)."""
CALLX_OPCODE = 0x8D
"""BPF_JMP | BPF_CALL | BPF_X, the only encoding of ``callx``."""
BPF_MAXINSNS = 4096
"""Largest program an unprivileged loader may submit, in slots."""


@dataclass(frozen=True, slots=True)
class StructureConfig:
    """What the loader is allowed: privileged loaders get a larger size limit, bounded loops and
    functions (bpf-to-bpf calls, function pointers, kfuncs)."""

    max_insns: int = BPF_COMPLEXITY_LIMIT_INSNS
    allow_back_edges: bool = True
    allow_calls: bool = True
    func_info: bool = False  # the load carries BTF func_info (raw instructions do not)
    # First pcs of the functions whose BTF return type is an int or enum (None: not known).
    scalar_returns: frozenset[int] | None = None

    @classmethod
    def unprivileged(cls, *, func_info: bool = False, scalar_returns: frozenset[int] | None = None) -> StructureConfig:
        return cls(max_insns=BPF_MAXINSNS, allow_back_edges=False, allow_calls=False, func_info=func_info,
                   scalar_returns=scalar_returns)


@dataclass(frozen=True, slots=True)
class ProgramStructure:
    """What the structural pass learned: functions in pc order and the loops' back-edges."""

    slot_total: int
    subprogs: tuple[Subprog, ...]
    back_edges: tuple[tuple[int, int], ...]

    def subprog_of(self, pc: int) -> Subprog:
        for subprog in self.subprogs:
            if pc in subprog:
                return subprog
        raise VerifierError(pc, f"pc {pc} lies outside the program")


def source_of(labeled: LabeledInsn | None) -> str | None:
    """``file:line: text`` for an instruction with line info, else None."""
    if labeled is None or labeled.line is None:
        return None
    line = labeled.line
    return f"{line.file}:{line.line}: {line.text.strip()}"


def written_registers(insn: Instruction) -> tuple[Reg, ...]:
    """Registers an instruction writes (helper calls clobber r0-r5; never r10, so left out)."""
    match insn:
        case (Bin(dst=dst) | AddrSpaceCast(dst=dst) | Neg(dst=dst) | Endian(dst=dst) | LoadImm64(dst=dst)
              | Load(dst=dst)):
            return (dst,)
        case PacketLoad():
            return (Reg.R0,)
        case Atomic(op=AtomicCode.LOAD_ACQ, dst=dst):
            return (dst,)
        case Atomic(op=AtomicCode.CMPXCHG):
            return (Reg.R0,)
        case Atomic(op=op, src=src) if op != AtomicCode.STORE_REL and op & ATOMIC_FETCH:
            return (src,)
        case _:
            return ()


def _fail(table: dict[int, LabeledInsn], pc: int | None, reason: str) -> VerifierError:
    return VerifierError(pc, reason, source_of(table.get(pc)) if pc is not None else None)


def _is_function_end(insn: Instruction) -> bool:
    return isinstance(insn, (Exit, Goto))


def check_structure(insns: Sequence[LabeledInsn], config: StructureConfig | None = None) -> ProgramStructure:
    """Run the pre-exploration checks on a decoded program; raise VerifierError on the first failure."""
    config = config or StructureConfig()
    table = by_pc(insns)
    total = slot_total(insns)
    if total == 0:
        raise VerifierError(None, "program has no instructions")
    if total > config.max_insns:
        raise VerifierError(None, f"program too large: {total} insns (limit {config.max_insns})")

    starts = {0}  # cfg.subprog_starts, gathered by the same pass that checks the targets
    for labeled in insns:
        target = call_target(labeled.pc, labeled.insn)
        if not config.allow_calls and (target is not None or isinstance(labeled.insn, CallKfunc)):
            # add_subprog_and_kfunc, before anything else looks at the program (EPERM).
            raise VerifierError(None, "loading/calling other bpf or kernel functions are allowed for CAP_BPF "
                                      "and CAP_SYS_ADMIN")
        if target is not None:
            if not 0 <= target < total:
                raise _fail(table, labeled.pc, "call to invalid destination")
            starts.add(target)
    functions = subprogs(sorted(starts), total)

    _check_subprogs(insns, table, functions)
    if not config.func_info:
        _check_abnormal_return(insns, functions)
    for labeled in insns:
        if isinstance(labeled.insn, CallReg):
            # Call by register is in the ISA (RFC 9669) but no kernel verifier accepts it.
            raise _fail(table, labeled.pc, f"unknown opcode {CALLX_OPCODE:02x}")
    cfg = walk(insns)
    if cfg.first_out_of_range is not None:
        edge = cfg.first_out_of_range
        raise _fail(table, edge.source, f"jump out of range from insn {edge.source} to {edge.target}")
    if cfg.back_edges and not config.allow_back_edges:
        source, target = cfg.back_edges[0]
        raise _fail(table, source, f"back-edge from insn {source} to {target}")
    for labeled in insns:
        if labeled.pc not in cfg.visited:
            raise _fail(table, labeled.pc, f"unreachable insn {labeled.pc}")
        if isinstance(labeled.insn, LoadImm64) and labeled.pc + 1 in cfg.visited:
            raise _fail(table, labeled.pc, f"jump into the middle of ldimm64 insn {labeled.pc}")

    if config.func_info and config.scalar_returns is not None:
        _check_int_returns(insns, functions, config.scalar_returns)
    for labeled in insns:
        insn = labeled.insn
        # written_registers names only dst, src or r0: the pattern match is needed only when
        # one of the operands is r10 (it runs for every instruction of every program).
        if getattr(insn, "dst", None) != _R10 and getattr(insn, "src", None) != _R10:
            continue
        if _R10 in written_registers(insn):
            raise _fail(table, labeled.pc, "frame pointer is read only")
    return ProgramStructure(total, functions, cfg.back_edges)


def _check_abnormal_return(insns: Sequence[LabeledInsn], functions: Sequence[Subprog]) -> None:
    """Without BTF, a subprogram may neither tail call nor use LD_ABS/LD_IND (both can leave it
    abnormally, and only BTF says the function returns an int). The kernel names no pc."""
    for function in functions[1:]:
        members = [labeled.insn for labeled in insns if labeled.pc in function]
        if any(isinstance(insn, PacketLoad) for insn in members):
            raise VerifierError(None, "LD_ABS is not allowed in subprogs without BTF")
        if any(isinstance(insn, Call) and insn.helper == HelperId.TAIL_CALL for insn in members):
            raise VerifierError(None, "tail_call is not allowed in subprogs without BTF")


def _check_int_returns(insns: Sequence[LabeledInsn], functions: Sequence[Subprog], scalar: frozenset[int]) -> None:
    """``check_btf_func``: a subprogram that tail calls or uses LD_ABS may leave with that
    instruction's result in r0, so BTF must declare it returning an int (or enum)."""
    for function in functions[1:]:
        if function.start in scalar:
            continue
        members = [labeled.insn for labeled in insns if labeled.pc in function]
        if any(isinstance(insn, PacketLoad) for insn in members):
            raise VerifierError(None, "LD_ABS is only allowed in functions that return 'int'.")
        if any(isinstance(insn, Call) and insn.helper == HelperId.TAIL_CALL for insn in members):
            raise VerifierError(None, "tail_call is only allowed in functions that return 'int'.")


def _check_subprogs(insns: Sequence[LabeledInsn], table: dict[int, LabeledInsn], functions: Sequence[Subprog]) -> None:
    """Jumps stay inside their function, and no function falls through into the next one."""
    index = 0
    function = functions[0]
    for labeled in insns:
        while labeled.pc >= function.end:
            index += 1
            function = functions[index]
        target = branch_target(labeled.pc, labeled.insn)
        if target is not None and not function.start <= target < function.end:
            raise _fail(table, labeled.pc, f"jump out of range from insn {labeled.pc} to {target}")
        # The kernel walks raw slots, so an lddw ending a function fails here too (its last slot
        # is not an exit or jump).
        slots = slot_count(labeled.insn)
        last_slot = labeled.pc + slots - 1
        if last_slot == function.end - 1 and not _is_function_end(labeled.insn):
            raise _fail(table, last_slot if slots == 1 else labeled.pc, "last insn is not an exit or jmp")
        if last_slot >= function.end:
            # An lddw straddling two functions: its second slot is the next function's entry.
            raise _fail(table, labeled.pc, "last insn is not an exit or jmp")
