"""Operation closures for arithmetic and jumps.

Each builder returns one closure ``op(regs, run) -> next pc``, built once per instruction.
Semantics come from :mod:`pybpf.isa.semantics`; the most frequent forms (add, sub, mul, and, or,
xor, shifts, mov, and all comparisons) are specialised inline because a Python function call
per instruction would halve the interpreter's speed. The specialisations are parametrised by the
operation's width mask, so one closure serves ALU and ALU64, and the tests check them against
the semantics tables.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from pybpf.isa import semantics
from pybpf.isa.insn import Bin, BinOp, Cond, Endian, Imm, Jump, Neg
from pybpf.isa.opcodes import EndianOrder
from pybpf.isa.semantics import U32, U64
from pybpf.vm.execution import ExecutionContext, Op

_Template = Callable[[int, int, int, int], Op]


# -- ALU, immediate operand: (dst, operand, width mask, next pc) -------------------------------


def _add_imm(d: int, b: int, mask: int, nxt: int) -> Op:
    def op(regs: list[int], run: ExecutionContext) -> int:
        regs[d] = (regs[d] + b) & mask
        return nxt

    return op


def _sub_imm(d: int, b: int, mask: int, nxt: int) -> Op:
    def op(regs: list[int], run: ExecutionContext) -> int:
        regs[d] = (regs[d] - b) & mask
        return nxt

    return op


def _mul_imm(d: int, b: int, mask: int, nxt: int) -> Op:
    def op(regs: list[int], run: ExecutionContext) -> int:
        regs[d] = (regs[d] * b) & mask
        return nxt

    return op


def _and_imm(d: int, b: int, mask: int, nxt: int) -> Op:
    b &= mask

    def op(regs: list[int], run: ExecutionContext) -> int:
        regs[d] &= b
        return nxt

    return op


def _or_imm(d: int, b: int, mask: int, nxt: int) -> Op:
    def op(regs: list[int], run: ExecutionContext) -> int:
        regs[d] = (regs[d] | b) & mask
        return nxt

    return op


def _xor_imm(d: int, b: int, mask: int, nxt: int) -> Op:
    def op(regs: list[int], run: ExecutionContext) -> int:
        regs[d] = (regs[d] ^ b) & mask
        return nxt

    return op


def _lsh_imm(d: int, b: int, mask: int, nxt: int) -> Op:
    b &= mask.bit_length() - 1  # RFC: the shift amount is taken modulo the width

    def op(regs: list[int], run: ExecutionContext) -> int:
        regs[d] = (regs[d] << b) & mask
        return nxt

    return op


def _rsh_imm(d: int, b: int, mask: int, nxt: int) -> Op:
    b &= mask.bit_length() - 1

    def op(regs: list[int], run: ExecutionContext) -> int:
        regs[d] = (regs[d] & mask) >> b
        return nxt

    return op


def _mov_imm(d: int, b: int, mask: int, nxt: int) -> Op:
    b &= mask

    def op(regs: list[int], run: ExecutionContext) -> int:
        regs[d] = b
        return nxt

    return op


# -- ALU, register operand: (dst, src register, width mask, next pc) ---------------------------


def _add_reg(d: int, s: int, mask: int, nxt: int) -> Op:
    def op(regs: list[int], run: ExecutionContext) -> int:
        regs[d] = (regs[d] + regs[s]) & mask
        return nxt

    return op


def _sub_reg(d: int, s: int, mask: int, nxt: int) -> Op:
    def op(regs: list[int], run: ExecutionContext) -> int:
        regs[d] = (regs[d] - regs[s]) & mask
        return nxt

    return op


def _mul_reg(d: int, s: int, mask: int, nxt: int) -> Op:
    def op(regs: list[int], run: ExecutionContext) -> int:
        regs[d] = (regs[d] * regs[s]) & mask
        return nxt

    return op


def _and_reg(d: int, s: int, mask: int, nxt: int) -> Op:
    def op(regs: list[int], run: ExecutionContext) -> int:
        regs[d] = regs[d] & regs[s] & mask
        return nxt

    return op


def _or_reg(d: int, s: int, mask: int, nxt: int) -> Op:
    def op(regs: list[int], run: ExecutionContext) -> int:
        regs[d] = (regs[d] | regs[s]) & mask
        return nxt

    return op


def _xor_reg(d: int, s: int, mask: int, nxt: int) -> Op:
    def op(regs: list[int], run: ExecutionContext) -> int:
        regs[d] = (regs[d] ^ regs[s]) & mask
        return nxt

    return op


def _lsh_reg(d: int, s: int, mask: int, nxt: int) -> Op:
    amount_mask = mask.bit_length() - 1

    def op(regs: list[int], run: ExecutionContext) -> int:
        regs[d] = (regs[d] << (regs[s] & amount_mask)) & mask
        return nxt

    return op


def _rsh_reg(d: int, s: int, mask: int, nxt: int) -> Op:
    amount_mask = mask.bit_length() - 1

    def op(regs: list[int], run: ExecutionContext) -> int:
        regs[d] = (regs[d] & mask) >> (regs[s] & amount_mask)
        return nxt

    return op


def _mov_reg(d: int, s: int, mask: int, nxt: int) -> Op:
    def op(regs: list[int], run: ExecutionContext) -> int:
        regs[d] = regs[s] & mask
        return nxt

    return op


_FAST_IMM: dict[BinOp, _Template] = {
    BinOp.ADD: _add_imm,
    BinOp.SUB: _sub_imm,
    BinOp.MUL: _mul_imm,
    BinOp.AND: _and_imm,
    BinOp.OR: _or_imm,
    BinOp.XOR: _xor_imm,
    BinOp.LSH: _lsh_imm,
    BinOp.RSH: _rsh_imm,
    BinOp.MOV: _mov_imm,
}
_FAST_REG: dict[BinOp, _Template] = {
    BinOp.ADD: _add_reg,
    BinOp.SUB: _sub_reg,
    BinOp.MUL: _mul_reg,
    BinOp.AND: _and_reg,
    BinOp.OR: _or_reg,
    BinOp.XOR: _xor_reg,
    BinOp.LSH: _lsh_reg,
    BinOp.RSH: _rsh_reg,
    BinOp.MOV: _mov_reg,
}


def _generic_imm(fn: semantics.BinFn, d: int, b: int, nxt: int) -> Op:
    def op(regs: list[int], run: ExecutionContext) -> int:
        regs[d] = fn(regs[d], b)
        return nxt

    return op


def _generic_reg(fn: semantics.BinFn, d: int, s: int, nxt: int) -> Op:
    def op(regs: list[int], run: ExecutionContext) -> int:
        regs[d] = fn(regs[d], regs[s])
        return nxt

    return op


def build_bin(insn: Bin, pc: int, *, fast: bool = True) -> Op:
    """``dst op= src``; ``fast=False`` forces the semantics-table path (the tests compare both)."""
    nxt = pc + 1
    mask = U64 if insn.is64 else U32
    d = int(insn.dst)
    if isinstance(insn.src, Imm):
        # The immediate is sign-extended to 64 bits; 32-bit operations use its low half.
        b = insn.src.value & U64
        template = _FAST_IMM.get(insn.op) if fast else None
        if template is not None:
            return template(d, b, mask, nxt)
        return _generic_imm((semantics.ALU64 if insn.is64 else semantics.ALU32)[insn.op], d, b, nxt)
    s = int(insn.src)
    template = _FAST_REG.get(insn.op) if fast else None
    if template is not None:
        return template(d, s, mask, nxt)
    return _generic_reg((semantics.ALU64 if insn.is64 else semantics.ALU32)[insn.op], d, s, nxt)


def build_neg(insn: Neg, pc: int) -> Op:
    d, is64, nxt = int(insn.dst), insn.is64, pc + 1
    neg = semantics.neg

    def op(regs: list[int], run: ExecutionContext) -> int:
        regs[d] = neg(regs[d], is64)
        return nxt

    return op


def build_endian(insn: Endian, pc: int) -> Op:
    d, width, nxt = int(insn.dst), insn.width, pc + 1
    # This VM is little-endian: TO_LE only truncates, TO_BE and the ALU64 bswap always swap.
    convert = semantics.to_le if insn.order is EndianOrder.LE else semantics.byte_swap

    def op(regs: list[int], run: ExecutionContext) -> int:
        regs[d] = convert(regs[d], width)
        return nxt

    return op


# -- conditional jumps --------------------------------------------------------------------------
# Operands are masked to the width and, for signed comparisons, have their sign bit flipped:
# flipping maps two's-complement order onto unsigned order, so one closure per comparison
# serves signed and unsigned, 32 and 64 bits. (dst, operand, mask, flip, target, next pc)


class _JumpTemplate(Protocol):
    def __call__(self, d: int, operand: int, mask: int, /, *, flip: int, target: int, nxt: int) -> Op: ...


def _jeq_imm(d: int, b: int, mask: int, *, flip: int, target: int, nxt: int) -> Op:
    def op(regs: list[int], run: ExecutionContext) -> int:
        return target if regs[d] & mask == b else nxt

    return op


def _jne_imm(d: int, b: int, mask: int, *, flip: int, target: int, nxt: int) -> Op:
    def op(regs: list[int], run: ExecutionContext) -> int:
        return target if regs[d] & mask != b else nxt

    return op


def _jgt_imm(d: int, b: int, mask: int, *, flip: int, target: int, nxt: int) -> Op:
    def op(regs: list[int], run: ExecutionContext) -> int:
        return target if (regs[d] & mask) ^ flip > b else nxt

    return op


def _jge_imm(d: int, b: int, mask: int, *, flip: int, target: int, nxt: int) -> Op:
    def op(regs: list[int], run: ExecutionContext) -> int:
        return target if (regs[d] & mask) ^ flip >= b else nxt

    return op


def _jlt_imm(d: int, b: int, mask: int, *, flip: int, target: int, nxt: int) -> Op:
    def op(regs: list[int], run: ExecutionContext) -> int:
        return target if (regs[d] & mask) ^ flip < b else nxt

    return op


def _jle_imm(d: int, b: int, mask: int, *, flip: int, target: int, nxt: int) -> Op:
    def op(regs: list[int], run: ExecutionContext) -> int:
        return target if (regs[d] & mask) ^ flip <= b else nxt

    return op


def _jset_imm(d: int, b: int, mask: int, *, flip: int, target: int, nxt: int) -> Op:
    def op(regs: list[int], run: ExecutionContext) -> int:
        return target if regs[d] & b else nxt

    return op


def _jeq_reg(d: int, s: int, mask: int, *, flip: int, target: int, nxt: int) -> Op:
    def op(regs: list[int], run: ExecutionContext) -> int:
        return target if (regs[d] ^ regs[s]) & mask == 0 else nxt

    return op


def _jne_reg(d: int, s: int, mask: int, *, flip: int, target: int, nxt: int) -> Op:
    def op(regs: list[int], run: ExecutionContext) -> int:
        return target if (regs[d] ^ regs[s]) & mask else nxt

    return op


def _jgt_reg(d: int, s: int, mask: int, *, flip: int, target: int, nxt: int) -> Op:
    def op(regs: list[int], run: ExecutionContext) -> int:
        return target if (regs[d] & mask) ^ flip > (regs[s] & mask) ^ flip else nxt

    return op


def _jge_reg(d: int, s: int, mask: int, *, flip: int, target: int, nxt: int) -> Op:
    def op(regs: list[int], run: ExecutionContext) -> int:
        return target if (regs[d] & mask) ^ flip >= (regs[s] & mask) ^ flip else nxt

    return op


def _jlt_reg(d: int, s: int, mask: int, *, flip: int, target: int, nxt: int) -> Op:
    def op(regs: list[int], run: ExecutionContext) -> int:
        return target if (regs[d] & mask) ^ flip < (regs[s] & mask) ^ flip else nxt

    return op


def _jle_reg(d: int, s: int, mask: int, *, flip: int, target: int, nxt: int) -> Op:
    def op(regs: list[int], run: ExecutionContext) -> int:
        return target if (regs[d] & mask) ^ flip <= (regs[s] & mask) ^ flip else nxt

    return op


def _jset_reg(d: int, s: int, mask: int, *, flip: int, target: int, nxt: int) -> Op:
    def op(regs: list[int], run: ExecutionContext) -> int:
        return target if regs[d] & regs[s] & mask else nxt

    return op


# cond -> (immediate template, register template, signed)
_JUMPS: dict[Cond, tuple[_JumpTemplate, _JumpTemplate, bool]] = {
    Cond.JEQ: (_jeq_imm, _jeq_reg, False),
    Cond.JNE: (_jne_imm, _jne_reg, False),
    Cond.JSET: (_jset_imm, _jset_reg, False),
    Cond.JGT: (_jgt_imm, _jgt_reg, False),
    Cond.JGE: (_jge_imm, _jge_reg, False),
    Cond.JLT: (_jlt_imm, _jlt_reg, False),
    Cond.JLE: (_jle_imm, _jle_reg, False),
    Cond.JSGT: (_jgt_imm, _jgt_reg, True),
    Cond.JSGE: (_jge_imm, _jge_reg, True),
    Cond.JSLT: (_jlt_imm, _jlt_reg, True),
    Cond.JSLE: (_jle_imm, _jle_reg, True),
}


def build_jump(insn: Jump, pc: int) -> Op:
    """``if dst cond src goto pc + 1 + off``."""
    mask = U32 if insn.is32 else U64
    imm_template, reg_template, signed = _JUMPS[insn.cond]
    flip = (mask >> 1) + 1 if signed else 0  # the sign bit of the width
    target, nxt, d = pc + 1 + insn.off, pc + 1, int(insn.dst)
    if isinstance(insn.src, Imm):
        # Precompute the immediate's side: sign-extended, masked, sign bit flipped.
        b = insn.src.value & mask
        if insn.cond is not Cond.JSET:
            b ^= flip
        return imm_template(d, b, mask, flip=flip, target=target, nxt=nxt)
    return reg_template(d, int(insn.src), mask, flip=flip, target=target, nxt=nxt)
