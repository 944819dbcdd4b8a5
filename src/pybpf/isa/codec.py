"""Lossless conversion between bytecode and semantic instructions, with validation.

``decode_program`` rejects what the kernel rejects before verification: unknown opcodes,
registers above r10, non-zero reserved fields, truncated ``lddw``, jumps outside the program
or into the middle of an ``lddw``. Each error names the pc and the reason. Every instruction
``decode`` accepts satisfies ``encode(decode(b)) == b``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

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
    PacketLoad,
    RawInsn,
    Reg,
    Store,
    jump_target,
)
from pybpf.isa.opcodes import (
    ADDR_SPACE_CAST_OFF,
    CLASS_MASK,
    CODE_MASK,
    MAX_REGISTER,
    MODE_MASK,
    SIZE_MASK,
    SOURCE_MASK,
    AluCode,
    AtomicCode,
    CallSrc,
    Class,
    EndianOrder,
    JmpCode,
    Mode,
    PseudoSrc,
    Size,
    Source,
)

# Plain arithmetic codes <-> semantic ops (DIV/MOD/MOV have offset-selected variants, handled apart).
_ALU_TO_BINOP = {
    AluCode.ADD: BinOp.ADD,
    AluCode.SUB: BinOp.SUB,
    AluCode.MUL: BinOp.MUL,
    AluCode.OR: BinOp.OR,
    AluCode.AND: BinOp.AND,
    AluCode.LSH: BinOp.LSH,
    AluCode.RSH: BinOp.RSH,
    AluCode.XOR: BinOp.XOR,
    AluCode.ARSH: BinOp.ARSH,
}
# Semantic op -> (code, required off value).
_BINOP_ENCODING: dict[BinOp, tuple[AluCode, int]] = {op: (code, 0) for code, op in _ALU_TO_BINOP.items()}
_BINOP_ENCODING.update(
    {
        BinOp.DIV: (AluCode.DIV, 0),
        BinOp.SDIV: (AluCode.DIV, 1),
        BinOp.MOD: (AluCode.MOD, 0),
        BinOp.SMOD: (AluCode.MOD, 1),
        BinOp.MOV: (AluCode.MOV, 0),
        BinOp.MOVSX8: (AluCode.MOV, 8),
        BinOp.MOVSX16: (AluCode.MOV, 16),
        BinOp.MOVSX32: (AluCode.MOV, 32),
    }
)
_ADDR_SPACE_CASTS = frozenset({1, 1 << 16})  # imm of 1 -> 0 (to the program's view) and 0 -> 1
_MOVSX_BY_OFF = {8: BinOp.MOVSX8, 16: BinOp.MOVSX16, 32: BinOp.MOVSX32}

_JMP_TO_COND = {
    JmpCode.JEQ: Cond.JEQ,
    JmpCode.JGT: Cond.JGT,
    JmpCode.JGE: Cond.JGE,
    JmpCode.JSET: Cond.JSET,
    JmpCode.JNE: Cond.JNE,
    JmpCode.JSGT: Cond.JSGT,
    JmpCode.JSGE: Cond.JSGE,
    JmpCode.JLT: Cond.JLT,
    JmpCode.JLE: Cond.JLE,
    JmpCode.JSLT: Cond.JSLT,
    JmpCode.JSLE: Cond.JSLE,
}
_COND_TO_JMP = {cond: code for code, cond in _JMP_TO_COND.items()}

_RMW_ATOMICS = frozenset(AtomicCode) - {AtomicCode.LOAD_ACQ, AtomicCode.STORE_REL}
_ALL_SIZES = frozenset(Size)
_RMW_SIZES = frozenset({Size.W, Size.DW})
_MEMSX_SIZES = frozenset({Size.B, Size.H, Size.W})


class _Reject(Exception):
    """Internal: a decode failure before the pc is attached."""


def _require(condition: bool, reason: str) -> None:
    if not condition:
        raise _Reject(reason)


def _reg(number: int, role: str) -> Reg:
    _require(number <= MAX_REGISTER, f"invalid {role} register r{number} (registers are r0-r10)")
    return Reg(number)


def _zero(raw: RawInsn, what: str, *fields: str) -> None:
    for name in fields:
        value = getattr(raw, name)
        _require(value == 0, f"{what}: reserved field '{name}' must be 0, found {value}")


def _name(raw: RawInsn) -> str:
    return f"opcode {raw.opcode:#04x}"


def _decode_alu(raw: RawInsn, is64: bool) -> Instruction:
    try:
        code = AluCode(raw.opcode & CODE_MASK)
    except ValueError:
        raise _Reject(f"unknown {_name(raw)}") from None
    source = raw.opcode & SOURCE_MASK
    what = _name(raw)
    dst = _reg(raw.dst, "destination")
    if code is AluCode.NEG:
        _require(source == Source.K, f"unknown {what} (neg has no register form)")
        _zero(raw, what, "src", "off", "imm")
        return Neg(dst, is64)
    if code is AluCode.END:
        _zero(raw, what, "src", "off")
        _require(raw.imm in (16, 32, 64), f"{what}: byte swap width must be 16, 32 or 64, found {raw.imm}")
        if is64:
            _require(source == Source.K, f"unknown {what} (bswap has no TO_BE form)")
            order = EndianOrder.SWAP
        else:
            order = EndianOrder.BE if source == Source.X else EndianOrder.LE
        return Endian(dst, raw.imm, order)
    if code in (AluCode.DIV, AluCode.MOD):
        _require(raw.off in (0, 1), f"{what}: offset must be 0 (unsigned) or 1 (signed), found {raw.off}")
        if code is AluCode.DIV:
            op = BinOp.SDIV if raw.off else BinOp.DIV
        else:
            op = BinOp.SMOD if raw.off else BinOp.MOD
    elif code is AluCode.MOV:
        if is64 and source == Source.X and raw.off == ADDR_SPACE_CAST_OFF:
            # The kernel knows two casts (check_alu_op); any other imm is reserved, with its message.
            _require(
                raw.imm in _ADDR_SPACE_CASTS,
                f"{what}: addr_space_cast insn can only convert between address space 1 and 0 "
                f"(offset 1 makes this mov an addr_space_cast; its imm must be 0x1 or 0x10000, found {raw.imm:#x})",
            )
            return AddrSpaceCast(dst, _reg(raw.src, "source"), raw.imm >> 16, raw.imm & 0xFFFF)
        if raw.off == 0 or source == Source.K:
            _zero(raw, what, "off")  # sign-extending moves exist only in the register form
            op = BinOp.MOV
        else:
            allowed = (8, 16, 32) if is64 else (8, 16)
            _require(
                source == Source.X and raw.off in allowed,
                f"{what}: offset must be 0 or a sign-extension width {allowed} (register form), found {raw.off}",
            )
            op = _MOVSX_BY_OFF[raw.off]
    else:
        _zero(raw, what, "off")
        op = _ALU_TO_BINOP[code]
    if source == Source.X:
        _zero(raw, what, "imm")
        return Bin(op, dst, _reg(raw.src, "source"), is64)
    _zero(raw, what, "src")
    return Bin(op, dst, Imm(raw.imm), is64)


def _decode_jmp(raw: RawInsn, is32: bool) -> Instruction:
    try:
        code = JmpCode(raw.opcode & CODE_MASK)
    except ValueError:
        raise _Reject(f"unknown {_name(raw)}") from None
    source = raw.opcode & SOURCE_MASK
    what = _name(raw)
    if code is JmpCode.JA:
        _require(source == Source.K, f"unknown {what}")
        if is32:  # gotol: 32-bit offset in imm
            _zero(raw, what, "dst", "src", "off")
            return Goto(raw.imm, long=True)
        _zero(raw, what, "dst", "src", "imm")
        return Goto(raw.off)
    if code in (JmpCode.CALL, JmpCode.EXIT, JmpCode.JCOND):
        _require(not is32, f"unknown {what} ({code.name.lower()} exists only in the JMP class)")
    if code is JmpCode.EXIT:
        _require(source == Source.K, f"unknown {what}")
        _zero(raw, what, "dst", "src", "off", "imm")
        return Exit()
    if code is JmpCode.JCOND:
        _require(source == Source.K, f"unknown {what}")
        _zero(raw, what, "dst", "src", "imm")
        return MayGoto(raw.off)
    if code is JmpCode.CALL:
        if source == Source.X:
            _zero(raw, what, "src", "off", "imm")
            return CallReg(_reg(raw.dst, "call target"))
        _zero(raw, what, "dst")
        if raw.src == CallSrc.HELPER:
            _zero(raw, what, "off")
            return Call(raw.imm)
        if raw.src == CallSrc.LOCAL:
            _zero(raw, what, "off")
            return CallLocal(raw.imm)
        if raw.src == CallSrc.KFUNC:
            return CallKfunc(raw.imm, raw.off)
        raise _Reject(f"{what}: call source must be 0 (helper), 1 (local) or 2 (kfunc), found {raw.src}")
    cond = _JMP_TO_COND[code]
    dst = _reg(raw.dst, "destination")
    if source == Source.X:
        _zero(raw, what, "imm")
        return Jump(cond, dst, _reg(raw.src, "source"), raw.off, is32)
    _zero(raw, what, "src")
    return Jump(cond, dst, Imm(raw.imm), raw.off, is32)


def _decode_mem(raw: RawInsn, next_raw: RawInsn | None) -> Instruction:
    cls = Class(raw.opcode & CLASS_MASK)
    size = Size(raw.opcode & SIZE_MASK)
    try:
        mode = Mode(raw.opcode & MODE_MASK)
    except ValueError:
        raise _Reject(f"unknown {_name(raw)}") from None
    what = _name(raw)
    if cls is Class.LD:
        if mode is Mode.IMM:
            _require(size is Size.DW, f"unknown {what}")
            _zero(raw, what, "off")
            if next_raw is None:
                raise _Reject("lddw is truncated: its second slot is missing")
            _require(next_raw.opcode == 0, f"lddw second slot must have opcode 0, found {next_raw.opcode:#04x}")
            _zero(next_raw, "lddw second slot", "dst", "src", "off")
            try:
                pseudo = PseudoSrc(raw.src)
            except ValueError:
                raise _Reject(f"lddw: unknown pseudo source {raw.src}") from None
            return LoadImm64(_reg(raw.dst, "destination"), raw.imm, next_raw.imm, pseudo)
        if mode in (Mode.ABS, Mode.IND):
            _require(size is not Size.DW, f"unknown {what} (no 8-byte packet load)")
            _zero(raw, what, "dst", "off")
            if mode is Mode.ABS:
                _zero(raw, what, "src")
                return PacketLoad(size, mode, None, raw.imm)
            return PacketLoad(size, mode, _reg(raw.src, "index"), raw.imm)
        raise _Reject(f"unknown {what}")
    if cls is Class.LDX:
        _zero(raw, what, "imm")
        if mode is Mode.MEM:
            return Load(size, _reg(raw.dst, "destination"), _reg(raw.src, "source"), raw.off)
        if mode is Mode.MEMSX:
            _require(size in _MEMSX_SIZES, f"unknown {what} (no 8-byte sign-extending load)")
            return Load(size, _reg(raw.dst, "destination"), _reg(raw.src, "source"), raw.off, True)
        raise _Reject(f"unknown {what}")
    if cls is Class.ST:
        _require(mode is Mode.MEM, f"unknown {what}")
        _zero(raw, what, "src")
        return Store(size, _reg(raw.dst, "destination"), raw.off, Imm(raw.imm))
    # Class.STX
    if mode is Mode.MEM:
        _zero(raw, what, "imm")
        return Store(size, _reg(raw.dst, "destination"), raw.off, _reg(raw.src, "source"))
    if mode is Mode.ATOMIC:
        try:
            op = AtomicCode(raw.imm)
        except ValueError:
            raise _Reject(f"{what}: unknown atomic operation {raw.imm:#x}") from None
        allowed = _RMW_SIZES if op in _RMW_ATOMICS else _ALL_SIZES
        _require(size in allowed, f"{what}: atomic {op.name.lower()} does not exist for size {size.name}")
        return Atomic(op, size, _reg(raw.dst, "destination"), raw.off, _reg(raw.src, "source"))
    raise _Reject(f"unknown {what}")


def decode(raw: RawInsn, next_raw: RawInsn | None = None, pc: int | None = None) -> Instruction:
    """Decode one instruction (``next_raw`` is the following slot, needed for ``lddw``)."""
    try:
        cls = Class(raw.opcode & CLASS_MASK)
        if cls in (Class.ALU, Class.ALU64):
            return _decode_alu(raw, cls is Class.ALU64)
        if cls in (Class.JMP, Class.JMP32):
            return _decode_jmp(raw, cls is Class.JMP32)
        return _decode_mem(raw, next_raw)
    except _Reject as reject:
        raise InvalidInstructionError(pc, str(reject)) from None


def _operand_fields(src: Reg | Imm) -> tuple[int, int, int]:
    """(source bit, src register field, imm field) for an operand."""
    if isinstance(src, Imm):
        return Source.K, 0, src.value
    return Source.X, int(src), 0


def encode(insn: Instruction) -> list[RawInsn]:
    """Encode one semantic instruction into its slot(s)."""
    match insn:
        case Bin(op, dst, src, is64):
            code, off = _BINOP_ENCODING[op]
            source, src_reg, imm = _operand_fields(src)
            cls = Class.ALU64 if is64 else Class.ALU
            return [RawInsn(cls | source | code, dst, src_reg, off, imm)]
        case AddrSpaceCast(dst, src):
            opcode = Class.ALU64 | Source.X | AluCode.MOV
            return [RawInsn(opcode, dst, src, ADDR_SPACE_CAST_OFF, insn.imm)]
        case Neg(dst, is64):
            return [RawInsn((Class.ALU64 if is64 else Class.ALU) | AluCode.NEG, dst, 0, 0, 0)]
        case Endian(dst, width, order):
            if order is EndianOrder.SWAP:
                opcode = Class.ALU64 | Source.K | AluCode.END
            else:
                opcode = Class.ALU | (Source.X if order is EndianOrder.BE else Source.K) | AluCode.END
            return [RawInsn(opcode, dst, 0, 0, width)]
        case LoadImm64(dst, imm, next_imm, src):
            return [RawInsn(Class.LD | Mode.IMM | Size.DW, dst, src, 0, imm), RawInsn(0, 0, 0, 0, next_imm)]
        case Load(size, dst, src, off, sign_extend, arena):
            # An arena load is the kernel's own rewrite (BPF_PROBE_MEM32, as bpftool's xlated
            # dump shows it); decode refuses that mode, as the kernel refuses it from user space.
            mode = Mode.PROBE_MEM32 if arena else Mode.MEMSX if sign_extend else Mode.MEM
            return [RawInsn(Class.LDX | mode | size, dst, src, off, 0)]
        case Store(size, dst, off, src, arena):
            mode = Mode.PROBE_MEM32 if arena else Mode.MEM
            if isinstance(src, Imm):
                return [RawInsn(Class.ST | mode | size, dst, 0, off, src.value)]
            return [RawInsn(Class.STX | mode | size, dst, src, off, 0)]
        case PacketLoad(size, mode, src, imm):
            return [RawInsn(Class.LD | mode | size, 0, 0 if src is None else src, 0, imm)]
        case Atomic(op, size, dst, off, src, arena):
            return [RawInsn(Class.STX | (Mode.PROBE_ATOMIC if arena else Mode.ATOMIC) | size, dst, src, off, op)]
        case Jump(cond, dst, src, off, is32):
            source, src_reg, imm = _operand_fields(src)
            cls = Class.JMP32 if is32 else Class.JMP
            return [RawInsn(cls | source | _COND_TO_JMP[cond], dst, src_reg, off, imm)]
        case Goto(off, long):
            if long:
                return [RawInsn(Class.JMP32 | JmpCode.JA, 0, 0, 0, off)]
            return [RawInsn(Class.JMP | JmpCode.JA, 0, 0, off, 0)]
        case MayGoto(off):
            return [RawInsn(Class.JMP | JmpCode.JCOND, 0, 0, off, 0)]
        case Call(helper):
            return [RawInsn(Class.JMP | JmpCode.CALL, 0, CallSrc.HELPER, 0, helper)]
        case CallLocal(off):
            return [RawInsn(Class.JMP | JmpCode.CALL, 0, CallSrc.LOCAL, 0, off)]
        case CallKfunc(btf_id, module):
            return [RawInsn(Class.JMP | JmpCode.CALL, 0, CallSrc.KFUNC, module, btf_id)]
        case CallReg(reg):
            return [RawInsn(Class.JMP | Source.X | JmpCode.CALL, reg, 0, 0, 0)]
        case Exit():
            return [RawInsn(Class.JMP | JmpCode.EXIT, 0, 0, 0, 0)]
    raise TypeError(f"not an instruction: {insn!r}")


def encode_program(insns: Iterable[Instruction | LabeledInsn]) -> bytes:
    """Bytecode for a sequence of instructions (labeled or not)."""
    out = bytearray()
    for item in insns:
        insn = item.insn if isinstance(item, LabeledInsn) else item
        for raw in encode(insn):
            out += raw.to_bytes()
    return bytes(out)


def decode_raw_program(data: bytes | memoryview) -> list[RawInsn]:
    """Split bytecode into raw slots; the length must be a multiple of 8."""
    if len(data) % 8:
        raise InvalidInstructionError(
            len(data) // 8, f"program length {len(data)} is not a multiple of 8 bytes (one slot is 8)"
        )
    return [RawInsn.from_bytes(data, offset) for offset in range(0, len(data), 8)]


def decode_program(data: bytes | memoryview, *, check_jumps: bool = True) -> list[LabeledInsn]:
    """Decode and validate a whole program. The result lists instructions by pc (``lddw`` counts 2)."""
    raws = decode_raw_program(data)
    if not raws:
        raise InvalidInstructionError(None, "the program is empty")
    out: list[LabeledInsn] = []
    pc = 0
    while pc < len(raws):
        next_raw = raws[pc + 1] if pc + 1 < len(raws) else None
        insn = decode(raws[pc], next_raw, pc)
        out.append(LabeledInsn(pc, insn))
        pc += 2 if isinstance(insn, LoadImm64) else 1
    if check_jumps:
        check_jump_targets(out, len(raws))
    return out


def check_jump_targets(insns: Sequence[LabeledInsn], slot_total: int) -> None:
    """Every jump and local call must land on the start of an instruction inside the program."""
    starts = {item.pc for item in insns}
    for item in insns:
        target = jump_target(item.pc, item.insn)
        if target is None:
            continue
        kind = "call" if isinstance(item.insn, CallLocal) else "jump"
        if not 0 <= target < slot_total:
            raise InvalidInstructionError(
                item.pc, f"{kind} out of range: target pc {target} is outside the program (0..{slot_total - 1})"
            )
        if target not in starts:
            raise InvalidInstructionError(
                item.pc, f"{kind} into the middle of an lddw: target pc {target} is its second slot"
            )
    for item in insns:
        if isinstance(item.insn, LoadImm64) and item.insn.src is PseudoSrc.FUNC:
            target = item.pc + 1 + item.insn.imm
            if target not in starts:
                raise InvalidInstructionError(
                    item.pc, f"function address out of range: target pc {target} is not an instruction"
                )
