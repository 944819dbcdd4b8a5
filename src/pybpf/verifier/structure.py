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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from pybpf.errors import VerifierError
from pybpf.isa.insn import (
    AddrSpaceCast,
    Atomic,
    Bin,
    Call,
    CallKfunc,
    CallLocal,
    CallReg,
    Endian,
    Exit,
    Goto,
    Instruction,
    Jump,
    LabeledInsn,
    Load,
    LoadImm64,
    MayGoto,
    Neg,
    PacketLoad,
    Reg,
    SourceLine,
)
from pybpf.isa.opcodes import ATOMIC_FETCH, AtomicCode
from pybpf.platform import HelperId
from pybpf.verifier.cfg import Subprog, call_target, slot_total, subprogs, walk_slots

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


def source_at(insns: Sequence[LabeledInsn], pc: int | None,
              lines: Mapping[int, SourceLine] | None = None) -> str | None:
    """:func:`source_of` the instruction at ``pc``, whose line is its own, else (given the BTF
    line-info records by pc) that of the last record at or before it: a record holds until the
    next one. Looked up only when a diagnostic needs it (one scan of the program)."""
    if pc is None:
        return None
    current = None
    for labeled in insns:
        if lines:
            current = lines.get(labeled.pc, current)
        if labeled.pc == pc:
            return source_of(labeled if labeled.line is not None or current is None
                             else LabeledInsn(labeled.pc, labeled.insn, current))
    return None


def _fail(insns: Sequence[LabeledInsn], pc: int | None, reason: str,
          lines: Mapping[int, SourceLine] | None) -> VerifierError:
    return VerifierError(pc, reason, source_at(insns, pc, lines))


def _is_function_end(insn: Instruction) -> bool:
    return isinstance(insn, (Exit, Goto))


def check_structure(insns: Sequence[LabeledInsn], config: StructureConfig | None = None, *,
                    lines: Mapping[int, SourceLine] | None = None) -> ProgramStructure:
    """Run the pre-exploration checks on a decoded program; raise VerifierError on the first failure.

    ``lines``: BTF line-info records by pc, for the lines of instructions without their own
    (see :func:`source_at`).

    ``insns`` are in pc order, as decoded. This runs for every program verified: it makes one
    pass to find the functions, one per-function pass that checks jumps and function ends and
    notes what the later checks need, and the depth-first walk; the verdicts come in the
    kernel's order all the same."""
    config = config or _DEFAULT_CONFIG
    total = slot_total(insns)
    if total == 0:
        raise VerifierError(None, "program has no instructions")
    if total > config.max_insns:
        raise VerifierError(None, f"program too large: {total} insns (limit {config.max_insns})")

    at: list[Instruction | None] = [None] * total  # by slot (None: an lddw's second slot)
    starts = {0}  # cfg.subprog_starts, gathered by the same pass that checks the targets
    lddws: list[int] = []
    allow_calls = config.allow_calls
    for labeled in insns:
        pc, insn = labeled.pc, labeled.insn
        at[pc] = insn
        kind = type(insn)
        if kind is LoadImm64:
            lddws.append(pc)
        if kind not in _CALLING:
            continue
        target = call_target(pc, insn)
        if not allow_calls and (target is not None or kind is CallKfunc):
            # add_subprog_and_kfunc, before anything else looks at the program (EPERM).
            raise VerifierError(None, "loading/calling other bpf or kernel functions are allowed for CAP_BPF "
                                      "and CAP_SYS_ADMIN")
        if target is not None:
            if not 0 <= target < total:
                raise _fail(insns, pc, "call to invalid destination", lines)
            starts.add(target)
    functions = subprogs(sorted(starts), total)

    abnormal, fp_write, callx = _check_subprogs(insns, functions, lines)
    if not config.func_info and abnormal:
        # Without BTF, a subprogram may neither tail call nor use LD_ABS/LD_IND (both can
        # leave it abnormally, and only BTF says the function returns an int). No pc named.
        raise VerifierError(None, _ABNORMAL_WITHOUT_BTF[abnormal[0][1]])
    if callx is not None:
        # Call by register is in the ISA (RFC 9669) but no kernel verifier accepts it.
        raise _fail(insns, callx, f"unknown opcode {CALLX_OPCODE:02x}", lines)
    cfg = walk_slots(at)
    if cfg.first_out_of_range is not None:
        edge = cfg.first_out_of_range
        raise _fail(insns, edge.source, f"jump out of range from insn {edge.source} to {edge.target}", lines)
    if cfg.back_edges and not config.allow_back_edges:
        source, target = cfg.back_edges[0]
        raise _fail(insns, source, f"back-edge from insn {source} to {target}", lines)
    visited = cfg.visited
    # The walk enters only instructions and lddws' second slots: when it entered as many
    # slots as there are instructions and none of those second slots, it reached them all.
    if len(cfg.order) != len(insns) or any(pc + 1 in visited for pc in lddws):
        for labeled in insns:
            if labeled.pc not in visited:
                raise _fail(insns, labeled.pc, f"unreachable insn {labeled.pc}", lines)
            if isinstance(labeled.insn, LoadImm64) and labeled.pc + 1 in visited:
                raise _fail(insns, labeled.pc, f"jump into the middle of ldimm64 insn {labeled.pc}", lines)

    if config.func_info and config.scalar_returns is not None:
        # check_btf_func: a subprogram that tail calls or uses LD_ABS may leave with that
        # instruction's result in r0, so BTF must declare it returning an int (or enum).
        for start, reason in abnormal:
            if start not in config.scalar_returns:
                raise VerifierError(None, _ABNORMAL_NOT_INT[reason])
    if fp_write is not None:
        raise _fail(insns, fp_write, "frame pointer is read only", lines)
    return ProgramStructure(total, functions, cfg.back_edges)


_DEFAULT_CONFIG = StructureConfig()
_CALLING = frozenset({CallLocal, CallKfunc, LoadImm64})  # the classes call_target may name a function for
_LD_ABS, _TAIL_CALL = 0, 1  # why a subprogram may return abnormally (index into the messages)
_ABNORMAL_WITHOUT_BTF = ("LD_ABS is not allowed in subprogs without BTF",
                         "tail_call is not allowed in subprogs without BTF")
_ABNORMAL_NOT_INT = ("LD_ABS is only allowed in functions that return 'int'.",
                     "tail_call is only allowed in functions that return 'int'.")
_TAIL_CALL_HELPER = HelperId.TAIL_CALL


def _check_subprogs(insns: Sequence[LabeledInsn], functions: Sequence[Subprog],
                    lines: Mapping[int, SourceLine] | None) -> tuple[list[tuple[int, int]], int | None, int | None]:
    """Jumps stay inside their function, and no function falls through into the next one.

    Returns what the later checks need from the same pass: per subprogram after the first (by
    first pc, in pc order) that may return abnormally, why (LD_ABS before a tail call, as the
    kernel looks); the first pc writing the frame pointer, if any; and the first ``callx``."""
    abnormal: list[tuple[int, int]] = []
    fp_write: int | None = None
    callx: int | None = None
    index = 0
    function = functions[0]
    start, end = function.start, function.end
    packet_load = tail_call = False  # in the current function
    roles = _ROLES
    for labeled in insns:
        pc = labeled.pc
        # (Any: the class is tested through the role table below, which mypy cannot follow.)
        insn: Any = labeled.insn
        while pc >= end:
            if packet_load or tail_call:
                abnormal.append((start, _LD_ABS if packet_load else _TAIL_CALL))
            packet_load = tail_call = False
            index += 1
            function = functions[index]
            start, end = function.start, function.end
        role = roles.get(type(insn), _OTHER)
        if role == _BRANCH:
            target = pc + 1 + insn.off
            if not start <= target < end:
                raise _fail(insns, pc, f"jump out of range from insn {pc} to {target}", lines)
        elif role == _WRITES_DST:
            # written_registers is (dst,) for these: r10 as dst is the only frame pointer write.
            if insn.dst == _R10 and fp_write is None:
                fp_write = pc
        elif role == _PACKET_LOAD:
            packet_load = packet_load or index > 0
        elif role == _CALL:
            tail_call = tail_call or (index > 0 and insn.helper == _TAIL_CALL_HELPER)
        elif role == _LDDW:
            if insn.dst == _R10 and fp_write is None:
                fp_write = pc
        elif role == _ATOMIC:
            if fp_write is None and _R10 in written_registers(insn):
                fp_write = pc
        elif role == _CALL_REG and callx is None:
            callx = pc
        # The kernel walks raw slots, so an lddw ending a function fails here too (its last slot
        # is not an exit or jmp); an lddw straddling two functions (its second slot the next
        # one's entry) fails too.
        last_slot = pc + 1 if role == _LDDW else pc
        if last_slot >= end - 1 and (last_slot >= end or not _is_function_end(insn)):
            raise _fail(insns, pc, "last insn is not an exit or jmp", lines)
    if packet_load or tail_call:
        abnormal.append((start, _LD_ABS if packet_load else _TAIL_CALL))
    return abnormal, fp_write, callx


_OTHER, _BRANCH, _WRITES_DST, _LDDW, _PACKET_LOAD, _CALL, _ATOMIC, _CALL_REG = range(8)
_ROLES: Mapping[type, int] = MappingProxyType({
    Jump: _BRANCH, Goto: _BRANCH, MayGoto: _BRANCH, Bin: _WRITES_DST, AddrSpaceCast: _WRITES_DST, Neg: _WRITES_DST,
    Endian: _WRITES_DST, Load: _WRITES_DST, LoadImm64: _LDDW, PacketLoad: _PACKET_LOAD, Call: _CALL, Atomic: _ATOMIC,
    CallReg: _CALL_REG,
})
"""What :func:`_check_subprogs` looks at in an instruction, by class."""
