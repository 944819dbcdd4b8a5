"""Which registers (and stack slots) hold the context pointer, at every pc.

A small forward dataflow over the whole program, subprograms included. The abstract value of a
register is one of:

- :class:`CtxPtr` ``(offset)``: the context pointer plus a known constant;
- :class:`StackPtr` ``(offset)``: the frame pointer (r10 of the current frame) plus a constant,
  so spills and fills through a copy of r10 are followed too;
- :class:`FuncPtr` ``(pc)``: a function address (``lddw rX, func``), so callbacks handed to
  bpf_loop and for_each_map_elem get their context-typed arguments;
- :data:`OTHER`: anything that is certainly not the context (scalars, packet and map pointers);
- :data:`MAYBE_CTX`: the join of the context with something else. An access through such a
  register cannot be converted, and the rewrite rejects it (the kernel rejects it too: one
  instruction may not see two pointer types).

Each function's stack is tracked per 8-byte spill slot at fixed r10 offsets. Entry to the main
function has r1 = the context; a bpf-to-bpf call enters its callee with the caller's r1-r5 and a
fresh stack. The analysis is context-insensitive (a function called from several places sees the
join of its callers), which is what lets the rewrite patch each instruction once, in place.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum

from pybpf.isa.insn import (
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
    PacketLoad,
    Reg,
    Store,
    slot_count,
)
from pybpf.isa.opcodes import AtomicCode, PseudoSrc, Size
from pybpf.platform.uapi_generated import HelperId

_U64 = (1 << 64) - 1


@dataclass(frozen=True, slots=True)
class CtxPtr:
    """The context pointer plus ``offset`` bytes."""

    offset: int = 0


@dataclass(frozen=True, slots=True)
class StackPtr:
    """The current frame's r10 plus ``offset`` bytes (``offset`` <= 0 inside the frame)."""

    offset: int = 0


@dataclass(frozen=True, slots=True)
class FuncPtr:
    """The code address of the function starting at ``pc``."""

    pc: int


class Other(Enum):
    """Values that are not a precise pointer this analysis follows."""

    OTHER = "not the context"
    MAYBE_CTX = "maybe the context"


OTHER = Other.OTHER
MAYBE_CTX = Other.MAYBE_CTX

Value = CtxPtr | StackPtr | FuncPtr | Other


def join_values(a: Value, b: Value) -> Value:
    if a == b:
        return a
    if isinstance(a, CtxPtr) or isinstance(b, CtxPtr) or MAYBE_CTX in (a, b):
        return MAYBE_CTX
    return OTHER


@dataclass(frozen=True, slots=True)
class State:
    """Registers r0-r10 and the spill slots (stack offset -> value; absent means OTHER)."""

    regs: tuple[Value, ...]
    stack: frozenset[tuple[int, Value]] = frozenset()

    def reg(self, reg: Reg) -> Value:
        return self.regs[int(reg)]

    def with_regs(self, updates: Mapping[int, Value]) -> State:
        regs = list(self.regs)
        for number, value in updates.items():
            regs[number] = value
        return State(tuple(regs), self.stack)

    def slot(self, offset: int) -> Value:
        for key, value in self.stack:
            if key == offset:
                return value
        return OTHER

    def with_store(self, offset: int, width: int, value: Value) -> State:
        """The stack after a ``width``-byte store at ``offset``: overlapped slots die, one may be born."""
        kept = {(k, v) for k, v in self.stack if k + 8 <= offset or offset + width <= k}
        if width == 8 and value is not OTHER:
            kept.add((offset, value))
        return State(self.regs, frozenset(kept))

    def join(self, other: State) -> State:
        regs = tuple(join_values(a, b) for a, b in zip(self.regs, other.regs, strict=True))
        mine, theirs = dict(self.stack), dict(other.stack)
        stack = set()
        for key in mine.keys() | theirs.keys():
            value = join_values(mine.get(key, OTHER), theirs.get(key, OTHER))
            if value is not OTHER:
                stack.add((key, value))
        return State(regs, frozenset(stack))


def entry_state(args: Sequence[Value] = (CtxPtr(0),)) -> State:
    """A function's state at entry: ``args`` in r1..., r10 the frame pointer, the rest OTHER."""
    regs: list[Value] = [OTHER] * 11
    for number, value in enumerate(args[:5], start=1):
        regs[number] = value
    regs[10] = StackPtr(0)
    return State(tuple(regs))


_CLOBBERED = {number: OTHER for number in range(6)}  # r0-r5 after any call

# Helpers that call back into the program: helper -> (register holding the callback,
# {callback argument register: caller register whose value it receives}).
_CALLBACKS: dict[int, tuple[int, dict[int, int]]] = {
    HelperId.LOOP: (2, {2: 3}),  # callback(index, callback_ctx)
    HelperId.FOR_EACH_MAP_ELEM: (2, {4: 3}),  # callback(map, key, value, callback_ctx)
    HelperId.TIMER_SET_CALLBACK: (2, {}),
    HelperId.FIND_VMA: (4, {3: 5}),  # callback(task, vma, callback_ctx)
    HelperId.USER_RINGBUF_DRAIN: (2, {2: 3}),  # callback(dynptr, callback_ctx)
}


def _bin(state: State, insn: Bin) -> State:
    d = int(insn.dst)
    current = state.regs[d]
    if not insn.is64:
        return state.with_regs({d: OTHER})
    if insn.op is BinOp.MOV:
        return state.with_regs({d: state.reg(insn.src) if isinstance(insn.src, Reg) else OTHER})
    if insn.op in (BinOp.ADD, BinOp.SUB) and isinstance(insn.src, Imm):
        delta = insn.src.value if insn.op is BinOp.ADD else -insn.src.value
        if isinstance(current, CtxPtr):
            return state.with_regs({d: CtxPtr(current.offset + delta)})
        if isinstance(current, StackPtr):
            return state.with_regs({d: StackPtr(current.offset + delta)})
    if isinstance(current, CtxPtr) or current is MAYBE_CTX:
        # Variable or non-additive arithmetic on the context: no constant offset is known.
        return state.with_regs({d: MAYBE_CTX})
    return state.with_regs({d: OTHER})


def _atomic(state: State, insn: Atomic) -> State:
    base = state.reg(insn.dst) if insn.op is not AtomicCode.LOAD_ACQ else state.reg(insn.src)
    updates: dict[int, Value] = {}
    if insn.op is AtomicCode.LOAD_ACQ:
        updates[int(insn.dst)] = OTHER
    elif insn.op is AtomicCode.CMPXCHG:
        updates[0] = OTHER
    elif insn.op & 0x01:  # BPF_FETCH: src receives the old value
        updates[int(insn.src)] = OTHER
    result = state.with_regs(updates)
    if isinstance(base, StackPtr) and insn.op is not AtomicCode.LOAD_ACQ:
        result = result.with_store(base.offset + insn.off, insn.size.nbytes, OTHER)
    return result


@dataclass(frozen=True, slots=True)
class Flow:
    """Where control goes after one instruction: ``(pc, state)`` successors in this function,
    and function entries ``(pc, state)`` this instruction calls into."""

    successors: tuple[tuple[int, State], ...]
    calls: tuple[tuple[int, State], ...] = ()


def step(pc: int, insn: Instruction, state: State) -> Flow:
    """The transfer function: the successors of ``insn`` at ``pc`` in ``state``."""
    nxt = pc + slot_count(insn)
    match insn:
        case Bin():
            return Flow(((nxt, _bin(state, insn)),))
        case Neg(dst) | Endian(dst):
            return Flow(((nxt, state.with_regs({int(dst): OTHER})),))
        case LoadImm64():
            value: Value = FuncPtr(pc + 1 + insn.imm) if insn.src is PseudoSrc.FUNC else OTHER
            return Flow(((nxt, state.with_regs({int(insn.dst): value})),))
        case Load():
            base = state.reg(insn.src)
            loaded: Value = OTHER
            if isinstance(base, StackPtr) and insn.size is Size.DW and not insn.sign_extend:
                loaded = state.slot(base.offset + insn.off)
            return Flow(((nxt, state.with_regs({int(insn.dst): loaded})),))
        case Store():
            base = state.reg(insn.dst)
            after = state
            if isinstance(base, StackPtr):
                stored = state.reg(insn.src) if isinstance(insn.src, Reg) else OTHER
                after = state.with_store(base.offset + insn.off, insn.size.nbytes, stored)
            return Flow(((nxt, after),))
        case Atomic():
            return Flow(((nxt, _atomic(state, insn)),))
        case PacketLoad():
            return Flow(((nxt, state.with_regs(_CLOBBERED)),))
        case Jump():
            return Flow(((nxt, state), (pc + 1 + insn.off, state)))
        case Goto(off):
            return Flow(((pc + 1 + off, state),))
        case MayGoto(off):
            return Flow(((nxt, state), (pc + 1 + off, state)))
        case Call(helper):
            return Flow(((nxt, state.with_regs(_CLOBBERED)),), _helper_callbacks(helper, state))
        case CallLocal(off):
            callee = entry_state(_call_args(state))
            return Flow(((nxt, state.with_regs(_CLOBBERED)),), ((pc + 1 + off, callee),))
        case CallReg(reg):
            target = state.reg(reg)
            calls: tuple[tuple[int, State], ...] = ()
            if isinstance(target, FuncPtr):
                calls = ((target.pc, entry_state(_call_args(state))),)
            return Flow(((nxt, state.with_regs(_CLOBBERED)),), calls)
        case CallKfunc():
            return Flow(((nxt, state.with_regs(_CLOBBERED)),))
        case Exit():
            return Flow(())
    raise TypeError(f"unknown instruction {insn!r}")  # pragma: no cover - the union is closed


def _call_args(state: State) -> list[Value]:
    """r1-r5 as a callee receives them: a pointer into the caller's stack is not one into the callee's."""
    return [OTHER if isinstance(value, StackPtr) else value for value in state.regs[1:6]]


def _helper_callbacks(helper: int, state: State) -> tuple[tuple[int, State], ...]:
    """Function entries a helper call may reach: its callback, with ctx-typed arguments passed on."""
    known = _CALLBACKS.get(helper)
    if known is not None:
        func_reg, passed = known
        target = state.regs[func_reg]
        if isinstance(target, FuncPtr):
            args: list[Value] = [OTHER] * 5
            for callee_reg, caller_reg in passed.items():
                passed_value = state.regs[caller_reg]
                args[callee_reg - 1] = OTHER if isinstance(passed_value, StackPtr) else passed_value
            return ((target.pc, entry_state(args)),)
        return ()
    # Any other helper given a function address may call it: with unknown arguments.
    return tuple((value.pc, entry_state([OTHER] * 5)) for value in state.regs[1:6] if isinstance(value, FuncPtr))


def track_context(insns: Sequence[LabeledInsn], entries: Iterable[int] = ()) -> dict[int, State]:
    """The state *before* every reachable pc, starting from the main function at pc 0 (r1 = ctx).

    ``entries`` are extra function entry pcs analysed with unknown arguments (functions whose
    address is taken but whose caller the analysis cannot see).
    """
    by_pc = {item.pc: item.insn for item in insns}
    states: dict[int, State] = {}
    work: list[int] = []

    def merge(pc: int, state: State) -> None:
        if pc not in by_pc:
            return  # a jump outside the program: the codec's jump check reports it
        old = states.get(pc)
        new = state if old is None else old.join(state)
        if new != old:
            states[pc] = new
            work.append(pc)

    merge(0, entry_state())
    for pc in entries:
        merge(pc, entry_state([OTHER] * 5))
    while work:
        pc = work.pop()
        flow = step(pc, by_pc[pc], states[pc])
        for target, state in flow.successors:
            merge(target, state)
        for target, state in flow.calls:
            merge(target, state)
    return states
