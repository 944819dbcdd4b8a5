"""The LLVM / kernel assembly syntax: ``r0 = *(u32 *)(r1 + 0x4)``, ``if r1 > 0x5 goto +0x3``.

``parse_llvm`` reads what ``pybpf.asm.printer.format_program`` prints in every mode, and
``llvm-objdump -d`` listings: it strips the pc column (``  12:``), the raw-bytes column,
trailing ``<LBB0_2>`` / ``<f+0x10>`` annotations, ``;`` comment lines (``llvm-objdump -S``
source lines) and the objdump header lines. Labels are ``LBB0_2:`` lines or objdump's
``0000000000000030 <LBB0_2>:``; jumps and calls may name them (``goto LBB0_2``,
``call my_func``). Numbers are decimal or hex (LLVM 14 prints decimal, LLVM 19 hex). A
``<unknown>`` line whose raw bytes are present is decoded from those bytes.
"""

from __future__ import annotations

import re

from pybpf.asm._builder import LabelRef, ProgramBuilder
from pybpf.asm._scan import (
    Cursor,
    Number,
    check_imm32,
    check_imm64,
    check_int32,
    check_off16,
    check_uint32,
)
from pybpf.asm.printer import BIN_OPERATORS, COND_OPERATORS, FETCH_NAMES, LOCK_OPERATORS
from pybpf.errors import AssemblerError, InvalidInstructionError
from pybpf.isa.codec import decode
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
    RawInsn,
    Reg,
    Store,
)
from pybpf.isa.opcodes import MAX_REGISTER, SIZE_FOR_BYTES, AtomicCode, EndianOrder, Mode, PseudoSrc, Size

_HEADER = re.compile(r"\s*(?:\S.*:\s+file format \S+|Disassembly of section \S*:)\s*$")
_SYMBOL = re.compile(r"\s*[0-9a-fA-F]+\s+<([A-Za-z_.][\w.]*)>:\s*$")
_LABEL = re.compile(r"\s*([A-Za-z_.][\w.]*)\s*:\s*$")
_PC = re.compile(r"\s*\d+:")
_BYTE = r"[0-9a-fA-F]{2}"
_BYTES = re.compile(rf"\s*({_BYTE}(?:[ \t]{_BYTE}){{7}}(?:[ \t]{_BYTE}(?:[ \t]{_BYTE}){{7}})?)(?=\s|$)")
_ANNOTATION = re.compile(r"\s<[^<>]*>\s*$")

_REGISTER = re.compile(r"([rw])(\d+)(?!\w)")
_TYPE = re.compile(r"\(\s*([us])(8|16|32|64)\s*\*\s*\)")
_CAST = re.compile(r"\(\s*s(8|16|32)\s*\)")
_ASSIGN = re.compile(r"s>>=|s/=|s%=|<<=|>>=|\+=|-=|\*=|/=|%=|\|=|&=|\^=|=")
_COND = re.compile(r"s>=|s<=|s>|s<|==|!=|>=|<=|>|<|&")
_ENDIAN = re.compile(r"(be|le|bswap)(16|32|64)(?!\w)")
_NEG = re.compile(r"-\s*(?=[rw]\d)")

_BINOPS = {text: op for op, text in BIN_OPERATORS.items()}
_CONDS = {text: cond for cond, text in COND_OPERATORS.items()}
_LOCKS = {text: op for op, text in LOCK_OPERATORS.items()}
_FETCHES = {name: op for op, name in FETCH_NAMES.items()}
_ENDIANS = {"be": EndianOrder.BE, "le": EndianOrder.LE, "bswap": EndianOrder.SWAP}
_MOVSX = {"8": BinOp.MOVSX8, "16": BinOp.MOVSX16, "32": BinOp.MOVSX32}
_RMW_SIZES = frozenset({Size.W, Size.DW})

Parsed = tuple[Instruction, LabelRef | None]


# ---------------------------------------------------------------------------------------------
# Operands


class _Register:
    """A register as written: ``r3`` (64-bit view) or ``w3`` (32-bit view)."""

    __slots__ = ("column", "reg", "wide")

    def __init__(self, reg: Reg, wide: bool, column: int) -> None:
        self.reg = reg
        self.wide = wide
        self.column = column

    def __str__(self) -> str:
        return f"{'r' if self.wide else 'w'}{int(self.reg)}"


def _try_register(c: Cursor) -> _Register | None:
    c.skip_space()
    column = c.column
    found = c.match(_REGISTER)
    if found is None:
        return None
    number = int(found.group(2))
    if number > MAX_REGISTER:
        raise c.error(f"invalid register '{found.group(0)}' (registers are r0-r10, w0-w10)", column)
    return _Register(Reg(number), found.group(1) == "r", column)


def _register(c: Cursor, what: str = "a register") -> _Register:
    reg = _try_register(c)
    if reg is None:
        rest = c.rest()
        raise c.error(f"expected {what}, found {rest[:20]!r}" if rest else f"expected {what}")
    return reg


def _wide_register(c: Cursor, what: str = "a 64-bit register (r0-r10)") -> Reg:
    reg = _register(c, what)
    if not reg.wide:
        raise c.error(f"expected {what}, found {reg}", reg.column)
    return reg.reg


def _same_width(c: Cursor, first: _Register, second: _Register) -> None:
    if first.wide != second.wide:
        raise c.error(
            f"mixed register widths {first} and {second}: use rN on both sides (64-bit) or wN (32-bit)",
            second.column,
        )


def _signed_offset(c: Cursor) -> int:
    """``+ 0x4`` / ``- 0x8`` / nothing, after a register in an address."""
    c.skip_space()
    column = c.column
    if c.accept("+"):
        sign = 1
    elif c.accept("-"):
        sign = -1
    else:
        return 0
    number = c.number("an offset")
    if number.text.lstrip().startswith(("+", "-")):
        raise c.error("two signs in an offset", number.column)
    value = sign * number.value
    return check_off16(c, Number(value, number.is_hex, column, f"{'-' if sign < 0 else '+'}{number.text}"))


def _address(c: Cursor) -> tuple[Reg, int]:
    """``r1 + 0x4`` (without parentheses)."""
    reg = _wide_register(c, "an address register (r0-r10)")
    return reg, _signed_offset(c)


def _type(c: Cursor) -> tuple[Size, bool, int]:
    """``(u32 *)`` -> (size, signed, column)."""
    c.skip_space()
    column = c.column
    found = c.match(_TYPE)
    if found is None:
        raise c.error(f"expected a pointer type like (u32 *), found {c.rest()[:20]!r}")
    return SIZE_FOR_BYTES[int(found.group(2)) // 8], found.group(1) == "s", column


def _memory(c: Cursor) -> tuple[Size, bool, Reg, int, int]:
    """``*(u32 *)(r1 + 0x4)`` after the ``*`` -> (size, signed, reg, off, column of the type)."""
    size, signed, column = _type(c)
    c.expect("(", "before the address (rN + offset)")
    reg, off = _address(c)
    c.expect(")", "after the address")
    return size, signed, reg, off, column


def _operand(c: Cursor, dst: _Register) -> Operand:
    """A register (of the same width as ``dst``) or a 32-bit immediate."""
    reg = _try_register(c)
    if reg is not None:
        _same_width(c, dst, reg)
        return reg.reg
    return Imm(check_imm32(c, c.number("a register or an immediate")))


def _target(c: Cursor, bits: int) -> tuple[int, LabelRef | None]:
    named = c.ident()
    if named is not None:
        return 0, LabelRef(named[0], c.line, named[1])
    number = c.number("a jump target (+0x3, -1 or a label)")
    if bits == 16:
        return check_off16(c, number, "jump offset"), None
    return check_int32(c, number, "jump offset"), None


def _keyword(c: Cursor, word: str) -> bool:
    """Accept ``word`` only as a whole word."""
    c.skip_space()
    found = re.compile(re.escape(word) + r"(?!\w)").match(c.text, c.pos, c.limit)
    if found is None:
        return False
    c.pos = found.end()
    return True


# ---------------------------------------------------------------------------------------------
# Instruction forms


def _jump(c: Cursor) -> Parsed:
    dst = _register(c)
    c.skip_space()
    column = c.column
    found = c.match(_COND)
    if found is None:
        raise c.error(f"expected a comparison (==, !=, >, s>=, &...), found {c.rest()[:10]!r}", column)
    src = _operand(c, dst)
    if not _keyword(c, "goto"):
        raise c.error("expected 'goto' after the condition")
    off, ref = _target(c, 16)
    return Jump(_CONDS[found.group(0)], dst.reg, src, off, not dst.wide), ref


def _call(c: Cursor) -> Parsed:
    c.skip_space()
    if _keyword(c, "pc"):
        number = c.number("a call offset like pc+0x3")
        return CallLocal(check_int32(c, number, "call offset")), None
    if _keyword(c, "kfunc"):
        btf_id = check_imm32(c, c.number("a kfunc BTF id"), "BTF id")
        module = 0
        if c.accept(","):
            if not _keyword(c, "module"):
                raise c.error("expected 'module N' after the kfunc id")
            module = check_off16(c, c.number("a module BTF index"), "module index")
        return CallKfunc(btf_id, module), None
    named = c.ident()
    if named is not None:
        return CallLocal(0), LabelRef(named[0], c.line, named[1])
    return Call(check_imm32(c, c.number("a helper number, pc+N, kfunc N or a label"), "helper number")), None


def _lock(c: Cursor) -> Parsed:
    c.expect("*", "(lock *(u64 *)(rN + off) += rM)")
    size, signed, dst, off, column = _memory(c)
    if signed or size not in _RMW_SIZES:
        raise c.error("atomic operations exist only on u32 and u64", column)
    c.skip_space()
    op_column = c.column
    found = c.match(re.compile(r"\+=|\|=|&=|\^="))
    if found is None:
        raise c.error("expected one of += |= &= ^= after the lock operand", op_column)
    src = _register(c)
    _check_atomic_width(c, size, src)
    return Atomic(_LOCKS[found.group(0)], size, dst, off, src.reg), None


def _check_atomic_width(c: Cursor, size: Size, reg: _Register) -> None:
    # LLVM prints wN for 32-bit atomics only with +alu32; accept rN there too, never wN on u64.
    if size is Size.DW and not reg.wide:
        raise c.error(f"a 64-bit atomic operand must be an r register, found {reg}", reg.column)


def _store(c: Cursor) -> Parsed:
    size, signed, dst, off, column = _memory(c)
    if signed:
        raise c.error("a store type must be unsigned (u8, u16, u32, u64)", column)
    c.expect("=", "(a store: *(u32 *)(rN + off) = value)")
    reg = _try_register(c)
    if reg is not None:
        if size is Size.DW and not reg.wide:
            raise c.error(f"a 64-bit store needs an r register, found {reg}", reg.column)
        return Store(size, dst, off, reg.reg), None
    return Store(size, dst, off, Imm(check_imm32(c, c.number("a register or an immediate")))), None


def _store_release(c: Cursor) -> Parsed:
    c.expect("(", "after store_release")
    size, signed, column = _type(c)
    if signed:
        raise c.error("store_release takes an unsigned type", column)
    c.expect("(", "before the address")
    dst, off = _address(c)
    c.expect(")", "after the address")
    c.expect(",", "between the address and the value")
    src = _register(c)
    _check_atomic_width(c, size, src)
    c.expect(")", "to close store_release(...)")
    return Atomic(AtomicCode.STORE_REL, size, dst, off, src.reg), None


def _fetch(c: Cursor, dst: _Register, name: str, name_column: int) -> Parsed:
    c.expect("(", f"after {name}")
    size, signed, column = _type(c)
    if signed or size not in _RMW_SIZES:
        raise c.error(f"{name} exists only on u32 and u64", column)
    c.expect("(", "before the address")
    addr, off = _address(c)
    c.expect(")", "after the address")
    c.expect(",", "between the address and the value")
    src = _register(c)
    c.expect(")", f"to close {name}(...)")
    _check_atomic_width(c, size, src)
    _check_writeback(c, dst, src, name)
    return Atomic(_FETCHES[name], size, addr, off, src.reg), None


def _check_writeback(c: Cursor, dst: _Register, src: _Register, name: str) -> None:
    # The encoding has one register: the old value comes back in the source register.
    if dst.reg != src.reg:
        raise c.error(f"{name} returns the old value in its source register: write {src} = {name}(...)", dst.column)


def _xchg(c: Cursor, dst: _Register, name: str, compare: bool) -> Parsed:
    size = Size.DW if name.endswith("_64") else Size.W
    c.expect("(", f"after {name}")
    addr, off = _address(c)
    c.expect(",", "after the address")
    if compare:
        old = _register(c)
        if old.reg != Reg.R0:
            raise c.error(f"{name} compares with r0, found {old}", old.column)
        c.expect(",", "after r0")
    src = _register(c)
    c.expect(")", f"to close {name}(...)")
    _check_atomic_width(c, size, src)
    if compare:
        if dst.reg != Reg.R0:
            raise c.error(f"{name} returns the old value in r0, found {dst}", dst.column)
        return Atomic(AtomicCode.CMPXCHG, size, addr, off, src.reg), None
    _check_writeback(c, dst, src, name)
    return Atomic(AtomicCode.XCHG, size, addr, off, src.reg), None


def _pseudo(c: Cursor, dst: _Register, kind: str, column: int) -> Parsed:
    if not dst.wide:
        raise c.error(f"lddw needs an r register, found {dst}", dst.column)
    if kind == "func":
        if _keyword(c, "pc"):
            number = c.number("a function offset like pc+0x3")
            return LoadImm64(dst.reg, check_int32(c, number, "function offset"), 0, PseudoSrc.FUNC), None
        named = c.ident()
        if named is None:
            raise c.error("expected pc+N or a label after func")
        return LoadImm64(dst.reg, 0, 0, PseudoSrc.FUNC), LabelRef(named[0], c.line, named[1])
    c.expect("[", f"after {kind}")
    c.skip_space()
    key_column = c.column
    key = c.ident()
    allowed = {"map": ("fd", "idx"), "btf": ("id",)}[kind]
    if key is None or key[0] not in allowed:
        raise c.error(f"expected {' or '.join(k + ':' for k in allowed)} inside {kind}[...]", key_column)
    c.expect(":", f"after {key[0]}")
    imm = check_uint32(c, c.number(f"the {kind} {key[0]}"), f"{kind} {key[0]}")
    c.expect("]", f"to close {kind}[...]")
    if kind == "btf":
        return LoadImm64(dst.reg, imm, 0, PseudoSrc.BTF_ID), None
    if c.accept("["):
        c.expect("0", "(map values are written map[fd:N][0]+OFFSET)")
        c.expect("]")
        c.expect("+", "before the value offset")
        next_imm = check_uint32(c, c.number("a value offset"), "value offset")
        src = PseudoSrc.MAP_VALUE if key[0] == "fd" else PseudoSrc.MAP_IDX_VALUE
        return LoadImm64(dst.reg, imm, next_imm, src), None
    src = PseudoSrc.MAP_FD if key[0] == "fd" else PseudoSrc.MAP_IDX
    return LoadImm64(dst.reg, imm, 0, src), None


def _assign_rhs(c: Cursor, dst: _Register) -> Parsed:
    """Everything after ``rN =``."""
    c.skip_space()
    if c.accept("*"):
        size, signed, column = _type(c)
        if c.accept("skb"):
            return _packet(c, dst, size, signed, column)
        c.expect("(", "before the address (rN + offset)")
        base, off = _address(c)
        c.expect(")", "after the address")
        if signed and size is Size.DW:
            raise c.error("there is no sign-extending 64-bit load (use u64)", column)
        if size is Size.DW and not dst.wide:
            raise c.error(f"a 64-bit load needs an r register, found {dst}", dst.column)
        return Load(size, dst.reg, base, off, signed), None
    cast = c.match(_CAST)
    if cast is not None:
        op = _MOVSX[cast.group(1)]
        if op is BinOp.MOVSX32 and not dst.wide:
            raise c.error("(s32) sign extension exists only for r registers")
        src = _register(c)
        _same_width(c, dst, src)
        return Bin(op, dst.reg, src.reg, dst.wide), None
    if c.match(_NEG) is not None:
        src = _register(c)
        if src.reg != dst.reg or src.wide != dst.wide:
            raise c.error(f"negation is in place: write {dst} = -{dst}", src.column)
        return Neg(dst.reg, dst.wide), None
    endian = c.match(_ENDIAN)
    if endian is not None:
        src = _register(c)
        if src.reg != dst.reg:
            raise c.error(f"byte swaps are in place: write {dst} = {endian.group(0)} {dst}", src.column)
        return Endian(dst.reg, int(endian.group(2)), _ENDIANS[endian.group(1)]), None
    reg = _try_register(c)
    if reg is not None:
        _same_width(c, dst, reg)
        return Bin(BinOp.MOV, dst.reg, reg.reg, dst.wide), None
    column = c.column
    named = c.ident()
    if named is not None:
        return _named_rhs(c, dst, named[0], column)
    number = c.number("a register, an immediate or a memory operand")
    if _keyword(c, "ll"):
        if not dst.wide:
            raise c.error(f"lddw needs an r register, found {dst}", dst.column)
        return LoadImm64.constant(dst.reg, check_imm64(c, number)), None
    return Bin(BinOp.MOV, dst.reg, Imm(check_imm32(c, number)), dst.wide), None


def _named_rhs(c: Cursor, dst: _Register, name: str, column: int) -> Parsed:
    if name in _FETCHES:
        return _fetch(c, dst, name, column)
    if name in ("xchg_64", "xchg32_32"):
        return _xchg(c, dst, name, compare=False)
    if name in ("cmpxchg_64", "cmpxchg32_32"):
        return _xchg(c, dst, name, compare=True)
    if name == "load_acquire":
        c.expect("(", "after load_acquire")
        size, signed, type_column = _type(c)
        if signed:
            raise c.error("load_acquire takes an unsigned type", type_column)
        c.expect("(", "before the address")
        src, off = _address(c)
        c.expect(")", "after the address")
        c.expect(")", "to close load_acquire(...)")
        if size is Size.DW and not dst.wide:
            raise c.error(f"a 64-bit load needs an r register, found {dst}", dst.column)
        return Atomic(AtomicCode.LOAD_ACQ, size, dst.reg, off, src), None
    if name in ("map", "btf", "func"):
        return _pseudo(c, dst, name, column)
    if name == "addr_space_cast":
        return _addr_space_cast(c, dst)
    raise c.error(f"unknown operand '{name}'", column)


def _addr_space_cast(c: Cursor, dst: _Register) -> Parsed:
    """``rX = addr_space_cast(rY, DST_AS, SRC_AS)``, as llvm-objdump 19 prints it."""
    if not dst.wide:
        raise c.error(f"addr_space_cast writes an r register, found {dst}", dst.column)
    c.expect("(", "after addr_space_cast")
    src = _register(c)
    if not src.wide:
        raise c.error(f"addr_space_cast reads an r register, found {src}", src.column)
    spaces = []
    for what in ("destination", "source"):
        c.expect(",", f"before the {what} address space")
        number = c.number(f"the {what} address space")
        if not 0 <= number.value <= 0xFFFF:
            text = number.text.strip()
            raise c.error(f"{what} address space {text} is out of range (allowed: 0..0xffff)", number.column)
        spaces.append(number.value)
    c.expect(")", "to close addr_space_cast(...)")
    return AddrSpaceCast(dst.reg, src.reg, spaces[0], spaces[1]), None


def _packet(c: Cursor, dst: _Register, size: Size, signed: bool, column: int) -> Parsed:
    if signed or size is Size.DW:
        raise c.error("packet loads read u8, u16 or u32", column)
    if dst.reg != Reg.R0:
        raise c.error(f"packet loads always write r0, found {dst}", dst.column)
    c.expect("[", "after skb")
    index = _try_register(c)
    if index is None:
        imm = check_imm32(c, c.number("a packet offset"), "packet offset")
        c.expect("]", "to close skb[...]")
        return PacketLoad(size, Mode.ABS, None, imm), None
    if not index.wide:
        raise c.error(f"a packet index must be an r register, found {index}", index.column)
    imm = 0
    c.skip_space()
    sign_column = c.column
    if c.accept("+") or c.accept("-"):
        negative = c.text[c.pos - 1] == "-"
        number = c.number("a packet offset")
        value = -number.value if negative else number.value
        imm = check_imm32(c, Number(value, number.is_hex, sign_column, number.text), "packet offset")
    c.expect("]", "to close skb[...]")
    return PacketLoad(size, Mode.IND, index.reg, imm), None


def _ld_pseudo(c: Cursor) -> Parsed:
    """llvm-objdump's ``ld_pseudo r1, 0x2, 0x3`` (src, imm), plus our optional second immediate."""
    dst = _wide_register(c)
    c.expect(",", "after the register")
    number = c.number("a pseudo source number")
    if number.value not in {int(src) for src in PseudoSrc}:
        raise c.error(f"unknown lddw pseudo source {number.text.strip()} (0-6)", number.column)
    c.expect(",", "after the pseudo source")
    imm = check_imm32(c, c.number("an immediate"))
    next_imm = check_imm32(c, c.number("the second immediate")) if c.accept(",") else 0
    return LoadImm64(dst, imm, next_imm, PseudoSrc(number.value)), None


def _instruction(c: Cursor) -> Parsed:
    c.skip_space()
    column = c.column
    if c.accept("*"):
        return _store(c)
    reg = _try_register(c)
    if reg is not None:
        c.skip_space()
        op_column = c.column
        found = c.match(_ASSIGN)
        if found is None:
            raise c.error(f"expected an assignment operator (=, +=, s>>=...) after {reg}", op_column)
        if found.group(0) == "=":
            return _assign_rhs(c, reg)
        return Bin(_BINOPS[found.group(0)], reg.reg, _operand(c, reg), reg.wide), None
    named = c.ident()
    if named is None:
        raise c.error(f"expected an instruction, found {c.rest()[:20]!r}")
    word = named[0]
    if word == "exit":
        return Exit(), None
    if word in ("goto", "gotol", "may_goto"):
        off, ref = _target(c, 32 if word == "gotol" else 16)
        if word == "may_goto":
            return MayGoto(off), ref
        return Goto(off, word == "gotol"), ref
    if word == "if":
        return _jump(c)
    if word == "call":
        return _call(c)
    if word == "callx":
        return CallReg(_wide_register(c)), None
    if word == "lock":
        return _lock(c)
    if word == "store_release":
        return _store_release(c)
    if word == "ld_pseudo":
        return _ld_pseudo(c)
    raise c.error(f"unknown instruction '{word}'", column)


def _from_bytes(data: bytes, line: int, column: int) -> Instruction:
    """A ``<unknown>`` line: decode its raw-bytes column instead."""
    raws = [RawInsn.from_bytes(data, offset) for offset in range(0, len(data), 8)]
    try:
        return decode(raws[0], raws[1] if len(raws) > 1 else None)
    except InvalidInstructionError as error:
        raise AssemblerError(line, column, f"<unknown> instruction bytes do not decode: {error.reason}") from None


def _strip_comment(text: str) -> str:
    for mark in (";", "#"):
        cut = text.find(mark)
        if cut >= 0:
            text = text[:cut]
    return text.rstrip()


def parse_llvm(text: str) -> list[LabeledInsn]:
    """Assemble LLVM-syntax text (see the module doc). Raises ``AssemblerError`` with line and column."""
    out = ProgramBuilder()
    for number, raw_line in enumerate(text.splitlines(), 1):
        line = _strip_comment(raw_line)
        if not line.strip() or _HEADER.match(line):
            continue
        symbol = _SYMBOL.match(line) or _LABEL.match(line)
        if symbol is not None:
            out.label(symbol.group(1), number, symbol.start(1) + 1)
            continue
        pos = 0
        pc = _PC.match(line)
        if pc is not None:
            pos = pc.end()
        raw = _BYTES.match(line, pos)
        data = None
        if raw is not None:
            data = bytes.fromhex(raw.group(1).replace("\t", " "))
            pos = raw.end()
        cursor = Cursor(line, number, pos)
        if cursor.rest() in ("", "<unknown>"):
            # No text, or text llvm-objdump could not produce: the bytes say what it is.
            if data is None:
                raise cursor.error("<unknown> instruction without its raw bytes")
            out.add(_from_bytes(data, number, cursor.column))
            continue
        annotation = _ANNOTATION.search(line, pos)
        if annotation is not None:
            cursor.limit = annotation.start()
        insn, ref = _instruction(cursor)
        cursor.end()
        out.add(insn, ref)
    return out.build()
