"""The shape of a program before code generation: its functions, their blocks and loop headers.

A function starts at pc 0 (the main function), at every bpf-to-bpf call target and at every
function address an ``lddw`` (``PseudoSrc.FUNC``) takes. Its body is what control flow reaches
from its entry without following calls, so a function is found by reachability, not by layout
(jumps may go backwards and functions need not be contiguous). Within a function, a basic block
starts at the entry, at every jump target and after every conditional jump.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from pybpf.errors import InvalidInstructionError
from pybpf.isa.insn import (
    AddrSpaceCast,
    Atomic,
    Bin,
    BinOp,
    Call,
    CallKfunc,
    CallLocal,
    CallReg,
    Endian,
    Exit,
    Goto,
    Imm,
    Instruction,
    Jump,
    LabeledInsn,
    Load,
    LoadImm64,
    MayGoto,
    Neg,
    Operand,
    PacketLoad,
    Reg,
    Store,
    slot_count,
)
from pybpf.isa.opcodes import ATOMIC_FETCH, AtomicCode, PseudoSrc
from pybpf.platform.uapi_generated import HelperId


@dataclass(frozen=True, slots=True)
class FunctionPlan:
    """One eBPF function: its entry pc, the pcs it reaches, where its blocks start, its loop headers."""

    entry: int
    pcs: tuple[int, ...]
    leaders: frozenset[int]
    loop_headers: frozenset[int]


@dataclass(frozen=True, slots=True)
class ProgramPlan:
    """The instructions by pc, the program's length in slots, and its functions (main first)."""

    insns: Mapping[int, Instruction]
    slot_total: int
    functions: tuple[FunctionPlan, ...]

    @property
    def main_is_called(self) -> bool:
        """Whether the main function is also a callee (a local call or a function address names pc 0)."""
        return any(
            (isinstance(insn, CallLocal) and pc + 1 + insn.off == 0)
            or (isinstance(insn, LoadImm64) and insn.src is PseudoSrc.FUNC and pc + 1 + insn.imm == 0)
            for pc, insn in self.insns.items()
        )

    @property
    def makes_calls(self) -> bool:
        """Whether any frame beyond the main one can exist (a local call, even to the main function, or a callx)."""
        return len(self.functions) > 1 or any(isinstance(insn, CallLocal | CallReg) for insn in self.insns.values())


_SEGMENT_ENDS = (Call, CallKfunc, CallLocal, CallReg, PacketLoad)
"""Instructions after which a run may end normally (a stop, a tail call) or another frame counted."""
_BLOCK_ENDS = (Jump, Goto, Exit, MayGoto)
"""Instructions that end their basic block (code generation emits nothing after them)."""


def counted_segments(plan: ProgramPlan, function: FunctionPlan) -> dict[int, int]:
    """Where native code adds to the instruction count, and how much: {segment start pc: instructions}.

    The interpreter counts every instruction it starts (an ``lddw`` is one), including the one
    that stops the run (a helper's stop, LD_ABS past the packet). Native code adds a whole
    segment's length on entering it: a segment runs to the end of its basic block, or through
    the next instruction after which the run may end normally or counting goes on elsewhere
    (helper and function calls, LD_ABS/LD_IND). So the count is exact whenever a run reports
    it (exit, stop, tail call); an instruction that faults mid-segment raises, and a failed
    run's count is never read.
    """
    segments: dict[int, int] = {}
    for leader in function.leaders:
        start, pc, length = leader, leader, 0
        while True:
            insn = plan.insns[pc]
            length += 1
            following = pc + slot_count(insn)
            if isinstance(insn, _BLOCK_ENDS) or following in function.leaders or following == plan.slot_total:
                segments[start] = length
                break
            if isinstance(insn, _SEGMENT_ENDS):
                segments[start] = length
                start, length = following, 0
            pc = following
    return segments


def successors(pc: int, insn: Instruction) -> tuple[int, ...]:
    """The pcs control may reach next from ``insn`` at ``pc`` within its function (calls return)."""
    match insn:
        case Jump(off=off) | MayGoto(off=off):
            return (pc + 1 + off, pc + 1)
        case Goto(off=off):
            return (pc + 1 + off,)
        case Exit():
            return ()
    return (pc + slot_count(insn),)


def function_entries(insns: Iterable[LabeledInsn]) -> list[int]:
    """Entry pcs: 0, then local call targets and lddw function addresses in pc order."""
    entries = {0}
    for item in insns:
        if isinstance(item.insn, CallLocal):
            entries.add(item.pc + 1 + item.insn.off)
        elif isinstance(item.insn, LoadImm64) and item.insn.src is PseudoSrc.FUNC:
            entries.add(item.pc + 1 + item.insn.imm)
    return sorted(entries)


def plan_function(insns: Mapping[int, Instruction], slot_total: int, entry: int) -> FunctionPlan:
    """Explore the function at ``entry``; ``slot_total`` (falling off the end) is not an instruction."""
    seen: set[int] = set()
    leaders = {entry}
    headers: set[int] = set()
    work = [entry]
    while work:
        pc = work.pop()
        if pc in seen or pc == slot_total:
            continue
        insn = insns.get(pc)
        if insn is None:
            raise InvalidInstructionError(pc, "control flow reaches the second slot of an lddw")
        seen.add(pc)
        nexts = successors(pc, insn)
        if isinstance(insn, Jump | Goto | MayGoto):
            leaders.update(nexts)
            target = nexts[0]
            if target <= pc:
                headers.add(target)
        work.extend(nexts)
    return FunctionPlan(entry, tuple(sorted(seen)), frozenset(leaders - {slot_total}), frozenset(headers))


def plan_program(insns: tuple[LabeledInsn, ...], slot_total: int) -> ProgramPlan:
    """Split a (jump-checked) program into functions."""
    by_pc = {item.pc: item.insn for item in insns}
    functions = tuple(plan_function(by_pc, slot_total, entry) for entry in function_entries(insns))
    return ProgramPlan(by_pc, slot_total, functions)


# -- where pointers come from ------------------------------------------------------------------

OTHER = -1
"""The origin of a value not derived from any entry register: a constant, a load, a helper's result."""
FRAME = int(Reg.R10)
"""The origin of values derived from r10 (the function's own stack frame)."""
FRAME_SIZE = 512
"""The bytes of one frame (the interpreter's STACK_SIZE), tracked as 8-byte slots below r10."""

Origins = tuple[frozenset[int], ...]
"""Per register r0-r10, the origins its value may have: entry registers (0-10) or :data:`OTHER`."""


@dataclass(frozen=True, slots=True)
class FunctionOrigins:
    """Which entry register each register's value is derived from, before each pc of a function.

    A value "derived from" entry register k is k's value at function entry plus or minus
    values of origin OTHER (pointer arithmetic): native code addresses memory through such a
    register as ``base_k + (address - k's entry value)``, a getelementptr from one pointer
    that is fixed for the whole function, which LLVM's loop analyses understand (an
    ``inttoptr`` of each address hides that consecutive accesses are consecutive). Values
    spilled to the frame through r10 (8-byte slots) keep their origins when loaded back.

    ``private_frame`` says that no stack address of this frame can leave it: none is stored
    to memory other than a frame slot through r10, passed to a helper or a function, or
    returned by a function other than the main one; every access through a register that may
    point into the frame is through a register derived from r10 alone, and the program makes
    no tail call (whose target runs on the same stacks). The frame's bytes then need not live
    at their region's address: native code keeps them in a local array that LLVM may hold in
    registers, and any access through a frame-derived register whose address falls in the
    frame reaches that array. (Under bounds checks a frame access outside the frame takes the
    ordinary path; without them the verifier has proved that none happens.)
    """

    before: Mapping[int, Origins]
    private_frame: bool

    def base(self, pc: int, reg: Reg | int) -> int | None:
        """The one entry register ``reg``'s value at ``pc`` is derived from, or None."""
        origins = self.before[pc][int(reg)] - {OTHER}
        if len(origins) != 1:
            return None
        (origin,) = origins
        return origin


_SCALAR: frozenset[int] = frozenset({OTHER})
_SLOTS = FRAME_SIZE // 8


@dataclass(frozen=True, slots=True)
class _State:
    """Origins of the registers and of the frame's 8-byte slots (index 0 is r10 - 512)."""

    regs: Origins
    slots: Origins

    def join(self, other: _State) -> _State:
        return _State(_join(self.regs, other.regs), _join(self.slots, other.slots))

    def with_reg(self, reg: int, value: frozenset[int]) -> _State:
        return _State((*self.regs[:reg], value, *self.regs[reg + 1 :]), self.slots)


def _join(left: Origins, right: Origins) -> Origins:
    return tuple(a | b for a, b in zip(left, right, strict=True))


def _slot_span(off: int, size: int) -> range:
    """The frame slots ``[r10 + off, r10 + off + size)`` overlaps (none outside the frame)."""
    if off < -FRAME_SIZE or off + size > 0:
        return range(0)
    return range((FRAME_SIZE + off) // 8, (FRAME_SIZE + off + size - 1) // 8 + 1)


def _exact_slot(insn: Load | Store) -> int | None:
    """The slot an 8-byte, 8-aligned access through r10 itself is, else None."""
    through = insn.src if isinstance(insn, Load) else insn.dst
    if through is not Reg.R10 or insn.size.nbytes != 8 or insn.off % 8 or not _slot_span(insn.off, 8):
        return None
    return (FRAME_SIZE + insn.off) // 8


def _operand_origins(state: Origins, operand: Operand) -> frozenset[int]:
    return _SCALAR if isinstance(operand, Imm) else state[int(operand)]


def _bin_origins(state: Origins, insn: Bin) -> frozenset[int]:
    dst, src = state[int(insn.dst)], _operand_origins(state, insn.src)
    if insn.op in (BinOp.MOV, BinOp.MOVSX8, BinOp.MOVSX16, BinOp.MOVSX32):
        return src if insn.is64 and insn.op is BinOp.MOV else src | _SCALAR  # the old value is gone
    if insn.is64 and insn.op in (BinOp.ADD, BinOp.SUB):
        if src == _SCALAR:  # pointer +- scalar: still the pointer
            return dst
        if dst == _SCALAR:
            return src
        return dst | src
    return dst | src | _SCALAR  # anything else (and 32-bit results) is a scalar that may hide a pointer


def _stored_values(insn: Instruction) -> tuple[int, ...]:
    """Registers whose values ``insn`` writes to memory other than an exact frame slot."""
    if isinstance(insn, Store) and isinstance(insn.src, Reg) and _exact_slot(insn) is None:
        return (int(insn.src),)
    if isinstance(insn, Atomic) and insn.op is not AtomicCode.LOAD_ACQ:
        return (int(insn.src),)
    return ()


def _address_register(insn: Instruction) -> int | None:
    if isinstance(insn, Load):
        return int(insn.src)
    if isinstance(insn, Store):
        return int(insn.dst)
    if isinstance(insn, Atomic):
        return int(insn.src if insn.op is AtomicCode.LOAD_ACQ else insn.dst)
    return None


def _escapes(state: Origins, insn: Instruction, is_main: bool) -> bool:
    """Whether ``insn`` may let an address of the frame out, or access it through a mixed pointer."""
    if any(FRAME in state[reg] for reg in _stored_values(insn)):
        return True
    address = _address_register(insn)
    if address is not None and FRAME in state[address] and (len(state[address]) > 1 or isinstance(insn, Atomic)):
        return True  # atomics address memory by its real address only
    match insn:
        case Call(helper):
            return helper == HelperId.TAIL_CALL or any(FRAME in state[reg] for reg in range(1, 6))
        case CallReg() | CallKfunc():
            return True
        case CallLocal():
            return any(FRAME in state[reg] for reg in range(10))  # the callee starts with r0-r9
        case Exit():
            return not is_main and FRAME in state[0]
    return False


def _loaded(state: _State, insn: Load) -> frozenset[int]:
    """What a load may give: a spilled value from its slot, anything spilled for other frame reads."""
    exact = _exact_slot(insn)
    if exact is not None:
        return state.slots[exact]
    if insn.src is Reg.R10:
        span = _slot_span(insn.off, insn.size.nbytes)
    elif FRAME in state.regs[int(insn.src)]:
        span = range(_SLOTS)
    else:
        return _SCALAR
    return frozenset().union(*(state.slots[slot] for slot in span)) | _SCALAR


def _stored(state: _State, insn: Store) -> _State:
    """Slots a store through r10 itself writes (a store elsewhere in the frame writes no pointer)."""
    exact = _exact_slot(insn)
    if exact is not None:
        value = _operand_origins(state.regs, insn.src)
        return _State(state.regs, (*state.slots[:exact], value, *state.slots[exact + 1 :]))
    if insn.dst is not Reg.R10:
        return state
    span = _slot_span(insn.off, insn.size.nbytes)
    return _State(
        state.regs, tuple(value | _SCALAR if slot in span else value for slot, value in enumerate(state.slots))
    )


def _transfer(state: _State, insn: Instruction) -> _State:
    written: int | None = None
    value = _SCALAR
    match insn:
        case Bin():
            written, value = int(insn.dst), _bin_origins(state.regs, insn)
        case Neg() | Endian():
            written = int(insn.dst)
            value = state.regs[written] | _SCALAR
        case AddrSpaceCast():
            written = int(insn.dst)  # a number (an arena's user address), whatever the source
        case Load():
            written, value = int(insn.dst), _loaded(state, insn)
        case Store():
            return _stored(state, insn)
        case LoadImm64():
            written = int(insn.dst)
        case Atomic():
            if insn.op is AtomicCode.CMPXCHG:
                written = 0
            elif insn.op is AtomicCode.LOAD_ACQ:
                written = int(insn.dst)
            elif insn.op is AtomicCode.XCHG or insn.op & ATOMIC_FETCH:  # the old value goes to src
                written = int(insn.src)
        case Call() | CallLocal() | CallReg() | CallKfunc() | PacketLoad():
            written = 0  # native code keeps the caller's r1-r5 (a verified program never reads them)
    if written is None:
        return state
    return state.with_reg(written, value)


def register_origins(insns: Mapping[int, Instruction], function: FunctionPlan, is_main: bool) -> FunctionOrigins:
    """A forward may-analysis of :class:`FunctionOrigins` over ``function``'s control flow."""
    entry = _State(tuple(frozenset({number}) for number in range(11)), (_SCALAR,) * _SLOTS)  # zeroed frame
    before: dict[int, _State] = {function.entry: entry}
    reached = set(function.pcs)
    work = [function.entry]
    private = True
    while work:
        pc = work.pop()
        state, insn = before[pc], insns[pc]
        if private and _escapes(state.regs, insn, is_main):
            private = False
        after = _transfer(state, insn)
        for following in successors(pc, insn):
            if following not in reached:
                continue  # falling off the end
            known = before.get(following)
            joined = after if known is None else known.join(after)
            if joined != known:
                before[following] = joined
                work.append(following)
    return FunctionOrigins({pc: state.regs for pc, state in before.items()}, private)


def function_origins(plan: ProgramPlan, function: FunctionPlan) -> FunctionOrigins:
    """:func:`register_origins` of one of ``plan``'s functions.

    Only the outermost frame's r0 is never dereferenced: a main function that is also a callee
    may hand its frame's address to its caller, so it counts as any function there.
    """
    return register_origins(plan.insns, function, function.entry == 0 and not plan.main_is_called)
