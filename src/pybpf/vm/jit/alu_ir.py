"""LLVM IR for arithmetic, byte swaps and comparisons, with no undefined behaviour reaching LLVM.

RFC 9669 defines every case that LLVM leaves undefined, so each is made explicit here: shift
amounts are masked to the width, a zero divisor is replaced by 1 and the result selected
afterwards (0 for division, the dividend for modulo), and the signed ``INT_MIN / -1`` overflow
uses divisor 1 too (which yields the RFC's wrapped results: INT_MIN for sdiv, 0 for smod).
Functions take values of the operation's width and return one of that width; the caller
truncates operands and zero-extends 32-bit results.
"""

from __future__ import annotations

from typing import Any

from pybpf.errors import VmError
from pybpf.isa.insn import BinOp, Cond

Value = Any  # an llvmlite.ir value (llvmlite has no type hints)
Builder = Any  # an llvmlite.ir.IRBuilder

_PLAIN = {BinOp.ADD: "add", BinOp.SUB: "sub", BinOp.MUL: "mul", BinOp.OR: "or_", BinOp.AND: "and_", BinOp.XOR: "xor"}
_SHIFTS = {BinOp.LSH: "shl", BinOp.RSH: "lshr", BinOp.ARSH: "ashr"}
_SIGN_EXTENDS = {BinOp.MOVSX8: 8, BinOp.MOVSX16: 16, BinOp.MOVSX32: 32}

_UNSIGNED = {Cond.JEQ: "==", Cond.JNE: "!=", Cond.JGT: ">", Cond.JGE: ">=", Cond.JLT: "<", Cond.JLE: "<="}
_SIGNED = {Cond.JSGT: ">", Cond.JSGE: ">=", Cond.JSLT: "<", Cond.JSLE: "<="}


def constant(ir: Any, bits: int, value: int) -> Value:
    """An ``iN`` constant from any Python int (written signed, the way LLVM's parser wants it)."""
    value &= (1 << bits) - 1
    if value >> (bits - 1):
        value -= 1 << bits
    return ir.Constant(ir.IntType(bits), value)


def binary(ir: Any, builder: Builder, op: BinOp, a: Value, b: Value, *, bits: int) -> Value:
    """``a op b`` on ``bits``-wide values, exactly as :mod:`pybpf.isa.semantics` defines it."""
    width = ir.IntType(bits)
    plain = _PLAIN.get(op)
    if plain is not None:
        return getattr(builder, plain)(a, b)
    shift = _SHIFTS.get(op)
    if shift is not None:
        return getattr(builder, shift)(a, builder.and_(b, constant(ir, bits, bits - 1)))
    extend = _SIGN_EXTENDS.get(op)
    if extend is not None:
        return b if extend >= bits else builder.sext(builder.trunc(b, ir.IntType(extend)), width)
    if op is BinOp.MOV:
        return b
    if op in (BinOp.DIV, BinOp.MOD, BinOp.SDIV, BinOp.SMOD):
        return _division(ir, builder, op, a, b, bits=bits)
    raise VmError(f"the JIT has no translation for {op.name}")


def _division(ir: Any, builder: Builder, op: BinOp, a: Value, b: Value, *, bits: int) -> Value:
    zero, one = constant(ir, bits, 0), constant(ir, bits, 1)
    by_zero = builder.icmp_unsigned("==", b, zero)
    unsafe = by_zero
    if op in (BinOp.SDIV, BinOp.SMOD):
        int_min = constant(ir, bits, 1 << (bits - 1))
        minus_one = constant(ir, bits, -1)
        overflow = builder.and_(builder.icmp_unsigned("==", a, int_min), builder.icmp_unsigned("==", b, minus_one))
        unsafe = builder.or_(by_zero, overflow)
    divisor = builder.select(unsafe, one, b)
    if op is BinOp.DIV:
        return builder.select(by_zero, zero, builder.udiv(a, divisor))
    if op is BinOp.SDIV:
        return builder.select(by_zero, zero, builder.sdiv(a, divisor))
    if op is BinOp.MOD:
        return builder.select(by_zero, a, builder.urem(a, divisor))
    return builder.select(by_zero, a, builder.srem(a, divisor))


def byte_swap(ir: Any, builder: Builder, module: Any, value: Value, bits: int) -> Value:
    """``llvm.bswap`` of a ``bits``-wide value."""
    intrinsic = module.declare_intrinsic("llvm.bswap", [ir.IntType(bits)])
    return builder.call(intrinsic, [value])


def compare(ir: Any, builder: Builder, cond: Cond, a: Value, b: Value, *, bits: int) -> Value:
    """The i1 outcome of a conditional jump's comparison."""
    if cond is Cond.JSET:
        return builder.icmp_unsigned("!=", builder.and_(a, b), constant(ir, bits, 0))
    unsigned = _UNSIGNED.get(cond)
    if unsigned is not None:
        return builder.icmp_unsigned(unsigned, a, b)
    return builder.icmp_signed(_SIGNED[cond], a, b)
