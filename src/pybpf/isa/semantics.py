"""Concrete RFC 9669 semantics on Python ints.

Every function takes and returns *unsigned* values of the operation's width (registers are
held as unsigned 64-bit ints). 32-bit operations read the low 32 bits of their operands and
return a 32-bit result, which the caller stores zero-extended. Shared by the interpreter, the
constant folding in the verifier and the tests that check the JIT.
"""

from __future__ import annotations

from collections.abc import Callable

from pybpf.isa.insn import BinOp, Cond

U8 = (1 << 8) - 1
U16 = (1 << 16) - 1
U32 = (1 << 32) - 1
U64 = (1 << 64) - 1
SIGN32 = 1 << 31
SIGN64 = 1 << 63

BinFn = Callable[[int, int], int]
CondFn = Callable[[int, int], bool]


def s64(value: int) -> int:
    """Reinterpret the low 64 bits as a signed integer."""
    value &= U64
    return value - (1 << 64) if value & SIGN64 else value


def s32(value: int) -> int:
    """Reinterpret the low 32 bits as a signed integer."""
    value &= U32
    return value - (1 << 32) if value & SIGN32 else value


def sign_extend(value: int, bits: int) -> int:
    """Sign-extend the low ``bits`` bits to an unsigned 64-bit value."""
    sign = 1 << (bits - 1)
    value &= (1 << bits) - 1
    return ((value ^ sign) - sign) & U64


def _trunc_div(a: int, b: int) -> int:
    """Signed division rounding toward zero (C semantics; Python's // rounds down)."""
    q = abs(a) // abs(b)
    return q if (a < 0) == (b < 0) else -q


def _trunc_mod(a: int, b: int) -> int:
    """Signed remainder with the sign of the dividend (C semantics)."""
    return a - b * _trunc_div(a, b)


def _alu_table(bits: int) -> dict[BinOp, BinFn]:
    mask = (1 << bits) - 1
    shift_mask = bits - 1
    signed = s64 if bits == 64 else s32

    def add(a: int, b: int) -> int:
        return (a + b) & mask

    def sub(a: int, b: int) -> int:
        return (a - b) & mask

    def mul(a: int, b: int) -> int:
        return (a * b) & mask

    def div(a: int, b: int) -> int:
        b &= mask
        return (a & mask) // b if b else 0  # RFC: division by zero gives 0

    def sdiv(a: int, b: int) -> int:
        sb = signed(b)
        if sb == 0:
            return 0
        return _trunc_div(signed(a), sb) & mask  # INT_MIN / -1 wraps to INT_MIN

    def mod(a: int, b: int) -> int:
        b &= mask
        return (a & mask) % b if b else a & mask  # RFC: modulo by zero leaves dst unchanged

    def smod(a: int, b: int) -> int:
        sb = signed(b)
        if sb == 0:
            return a & mask
        return _trunc_mod(signed(a), sb) & mask

    def or_(a: int, b: int) -> int:
        return (a | b) & mask

    def and_(a: int, b: int) -> int:
        return a & b & mask

    def xor(a: int, b: int) -> int:
        return (a ^ b) & mask

    def lsh(a: int, b: int) -> int:
        return (a << (b & shift_mask)) & mask  # RFC: shift amount masked to the width

    def rsh(a: int, b: int) -> int:
        return (a & mask) >> (b & shift_mask)

    def arsh(a: int, b: int) -> int:
        return (signed(a) >> (b & shift_mask)) & mask

    def mov(_a: int, b: int) -> int:
        return b & mask

    def movsx8(_a: int, b: int) -> int:
        return sign_extend(b, 8) & mask

    def movsx16(_a: int, b: int) -> int:
        return sign_extend(b, 16) & mask

    def movsx32(_a: int, b: int) -> int:
        return sign_extend(b, 32) & mask

    return {
        BinOp.ADD: add,
        BinOp.SUB: sub,
        BinOp.MUL: mul,
        BinOp.DIV: div,
        BinOp.SDIV: sdiv,
        BinOp.MOD: mod,
        BinOp.SMOD: smod,
        BinOp.OR: or_,
        BinOp.AND: and_,
        BinOp.XOR: xor,
        BinOp.LSH: lsh,
        BinOp.RSH: rsh,
        BinOp.ARSH: arsh,
        BinOp.MOV: mov,
        BinOp.MOVSX8: movsx8,
        BinOp.MOVSX16: movsx16,
        BinOp.MOVSX32: movsx32,
    }


ALU64: dict[BinOp, BinFn] = _alu_table(64)
"""64-bit operations: ``ALU64[op](dst, src) -> new dst``."""
ALU32: dict[BinOp, BinFn] = _alu_table(32)
"""32-bit operations: the result is the 32-bit value the register receives zero-extended."""


def neg(value: int, is64: bool) -> int:
    return -value & (U64 if is64 else U32)


def byte_swap(value: int, width: int) -> int:
    """Reverse the byte order of the low ``width`` bits (result zero-extended)."""
    nbytes = width // 8
    return int.from_bytes((value & ((1 << width) - 1)).to_bytes(nbytes, "little"), "big")


def to_le(value: int, width: int) -> int:
    """``le16/le32/le64`` on a little-endian machine: truncate to ``width`` bits."""
    return value & ((1 << width) - 1)


def _cond_table(bits: int) -> dict[Cond, CondFn]:
    mask = (1 << bits) - 1
    signed = s64 if bits == 64 else s32
    return {
        Cond.JEQ: lambda a, b: (a & mask) == (b & mask),
        Cond.JNE: lambda a, b: (a & mask) != (b & mask),
        Cond.JGT: lambda a, b: (a & mask) > (b & mask),
        Cond.JGE: lambda a, b: (a & mask) >= (b & mask),
        Cond.JLT: lambda a, b: (a & mask) < (b & mask),
        Cond.JLE: lambda a, b: (a & mask) <= (b & mask),
        Cond.JSET: lambda a, b: (a & b & mask) != 0,
        Cond.JSGT: lambda a, b: signed(a) > signed(b),
        Cond.JSGE: lambda a, b: signed(a) >= signed(b),
        Cond.JSLT: lambda a, b: signed(a) < signed(b),
        Cond.JSLE: lambda a, b: signed(a) <= signed(b),
    }


JMP64: dict[Cond, CondFn] = _cond_table(64)
JMP32: dict[Cond, CondFn] = _cond_table(32)
