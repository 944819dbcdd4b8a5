"""Which registers (and stack slots) hold the context pointer, at every pc.

The conversion's own analysis, for programs the verifier did not see (``verify=False``); a
verified program is converted by the verifier's record of each access's pointer type instead
(:attr:`pybpf.verifier.VerifierReport.ptr_types`, the kernel's ``insn_aux_data[].ptr_type``).

A forward dataflow over the whole program, subprograms and callbacks included. The abstract
value of a register is one of:

- :class:`CtxPtr` ``(offset)``: the context pointer plus a known constant;
- :class:`StackPtr` ``(offset, frame)``: the frame pointer of call frame ``frame`` (0 is the
  outermost) plus a constant, so spills and fills through a copy of r10 are followed, in the
  current frame and, through a pointer a caller passed down, in any caller's;
- :class:`FuncPtr` ``(pc)``: a function address (``lddw rX, func``), so callbacks handed to
  bpf_loop and for_each_map_elem get their context-typed arguments;
- :data:`OTHER`: anything that is certainly neither the context nor a stack pointer (scalars,
  packet and map pointers);
- :data:`MAYBE_STACK`: maybe a stack pointer at an offset the analysis does not know. An
  8-byte store through it may have hit any slot of any frame (each slot becomes the join of
  what it held and what was stored), and a load through it may give anything a slot holds;
- :data:`MAYBE_CTX`: the join of the context with something else. An access through such a
  register cannot be converted, and the rewrite rejects it (the kernel rejects it too: one
  instruction may not see two pointer types).

The analysis follows the call chain, as the verifier's frames do: a state is the stack of
frames (each frame's registers as they were at its call, and its 8-byte spill slots at fixed
offsets), and it is kept per *call string* (the call sites leading to the function) and pc.
A callee starts with its caller's r1-r5 and a fresh stack; its exit returns r0, the callee-saved
r6-r9 and the caller's frames (as the callee left them) to the instruction after the call. A
helper's callback runs zero or more times: its exits flow both back into it and to the
instruction after the helper call. The per-pc answer joins every call string reaching the pc,
which is what lets the rewrite patch each instruction once, in place.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum

from pybpf.errors import ContextAccessError
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
from pybpf.isa.opcodes import AtomicCode, PseudoSrc
from pybpf.platform.uapi_generated import HelperId

MAX_CALL_FRAMES = 8
"""The kernel's limit on nested call frames; the analysis does not follow calls deeper."""

MAX_STEPS = 1_000_000
"""Instructions the analysis may step before giving up (the kernel's BPF_COMPLEXITY_LIMIT_INSNS:
like its verifier, the analysis walks a function once per call chain reaching it)."""


@dataclass(frozen=True, slots=True)
class CtxPtr:
    """The context pointer plus ``offset`` bytes."""

    offset: int = 0


@dataclass(frozen=True, slots=True)
class StackPtr:
    """Call frame ``frame``'s r10 plus ``offset`` bytes (``offset`` <= 0 inside the frame).

    Frames are numbered from the outermost function of the call chain (0)."""

    offset: int = 0
    frame: int = 0


@dataclass(frozen=True, slots=True)
class FuncPtr:
    """The code address of the function starting at ``pc``."""

    pc: int


class Other(Enum):
    """Values that are not a precise pointer this analysis follows."""

    OTHER = "neither the context nor a stack pointer"
    MAYBE_STACK = "maybe a stack pointer (at an unknown offset), never the context"
    MAYBE_CTX = "maybe the context"


OTHER = Other.OTHER
MAYBE_STACK = Other.MAYBE_STACK
MAYBE_CTX = Other.MAYBE_CTX

Value = CtxPtr | StackPtr | FuncPtr | Other


def join_values(a: Value, b: Value) -> Value:
    if a == b:
        return a
    if isinstance(a, CtxPtr) or isinstance(b, CtxPtr) or MAYBE_CTX in (a, b):
        return MAYBE_CTX
    if isinstance(a, StackPtr) or isinstance(b, StackPtr) or MAYBE_STACK in (a, b):
        return MAYBE_STACK
    return OTHER


def _imprecise(value: Value) -> bool:
    """Whether an access through ``value`` may touch a stack slot this analysis cannot name."""
    return value is MAYBE_STACK or value is MAYBE_CTX


Slots = frozenset[tuple[int, Value]]


@dataclass(frozen=True, slots=True)
class State:
    """One frame: registers r0-r10 and the spill slots (stack offset -> value). A slot not in
    ``stack`` holds ``rest``: OTHER, until a store through an imprecise pointer may have put
    something else anywhere."""

    regs: tuple[Value, ...]
    stack: Slots = frozenset()
    rest: Value = OTHER

    def reg(self, reg: Reg) -> Value:
        return self.regs[int(reg)]

    def with_regs(self, updates: Mapping[int, Value]) -> State:
        regs = list(self.regs)
        for number, value in updates.items():
            regs[number] = value
        return State(tuple(regs), self.stack, self.rest)

    def slot(self, offset: int) -> Value:
        for key, value in self.stack:
            if key == offset:
                return value
        return self.rest

    def anything(self) -> Value:
        """What an 8-byte load from an unknown slot of this frame may give."""
        value = self.rest
        for _, held in self.stack:
            value = join_values(value, held)
        return value

    def with_store(self, offset: int, width: int, value: Value) -> State:
        """The frame after a ``width``-byte store into its own stack at ``offset``: overlapped
        slots die (their bytes are data now), an 8-byte store gives its slot the value."""
        kept = {(k, v) for k, v in self.stack if k + 8 <= offset or offset + width <= k}
        if width == 8 and value != self.rest:
            kept.add((offset, value))
        return State(self.regs, frozenset(kept), self.rest)

    def with_smear(self, value: Value) -> State:
        """The frame after an 8-byte store of ``value`` that may have hit any of its slots."""
        rest = join_values(self.rest, value)
        stack = frozenset((k, v) for k, held in self.stack if (v := join_values(held, value)) != rest)
        return State(self.regs, stack, rest)

    def join(self, other: State) -> State:
        regs = tuple(join_values(a, b) for a, b in zip(self.regs, other.regs, strict=True))
        if self.stack == other.stack and self.rest == other.rest:
            return State(regs, self.stack, self.rest)
        rest = join_values(self.rest, other.rest)
        mine, theirs = dict(self.stack), dict(other.stack)
        stack = set()
        for key in mine.keys() | theirs.keys():
            value = join_values(mine.get(key, self.rest), theirs.get(key, other.rest))
            if value != rest:
                stack.add((key, value))
        return State(regs, frozenset(stack), rest)


def entry_state(args: Sequence[Value] = (CtxPtr(0),), frame: int = 0) -> State:
    """A function's frame at entry: ``args`` in r1..., r10 frame ``frame``'s pointer, the rest OTHER."""
    regs: list[Value] = [OTHER] * 11
    for number, value in enumerate(args[:5], start=1):
        regs[number] = value
    regs[10] = StackPtr(0, frame)
    return State(tuple(regs))


@dataclass(frozen=True, slots=True)
class Chain:
    """The call chain at one pc: every frame, the outermost first. A caller's registers are as
    they were at its call (what the callee returns to); every frame's stack is current."""

    frames: tuple[State, ...]

    @property
    def top(self) -> State:
        return self.frames[-1]

    def with_top(self, state: State) -> Chain:
        return Chain((*self.frames[:-1], state))

    def load(self, base: Value, off: int, width: int, sign_extend: bool = False) -> Value:
        """What a load of ``width`` bytes at ``base + off`` gives (only whole spills are pointers)."""
        if width != 8 or sign_extend:
            return OTHER
        if isinstance(base, StackPtr):
            return self.frames[base.frame].slot(base.offset + off) if base.frame < len(self.frames) else OTHER
        if _imprecise(base):
            value: Value = OTHER
            for frame in self.frames:
                value = join_values(value, frame.anything())
            return value
        return OTHER

    def store(self, base: Value, off: int, width: int, value: Value) -> Chain:
        """The chain after a store of ``width`` bytes of ``value`` at ``base + off``."""
        if isinstance(base, StackPtr):
            if base.frame >= len(self.frames):
                return self
            frames = list(self.frames)
            frames[base.frame] = frames[base.frame].with_store(base.offset + off, width, value)
            return Chain(tuple(frames))
        if _imprecise(base) and width == 8:
            # Somewhere in some frame, maybe. (A narrower store cannot make a slot a pointer
            # the verifier would let a program dereference: those bytes are data to it.)
            return Chain(tuple(frame.with_smear(value) for frame in self.frames))
        return self

    def join(self, other: Chain) -> Chain:
        return Chain(tuple(a.join(b) for a, b in zip(self.frames, other.frames, strict=True)))


_CLOBBERED = {number: OTHER for number in range(6)}  # r0-r5 after any call

# Helpers that call back into the program: helper -> (register holding the callback,
# {callback argument register: caller register whose value it receives}).
_CALLBACKS: dict[int, tuple[int, dict[int, int]]] = {
    HelperId.LOOP: (2, {2: 3}),  # callback(index, callback_ctx)
    HelperId.FOR_EACH_MAP_ELEM: (2, {4: 3}),  # callback(map, key, value, callback_ctx)
    HelperId.TIMER_SET_CALLBACK: (2, {}),
    HelperId.FIND_VMA: (3, {3: 4}),  # bpf_find_vma(task, addr, callback_fn, callback_ctx, flags)
    HelperId.USER_RINGBUF_DRAIN: (2, {2: 3}),  # callback(dynptr, callback_ctx)
}


def _bin(state: State, insn: Bin) -> State:
    d = int(insn.dst)
    current = state.regs[d]
    if not insn.is64:
        return state.with_regs({d: OTHER})
    source = state.reg(insn.src) if isinstance(insn.src, Reg) else OTHER
    if insn.op is BinOp.MOV:
        return state.with_regs({d: source})
    if insn.op in (BinOp.ADD, BinOp.SUB) and isinstance(insn.src, Imm):
        delta = insn.src.value if insn.op is BinOp.ADD else -insn.src.value
        if isinstance(current, CtxPtr):
            return state.with_regs({d: CtxPtr(current.offset + delta)})
        if isinstance(current, StackPtr):
            return state.with_regs({d: StackPtr(current.offset + delta, current.frame)})
    # No constant offset is known: the result is a pointer of the operands' kind at an unknown
    # offset (a number plus a pointer is a pointer too).
    involved = (current, source) if insn.op is BinOp.ADD else (current,)
    if any(isinstance(v, CtxPtr) or v is MAYBE_CTX for v in involved):
        return state.with_regs({d: MAYBE_CTX})
    if any(isinstance(v, StackPtr) or v is MAYBE_STACK for v in involved):
        return state.with_regs({d: MAYBE_STACK})
    return state.with_regs({d: OTHER})


def _atomic(chain: Chain, insn: Atomic) -> Chain:
    state = chain.top
    width = insn.size.nbytes
    if insn.op is AtomicCode.LOAD_ACQ:
        loaded = chain.load(state.reg(insn.src), insn.off, width)
        return chain.with_top(state.with_regs({int(insn.dst): loaded}))
    base = state.reg(insn.dst)
    if insn.op is AtomicCode.STORE_REL:
        return chain.store(base, insn.off, width, state.reg(insn.src))
    updates: dict[int, Value] = {}
    if insn.op is AtomicCode.CMPXCHG:
        updates[0] = OTHER
    elif insn.op & 0x01:  # BPF_FETCH: src receives the old value
        updates[int(insn.src)] = OTHER
    # The memory now holds a number (to the verifier too), which nothing can dereference: only
    # a slot it certainly replaced needs forgetting.
    after = chain.with_top(state.with_regs(updates))
    return after.store(base, insn.off, width, OTHER) if isinstance(base, StackPtr) else after


@dataclass(frozen=True, slots=True)
class Flow:
    """Where control goes after one instruction: ``(pc, chain)`` successors in this function,
    and function entries ``(pc, chain)`` (the chain with the callee's frame pushed)."""

    successors: tuple[tuple[int, Chain], ...]
    calls: tuple[tuple[int, Chain], ...] = ()


def _push(chain: Chain, args: Sequence[Value]) -> Chain:
    return Chain((*chain.frames, entry_state(args, len(chain.frames))))


def step(pc: int, insn: Instruction, chain: Chain) -> Flow:
    """The transfer function of every instruction but ``exit``: the successors of ``insn`` at ``pc``."""
    nxt = pc + slot_count(insn)
    state = chain.top
    match insn:
        case Bin():
            return Flow(((nxt, chain.with_top(_bin(state, insn))),))
        case Neg(dst) | Endian(dst):
            return Flow(((nxt, chain.with_top(state.with_regs({int(dst): OTHER}))),))
        case LoadImm64():
            value: Value = FuncPtr(pc + 1 + insn.imm) if insn.src is PseudoSrc.FUNC else OTHER
            return Flow(((nxt, chain.with_top(state.with_regs({int(insn.dst): value}))),))
        case Load():
            loaded = chain.load(state.reg(insn.src), insn.off, insn.size.nbytes, insn.sign_extend)
            return Flow(((nxt, chain.with_top(state.with_regs({int(insn.dst): loaded}))),))
        case Store():
            base = state.reg(insn.dst)
            if isinstance(insn.src, Imm):
                # A number: at a known slot it replaces what was there; anywhere else it cannot
                # make a slot a pointer.
                after = chain.store(base, insn.off, insn.size.nbytes, OTHER) if isinstance(base, StackPtr) else chain
            else:
                after = chain.store(base, insn.off, insn.size.nbytes, state.reg(insn.src))
            return Flow(((nxt, after),))
        case Atomic():
            return Flow(((nxt, _atomic(chain, insn)),))
        case PacketLoad():
            return Flow(((nxt, chain.with_top(state.with_regs(_CLOBBERED))),))
        case Jump():
            return Flow(((nxt, chain), (pc + 1 + insn.off, chain)))
        case Goto(off):
            return Flow(((pc + 1 + off, chain),))
        case MayGoto(off):
            return Flow(((nxt, chain), (pc + 1 + off, chain)))
        case Call(helper):
            # Zero callback runs (bpf_loop(0, ...)) go straight on; the callback's exits too.
            return Flow(((nxt, chain.with_top(state.with_regs(_CLOBBERED))),), _helper_callbacks(helper, chain))
        case CallLocal(off):
            if len(chain.frames) >= MAX_CALL_FRAMES:
                return Flow(((nxt, chain.with_top(state.with_regs(_CLOBBERED))),))
            return Flow((), ((pc + 1 + off, _push(chain, state.regs[1:6])),))
        case CallReg(reg):
            target = state.reg(reg)
            if isinstance(target, FuncPtr) and len(chain.frames) < MAX_CALL_FRAMES:
                return Flow((), ((target.pc, _push(chain, state.regs[1:6])),))
            return Flow(((nxt, chain.with_top(state.with_regs(_CLOBBERED))),))
        case CallKfunc():
            return Flow(((nxt, chain.with_top(state.with_regs(_CLOBBERED))),))
        case Exit():
            return Flow(())  # returns are the analysis's: see _Analysis.exit
    raise TypeError(f"unknown instruction {insn!r}")  # pragma: no cover - the union is closed


def _helper_callbacks(helper: int, chain: Chain) -> tuple[tuple[int, Chain], ...]:
    """Function entries a helper call may reach: its callback, with its arguments passed on."""
    if len(chain.frames) >= MAX_CALL_FRAMES:
        return ()
    regs = chain.top.regs
    known = _CALLBACKS.get(helper)
    if known is not None:
        target = regs[known[0]]
        args = _callback_args(helper, regs)
        return ((target.pc, _push(chain, args)),) if isinstance(target, FuncPtr) and args is not None else ()
    # Any other helper given a function address may call it: with unknown arguments.
    return tuple((value.pc, _push(chain, [OTHER] * 5)) for value in regs[1:6] if isinstance(value, FuncPtr))


def _callback_args(helper: int, regs: Sequence[Value]) -> list[Value] | None:
    known = _CALLBACKS.get(helper)
    if known is None:
        return None
    args: list[Value] = [OTHER] * 5
    for callee_reg, caller_reg in known[1].items():
        args[callee_reg - 1] = regs[caller_reg]
    return args


def _forget_frame(value: Value, frame: int) -> Value:
    """A pointer into frame ``frame`` (or deeper) is dangling once that frame returns: it may
    still be some pointer into the stack (the verifier refuses to use it), never the context."""
    return MAYBE_STACK if isinstance(value, StackPtr) and value.frame >= frame else value


@dataclass(slots=True)
class _Analysis:
    """The worklist over (call string, pc): the call string is the call sites of the chain's frames."""

    by_pc: Mapping[int, Instruction]
    states: dict[tuple[tuple[int, ...], int], Chain]
    work: list[tuple[tuple[int, ...], int]]

    def merge(self, sites: tuple[int, ...], pc: int, chain: Chain) -> None:
        if pc not in self.by_pc:
            return  # a jump outside the program: the codec's jump check reports it
        key = (sites, pc)
        old = self.states.get(key)
        new = chain if old is None else old.join(chain)
        if new != old:
            self.states[key] = new
            self.work.append(key)

    def run(self) -> None:
        steps = 0
        while self.work:
            sites, pc = key = self.work.pop()
            steps += 1
            if steps > MAX_STEPS:
                raise ContextAccessError(
                    pc, f"the context pointer's dataflow gave up after {MAX_STEPS} steps "
                    f"({len({s for s, _ in self.states})} call chains): too many calls of calls"
                )
            chain = self.states[key]
            insn = self.by_pc[pc]
            if isinstance(insn, Exit):
                self.exit(sites, chain)
                continue
            flow = step(pc, insn, chain)
            for target, successor in flow.successors:
                self.merge(sites, target, successor)
            for target, callee in flow.calls:
                self.merge((*sites, pc), target, callee)

    def exit(self, sites: tuple[int, ...], chain: Chain) -> None:
        """Return to the instruction after the call (and, for a callback, into it again)."""
        if not sites:
            return
        site = sites[-1]
        depth = len(chain.frames) - 1
        caller = chain.frames[-2]
        call = self.by_pc[site]
        # A helper's result is a number; a function's r0 is what it returned.
        returned = _forget_frame(chain.top.regs[0], depth) if isinstance(call, CallLocal | CallReg) else OTHER
        frames = [
            State(frame.regs, frozenset((k, _forget_frame(v, depth)) for k, v in frame.stack), frame.rest)
            for frame in chain.frames[:-1]
        ]
        frames[-1] = frames[-1].with_regs({**_CLOBBERED, 0: returned})
        back = Chain(tuple(frames))
        self.merge(sites[:-1], site + 1, back)
        if isinstance(call, Call):
            # Another run of the callback, seeing what the previous run left in the callers' stacks.
            args = _callback_args(call.helper, caller.regs)
            target = caller.regs[_CALLBACKS[call.helper][0]] if args is not None else None
            if isinstance(target, FuncPtr) and args is not None:
                again = Chain((*back.frames[:-1], State(caller.regs, back.top.stack, back.top.rest)))
                self.merge(sites, target.pc, _push(again, args))


def track_chains(
    insns: Sequence[LabeledInsn], entries: Iterable[int] = ()
) -> dict[tuple[tuple[int, ...], int], Chain]:
    """The chain *before* every reachable (call string, pc), from the main function at pc 0 (r1 = ctx).

    ``entries`` are extra function entry pcs analysed with unknown arguments (functions whose
    address is taken but whose caller the analysis cannot see)."""
    analysis = _Analysis({item.pc: item.insn for item in insns}, {}, [])
    analysis.merge((), 0, Chain((entry_state(),)))
    for pc in entries:
        analysis.merge((), pc, Chain((entry_state([OTHER] * 5),)))
    analysis.run()
    return analysis.states


def track_context(insns: Sequence[LabeledInsn], entries: Iterable[int] = ()) -> dict[int, State]:
    """The current frame *before* every reachable pc, joined over every call chain reaching it.

    See :func:`track_chains` for ``entries``."""
    states: dict[int, State] = {}
    for (_, pc), chain in track_chains(insns, entries).items():
        old = states.get(pc)
        states[pc] = chain.top if old is None else old.join(chain.top)
    return states
