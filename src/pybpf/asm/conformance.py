"""The bpf_conformance / uBPF assembly syntax: ``mov %r0, 1``, ``ldxb %r0, [%r1+2]``, ``jeq %r1, 0, +2``.

One instruction per line; ``#`` starts a comment; ``name:`` defines a label (alone on its line
or before an instruction). Jump targets are labels or signed offsets (``+3``, ``-1``).
Mnemonics take a ``32`` suffix for the 32-bit (ALU/JMP32) forms and an optional ``64``.

Beyond what the suite uses, these spellings cover the rest of the instruction set (and are what
``format_conformance`` prints):

- ``ldabsb/h/w IMM`` and ``ldindb/h/w %rN, IMM``: legacy packet loads (uBPF's names);
- ``call helper N`` (= ``call N``), ``call local LABEL|+N``, ``call runtime N[, MODULE]`` (kfunc),
  ``call %rN`` (callx: register in the dst field, imm 0, as LLVM encodes it);
- ``ja32 TARGET`` (gotol, 32-bit offset), ``may_goto TARGET``;
- ``ldacqb/h/w/dw %rD, [%rS+off]`` (load-acquire) and ``strelb/h/w/dw [%rD+off], %rS``
  (store-release);
- ``lddw %rN, map_fd FD`` / ``map_value FD, OFF`` / ``map_idx IDX`` / ``map_idx_value IDX, OFF`` /
  ``btf_id ID`` / ``func TARGET``: the pseudo sources of ``lddw``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

from pybpf.asm._builder import LabelRef, ProgramBuilder
from pybpf.asm._scan import (
    Cursor,
    check_imm32,
    check_imm64,
    check_int32,
    check_off16,
    check_uint32,
)
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
    Store,
)
from pybpf.isa.opcodes import MAX_REGISTER, AtomicCode, EndianOrder, Mode, PseudoSrc, Size

_LABEL = re.compile(r"\s*([A-Za-z_.][\w.]*)\s*:")
_MNEMONIC = re.compile(r"[A-Za-z_][\w]*")
_REGISTER = re.compile(r"%(\w*)")

_SIZES = {"b": Size.B, "h": Size.H, "w": Size.W, "dw": Size.DW}
_SIZE_NAMES = {size: name for name, size in _SIZES.items()}

_ALU_OPS = {
    "add": BinOp.ADD,
    "sub": BinOp.SUB,
    "mul": BinOp.MUL,
    "div": BinOp.DIV,
    "sdiv": BinOp.SDIV,
    "or": BinOp.OR,
    "and": BinOp.AND,
    "lsh": BinOp.LSH,
    "rsh": BinOp.RSH,
    "mod": BinOp.MOD,
    "smod": BinOp.SMOD,
    "xor": BinOp.XOR,
    "mov": BinOp.MOV,
    "arsh": BinOp.ARSH,
}
_ALU_NAMES = {op: name for name, op in _ALU_OPS.items()}

# movsx<from><to>: movsx864 sign-extends 8 bits into 64 (ALU64, off=8); movsx832 into 32 (ALU).
_MOVSX = {
    "movsx832": (BinOp.MOVSX8, False),
    "movsx864": (BinOp.MOVSX8, True),
    "movsx1632": (BinOp.MOVSX16, False),
    "movsx1664": (BinOp.MOVSX16, True),
    "movsx3264": (BinOp.MOVSX32, True),
}
_MOVSX_NAMES = {value: name for name, value in _MOVSX.items()}

_JMP_OPS = {
    "jeq": Cond.JEQ,
    "jgt": Cond.JGT,
    "jge": Cond.JGE,
    "jset": Cond.JSET,
    "jne": Cond.JNE,
    "jsgt": Cond.JSGT,
    "jsge": Cond.JSGE,
    "jlt": Cond.JLT,
    "jle": Cond.JLE,
    "jslt": Cond.JSLT,
    "jsle": Cond.JSLE,
}
_JMP_NAMES = {cond: name for name, cond in _JMP_OPS.items()}

_ENDIAN = {"be": EndianOrder.BE, "le": EndianOrder.LE, "bswap": EndianOrder.SWAP, "swap": EndianOrder.SWAP}
_ENDIAN_NAMES = {EndianOrder.BE: "be", EndianOrder.LE: "le", EndianOrder.SWAP: "bswap"}

# (operation, fetch) -> atomic code; xchg and cmpxchg always fetch.
_ATOMIC_OPS = {
    ("add", False): AtomicCode.ADD,
    ("or", False): AtomicCode.OR,
    ("and", False): AtomicCode.AND,
    ("xor", False): AtomicCode.XOR,
    ("add", True): AtomicCode.FETCH_ADD,
    ("or", True): AtomicCode.FETCH_OR,
    ("and", True): AtomicCode.FETCH_AND,
    ("xor", True): AtomicCode.FETCH_XOR,
    ("xchg", False): AtomicCode.XCHG,
    ("xchg", True): AtomicCode.XCHG,
    ("cmpxchg", False): AtomicCode.CMPXCHG,
    ("cmpxchg", True): AtomicCode.CMPXCHG,
}
_ATOMIC_NAMES = {
    AtomicCode.ADD: "add",
    AtomicCode.OR: "or",
    AtomicCode.AND: "and",
    AtomicCode.XOR: "xor",
    AtomicCode.FETCH_ADD: "fetch add",
    AtomicCode.FETCH_OR: "fetch or",
    AtomicCode.FETCH_AND: "fetch and",
    AtomicCode.FETCH_XOR: "fetch xor",
    AtomicCode.XCHG: "xchg",
    AtomicCode.CMPXCHG: "cmpxchg",
}

_PSEUDO = {
    "map_fd": PseudoSrc.MAP_FD,
    "map_value": PseudoSrc.MAP_VALUE,
    "btf_id": PseudoSrc.BTF_ID,
    "func": PseudoSrc.FUNC,
    "map_idx": PseudoSrc.MAP_IDX,
    "map_idx_value": PseudoSrc.MAP_IDX_VALUE,
}
_PSEUDO_NAMES = {src: name for name, src in _PSEUDO.items()}
_PSEUDO_WITH_OFFSET = frozenset({PseudoSrc.MAP_VALUE, PseudoSrc.MAP_IDX_VALUE})


# ---------------------------------------------------------------------------------------------
# Operands


def _register(cursor: Cursor) -> Reg:
    column = cursor.column
    found = cursor.match(_REGISTER)
    if not found:
        rest = cursor.rest()
        raise cursor.error(f"expected a register (%r0-%r10), found {rest[:20]!r}" if rest else "expected a register")
    name = found.group(1)
    if not re.fullmatch(r"r[0-9]+", name) or int(name[1:]) > MAX_REGISTER:
        raise cursor.error(f"invalid register '%{name}' (registers are %r0-%r10)", column)
    return Reg(int(name[1:]))


def _only_register(cursor: Cursor) -> Reg:
    reg = _register(cursor)
    cursor.end()
    return reg


def _imm32(cursor: Cursor) -> int:
    value = check_imm32(cursor, cursor.number("an immediate"))
    cursor.end()
    return value


def _operand(cursor: Cursor) -> Operand:
    if cursor.peek("%"):
        return _only_register(cursor)
    return Imm(_imm32(cursor))


def _memory(cursor: Cursor) -> tuple[Reg, int]:
    """``[%rN+off]``, ``[%rN-off]`` or ``[%rN]``."""
    if not cursor.accept("["):
        raise cursor.error(f"expected a memory operand [%rN+offset], found {cursor.rest()[:20]!r}")
    reg = _register(cursor)
    offset = 0
    if cursor.peek("+") or cursor.peek("-"):
        offset = check_off16(cursor, cursor.number("an offset"))
    cursor.expect("]", "to close the memory operand [%rN+offset]")
    cursor.end()
    return reg, offset


def _target(cursor: Cursor, bits: int) -> tuple[int, LabelRef | None]:
    """A jump target: a label (resolved later, offset 0 for now) or a signed offset."""
    named = cursor.ident()
    if named is not None:
        cursor.end()
        return 0, LabelRef(named[0], cursor.line, named[1])
    number = cursor.number("a jump target (a label or a signed offset like +3)")
    cursor.end()
    if bits == 16:
        return check_off16(cursor, number, "jump offset"), None
    return check_int32(cursor, number, "jump offset"), None


def _count(mnemonic: str, operands: Sequence[Cursor], line: Cursor, shape: Sequence[str]) -> None:
    if len(operands) != len(shape):
        wanted = ", ".join(shape) if shape else "no operands"
        noun = "operand" if len(shape) == 1 else "operands"
        column = operands[len(shape)].column if len(operands) > len(shape) else len(line.text.rstrip()) + 1
        raise line.error(
            f"wrong operand count: '{mnemonic}' takes {len(shape)} {noun} ({wanted}), found {len(operands)}",
            column,
        )


# ---------------------------------------------------------------------------------------------
# Instructions: each handler gets a _Stmt: the mnemonic, one cursor per comma-separated
# operand, the cursor of the whole line (for errors at its end) and the builder.


@dataclass(frozen=True, slots=True)
class _Stmt:
    mnemonic: str
    ops: list[Cursor]
    line: Cursor
    out: ProgramBuilder

    def count(self, shape: Sequence[str]) -> None:
        _count(self.mnemonic, self.ops, self.line, shape)


Handler = Callable[[_Stmt], None]


def _alu(op: BinOp, is64: bool, s: _Stmt) -> None:
    s.count(("%dst", "%src or immediate"))
    dst = _only_register(s.ops[0])
    s.out.add(Bin(op, dst, _operand(s.ops[1]), is64))


def _movsx(op: BinOp, is64: bool, s: _Stmt) -> None:
    s.count(("%dst", "%src"))
    s.out.add(Bin(op, _only_register(s.ops[0]), _only_register(s.ops[1]), is64))


def _addr_space_cast(s: _Stmt) -> None:
    """``addr_space_cast %dst, %src, DST_AS, SRC_AS`` (our spelling: the suite has no arena form)."""
    s.count(("%dst", "%src", "destination address space", "source address space"))
    spaces = []
    for cursor, what in zip(s.ops[2:], ("destination", "source"), strict=True):
        number = cursor.number(f"the {what} address space")
        if not 0 <= number.value <= 0xFFFF:
            raise cursor.error(f"{what} address space {number.text.strip()} is out of range (0..0xffff)",
                               number.column)
        spaces.append(number.value)
    s.out.add(AddrSpaceCast(_only_register(s.ops[0]), _only_register(s.ops[1]), spaces[0], spaces[1]))


def _neg(is64: bool, s: _Stmt) -> None:
    s.count(("%dst",))
    s.out.add(Neg(_only_register(s.ops[0]), is64))


def _endian(order: EndianOrder, width: int, s: _Stmt) -> None:
    s.count(("%dst",))
    s.out.add(Endian(_only_register(s.ops[0]), width, order))


def _lddw(s: _Stmt) -> None:
    if len(s.ops) < 2:
        s.count(("%dst", "64-bit immediate"))
    dst = _only_register(s.ops[0])
    value = s.ops[1]
    kind = value.ident() if not (value.peek("+") or value.peek("-")) else None
    if kind is None:
        s.count(("%dst", "64-bit immediate"))
        number = value.number("a 64-bit immediate")
        value.end()
        s.out.add(LoadImm64.constant(dst, check_imm64(value, number)))
        return
    name, column = kind
    if name not in _PSEUDO:
        known = ", ".join(_PSEUDO)
        raise value.error(f"unknown lddw source '{name}' (a number, or one of: {known})", column)
    src = _PSEUDO[name]
    # The second immediate is required by the map value forms, optional (0) for the others.
    if src in _PSEUDO_WITH_OFFSET or len(s.ops) > 2:
        s.count(("%dst", f"{name} N", "second immediate"))
    else:
        s.count(("%dst", f"{name} N"))
    if src is PseudoSrc.FUNC:
        imm, ref = _target(value, 32)
    else:
        imm, ref = check_uint32(value, value.number(f"the {name} number"), name), None
        value.end()
    next_imm = _imm32(s.ops[2]) if len(s.ops) == 3 else 0
    s.out.add(LoadImm64(dst, imm, next_imm, src), ref)


def _ldx(size: Size, sign: bool, s: _Stmt) -> None:
    s.count(("%dst", "[%src+offset]"))
    dst = _only_register(s.ops[0])
    src, offset = _memory(s.ops[1])
    s.out.add(Load(size, dst, src, offset, sign))


def _st(size: Size, s: _Stmt) -> None:
    s.count(("[%dst+offset]", "immediate"))
    dst, offset = _memory(s.ops[0])
    s.out.add(Store(size, dst, offset, Imm(_imm32(s.ops[1]))))


def _stx(size: Size, s: _Stmt) -> None:
    s.count(("[%dst+offset]", "%src"))
    dst, offset = _memory(s.ops[0])
    s.out.add(Store(size, dst, offset, _only_register(s.ops[1])))


def _ldabs(size: Size, s: _Stmt) -> None:
    s.count(("immediate",))
    s.out.add(PacketLoad(size, Mode.ABS, None, _imm32(s.ops[0])))


def _ldind(size: Size, s: _Stmt) -> None:
    s.count(("%src", "immediate"))
    s.out.add(PacketLoad(size, Mode.IND, _only_register(s.ops[0]), _imm32(s.ops[1])))


def _ldacq(size: Size, s: _Stmt) -> None:
    s.count(("%dst", "[%src+offset]"))
    dst = _only_register(s.ops[0])
    src, offset = _memory(s.ops[1])
    s.out.add(Atomic(AtomicCode.LOAD_ACQ, size, dst, offset, src))


def _strel(size: Size, s: _Stmt) -> None:
    s.count(("[%dst+offset]", "%src"))
    dst, offset = _memory(s.ops[0])
    s.out.add(Atomic(AtomicCode.STORE_REL, size, dst, offset, _only_register(s.ops[1])))


def _jump(cond: Cond, is32: bool, s: _Stmt) -> None:
    s.count(("%dst", "%src or immediate", "target"))
    dst = _only_register(s.ops[0])
    src = _operand(s.ops[1])
    offset, ref = _target(s.ops[2], 16)
    s.out.add(Jump(cond, dst, src, offset, is32), ref)


def _ja(long: bool, s: _Stmt) -> None:
    s.count(("target",))
    offset, ref = _target(s.ops[0], 32 if long else 16)
    s.out.add(Goto(offset, long), ref)


def _may_goto(s: _Stmt) -> None:
    s.count(("target",))
    offset, ref = _target(s.ops[0], 16)
    s.out.add(MayGoto(offset), ref)


def _exit(s: _Stmt) -> None:
    s.count(())
    s.out.add(Exit())


def _call(s: _Stmt) -> None:
    if not s.ops:
        s.count(("helper number, local TARGET or %register",))
    first = s.ops[0]
    if first.peek("%"):
        s.count(("%register",))
        s.out.add(CallReg(_only_register(first)))
        return
    mode = first.ident()
    if mode is None or mode[0] == "helper":
        s.count(("helper number",))
        s.out.add(Call(_imm32(first)))
        return
    if mode[0] == "local":
        s.count(("local TARGET",))
        offset, ref = _target(first, 32)
        s.out.add(CallLocal(offset), ref)
        return
    if mode[0] in ("runtime", "kfunc"):
        if len(s.ops) == 2:
            module = check_off16(s.ops[1], s.ops[1].number("a module BTF index"), "module index")
            s.ops[1].end()
        else:
            s.count(("runtime BTF_ID",))
            module = 0
        s.out.add(CallKfunc(_imm32(first), module))
        return
    raise first.error(
        f"unknown call form '{mode[0]}' (expected N, helper N, local TARGET, runtime N or %register)", mode[1]
    )


def _build_table() -> dict[str, Handler]:
    table: dict[str, Handler] = {}
    for name, op in _ALU_OPS.items():
        table[name] = partial(_alu, op, True)
        table[name + "64"] = partial(_alu, op, True)
        table[name + "32"] = partial(_alu, op, False)
    for name, (op, is64) in _MOVSX.items():
        table[name] = partial(_movsx, op, is64)
    table["addr_space_cast"] = _addr_space_cast
    table["neg"] = table["neg64"] = partial(_neg, True)
    table["neg32"] = partial(_neg, False)
    for name, order in _ENDIAN.items():
        for width in (16, 32, 64):
            table[f"{name}{width}"] = partial(_endian, order, width)
    table["lddw"] = _lddw
    for suffix, size in _SIZES.items():
        table["ldx" + suffix] = partial(_ldx, size, False)
        table["st" + suffix] = partial(_st, size)
        table["stx" + suffix] = partial(_stx, size)
        table["ldabs" + suffix] = partial(_ldabs, size)
        table["ldind" + suffix] = partial(_ldind, size)
        table["ldacq" + suffix] = partial(_ldacq, size)
        table["strel" + suffix] = partial(_strel, size)
        if size is not Size.DW:
            table["ldxs" + suffix] = partial(_ldx, size, True)
    for name, cond in _JMP_OPS.items():
        table[name] = partial(_jump, cond, False)
        table[name + "32"] = partial(_jump, cond, True)
    table["ja"] = partial(_ja, False)
    table["ja32"] = table["gotol"] = partial(_ja, True)
    table["may_goto"] = _may_goto
    table["exit"] = _exit
    table["call"] = _call
    return table


_HANDLERS = _build_table()
MNEMONICS = frozenset(_HANDLERS) | {"lock"}


def _split_operands(line: Cursor) -> list[Cursor]:
    """One cursor per comma-separated operand of the rest of the line."""
    if line.at_end():
        return []
    out = []
    start = line.pos
    text = line.text
    while True:
        comma = text.find(",", start, line.limit)
        end = line.limit if comma < 0 else comma
        operand = Cursor(text, line.line, start, end)
        if operand.at_end():
            raise line.error("empty operand (two commas in a row, or a trailing comma)", end + 1)
        out.append(operand)
        if comma < 0:
            return out
        start = comma + 1


def _lock(line: Cursor, out: ProgramBuilder) -> None:
    usage = "'lock [fetch] OP [%dst+offset], %src' with OP one of add, or, and, xor, xchg, cmpxchg (32 suffix: 4 bytes)"
    fetch = False
    word = line.ident()
    if word is not None and word[0].lower() == "fetch":
        fetch = True
        word = line.ident()
    if word is None:
        raise line.error(f"invalid number of operands for lock: expected {usage}")
    name, column = word[0].lower(), word[1]
    size = Size.DW
    if name.endswith("32"):
        name, size = name[:-2], Size.W
    elif name.endswith("64"):
        name = name[:-2]
    if (name, fetch) not in _ATOMIC_OPS:
        raise line.error(f"unknown atomic operation '{word[0]}' after lock: expected {usage}", column)
    ops = _split_operands(line)
    _count(f"lock {'fetch ' if fetch else ''}{word[0]}", ops, line, ("[%dst+offset]", "%src"))
    dst, offset = _memory(ops[0])
    out.add(Atomic(_ATOMIC_OPS[(name, fetch)], size, dst, offset, _only_register(ops[1])))


def parse_conformance(text: str) -> list[LabeledInsn]:
    """Assemble conformance-syntax text. Raises ``AssemblerError`` naming line and column."""
    out = ProgramBuilder(exit_label=True)
    for number, raw_line in enumerate(text.splitlines(), 1):
        code = raw_line.split("#", 1)[0]
        line = Cursor(code, number)
        while (label := _LABEL.match(code, line.pos)) is not None:
            out.label(label.group(1), number, label.start(1) + 1)
            line.pos = label.end()
        if line.at_end():
            continue
        column = line.column
        found = line.match(_MNEMONIC)
        if found is None:
            raise line.error(f"expected a mnemonic, found {line.rest()[:20]!r}")
        mnemonic = found.group(0).lower()
        if mnemonic == "lock":
            _lock(line, out)
            continue
        handler = _HANDLERS.get(mnemonic)
        if handler is None:
            raise line.error(f"unknown mnemonic '{found.group(0)}'", column)
        handler(_Stmt(mnemonic, _split_operands(line), line, out))
    return out.build()


# ---------------------------------------------------------------------------------------------
# Printing


def _reg_text(reg: Reg) -> str:
    return f"%r{int(reg)}"


def _mem_text(reg: Reg, offset: int) -> str:
    if offset == 0:
        return f"[{_reg_text(reg)}]"
    return f"[{_reg_text(reg)}{offset:+d}]"


def _operand_text(src: Operand) -> str:
    return str(src.value) if isinstance(src, Imm) else _reg_text(src)


def format_conformance_insn(insn: Instruction) -> str:
    """One instruction in conformance syntax (jump targets as signed offsets)."""
    match insn:
        case Bin(op, dst, src, is64) if op in _ALU_NAMES:
            return f"{_ALU_NAMES[op]}{'' if is64 else '32'} {_reg_text(dst)}, {_operand_text(src)}"
        case Bin(op, dst, src, is64):
            return f"{_MOVSX_NAMES[(op, is64)]} {_reg_text(dst)}, {_operand_text(src)}"
        case AddrSpaceCast(dst, src, dst_as, src_as):
            return f"addr_space_cast {_reg_text(dst)}, {_reg_text(src)}, {dst_as}, {src_as}"
        case Neg(dst, is64):
            return f"neg{'' if is64 else '32'} {_reg_text(dst)}"
        case Endian(dst, width, order):
            return f"{_ENDIAN_NAMES[order]}{width} {_reg_text(dst)}"
        case LoadImm64(dst, imm, next_imm, src) if src is PseudoSrc.IMM64:
            return f"lddw {_reg_text(dst)}, {insn.value:#x}"
        case LoadImm64(dst, imm, next_imm, src):
            value = f"{imm:+d}" if src is PseudoSrc.FUNC else str(imm & 0xFFFFFFFF)
            extra = f", {next_imm}" if next_imm or src in _PSEUDO_WITH_OFFSET else ""
            return f"lddw {_reg_text(dst)}, {_PSEUDO_NAMES[src]} {value}{extra}"
        case Load(size, dst, src, off, sign_extend):
            return f"ldx{'s' if sign_extend else ''}{_SIZE_NAMES[size]} {_reg_text(dst)}, {_mem_text(src, off)}"
        case Store(size, dst, off, Imm(value)):
            return f"st{_SIZE_NAMES[size]} {_mem_text(dst, off)}, {value}"
        case Store(size, dst, off, src):
            return f"stx{_SIZE_NAMES[size]} {_mem_text(dst, off)}, {_operand_text(src)}"
        case PacketLoad(size, Mode.ABS, _, imm):
            return f"ldabs{_SIZE_NAMES[size]} {imm}"
        case PacketLoad(size, _, src, imm):
            index = Reg.R0 if src is None else src
            return f"ldind{_SIZE_NAMES[size]} {_reg_text(index)}, {imm}"
        case Atomic(AtomicCode.LOAD_ACQ, size, dst, off, src):
            return f"ldacq{_SIZE_NAMES[size]} {_reg_text(dst)}, {_mem_text(src, off)}"
        case Atomic(AtomicCode.STORE_REL, size, dst, off, src):
            return f"strel{_SIZE_NAMES[size]} {_mem_text(dst, off)}, {_reg_text(src)}"
        case Atomic(op, size, dst, off, src):
            suffix = "32" if size is Size.W else ""
            return f"lock {_ATOMIC_NAMES[op]}{suffix} {_mem_text(dst, off)}, {_reg_text(src)}"
        case Jump(cond, dst, src, off, is32):
            name = _JMP_NAMES[cond] + ("32" if is32 else "")
            return f"{name} {_reg_text(dst)}, {_operand_text(src)}, {off:+d}"
        case Goto(off, long):
            return f"{'ja32' if long else 'ja'} {off:+d}"
        case MayGoto(off):
            return f"may_goto {off:+d}"
        case Call(helper):
            return f"call {helper}"
        case CallLocal(off):
            return f"call local {off:+d}"
        case CallKfunc(btf_id, module):
            return f"call runtime {btf_id}" + (f", {module}" if module else "")
        case CallReg(reg):
            return f"call {_reg_text(reg)}"
        case Exit():
            return "exit"
    raise TypeError(f"not an instruction: {insn!r}")


def format_conformance(insns: Sequence[Instruction | LabeledInsn]) -> str:
    """A whole program in conformance syntax, one instruction per line."""
    lines = [format_conformance_insn(item.insn if isinstance(item, LabeledInsn) else item) for item in insns]
    return "".join(line + "\n" for line in lines)
