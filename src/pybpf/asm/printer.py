"""The disassembler: semantic instructions as ``llvm-objdump -d`` (LLVM 19) prints them.

Numbers are hex with a sign (``r1 = -0x1``, ``goto +0x3``), as LLVM 19 prints them. Where
llvm-objdump's text is lossy or missing, we print our own unambiguous forms, and
``parse_llvm`` reads all of them back:

==========================  ==========================================  ==========================
instruction                 we print                                    llvm-objdump 19 prints
==========================  ==========================================  ==========================
local call (src 1)          ``call pc+0x3`` / ``call pc-0x2``           ``call 0x3`` (as a helper)
kfunc call (src 2)          ``call kfunc 0x4d2`` (``, module 0x1``)     ``call 0x4d2``
lddw map fd (src 1)         ``r1 = map[fd:3]``                          ``ld_pseudo r1, 0x1, 0x3``
lddw map value (src 2)      ``r1 = map[fd:3][0]+4``                     ``ld_pseudo r1, 0x2, 0x3``
lddw BTF id (src 3)         ``r1 = btf[id:5]``                          ``ld_pseudo ...``
lddw function (src 4)       ``r1 = func pc+0x3``                        ``ld_pseudo ...``
lddw map index (src 5, 6)   ``r1 = map[idx:0]``, ``map[idx:0][0]+4``    ``ld_pseudo ...``
lddw other, 2nd imm != 0    ``ld_pseudo r1, 0x1, 0x3, 0x5``             ``ld_pseudo r1, 0x1, 0x3``
LD_IND                      ``r0 = *(u16 *)skb[r1 + 0x4]`` (kernel)     ``skb[r1]`` (drops imm)
load-acquire                ``w0 = load_acquire((u32 *)(r1 + 0x0))``    (LLVM 21 syntax)
store-release               ``store_release((u64 *)(r1 + 0x0), r2)``    (LLVM 21 syntax)
==========================  ==========================================  ==========================

The map forms follow the kernel's and bpftool's ``map[id:3][0]+4``, with ``fd``/``idx`` saying
what the immediate is in this (pre-load) bytecode. Plain loads and stores print ``rN`` as
llvm-objdump does without ``--mattr=+alu32``; 32-bit atomics print ``wN`` as it does with it.
"""

from __future__ import annotations

from collections.abc import Sequence

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
    Cond,
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
    SourceLine,
    Store,
    jump_target,
)
from pybpf.isa.opcodes import AtomicCode, EndianOrder, Mode, PseudoSrc, Size

BIN_OPERATORS = {
    BinOp.ADD: "+=",
    BinOp.SUB: "-=",
    BinOp.MUL: "*=",
    BinOp.DIV: "/=",
    BinOp.SDIV: "s/=",
    BinOp.OR: "|=",
    BinOp.AND: "&=",
    BinOp.LSH: "<<=",
    BinOp.RSH: ">>=",
    BinOp.MOD: "%=",
    BinOp.SMOD: "s%=",
    BinOp.XOR: "^=",
    BinOp.MOV: "=",
    BinOp.ARSH: "s>>=",
}
ARENA_MARK = " ; arena"
"""Appended to a load or store the verifier turned into an arena access (kernel-internal, never parsed)."""
MOVSX_CASTS = {BinOp.MOVSX8: "s8", BinOp.MOVSX16: "s16", BinOp.MOVSX32: "s32"}
COND_OPERATORS = {
    Cond.JEQ: "==",
    Cond.JGT: ">",
    Cond.JGE: ">=",
    Cond.JSET: "&",
    Cond.JNE: "!=",
    Cond.JSGT: "s>",
    Cond.JSGE: "s>=",
    Cond.JLT: "<",
    Cond.JLE: "<=",
    Cond.JSLT: "s<",
    Cond.JSLE: "s<=",
}
ENDIAN_NAMES = {EndianOrder.BE: "be", EndianOrder.LE: "le", EndianOrder.SWAP: "bswap"}
SIZE_BITS = {Size.B: 8, Size.H: 16, Size.W: 32, Size.DW: 64}
LOCK_OPERATORS = {AtomicCode.ADD: "+=", AtomicCode.OR: "|=", AtomicCode.AND: "&=", AtomicCode.XOR: "^="}
FETCH_NAMES = {
    AtomicCode.FETCH_ADD: "atomic_fetch_add",
    AtomicCode.FETCH_OR: "atomic_fetch_or",
    AtomicCode.FETCH_AND: "atomic_fetch_and",
    AtomicCode.FETCH_XOR: "atomic_fetch_xor",
}
MAP_PSEUDO = {
    PseudoSrc.MAP_FD: ("fd", False),
    PseudoSrc.MAP_VALUE: ("fd", True),
    PseudoSrc.MAP_IDX: ("idx", False),
    PseudoSrc.MAP_IDX_VALUE: ("idx", True),
}
_WITH_NEXT_IMM = frozenset({PseudoSrc.MAP_VALUE, PseudoSrc.MAP_IDX_VALUE})


def hex_signed(value: int) -> str:
    """``0x1f`` / ``-0x1f``, as LLVM 19 prints immediates."""
    return f"-{-value:#x}" if value < 0 else f"{value:#x}"


def hex_offset(value: int) -> str:
    """``+0x3`` / ``-0x3``: jump offsets carry an explicit sign."""
    return f"-{-value:#x}" if value < 0 else f"+{value:#x}"


def _reg(reg: Reg, wide: bool) -> str:
    return f"{'r' if wide else 'w'}{int(reg)}"


def _operand(src: Operand, wide: bool) -> str:
    return hex_signed(src.value) if isinstance(src, Imm) else _reg(src, wide)


def _size(size: Size, signed: bool = False) -> str:
    return f"{'s' if signed else 'u'}{SIZE_BITS[size]}"


def _address(reg: Reg, off: int) -> str:
    """``r1 + 0x4`` / ``r10 - 0x8`` (LLVM prints ``+ 0x0`` for a zero offset)."""
    sign = "-" if off < 0 else "+"
    return f"r{int(reg)} {sign} {abs(off):#x}"


def _atomic(insn: Atomic) -> str:
    wide = insn.size is Size.DW
    memory = f"*({_size(insn.size)} *)({_address(insn.dst, insn.off)})"
    src = _reg(insn.src, wide)
    op = insn.op
    if op in LOCK_OPERATORS:
        return f"lock {memory} {LOCK_OPERATORS[op]} {src}"
    if op in FETCH_NAMES:
        return f"{src} = {FETCH_NAMES[op]}(({_size(insn.size)} *)({_address(insn.dst, insn.off)}), {src})"
    suffix = "_64" if wide else "32_32"
    if op is AtomicCode.XCHG:
        return f"{src} = xchg{suffix}({_address(insn.dst, insn.off)}, {src})"
    if op is AtomicCode.CMPXCHG:
        r0 = _reg(Reg.R0, wide)
        return f"{r0} = cmpxchg{suffix}({_address(insn.dst, insn.off)}, {r0}, {src})"
    if op is AtomicCode.LOAD_ACQ:
        # The kernel encodes load-acquire with the value in dst and the address in src.
        return f"{_reg(insn.dst, wide)} = load_acquire(({_size(insn.size)} *)({_address(insn.src, insn.off)}))"
    return f"store_release(({_size(insn.size)} *)({_address(insn.dst, insn.off)}), {src})"


def _load_imm64(insn: LoadImm64) -> str:
    dst = _reg(insn.dst, True)
    if insn.src is PseudoSrc.IMM64:
        value = insn.value
        return f"{dst} = {hex_signed(value - (1 << 64) if value >> 63 else value)} ll"
    if insn.next_imm and insn.src not in _WITH_NEXT_IMM:
        # The kernel rejects these, but the codec keeps them: show every field so nothing is lost.
        return f"ld_pseudo {dst}, {int(insn.src):#x}, {hex_signed(insn.imm)}, {hex_signed(insn.next_imm)}"
    if insn.src in MAP_PSEUDO:
        kind, with_value = MAP_PSEUDO[insn.src]
        text = f"{dst} = map[{kind}:{insn.imm & 0xFFFFFFFF}]"
        return text + f"[0]+{insn.next_imm & 0xFFFFFFFF}" if with_value else text
    if insn.src is PseudoSrc.BTF_ID:
        return f"{dst} = btf[id:{insn.imm & 0xFFFFFFFF}]"
    return f"{dst} = func pc{hex_offset(insn.imm)}"


def format_insn(insn: Instruction, pc: int | None = None) -> str:
    """One instruction in LLVM syntax. ``pc`` is accepted for symmetry; offsets stay relative."""
    del pc  # the text is position independent: llvm-objdump prints relative offsets too
    match insn:
        case Bin(op, dst, src, is64) if op in MOVSX_CASTS:
            return f"{_reg(dst, is64)} = ({MOVSX_CASTS[op]}){_operand(src, is64)}"
        case Bin(op, dst, src, is64):
            return f"{_reg(dst, is64)} {BIN_OPERATORS[op]} {_operand(src, is64)}"
        case AddrSpaceCast(dst, src, dst_as, src_as):
            return f"{_reg(dst, True)} = addr_space_cast({_reg(src, True)}, {dst_as:#x}, {src_as:#x})"
        case Neg(dst, is64):
            return f"{_reg(dst, is64)} = -{_reg(dst, is64)}"
        case Endian(dst, width, order):
            return f"{_reg(dst, True)} = {ENDIAN_NAMES[order]}{width} {_reg(dst, True)}"
        case LoadImm64():
            return _load_imm64(insn)
        case Load(size, dst, src, off, sign_extend, arena):
            text = f"{_reg(dst, True)} = *({_size(size, sign_extend)} *)({_address(src, off)})"
            return text + ARENA_MARK if arena else text
        case Store(size, dst, off, src, arena):
            text = f"*({_size(size)} *)({_address(dst, off)}) = {_operand(src, True)}"
            return text + ARENA_MARK if arena else text
        case PacketLoad(size, mode, src, imm):
            if mode is Mode.ABS or src is None:
                return f"r0 = *({_size(size)} *)skb[{hex_signed(imm)}]"
            sign = "-" if imm < 0 else "+"
            return f"r0 = *({_size(size)} *)skb[{_reg(src, True)} {sign} {abs(imm):#x}]"
        case Atomic():
            return _atomic(insn) + ARENA_MARK if insn.arena else _atomic(insn)
        case Jump(cond, dst, src, off, is32):
            wide = not is32
            return f"if {_reg(dst, wide)} {COND_OPERATORS[cond]} {_operand(src, wide)} goto {hex_offset(off)}"
        case Goto(off, long):
            return f"{'gotol' if long else 'goto'} {hex_offset(off)}"
        case MayGoto(off):
            return f"may_goto {hex_offset(off)}"
        case Call(helper):
            return f"call {hex_signed(helper)}"
        case CallLocal(off):
            return f"call pc{hex_offset(off)}"
        case CallKfunc(btf_id, module):
            return f"call kfunc {hex_signed(btf_id)}" + (f", module {hex_signed(module)}" if module else "")
        case CallReg(reg):
            return f"callx {_reg(reg, True)}"
        case Exit():
            return "exit"
    raise TypeError(f"not an instruction: {insn!r}")


def _label_names(items: Sequence[LabeledInsn]) -> dict[int, str]:
    """``LBB0_<n>`` for every pc some jump or local call lands on, numbered in pc order."""
    starts = {item.pc for item in items}
    targets = set()
    for item in items:
        target = jump_target(item.pc, item.insn)
        if target is None and isinstance(item.insn, LoadImm64) and item.insn.src is PseudoSrc.FUNC:
            target = item.pc + 1 + item.insn.imm
        if target is not None and target in starts:
            targets.add(target)
    return {pc: f"LBB0_{index}" for index, pc in enumerate(sorted(targets), 1)}


def _as_labeled(insns: Sequence[Instruction | LabeledInsn]) -> list[LabeledInsn]:
    out: list[LabeledInsn] = []
    pc = 0
    for item in insns:
        if isinstance(item, LabeledInsn):
            out.append(item)
            pc = item.pc + (2 if isinstance(item.insn, LoadImm64) else 1)
        else:
            out.append(LabeledInsn(pc, item))
            pc += 2 if isinstance(item, LoadImm64) else 1
    return out


def _same_line(a: SourceLine | None, b: SourceLine | None) -> bool:
    return a is not None and b is not None and (a.file, a.line) == (b.file, b.line)


def format_program(
    insns: Sequence[Instruction | LabeledInsn],
    *,
    labels: bool = True,
    with_pc: bool = True,
    with_bytes: bool = True,
) -> str:
    """A listing like ``llvm-objdump -d [-S]``: pc column, raw bytes, text.

    ``labels`` adds ``LBB0_n:`` lines before jump targets and ``<LBB0_n>`` after jumps.
    A ``LabeledInsn.line`` that differs from the previous one is printed as ``; <source>``
    above its instruction, as ``llvm-objdump -S`` does. ``parse_llvm`` reads every mode back.
    """
    items = _as_labeled(insns)
    names = _label_names(items) if labels else {}
    lines: list[str] = []
    previous: SourceLine | None = None
    for item in items:
        if item.pc in names:
            lines.append(f"{names[item.pc]}:")
        if item.line is not None and not _same_line(item.line, previous):
            lines.append(f"; {item.line.text.strip()}")
        previous = item.line if item.line is not None else previous
        text = format_insn(item.insn, item.pc)
        target = jump_target(item.pc, item.insn)
        if target in names:
            text += f" <{names[target]}>"
        parts = []
        if with_pc:
            parts.append(f"{item.pc:>8}:")
        if with_bytes:
            parts.append(" ".join(f"{byte:02x}" for raw in encode(item.insn) for byte in raw.to_bytes()))
        parts.append(text)
        lines.append("\t".join(parts))
    return "".join(line + "\n" for line in lines)
