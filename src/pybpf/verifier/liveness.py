"""Register liveness, as the kernel's ``compute_live_registers``: which registers may still be read.

A backward dataflow over each function's control-flow graph. A register is *live* at a pc when
some path from that pc reads it before writing it. Pruning may ignore a dead register of the
stored (old) state: no continuation of the explored path ever looked at it, so whatever the
current path holds there cannot change the verdict.

Every instruction's read and write sets err on the side of reading more and writing less (an
unknown instruction reads everything), which only makes more registers live: less pruning,
never an unsound prune. Calls clobber r0-r5 and read r1-r5 up to the helper's argument count (all
five for a bpf-to-bpf call); an ``exit`` reads r0. r10 is always live.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

from pybpf.isa.insn import (
    AddrSpaceCast,
    Atomic,
    Bin,
    BinOp,
    Call,
    CallKfunc,
    CallLocal,
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
    Store,
)
from pybpf.isa.opcodes import Size
from pybpf.platform import HELPER_PROTOS, KFUNC_PROTOS, ArgType

# (Enum members read through their class are slow on Python 3.11: see pybpf.verifier.state.)
_MOV, _R10, _DONTCARE = BinOp.MOV, Reg.R10, ArgType.DONTCARE

ALL_REGS = (1 << 11) - 1
FP_MASK = 1 << 10
CALLER_SAVED_MASK = 0b111111  # r0-r5: clobbered by any call
ARG_MASKS = tuple(((1 << (count + 1)) - 1) & ~1 for count in range(6))  # r1..r<count>
_BYTES = {size: size.nbytes for size in Size}


def _bit(reg: object) -> int:
    return 1 << reg if isinstance(reg, Reg) else 0  # (a Reg is an int: no int() call needed)


def _helper_args(helper: int) -> int:
    proto = HELPER_PROTOS.get(helper)
    if proto is None:
        return 5  # rejected anyway; assume every argument register is read
    used = [index for index, arg in enumerate(proto.args) if arg.type is not _DONTCARE]
    return min(5, max(used) + 1) if used else 0


ALL_SLOTS = (1 << 64) - 1
STACK_SLOTS = 64  # MAX_BPF_STACK / BPF_REG_SIZE

Facts = tuple[int, int, int, int]
"""(registers read, registers certainly written, stack slots possibly read, slots certainly
overwritten whole), as bit masks: :func:`use_def` and :func:`stack_use_def` together."""

_UNKNOWN: Facts = (ALL_REGS, 0, ALL_SLOTS, 0)  # an unknown instruction reads everything


def _slots(off: int, size: int) -> int | None:
    """Mask of the 8-byte slots bytes ``[fp+off, fp+off+size)`` touch; None when outside the frame."""
    if off < -STACK_SLOTS * 8 or off + size > 0 or size <= 0:
        return None
    first, last = (-(off + size)) // 8, (-off - 1) // 8
    return ((1 << (last + 1)) - 1) & ~((1 << first) - 1)


# One function per instruction class, chosen by type: the verifier computes these facts for
# every instruction of every program it checks, and a dispatch on the class is one dict lookup
# where a ``match`` tests the classes one after the other.

def _bin(insn: Bin) -> Facts:
    dst = 1 << insn.dst
    if insn.op is _MOV:
        return _bit(insn.src), dst, 0, 0
    return _bit(insn.src) | dst, dst, 0, 0


def _unary(insn: Neg | Endian) -> Facts:
    return 1 << insn.dst, 1 << insn.dst, 0, 0


def _cast(insn: AddrSpaceCast) -> Facts:
    return _bit(insn.src), _bit(insn.dst), 0, 0


def _lddw(insn: LoadImm64) -> Facts:
    return 0, 1 << insn.dst, 0, 0


def _load(insn: Load) -> Facts:
    touched = _slots(insn.off, _BYTES[insn.size]) if insn.src == _R10 else None
    return 1 << insn.src, 1 << insn.dst, ALL_SLOTS if touched is None else touched, 0


def _store(insn: Store) -> Facts:
    use = 1 << insn.dst | _bit(insn.src)
    nbytes = _BYTES[insn.size]
    touched = _slots(insn.off, nbytes) if insn.dst == _R10 else None
    if touched is None:
        return use, 0, ALL_SLOTS, 0
    if nbytes == 8 and insn.off % 8 == 0:
        return use, 0, 0, touched
    # A store that does not cover a whole aligned slot reads it: the old bytes stay, and an
    # unprivileged store checks what it partially overwrites.
    return use, 0, touched, 0


def _atomic(insn: Atomic) -> Facts:
    # Fetching forms write src (cmpxchg r0); writing nothing keeps them live: safe.
    return 1 << insn.dst | 1 << insn.src | 1, 0, ALL_SLOTS, 0


def _packet_load(insn: PacketLoad) -> Facts:
    return (1 << 6) | _bit(insn.src), CALLER_SAVED_MASK, 0, 0


def _jump(insn: Jump) -> Facts:
    return 1 << insn.dst | _bit(insn.src), 0, 0, 0


def _nothing(_insn: object) -> Facts:
    return 0, 0, 0, 0


def _call(insn: Call) -> Facts:
    # A helper or bpf-to-bpf call may be handed a stack pointer: it may read every slot.
    return ARG_MASKS[_helper_args(insn.helper)], CALLER_SAVED_MASK, ALL_SLOTS, 0


def _call_local(_insn: CallLocal) -> Facts:
    return ARG_MASKS[5], CALLER_SAVED_MASK, ALL_SLOTS, 0


def _call_kfunc(insn: CallKfunc) -> Facts:
    kfunc = KFUNC_PROTOS.get(insn.btf_id)
    return ARG_MASKS[len(kfunc.args) if kfunc is not None else 5], CALLER_SAVED_MASK, ALL_SLOTS, 0


def _exit(_insn: Exit) -> Facts:
    # The innermost frame's stack dies with it (callers' stacks are compared whole).
    return 1, 0, 0, 0


_FACTS: Mapping[type, Callable[[Any], Facts]] = MappingProxyType({
    Bin: _bin, AddrSpaceCast: _cast, Neg: _unary, Endian: _unary, LoadImm64: _lddw, Load: _load, Store: _store,
    Atomic: _atomic, PacketLoad: _packet_load, Jump: _jump, Goto: _nothing, MayGoto: _nothing, Call: _call,
    CallLocal: _call_local, CallKfunc: _call_kfunc, Exit: _exit,
})


def facts_of(insn: Instruction) -> Facts:
    """:func:`use_def` and :func:`stack_use_def` of ``insn`` at once."""
    handler = _FACTS.get(type(insn))
    return _UNKNOWN if handler is None else handler(insn)


def use_def(insn: Instruction) -> tuple[int, int]:
    """(registers read, registers certainly written) by one instruction, as bit masks."""
    use, define, _, _ = facts_of(insn)
    return use, define


def stack_use_def(insn: Instruction) -> tuple[int, int]:
    """(stack slots possibly read, slots certainly overwritten whole), as masks (bit i: fp-8*(i+1)).

    Only accesses through r10 with their constant offset are precise. Anything that may reach the
    stack through another pointer (loads, stores or atomics on another base, helper and
    bpf-to-bpf calls, which may be handed a stack pointer) reads every slot. A store that does not
    cover a whole aligned slot counts as a read of it: the old bytes stay, and an unprivileged
    store checks what it partially overwrites.
    """
    _, _, slot_use, slot_define = facts_of(insn)
    return slot_use, slot_define


def live_registers(insns: Sequence[LabeledInsn]) -> dict[int, int]:
    """pc -> mask of registers live on entry to the instruction at pc (bit n for rn)."""
    regs = live_masks(insns)[0]
    return {labeled.pc: regs[labeled.pc] for labeled in insns}


def live_stack(insns: Sequence[LabeledInsn]) -> dict[int, int]:
    """pc -> mask of stack slots live on entry (bit i for the slot at fp-8*(i+1))."""
    slots = live_masks(insns)[1]
    return {labeled.pc: slots[labeled.pc] for labeled in insns}


def live_masks(insns: Sequence[LabeledInsn]) -> tuple[list[int], list[int]]:
    """(:func:`live_registers`, :func:`live_stack`) as lists indexed by pc, from one fixed-point
    iteration over a shared table of successors (the verifier needs both for every program it
    checks). ``insns`` are in pc order, as decoded.

    Edges stay within a function (a call falls through to its return site), so the fixed point
    over the whole program is the per-function one. A successor outside the program (rejected
    elsewhere), or the second slot of an ``lddw``, counts as reading everything: both lists hold
    that at those indices, and one more index past the end stands for every target outside.
    """
    total = insns[-1].pc + (2 if type(insns[-1].insn) is LoadImm64 else 1) if insns else 0
    regs = [0] * (total + 1)
    slots = [0] * (total + 1)
    regs[total], slots[total] = ALL_REGS, ALL_SLOTS
    # (pc, successor, other successor or -1, registers read, written, slots read, written), last
    # pc first; a successor of -1 is none (exit), ``total`` is outside the program.
    facts: list[tuple[int, int, int, int, int, int, int]] = []
    backward = False  # some edge goes to its own pc or an earlier one: iterate to the fixed point
    get = _FACTS.get
    # Visited last to first, a program whose edges all go forward has every successor's value
    # final before it is read: the first round is then the fixed point.
    for labeled in reversed(insns):
        pc, insn = labeled.pc, labeled.insn
        kind = type(insn)
        handler = get(kind)
        use, define, slot_use, slot_define = _UNKNOWN if handler is None else handler(insn)
        first, second = pc + 1, -1
        if kind in _FLOW_CLASSES:
            if isinstance(insn, LoadImm64):
                first = pc + 2
                regs[pc + 1], slots[pc + 1] = ALL_REGS, ALL_SLOTS  # (a jump there reads all)
            elif isinstance(insn, Jump | Goto | MayGoto):
                target = pc + 1 + insn.off
                if target <= pc:
                    backward = True
                if not 0 <= target < total:
                    target = total
                if kind is Goto:
                    first = target
                else:
                    second = target
            else:  # exit
                first = -1
        facts.append((pc, first, second, use, define, slot_use, slot_define))
    while True:
        changed = False
        for pc, first, second, use, define, slot_use, slot_define in facts:
            if first >= 0:
                regs_out, slots_out = regs[first], slots[first]
                if second >= 0:
                    regs_out |= regs[second]
                    slots_out |= slots[second]
            else:
                regs_out = slots_out = 0
            new_regs = use | (regs_out & ~define) | FP_MASK
            new_slots = slot_use | (slots_out & ~slot_define)
            if new_regs != regs[pc] or new_slots != slots[pc]:
                regs[pc], slots[pc] = new_regs, new_slots
                changed = True
        if not (backward and changed):
            return regs, slots


_FLOW_CLASSES = frozenset({Exit, Goto, Jump, MayGoto, LoadImm64})
"""The classes whose successors are not just the next slot (a call falls through here)."""
