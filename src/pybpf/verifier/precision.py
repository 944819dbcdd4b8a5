"""Precision tracking, as the kernel's ``mark_chain_precision``: which scalars' values matter.

A scalar starts *imprecise*: when a stored state is compared with a new one (pruning), an
imprecise scalar of the stored state covers any scalar (``regsafe``). It becomes *precise* once
a continuation relied on its exact value: as an offset added to a pointer, a size or nullable
pointer passed to a helper, the return value at an exit whose range is restricted, or an operand
of a conditional jump whose outcome was decided by the values (one edge impossible). The demand
is then propagated backwards (:func:`mark_precise`): through the instructions of the current path
(:class:`HistEntry`, the kernel's ``jmp_history``) that produced the value (``backtrack_insn``),
into the stored states at the prune points passed on the way (:class:`Checkpoint`), which are
the only states precision marks live in, and on into their own histories.

Soundness rests on two facts. A checkpoint is used for pruning only once every path below it has
finished, and each of those paths has by then propagated its demands up to it: its marks are
complete. And a path pruned against a stored state relied on that state's precise scalars, so
those are demanded from the pruned path in turn (the kernel's ``propagate_precision``).
Whatever the backward walk cannot follow (a frame change: bpf-to-bpf calls, callbacks, exits of
a subprogram) falls back to marking every scalar of every checkpoint up the chain precise, which
is exactly the comparison this verifier made before precision tracking.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pybpf.isa.insn import (
    Atomic,
    Bin,
    BinOp,
    Call,
    CallKfunc,
    CallLocal,
    Exit,
    Instruction,
    Jump,
    LabeledInsn,
    Load,
    LoadImm64,
    PacketLoad,
    Reg,
    Store,
)
from pybpf.isa.opcodes import ATOMIC_FETCH, AtomicCode, Size
from pybpf.platform import HELPER_PROTOS, KFUNC_PROTOS, ArgType, HelperId, KfuncArgKind
from pybpf.verifier.machine import State
from pybpf.verifier.state import BPF_REG_SIZE, PTR_TO_ARENA, STACK_SPILL, RegType, StackSlot

_SCALAR = RegType.SCALAR_VALUE
_STACK = RegType.PTR_TO_STACK
_CALL_LIKE = frozenset({Call, CallKfunc, PacketLoad, CallLocal})
_SIZE_BYTES = {size: size.nbytes for size in Size}
_LOOP = HelperId.LOOP  # (read through the enum class, a member is slow: see pybpf.verifier.state)
_MOVES = frozenset({BinOp.MOV, BinOp.MOVSX8, BinOp.MOVSX16, BinOp.MOVSX32})
_ARGS_MASK = 0b111110  # r1-r5
_POINTER_MATH = frozenset({BinOp.ADD, BinOp.SUB})
# Helper arguments whose scalar value the checks do not look at (flags, tail-call index...).
_VALUE_FREE_ARGS = frozenset({ArgType.ANYTHING, ArgType.DONTCARE})
# Kfunc arguments whose value the kfunc's checks rely on (check_kfunc_args marks them precise).
_VALUE_KFUNC_ARGS = frozenset({KfuncArgKind.CONST_SCALAR, KfuncArgKind.MEM_SIZE, KfuncArgKind.CONST_MEM_SIZE})
# Helpers that call a function of the program before they return (their call may enter the
# callback's frame); a timer callback is a path of its own, with no history before it.
_CALLS_BACK = frozenset(helper for helper, proto in HELPER_PROTOS.items()
                        if any(arg.type is ArgType.PTR_TO_FUNC for arg in proto.args)
                        and helper != HelperId.TIMER_SET_CALLBACK)


# Not frozen: one is built per processed instruction, and a frozen dataclass's __init__ costs
# four times as much. Never mutated once built (entries are shared between forked paths).
@dataclass(slots=True)
class HistEntry:
    """One instruction stepped on the current path since its last checkpoint (a persistent list).

    ``slots`` are the stack slots a load/store/atomic touched at a constant offset, as
    (frame index, slot index) pairs; ``whole`` says a store overwrote its one slot entirely.
    ``linked`` lists, for a jump comparing two scalars, every location holding a scalar linked
    (same id) to an operand: ('r' or 's', frame index, register or slot index). ``crossing``
    marks an instruction that entered or left a frame; ``frames``, for the crossings the walk
    follows (a call to a helper that runs a callback, the exit of a synchronous callback), the
    number of frames before it (0: the walk cannot follow it)."""

    pc: int
    prev: HistEntry | None
    slots: tuple[tuple[int, int], ...] = ()
    whole: bool = False
    linked: tuple[tuple[str, int, int], ...] = ()
    crossing: bool = False
    frames: int = 0
    subprog: bool = False  # a crossing into or out of a static subprogram (not a callback)


@dataclass(slots=True, eq=False)  # identity: checkpoints are looked up among others by ``is``
class Checkpoint:
    """A stored state at a prune point, the number of live paths below it, and the path from
    its parent checkpoint to it (``hist``: the instructions stepped in between).

    ``all_precise`` records that every scalar here and in every ancestor is already precise."""

    state: State
    branches: int
    parent: Checkpoint | None
    hits: int = 0
    misses: int = 0
    hist: HistEntry | None = None
    all_precise: bool = False
    hint: int = -1  # the innermost register the last failed comparison stopped at
    # Some path below ended against an iterator loop still being explored (or against a state
    # so marked): the precision marks here may be incomplete, so pruning against this state
    # compares ranges, never relying on imprecision (the kernel's loop_entry / SCC rule).
    loop_imprecise: bool = False
    # Dropped from its state list after too many misses (pybpf.verifier.states), while some
    # path below may still hold it as a parent.
    evicted: bool = False


class _Demand:
    """The backtracking set (``struct backtrack_state``): registers and stack slots per frame."""

    __slots__ = ("regs", "slots")

    def __init__(self, depth: int) -> None:
        self.regs = [0] * depth
        self.slots = [0] * depth

    def empty(self) -> bool:
        depth = len(self.regs)
        return self.regs.count(0) == depth and self.slots.count(0) == depth


def _is_scalar_spill(slot: StackSlot) -> bool:
    return STACK_SPILL in slot.slot_type and slot.spilled_ptr.is_scalar


def demanded_by_insn(insn: Instruction, state: State) -> int:
    """Registers (a mask) whose exact values ``insn`` relies on, before it executes
    (instructions for which this is always 0 are listed by :func:`records_plainly`).

    Conditional jumps are not here: whether they rely on their operands depends on the outcome
    (see :func:`demanded_by_branch`). The return value at an exit is the explorer's to demand."""
    regs = state.regs
    if isinstance(insn, Bin):
        if insn.op in _POINTER_MATH and insn.is64 and isinstance(insn.src, Reg):
            dst, src = regs[insn.dst], regs[insn.src]
            if dst.type is PTR_TO_ARENA or src.type is PTR_TO_ARENA:
                return 0  # arena arithmetic is not pointer arithmetic: any value is as good
            if dst.is_pointer and src.is_scalar:
                return 1 << int(insn.src)
            if src.is_pointer and dst.is_scalar:
                return 1 << int(insn.dst)
        return 0
    if isinstance(insn, Call):
        proto = HELPER_PROTOS.get(insn.helper)
        if proto is None:
            return 0
        mask = 0
        for index, arg in enumerate(proto.args[:5]):
            if arg.type not in _VALUE_FREE_ARGS and regs[index + 1].is_scalar:
                mask |= 1 << (index + 1)
        if insn.helper == _LOOP and regs[1].is_scalar:
            # nr_loops bounds how many callback iterations are explored (pybpf.verifier.callbacks).
            mask |= 1 << 1
        return mask
    if isinstance(insn, Store) and isinstance(insn.src, Reg):
        # A zero register written to the stack other than as a whole aligned spill leaves
        # STACK_ZERO bytes, which hold no register to carry the mark: the kernel's
        # check_stack_write_fixed_off marks the register precise there, so a state with a
        # different value (STACK_MISC) is not pruned against it.
        dst, src = regs[insn.dst], regs[insn.src]
        if dst.type is _STACK and src.type is _SCALAR and src.var_off.const_value() == 0:
            start = dst.var_off.const_value()
            if start is not None:
                start += dst.off + insn.off
                if not (insn.size.nbytes == BPF_REG_SIZE and start % BPF_REG_SIZE == 0):
                    return 1 << int(insn.src)
        return 0
    if isinstance(insn, CallKfunc):
        # Constants (``__k``) and memory sizes (``__sz``/``__szk``): the kernel marks them precise.
        kfunc = KFUNC_PROTOS.get(insn.btf_id)
        if kfunc is None:
            return 0
        mask = 0
        for index, kfunc_arg in enumerate(kfunc.args):
            if kfunc_arg.kind in _VALUE_KFUNC_ARGS and regs[index + 1].is_scalar:
                mask |= 1 << (index + 1)
        return mask
    return 0


def records_plainly(insn: Instruction) -> bool:
    """Whether, in any state, :func:`demanded_by_insn` demands nothing of ``insn`` and
    :func:`history_entry` records nothing but its pc: the explorer decides this once per
    instruction and then skips both. Keep it in step with them: an instruction that gains a
    demand or a history detail there must answer False here."""
    if isinstance(insn, Bin):
        return not (insn.op in _POINTER_MATH and insn.is64 and isinstance(insn.src, Reg))
    return not isinstance(insn, (Load, Store, Atomic, Jump, Call, CallKfunc, CallLocal, Exit))


def demanded_by_branch(insn: Jump, state: State) -> int:
    """The scalar operands of a jump whose outcome was decided (one edge impossible)."""
    mask = 0
    if state.regs[insn.dst].is_scalar:
        mask |= 1 << int(insn.dst)
    if isinstance(insn.src, Reg) and state.regs[insn.src].is_scalar:
        mask |= 1 << int(insn.src)
    return mask


def history_entry(pc: int, insn: Instruction, state: State, prev: HistEntry | None) -> HistEntry:
    """The history record for stepping ``insn`` at ``pc`` from ``state`` (before it executes)."""
    # Dispatched on the exact class (instruction classes have no subclasses), most frequent
    # first: this runs for every load, store and jump stepped.
    regs = state.frames[-1].regs
    if type(insn) is Load:
        base = regs[insn.src]
    elif type(insn) is Jump:
        linked = _linked(insn, state)
        return HistEntry(pc, prev, (), False, linked) if linked else HistEntry(pc, prev)
    elif type(insn) is Store:
        base = regs[insn.dst]
    elif type(insn) is Bin or type(insn) is LoadImm64:
        return HistEntry(pc, prev)
    elif type(insn) is Atomic:
        base = regs[insn.dst]
        if regs[insn.src].is_pointer:
            base = regs[insn.src]  # LOAD_ACQ encodes its address in src
    elif type(insn) is Call:
        if insn.helper in _CALLS_BACK:
            return HistEntry(pc, prev, crossing=True, frames=len(state.frames))
        return HistEntry(pc, prev)
    elif type(insn) is CallLocal:
        # Enters a static subprogram's frame: its r1-r5 are the caller's.
        return HistEntry(pc, prev, crossing=True, frames=len(state.frames), subprog=True)
    elif type(insn) is Exit:
        # Leaving a subprogram or callback returns to another frame's registers: a static
        # subprogram's r0 becomes the caller's, a synchronous callback's does not flow back.
        depth = len(state.frames)
        if depth == 1:
            return HistEntry(pc, prev)
        return HistEntry(pc, prev, crossing=True, frames=depth, subprog=not state.frame.callback)
    else:
        return HistEntry(pc, prev)
    if base.type is not _STACK:
        return HistEntry(pc, prev)
    var_off = base.var_off.var_off
    if var_off.mask:
        return HistEntry(pc, prev)
    constant = var_off.value
    size = _SIZE_BYTES[insn.size]
    start = base.off + insn.off + (constant - (1 << 64) if constant >> 63 else constant)
    if start >= 0 or start < -(1 << 16):
        return HistEntry(pc, prev)  # out of the frame: the access itself is rejected
    first, last = (-start - 1) // BPF_REG_SIZE, (-(start + size - 1) - 1) // BPF_REG_SIZE
    if first == last:
        touched: tuple[tuple[int, int], ...] = ((base.frameno, first),)  # the usual, aligned access
    else:
        touched = tuple((base.frameno, index) for index in range(min(first, last), max(first, last) + 1))
    whole = type(insn) is Store and size == BPF_REG_SIZE and start % BPF_REG_SIZE == 0
    return HistEntry(pc, prev, touched, whole)


def _linked(insn: Jump, state: State) -> tuple[tuple[str, int, int], ...]:
    regs = state.frames[-1].regs
    dst = regs[insn.dst]
    if dst.type is not _SCALAR:
        return ()
    dst_id = dst.id
    src_id = 0
    if type(insn.src) is Reg:
        src = regs[insn.src]
        if src.type is not _SCALAR:
            return ()
        src_id = src.id
    if not dst_id and not src_id:
        return ()  # the usual case: no operand is linked to anything
    ids = {dst_id, src_id} - {0}
    found: list[tuple[str, int, int]] = []
    for frameno, frame in enumerate(state.frames):
        for number, reg in enumerate(frame.regs):
            if reg.id in ids and reg.is_scalar:
                found.append(("r", frameno, number))
        for index, slot in enumerate(frame.stack.slots):
            if slot.spilled_ptr.id in ids and _is_scalar_spill(slot):
                found.append(("s", frameno, index))
    return tuple(found)


def _demanded(demand: _Demand, location: tuple[str, int, int]) -> bool:
    kind, frameno, index = location
    bits = demand.regs[frameno] if kind == "r" else demand.slots[frameno]
    return bool(bits >> index & 1)


def _backtrack(entry: HistEntry, insn: Instruction, demand: _Demand) -> bool:
    """``backtrack_insn``: turn the demand after ``insn`` into the demand before it.

    False when the instruction is one this walk cannot see through (fall back)."""
    if entry.crossing:
        crossed = _cross(entry, insn, demand)
        if crossed is not None:
            return crossed
    frame = len(demand.regs) - 1
    regs = demand.regs[frame]
    # Dispatched on the exact class (instruction classes have no subclasses), most frequent
    # first; a register shifts as the int it is (Reg is an IntEnum).
    if type(insn) is Bin:
        dst = 1 << insn.dst
        if regs & dst:
            if insn.op in _MOVES:
                regs &= ~dst
            if type(insn.src) is Reg:
                regs |= 1 << insn.src
    elif type(insn) is Load:
        dst = 1 << insn.dst
        if regs & dst:
            regs &= ~dst
            for frameno, index in entry.slots:
                demand.slots[frameno] |= 1 << index
    elif type(insn) is Jump:
        operands = 1 << insn.dst
        if type(insn.src) is Reg:
            operands |= 1 << insn.src
        demand.regs[frame] = regs
        linked = entry.linked
        if regs & operands or (linked and any(_demanded(demand, location) for location in linked)):
            # The outcome refined the operands and every scalar linked to them: the values
            # they had before it and the other operand decide what they hold after it.
            regs |= operands
            for where, frameno, index in linked:
                if where == "r" and frameno == frame:
                    regs |= 1 << index
                elif where == "r":
                    demand.regs[frameno] |= 1 << index
                else:
                    demand.slots[frameno] |= 1 << index
    elif type(insn) is Store:
        for frameno, index in entry.slots:
            if demand.slots[frameno] >> index & 1:
                if entry.whole:
                    demand.slots[frameno] &= ~(1 << index)
                if type(insn.src) is Reg:
                    regs |= 1 << insn.src
    elif type(insn) is LoadImm64:
        regs &= ~(1 << insn.dst)
    elif type(insn) is Atomic:
        if insn.op == AtomicCode.LOAD_ACQ:
            dst = 1 << int(insn.dst)  # a load: its register comes from the slot
            if regs & dst:
                regs &= ~dst
                for frameno, index in entry.slots:
                    demand.slots[frameno] |= 1 << index
        else:
            # A read-modify-write: the slot after it comes from the slot and the operand (and
            # r0, which cmpxchg compares) before it; a fetched register (src, or r0 for
            # cmpxchg) holds the slot's old value. (The kernel's backtrack_insn sees only the
            # BPF_STX this is encoded as, and lets a fetched register's demand run on.)
            fetched = 1 if insn.op == AtomicCode.CMPXCHG else (1 << int(insn.src)) if insn.op & ATOMIC_FETCH else 0
            slot_demanded = any(demand.slots[f] >> i & 1 for f, i in entry.slots)
            if regs & fetched:
                regs &= ~fetched
                slot_demanded = True
            if slot_demanded and entry.slots:  # (an old value from elsewhere is unknown anyway)
                regs |= 1 << int(insn.src)
                if insn.op == AtomicCode.CMPXCHG:
                    regs |= 1
                for frameno, index in entry.slots:
                    demand.slots[frameno] |= 1 << index
    elif type(insn) in _CALL_LIKE:
        # (A CallLocal not crossing frames is a call to a global function: the explorer records
        # it so; it returns an unknown r0 and clobbers r1-r5 as a helper does.)
        regs &= ~1  # r0 is the result; nothing of it flows from before
        if regs & _ARGS_MASK:
            return False  # r1-r5 are clobbered: a demand on them cannot come from after the call
    demand.regs[frame] = regs
    return True


def _cross(entry: HistEntry, insn: Instruction, demand: _Demand) -> bool | None:
    """Backtrack a frame crossing: False to fall back, True when done, None to go on with
    ``insn`` as an ordinary helper call (the path stayed in the caller: 0 iterations).

    Backwards, a callback's exit enters the callback's frame (whose r0 does not flow to the
    caller: the call instruction is stepped again and sets it), and the call that entered the
    callback leaves it: its r1-r5 were set by the helper, anything else demanded of the callee
    is one this walk cannot explain (the kernel's ``-ENOTSUPP`` fallback)."""
    depth = len(demand.regs)
    if not entry.frames:
        return False
    if isinstance(insn, Exit):
        if depth != entry.frames - 1:
            return False
        r0 = 0
        if entry.subprog:
            # backtrack_insn's BPF_EXIT: the caller's r0 is the callee's; r1-r5 were clobbered
            # by the return, so nothing after it can depend on them.
            if demand.regs[-1] & _ARGS_MASK:
                return False
            r0 = demand.regs[-1] & 1
            demand.regs[-1] &= ~1
        demand.regs.append(r0)
        demand.slots.append(0)
        return True
    if depth == entry.frames:
        return None
    if depth != entry.frames + 1 or demand.regs[-1] & ~_ARGS_MASK or demand.slots[-1]:
        return False
    args = demand.regs.pop()
    demand.slots.pop()
    if entry.subprog:
        demand.regs[-1] |= args  # a static subprogram's arguments are the caller's r1-r5
    return True


def mark_precise(table: Mapping[int, LabeledInsn], hist: HistEntry | None, parent: Checkpoint | None,
                 depth: int, regs: Mapping[int, int], *, slots: Mapping[int, int] | None = None) -> None:
    """``__mark_chain_precision``: the path whose history is ``hist`` (below checkpoint ``parent``,
    in a state ``depth`` frames deep) relies on the exact values of the registers ``regs`` and of
    the spilled scalars in ``slots`` (each: frame index -> mask), as they are *before* the
    instruction after ``hist``. Marks them, and whatever produced them, precise in the checkpoints."""
    demand = _Demand(depth)
    for frameno, mask in regs.items():
        demand.regs[frameno] |= mask
    for frameno, mask in (slots or {}).items():
        demand.slots[frameno] |= mask
    regs_demand, slots_demand = demand.regs, demand.slots
    while True:
        node = hist
        while node is not None:
            if not any(regs_demand) and not any(slots_demand):
                return  # nothing left to trace (demand.empty(), inlined: once per instruction)
            if not _backtrack(node, table[node.pc].insn, demand):
                mark_all_precise(parent)
                return
            node = node.prev
        if parent is None or demand.empty():
            return
        if parent.all_precise:
            return
        if len(parent.state.frames) != len(demand.regs):
            mark_all_precise(parent)
            return
        _mark_in(parent.state, demand)
        hist, parent = parent.hist, parent.parent


def _mark_in(state: State, demand: _Demand) -> None:
    """Mark the demanded scalars of a stored state precise; drop the already precise ones (their
    own producers were marked when they became precise) and whatever is not a scalar here."""
    for frameno, frame in enumerate(state.frames):
        mask = demand.regs[frameno]
        while mask:
            low = mask & -mask  # one demanded register at a time, lowest first
            mask ^= low
            number = low.bit_length() - 1
            reg = frame.regs[number]
            if reg.type is _SCALAR and not reg.precise:
                frame.regs[number] = reg.as_precise()
            else:
                demand.regs[frameno] &= ~low
        mask = demand.slots[frameno]
        while mask:
            low = mask & -mask
            mask ^= low
            index = low.bit_length() - 1
            slot = frame.stack.slot(index)
            if _is_scalar_spill(slot) and not slot.spilled_ptr.precise:
                marked = StackSlot(slot.slot_type, slot.spilled_ptr.as_precise())
                frame.stack = frame.stack.with_slot(index, marked)
            else:
                demand.slots[frameno] &= ~low


def mark_all_precise(checkpoint: Checkpoint | None) -> None:
    """The fallback (``mark_all_scalars_precise``): every scalar of every checkpoint up the chain."""
    while checkpoint is not None and not checkpoint.all_precise:
        for frame in checkpoint.state.frames:
            frame.regs = [reg.as_precise() if reg.is_scalar and not reg.precise else reg
                          for reg in frame.regs]
            for index, slot in enumerate(frame.stack.slots):
                if _is_scalar_spill(slot) and not slot.spilled_ptr.precise:
                    frame.stack = frame.stack.with_slot(
                        index, StackSlot(slot.slot_type, slot.spilled_ptr.as_precise()))
        checkpoint.all_precise = True
        checkpoint = checkpoint.parent


def precise_locations(state: State, live: int, live_slots: int) -> tuple[dict[int, int], dict[int, int]]:
    """What pruning against a stored state relied on: its precise registers and precise spilled
    slots (each: frame index -> mask). Dead locations of the innermost frame are left out, as the
    comparison skips them."""
    innermost = len(state.frames) - 1
    regs: dict[int, int] = {}
    slots: dict[int, int] = {}
    for frameno, frame in enumerate(state.frames):
        mask = 0
        for number, reg in enumerate(frame.regs):
            if reg.precise and reg.is_scalar:
                mask |= 1 << number
        if frameno == innermost:
            mask &= live
        if mask:
            regs[frameno] = mask
        mask = 0
        for index, slot in enumerate(frame.stack.slots):
            if slot.spilled_ptr.precise and _is_scalar_spill(slot):
                mask |= 1 << index
        if frameno == innermost:
            mask &= live_slots
        if mask:
            slots[frameno] = mask
    return regs, slots
