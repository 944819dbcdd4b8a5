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

from collections.abc import Sequence

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
    slot_count,
)
from pybpf.platform import HELPER_PROTOS, KFUNC_PROTOS, ArgType

# (Enum members read through their class are slow on Python 3.11: see pybpf.verifier.state.)
_MOV, _R10, _DONTCARE = BinOp.MOV, Reg.R10, ArgType.DONTCARE

ALL_REGS = (1 << 11) - 1
FP_MASK = 1 << 10
CALLER_SAVED_MASK = 0b111111  # r0-r5: clobbered by any call
ARG_MASKS = tuple(((1 << (count + 1)) - 1) & ~1 for count in range(6))  # r1..r<count>


def _bit(reg: object) -> int:
    return 1 << reg if isinstance(reg, Reg) else 0  # (a Reg is an int: no int() call needed)


def _helper_args(helper: int) -> int:
    proto = HELPER_PROTOS.get(helper)
    if proto is None:
        return 5  # rejected anyway; assume every argument register is read
    used = [index for index, arg in enumerate(proto.args) if arg.type is not _DONTCARE]
    return min(5, max(used) + 1) if used else 0


def use_def(insn: Instruction) -> tuple[int, int]:
    """(registers read, registers certainly written) by one instruction, as bit masks."""
    match insn:
        case Bin(op=op, dst=dst, src=src):
            if op is _MOV:
                return _bit(src), _bit(dst)
            return _bit(src) | _bit(dst), _bit(dst)
        case Neg(dst=dst) | Endian(dst=dst):
            return _bit(dst), _bit(dst)
        case AddrSpaceCast(dst=dst, src=src):
            return _bit(src), _bit(dst)
        case LoadImm64(dst=dst):
            return 0, _bit(dst)
        case Load(dst=dst, src=src):
            return _bit(src), _bit(dst)
        case Store(dst=dst, src=src):
            return _bit(dst) | _bit(src), 0
        case Atomic(dst=dst, src=src):
            # Fetching forms write src (cmpxchg r0); writing nothing keeps them live: safe.
            return _bit(dst) | _bit(src) | 1, 0
        case PacketLoad(src=src):
            return (1 << 6) | _bit(src), CALLER_SAVED_MASK
        case Jump(dst=dst, src=src):
            return _bit(dst) | _bit(src), 0
        case Goto() | MayGoto():
            return 0, 0
        case Call(helper=helper):
            return ARG_MASKS[_helper_args(helper)], CALLER_SAVED_MASK
        case CallLocal():
            return ARG_MASKS[5], CALLER_SAVED_MASK
        case CallKfunc(btf_id=btf_id):
            kfunc = KFUNC_PROTOS.get(btf_id)
            return ARG_MASKS[len(kfunc.args) if kfunc is not None else 5], CALLER_SAVED_MASK
        case Exit():
            return 1, 0
    return ALL_REGS, 0


ALL_SLOTS = (1 << 64) - 1
STACK_SLOTS = 64  # MAX_BPF_STACK / BPF_REG_SIZE


def _slots(off: int, size: int) -> int | None:
    """Mask of the 8-byte slots bytes ``[fp+off, fp+off+size)`` touch; None when outside the frame."""
    if off < -STACK_SLOTS * 8 or off + size > 0 or size <= 0:
        return None
    first, last = (-(off + size)) // 8, (-off - 1) // 8
    return ((1 << (last + 1)) - 1) & ~((1 << first) - 1)


def stack_use_def(insn: Instruction) -> tuple[int, int]:
    """(stack slots possibly read, slots certainly overwritten whole), as masks (bit i: fp-8*(i+1)).

    Only accesses through r10 with their constant offset are precise. Anything that may reach the
    stack through another pointer (loads, stores or atomics on another base, helper and
    bpf-to-bpf calls, which may be handed a stack pointer) reads every slot. A store that does not
    cover a whole aligned slot counts as a read of it: the old bytes stay, and an unprivileged
    store checks what it partially overwrites.
    """
    match insn:
        case Load(src=src, off=off, size=size):
            touched = _slots(off, size.nbytes) if src == _R10 else None
            return (ALL_SLOTS if touched is None else touched), 0
        case Store(dst=dst, off=off, size=size):
            touched = _slots(off, size.nbytes) if dst == _R10 else None
            if touched is None:
                return ALL_SLOTS, 0
            if size.nbytes == 8 and off % 8 == 0:
                return 0, touched
            return touched, 0
        case Atomic() | Call() | CallLocal():
            return ALL_SLOTS, 0
        case (Bin() | AddrSpaceCast() | Neg() | Endian() | LoadImm64() | PacketLoad() | Jump() | Goto() | MayGoto()
              | Exit()):
            # Exit: the innermost frame's stack dies with it (callers' stacks are compared whole).
            return 0, 0
    return ALL_SLOTS, 0


def _successors(pc: int, insn: Instruction) -> list[int]:
    if not isinstance(insn, _FLOW_CLASSES):
        return [pc + 1]  # most instructions: one type test (this runs for every instruction)
    if isinstance(insn, Exit):
        return []
    if isinstance(insn, Goto):
        return [pc + 1 + insn.off]
    following = [pc + slot_count(insn)]
    if isinstance(insn, (Jump, MayGoto)):
        following.append(pc + 1 + insn.off)
    return following


_FLOW_CLASSES = (Exit, Goto, Jump, MayGoto, LoadImm64)
"""The classes whose successors are not just the next slot (a call falls through here)."""


def live_registers(insns: Sequence[LabeledInsn]) -> dict[int, int]:
    """pc -> mask of registers live on entry to the instruction at pc (bit n for rn)."""
    return live_masks(insns)[0]


def live_stack(insns: Sequence[LabeledInsn]) -> dict[int, int]:
    """pc -> mask of stack slots live on entry (bit i for the slot at fp-8*(i+1))."""
    return live_masks(insns)[1]


def live_masks(insns: Sequence[LabeledInsn]) -> tuple[dict[int, int], dict[int, int]]:
    """(:func:`live_registers`, :func:`live_stack`), from one fixed-point iteration over a
    shared table of successors (the verifier needs both for every program it checks).

    Edges stay within a function (a call falls through to its return site), so the fixed point
    over the whole program is the per-function one. A successor outside the program (rejected
    elsewhere) counts as reading everything.
    """
    table = {labeled.pc: labeled.insn for labeled in insns}
    order = sorted(table, reverse=True)
    # pc -> (successors, registers read, registers written, slots read, slots written)
    facts = {pc: (_successors(pc, insn), *use_def(insn), *stack_use_def(insn)) for pc, insn in table.items()}
    # Visited last to first, a program whose edges all go forward has every successor's value
    # final before it is read: one pass is the fixed point (no confirming pass needed).
    forward_only = all(successor > pc for pc, fact in facts.items() for successor in fact[0])
    regs = dict.fromkeys(table, 0)
    slots = dict.fromkeys(table, 0)
    changed = True
    while changed:
        changed = False
        for pc in order:
            successors, use, define, slot_use, slot_define = facts[pc]
            regs_out = slots_out = 0
            for successor in successors:
                regs_out |= regs.get(successor, ALL_REGS)
                slots_out |= slots.get(successor, ALL_SLOTS)
            new_regs = use | (regs_out & ~define) | FP_MASK
            new_slots = slot_use | (slots_out & ~slot_define)
            if new_regs != regs[pc] or new_slots != slots[pc]:
                regs[pc], slots[pc] = new_regs, new_slots
                changed = True
        if forward_only:
            break
    return regs, slots
