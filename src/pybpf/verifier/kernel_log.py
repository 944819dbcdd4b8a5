"""The verifier log in the kernel's own text format (``log_level`` 1 and 2).

Level 1 lists each instruction walked as the kernel's disassembler prints it
(``kernel/bpf/disasm.c``): ``3: (25) if r2 > 0xa goto pc+2``. Level 2 appends, after the
instruction ran, the registers and stack slots it touched (the kernel's *scratched* marks,
``print_insn_state``), aligned to column 40::

    0: (bf) r6 = r1                       ; R1=ctx() R6=ctx()
    2: (61) r2 = *(u32 *)(r6 +0)          ; R2=scalar(smin=0,smax=umax=0xffffffff,var_off=(0x0; 0xffffffff)) R6=ctx()

and prints the whole state where a path starts (``0: R1=ctx() R10=fp0``, ``from 3 to 6: ...``).
Registers and scalars use ``print_reg_state``/``print_scalar_ranges``' notation: equal bounds
are merged (``smax=umax=10``), numbers outside the 16-bit ranges hexadecimal (``log.c``).

Known differences: ``lddw`` of a map prints the map's name, not a kernel address; ids are ours
(they are allocated in the kernel's order for the common cases); precision marks (``P``) and
the kernel's liveness/backtracking lines are not printed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pybpf.isa.codec import encode
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
    Load,
    LoadImm64,
    MayGoto,
    Neg,
    PacketLoad,
    Reg,
    Store,
)
from pybpf.isa.opcodes import ATOMIC_FETCH, AtomicCode, EndianOrder, Mode, PseudoSrc, Size
from pybpf.platform import HELPER_PROTOS, KFUNC_PROTOS
from pybpf.verifier.dynptr import type_text
from pybpf.verifier.machine import CALLER_SAVED, MapInfo, State, type_name
from pybpf.verifier.scalar import S64_MAX, S64_MIN, Scalar
from pybpf.verifier.state import BPF_REG_SIZE, RegState, RegType, SlotByte, StackSlot
from pybpf.verifier.tnum import U64

U32 = (1 << 32) - 1
S32_MIN, S32_MAX = -(1 << 31), (1 << 31) - 1
BPF_LOG_ALIGNMENT = 40
BPF_LOG_MIN_ALIGNMENT = 8

_LDST = {Size.W: "u32", Size.H: "u16", Size.B: "u8", Size.DW: "u64"}
_SIGNED_LDST = {Size.W: "s32", Size.H: "s16", Size.B: "s8"}
_ALU_TEXT = {BinOp.SDIV: "s/=", BinOp.SMOD: "s%=", BinOp.ARSH: "s>>="}
_MOVSX = {BinOp.MOVSX8: "(s8)", BinOp.MOVSX16: "(s16)", BinOp.MOVSX32: "(s32)"}
_ATOMIC_NAMES = {AtomicCode.ADD: "add", AtomicCode.AND: "and", AtomicCode.OR: "or", AtomicCode.XOR: "xor"}
_ATOMIC_OPS = {AtomicCode.ADD: "+=", AtomicCode.AND: "&=", AtomicCode.OR: "|=", AtomicCode.XOR: "^="}
_SLOT_CHARS = {SlotByte.STACK_INVALID: "?", SlotByte.STACK_SPILL: "r", SlotByte.STACK_MISC: "m",
               SlotByte.STACK_ZERO: "0", SlotByte.STACK_DYNPTR: "d", SlotByte.STACK_ITER: "i",
               SlotByte.STACK_IRQ_FLAG: "f"}


# -- instructions --------------------------------------------------------------------------------


def _reg(number: int, is64: bool = True) -> str:
    return f"{'r' if is64 else 'w'}{int(number)}"


def _mem(size: Size, base: int, off: int) -> str:
    return f"*({_LDST[size]} *)(r{int(base)} {off:+d})"


def _text(insn: Instruction) -> str:
    """The part after the opcode, as ``print_bpf_insn`` writes it."""
    match insn:
        case Bin(op=op, dst=dst, src=src, is64=is64):
            text = _ALU_TEXT.get(op, "=" if op in _MOVSX else op.value)
            if isinstance(src, Imm):
                return f"{_reg(dst, is64)} {text} {src.value}"
            return f"{_reg(dst, is64)} {text} {_MOVSX.get(op, '')}{_reg(src, is64)}"
        case Neg(dst=dst, is64=is64):
            return f"{_reg(dst, is64)} = -{_reg(dst, is64)}"
        case AddrSpaceCast(dst=dst, src=src, dst_as=dst_as, src_as=src_as):
            return f"r{int(dst)} = addr_space_cast(r{int(src)}, {dst_as}, {src_as})"
        case Endian(dst=dst, width=width, order=order):
            name = {EndianOrder.BE: "be", EndianOrder.LE: "le"}.get(order, "bswap")
            return f"r{int(dst)} = {name}{width} r{int(dst)}"
        case LoadImm64(dst=dst, src=src):
            if src in (PseudoSrc.MAP_FD, PseudoSrc.MAP_IDX):
                return f"r{int(dst)} = map[fd:{insn.imm}]"
            if src in (PseudoSrc.MAP_VALUE, PseudoSrc.MAP_IDX_VALUE):
                return f"r{int(dst)} = map[fd:{insn.imm}][0]+{insn.next_imm}"
            return f"r{int(dst)} = {insn.value:#x}" if insn.value else f"r{int(dst)} = 0x0"
        case Load(size=size, dst=dst, src=src, off=off, sign_extend=True):
            return f"r{int(dst)} = *({_SIGNED_LDST.get(size, 's64')} *)(r{int(src)} {off:+d})"
        case Load(size=size, dst=dst, src=src, off=off):
            return f"r{int(dst)} = {_mem(size, src, off)}"
        case Store(size=size, dst=dst, off=off, src=src):
            return f"{_mem(size, dst, off)} = {src.value if isinstance(src, Imm) else _reg(src)}"
        case PacketLoad(size=size, mode=Mode.IND, src=Reg() as src, imm=imm):
            return f"r0 = *({_LDST[size]} *)skb[{_reg(src)} + {imm}]"
        case PacketLoad(size=size, imm=imm):
            return f"r0 = *({_LDST[size]} *)skb[{imm}]"
        case Atomic():
            return _atomic_text(insn)
        case Jump(cond=cond, dst=dst, src=src, off=off, is32=is32):
            operand = f"{int(src.value) & U32:#x}" if isinstance(src, Imm) else _reg(src, not is32)
            return f"if {_reg(dst, not is32)} {cond.value} {operand} goto pc{off:+d}"
        case Goto(off=off, long=long):
            return f"{'gotol' if long else 'goto'} pc{off:+d}"
        case MayGoto(off=off):
            return f"may_goto pc{off:+d}"
        case Call(helper=helper):
            proto = HELPER_PROTOS.get(helper)
            return f"call {'bpf_' + proto.name if proto else 'unknown'}#{helper}"
        case CallLocal(off=off):
            return f"call pc{off:+d}"
        case CallKfunc(btf_id=btf_id):
            kfunc = KFUNC_PROTOS.get(btf_id)
            return f"call {kfunc.name if kfunc else 'kernel-function'}#{btf_id}"
        case CallReg(reg=reg):
            return f"callx r{int(reg)}"
        case Exit():
            return "exit"
    return repr(insn)


def _atomic_text(insn: Atomic) -> str:
    width = "64" if insn.size == Size.DW else ""
    where = f"({_LDST[insn.size]} *)(r{int(insn.dst)} {insn.off:+d})"
    match insn.op:
        case AtomicCode.XCHG:
            return f"r{int(insn.src)} = atomic{width}_xchg({where}, r{int(insn.src)})"
        case AtomicCode.CMPXCHG:
            return f"r0 = atomic{width}_cmpxchg({where}, r0, r{int(insn.src)})"
        case AtomicCode.LOAD_ACQ:
            return f"r{int(insn.dst)} = load_acquire(({_LDST[insn.size]} *)(r{int(insn.src)} {insn.off:+d}))"
        case AtomicCode.STORE_REL:
            return f"store_release({where}, r{int(insn.src)})"
    base = AtomicCode(insn.op & ~ATOMIC_FETCH)
    if insn.op & ATOMIC_FETCH:
        return f"r{int(insn.src)} = atomic{width}_fetch_{_ATOMIC_NAMES.get(base, '?')}({where}, r{int(insn.src)})"
    return f"lock {_mem(insn.size, insn.dst, insn.off)} {_ATOMIC_OPS.get(base, '?')} r{int(insn.src)}"


def format_kernel_insn(pc: int, insn: Instruction) -> str:
    """``N: (op) text``, as the kernel's level-1 log prints an instruction."""
    opcode = encode(insn)[0].opcode
    return f"{pc}: ({opcode:02x}) {_text(insn)}"


# -- registers -----------------------------------------------------------------------------------


# log.c's is_snum_decimal / is_unum_decimal: numbers within the 16-bit ranges print in decimal.
_SNUM_MIN_DECIMAL, _SNUM_MAX_DECIMAL, _UNUM_MAX_DECIMAL = -(1 << 15), (1 << 15) - 1, (1 << 16) - 1


def _snum(value: int) -> str:
    """``verbose_snum``: decimal within the s16 range, else hexadecimal of the 64-bit pattern."""
    return str(value) if _SNUM_MIN_DECIMAL <= value <= _SNUM_MAX_DECIMAL else f"{value & U64:#x}"


def _unum(value: int) -> str:
    """``verbose_unum``: decimal up to U16_MAX, else hexadecimal."""
    return str(value) if value <= _UNUM_MAX_DECIMAL else f"{value:#x}"


def _scalar_ranges(value: Scalar) -> list[str]:
    """``print_scalar_ranges``: non-default bounds, each merged with the later equal ones of
    its kind (mins with mins, maxes with maxes), never mixing negative and positive."""

    def signed32(bound: int) -> int:
        # A 32-bit bound printed in hex is not sign-extended (smin32=0xfffe7960, not 0xffff...).
        return bound if _SNUM_MIN_DECIMAL <= bound <= _SNUM_MAX_DECIMAL else bound & U32

    bounds: list[tuple[str, int, bool]] = [
        ("smin", value.smin, value.smin == S64_MIN),
        ("smax", value.smax, value.smax == S64_MAX),
        ("umin", value.umin, value.umin == 0),
        ("umax", value.umax, value.umax == U64),
        ("smin32", signed32(value.s32_min), value.s32_min == S32_MIN),
        ("smax32", signed32(value.s32_max), value.s32_max == S32_MAX),
        ("umin32", value.u32_min, value.u32_min == 0),
        ("umax32", value.u32_max, value.u32_max == U32),
    ]
    omitted = [omit for _, _, omit in bounds]
    parts: list[str] = []
    for index, (name, bound, _) in enumerate(bounds):
        if omitted[index]:
            continue
        negative = name[0] == "s" and bound < 0
        names = [name]
        for later in range(index + 2, len(bounds), 2):
            other, other_bound, _ = bounds[later]
            if omitted[later] or other_bound != bound or (other[0] == "s" and other_bound < 0) != negative:
                continue
            omitted[later] = True
            names.append(other)
        parts.append("=".join(names) + "=" + (_snum(bound) if name[0] == "s" else _unum(bound)))
    return parts


def _tnum(value: Scalar) -> str:
    return f"({value.var_off.value:#x}; {value.var_off.mask:#x})"


def format_kernel_reg(reg: RegState, maps: Sequence[MapInfo] = (), frameno: int = 0) -> str:
    """One register as ``print_reg_state`` writes it: ``ctx()``, ``fp-8``, ``pkt(r=14)``, ``7``."""
    value = reg.var_off
    if reg.type is RegType.SCALAR_VALUE and value.is_const():
        # A known scalar prints as verbose_snum of its 64 bits: -1, 7, 0x80000000.
        constant = value.const_value() or 0
        return _snum(constant - (1 << 64) if constant >> 63 else constant)
    name = type_name(reg)
    if reg.type is RegType.PTR_TO_ARENA:
        return name  # print_reg_state prints nothing more for an arena pointer
    if reg.type is RegType.PTR_TO_BTF_ID and reg.btf_type:
        name += reg.btf_type  # ptr_vm_area_struct(): the kernel names the struct (trust flags are not tracked)
    if reg.type is RegType.PTR_TO_STACK:
        prefix = name if reg.frameno == frameno else f"{name}[{reg.frameno}]"
        if value.is_const():
            return prefix + _snum((value.const_value() or 0) + reg.off)
        name = prefix
    parts: list[str] = []
    if reg.id:
        # A scalar linked at a constant distance (BPF_ADD_CONST) shows the distance too.
        distance = f"{reg.off:+d}" if reg.type is RegType.SCALAR_VALUE and reg.off else ""
        parts.append(f"id={reg.id}{distance}")
    if reg.ref_obj_id:
        parts.append(f"ref_obj_id={reg.ref_obj_id}")
    if reg.type in (RegType.CONST_PTR_TO_MAP, RegType.PTR_TO_MAP_VALUE, RegType.PTR_TO_MAP_KEY) \
            and reg.map_uid is not None and 0 <= reg.map_uid < len(maps):
        info = maps[reg.map_uid]
        if info.name:
            parts.append(f"map={info.name[:15]}")
        parts.append(f"ks={info.key_size},vs={info.value_size}")
    if reg.type is not RegType.SCALAR_VALUE and reg.off:
        parts.append(f"off={_snum(reg.off)}")
    if reg.type in (RegType.PTR_TO_PACKET, RegType.PTR_TO_PACKET_META):
        parts.append(f"r={_unum(reg.range)}")
    if reg.type is RegType.PTR_TO_MEM:
        parts.append(f"sz={_unum(reg.mem_size)}")
    if value.is_const():
        if value.const_value():
            parts.append(f"imm={_snum(value.const_value() or 0)}")
    else:
        parts.extend(_scalar_ranges(value))
        if not value.var_off.is_unknown():
            parts.append(f"var_off={_tnum(value)}")
    return f"{name}({','.join(parts)})"


def _slot_text(slot: StackSlot, maps: Sequence[MapInfo], frameno: int) -> str | None:
    """A stack slot as ``print_verifier_state`` writes it (None: never written)."""
    chars = "".join(_SLOT_CHARS[byte] for byte in slot.slot_type)
    if all(byte is SlotByte.STACK_INVALID for byte in slot.slot_type):
        return None
    if slot.iter is not None:
        # One entry per iterator, at its first slot (the one holding the reference).
        found = slot.iter
        if not found.ref_obj_id:
            return None
        return (f"iter_{found.iter_type}(ref_id={found.ref_obj_id},state={found.state.value},"
                f"depth={found.depth})")
    if slot.slot_type[0] is SlotByte.STACK_DYNPTR:
        # One entry per dynptr, at its first (higher) slot: its kind, id and reference.
        dynptr = slot.spilled_ptr
        if not dynptr.dynptr_first:
            return None
        fields = [f"id={dynptr.id}"] if dynptr.id else []
        if dynptr.ref_obj_id:
            fields.append(f"ref_id={dynptr.ref_obj_id}")
        return f"dynptr_{type_text(dynptr.dynptr_type)}({','.join(fields)})"
    if slot.slot_type[BPF_REG_SIZE - 1] is SlotByte.STACK_SPILL:
        # The bytes above a narrow spill, then the spilled register.
        upper = chars.split("r", 1)[0]
        return upper + format_kernel_reg(slot.spilled_ptr, maps, frameno)
    return chars


def _frame_text(state: State, depth: int, maps: Sequence[MapInfo], regs: set[int] | None,
                slots: set[int] | None) -> list[str]:
    frame = state.frames[depth]
    parts = [f"R{number}={format_kernel_reg(reg, maps, frame.frameno)}"
             for number, reg in enumerate(frame.regs)
             if reg.type is not RegType.NOT_INIT and (regs is None or number in regs)]
    for index, slot in enumerate(frame.stack.slots):
        if slots is not None and index not in slots:
            continue
        text = _slot_text(slot, maps, frame.frameno)
        if text is not None:
            parts.append(f"fp{-(index + 1) * BPF_REG_SIZE}={text}")
    return parts


def _frame_line(state: State, depth: int, maps: Sequence[MapInfo], regs: set[int] | None = None,
                slots: set[int] | None = None) -> str:
    """One frame as ``print_verifier_state`` prints it: ``frameN:`` first when N > 0."""
    parts = _frame_text(state, depth, maps, regs, slots)
    frameno = state.frames[depth].frameno
    if depth == 0 and state.refs:
        parts.append("refs=" + ",".join(str(ref) for ref in sorted(state.refs)))
    if not parts:
        return ""
    return (f"frame{frameno}: " if frameno else "") + " ".join(parts)


def format_kernel_state(state: State, maps: Sequence[MapInfo] = ()) -> str:
    """The current frame's whole state (``print_verifier_state`` with everything printed)."""
    return _frame_line(state, len(state.frames) - 1, maps)


# -- what an instruction touched -----------------------------------------------------------------


def _stack_slots(state: State, base: int, off: int, size: int) -> set[int]:
    """Slots of the current frame an access ``[base + off, +size)`` touches, for a stack base."""
    pointer = state.regs[base]
    if pointer.type is not RegType.PTR_TO_STACK or not pointer.var_off.is_const():
        return set()
    if pointer.frameno != state.frame.frameno:
        return set()
    start = pointer.off + (pointer.var_off.const_value() or 0) + off
    return {(-at - 1) // BPF_REG_SIZE for at in range(start, start + size) if at < 0}


def scratched(insn: Instruction, state: State) -> tuple[set[int], set[int]]:
    """The registers and current-frame stack slots the kernel marks scratched for ``insn``
    (``mark_reg_scratched``/``mark_stack_slot_scratched``: everything read or written)."""
    regs: set[int] = set()
    slots: set[int] = set()
    match insn:
        case Bin(dst=dst, src=src):
            regs.add(dst)
            if isinstance(src, Reg):
                regs.add(src)
        case Neg(dst=dst) | Endian(dst=dst) | LoadImm64(dst=dst):
            regs.add(dst)
        case AddrSpaceCast(dst=dst, src=src):
            regs |= {dst, src}
        case Load(dst=dst, src=src, off=off, size=size):
            regs |= {dst, src}
            slots = _stack_slots(state, src, off, size.nbytes)
        case Store(dst=dst, off=off, size=size, src=src):
            regs.add(dst)
            if isinstance(src, Reg):
                regs.add(src)
            slots = _stack_slots(state, dst, off, size.nbytes)
        case Atomic(dst=dst, src=src, off=off, size=size, op=op):
            regs |= {dst, src}
            if op == AtomicCode.CMPXCHG:
                regs.add(0)
            base = src if op == AtomicCode.LOAD_ACQ else dst
            slots = _stack_slots(state, base, off, size.nbytes)
        case Jump(dst=dst, src=src):
            regs.add(dst)
            if isinstance(src, Reg):
                regs.add(src)
        case Call() | CallLocal() | CallKfunc() | PacketLoad():
            regs |= {0, *CALLER_SAVED}
        case _:
            pass
    return regs, slots


def state_suffix(insn: Instruction, state: State, maps: Sequence[MapInfo], slots_before: set[int]) -> str:
    """The ``R... fp...`` list the kernel appends after an instruction (registers after it ran)."""
    regs, _ = scratched(insn, state)
    if isinstance(insn, Call | CallLocal | PacketLoad):
        regs = {0}  # r1-r5 are clobbered (unprintable); only the result is new
    return _frame_line(state, len(state.frames) - 1, maps, regs, slots_before)


@dataclass(frozen=True, slots=True)
class Before:
    """What the level-2 log needs from the state before an instruction ran."""

    slots: frozenset[int]
    callee: str | None = None  # a returning callee's whole frame


def before(insn: Instruction, state: State, maps: Sequence[MapInfo] = ()) -> Before:
    slots = frozenset(scratched(insn, state)[1])
    if isinstance(insn, Exit) and len(state.frames) > 1:
        return Before(slots, _frame_line(state, len(state.frames) - 1, maps))
    return Before(slots)


def after(pc: int, next_pc: int | None, line: str, insn: Instruction, state: State, *,
          maps: Sequence[MapInfo], seen: Before) -> list[str]:
    """The instruction line with its state, and the kernel's call and return blocks."""
    if isinstance(insn, CallLocal) and len(state.frames) > 1:
        caller = _frame_line(state, len(state.frames) - 2, maps, set(range(11)) - set(CALLER_SAVED))
        callee = _frame_line(state, len(state.frames) - 1, maps)
        return [line, "caller:", f" {caller}", "callee:", f" {callee}", f"{state.frame.subprog}: {callee}"]
    if isinstance(insn, Exit) and seen.callee is not None and next_pc is not None:
        caller = format_kernel_state(state, maps)
        return [line, "returning from callee:", f" {seen.callee}", f"to caller at {next_pc}:", f" {caller}", "",
                f"from {pc} to {next_pc}: {caller}"]
    return [with_state(line, insn, state, maps, set(seen.slots))]


def align(line: str) -> str:
    """Pad an instruction line the way ``vlog_alignment`` does before its ``;``."""
    pos = len(line) + 1  # the kernel measures the line with its newline, then drops it
    width = (max(pos + BPF_LOG_MIN_ALIGNMENT // 2, BPF_LOG_ALIGNMENT) + BPF_LOG_MIN_ALIGNMENT - 1) \
        // BPF_LOG_MIN_ALIGNMENT * BPF_LOG_MIN_ALIGNMENT - pos - 1
    return line + " " * width + ";"


def with_state(line: str, insn: Instruction, state: State, maps: Sequence[MapInfo], slots: set[int]) -> str:
    """An instruction line with the state it left behind appended (nothing after ``exit``)."""
    if isinstance(insn, Exit):
        return line
    suffix = state_suffix(insn, state, maps, slots)
    return f"{align(line)} {suffix}" if suffix else line


def path_start(pc: int, state: State, maps: Sequence[MapInfo] = ()) -> str:
    """The whole state where a path starts: the entry, the call entering a callback, or the
    branch it was forked at."""
    frame = state.frame
    if frame.callback and frame.subprog == pc and len(state.frames) > 1:
        prefix = f"from {frame.callsite} to {pc}:"
    elif state.path is None:
        prefix = f"{pc}:"
    else:
        prefix = f"from {state.path.pc} to {pc}:"
    if state.speculative:
        prefix = prefix[:-1] + " (speculative execution):"
    return f"{prefix} {format_kernel_state(state, maps)}"
