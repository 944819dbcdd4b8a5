"""Differential: our scalar transfer functions against the kernel verifier's register log.

Each case starts from an unknown 32-bit value (``skb->len`` of a socket filter), applies a
straight line of ALU instructions with immediates, and compares the bounds and tnum our domain
computes after every instruction with what the kernel prints at log level 2.
"""

from __future__ import annotations

import re

import pytest

from pybpf.errors import VerifierRejectedError
from pybpf.isa.codec import encode_program
from pybpf.isa.insn import Bin, BinOp, Endian, Exit, Imm, Instruction, Load, Neg, Reg
from pybpf.isa.opcodes import EndianOrder, Size
from pybpf.kernel.probe import available
from pybpf.kernel.progs import prog_load_with_log
from pybpf.kernel.uapi import BpfProgType
from pybpf.verifier.scalar import S32_MAX, S32_MIN, S64_MAX, S64_MIN, Scalar, to_s32, to_s64
from pybpf.verifier.scalar_ops import alu, endian, neg
from pybpf.verifier.tnum import U32, U64, Tnum

_AVAILABLE, _REASON = available()
pytestmark = [pytest.mark.kernel, pytest.mark.skipif(not _AVAILABLE, reason=_REASON or "bpf() unavailable")]

R0 = Reg.R0


def b64(op: BinOp, imm: int) -> Bin:
    return Bin(op, R0, Imm(imm), True)


def b32(op: BinOp, imm: int) -> Bin:
    return Bin(op, R0, Imm(imm), False)


SEQUENCES: dict[str, list[Instruction]] = {
    "and-add-shift": [b64(BinOp.AND, 0xFF), b64(BinOp.ADD, 5), b64(BinOp.LSH, 3), b32(BinOp.ARSH, 1)],
    "sub-wraps": [b64(BinOp.AND, 0xF), b64(BinOp.SUB, 8), b64(BinOp.RSH, 60)],
    "or-xor": [b64(BinOp.AND, 0xF0), b64(BinOp.OR, 3), b64(BinOp.XOR, 0x11)],
    "mul": [b64(BinOp.AND, 0x7), b64(BinOp.MUL, 6), b32(BinOp.MUL, 3)],
    "alu32-add": [b32(BinOp.ADD, -1), b64(BinOp.AND, 0xFFFF)],
    "neg": [b64(BinOp.AND, 0xF), Neg(R0, True), b64(BinOp.ARSH, 2)],
    "swap": [b64(BinOp.AND, 0xFF), Endian(R0, 16, EndianOrder.BE), Endian(R0, 64, EndianOrder.SWAP)],
    "shift-pair": [b64(BinOp.LSH, 32), b64(BinOp.ARSH, 32)],
    "movsx": [b64(BinOp.AND, 0x1FF), Bin(BinOp.MOVSX8, R0, R0, True)],
    "div": [b64(BinOp.AND, 0xFFFF), b64(BinOp.DIV, 3), b32(BinOp.DIV, 7)],
    "mod": [b64(BinOp.MOD, 10), b32(BinOp.MOD, 3)],
    "sdiv-smod": [b64(BinOp.SUB, 100), b64(BinOp.SDIV, 3), b64(BinOp.SMOD, 5)],
    "alu32-sub-neg": [b32(BinOp.SUB, 7), Neg(R0, False), b32(BinOp.XOR, -1)],
    "rsh-then-or": [b64(BinOp.RSH, 20), b64(BinOp.OR, 0x1000), b64(BinOp.AND, -4)],
    "movsx16-32": [b64(BinOp.LSH, 8), Bin(BinOp.MOVSX16, R0, R0, True), Bin(BinOp.MOVSX32, R0, R0, True)],
}

_FIELDS = ("smin", "smax", "umin", "umax", "smin32", "smax32", "umin32", "umax32")
_DEFAULTS = {"smin": S64_MIN, "smax": S64_MAX, "umin": 0, "umax": U64,
             "smin32": S32_MIN, "smax32": S32_MAX, "umin32": 0, "umax32": U32}


def parse_scalar(text: str) -> Scalar:
    """``scalar(smin=umin=5,umax=0x104,var_off=(0x0; 0x1ff))`` or a bare constant."""
    if not text.startswith("scalar("):
        return Scalar.const(int(text, 0))
    body = text[len("scalar("):-1]
    values = dict(_DEFAULTS)
    var_off = Tnum.unknown()
    match = re.search(r"var_off=\((0x[0-9a-f]+); (0x[0-9a-f]+)\)", body)
    if match:
        var_off = Tnum(int(match[1], 16), int(match[2], 16))
        body = body[: match.start()] + body[match.end():]
    for part in filter(None, body.split(",")):
        *names, number = part.split("=")
        for name in names:
            # Large magnitudes print in hex, as the unsigned bit pattern even for signed fields.
            raw = int(number, 0)
            values[name] = to_s64(raw) if name in ("smin", "smax") else to_s32(raw) if name in (
                "smin32", "smax32") else raw
    return Scalar(var_off, *(values[f] for f in _FIELDS))


def kernel_trace(insns: list[Instruction]) -> list[Scalar]:
    program = [Load(Size.W, R0, Reg.R1, 0), *insns, Bin(BinOp.MOV, R0, Imm(0), True), Exit()]
    try:
        loaded = prog_load_with_log(BpfProgType.SOCKET_FILTER, encode_program(program), log_level=2)
    except VerifierRejectedError as error:
        pytest.fail(f"kernel rejected the sequence:\n{error.log}")
    with loaded.fd:
        log = loaded.log
    states = []
    for pc in range(len(insns) + 1):
        line = next(ln for ln in log.splitlines() if re.match(rf"{pc}: \(", ln))
        match = re.search(r"R0(?:_w)?=(scalar\((?:[^()]|\([^()]*\))*\)|-?\w+)", line)
        assert match, line
        states.append(parse_scalar(match[1]))
    return states


def our_trace(insns: list[Instruction]) -> list[Scalar]:
    value = Scalar.from_urange(0, U32)
    states = [value]
    for insn in insns:
        match insn:
            case Bin(op=op, src=Imm(value=imm), is64=is64):
                value = alu(op, value, Scalar.const(imm), is64)
            case Bin(op=op, src=Reg(), is64=is64):
                value = alu(op, value, value, is64)
            case Neg(is64=is64):
                value = neg(value, is64)
            case Endian(width=width, order=order):
                value = endian(value, width, order)
            case _:
                raise AssertionError(insn)
        states.append(value)
    return states


@pytest.mark.parametrize("name", sorted(SEQUENCES))
def test_scalar_bounds_match_kernel(name: str) -> None:
    insns = SEQUENCES[name]
    for pc, (kernel, ours) in enumerate(zip(kernel_trace(insns), our_trace(insns), strict=True)):
        assert ours == kernel, f"after insn {pc}: kernel {kernel}\n  ours {ours}"


R2 = Reg.R2
# (mask for r0, mask for r2, op, is64): both registers start as unknown u32 values, then get ANDed.
REGISTER_CASES = [
    (0xFF, 0xF, BinOp.ADD, True),
    (0xFF, 0xF, BinOp.SUB, True),
    (0xFF, 0xF, BinOp.SUB, False),
    (0xFF, 0xF, BinOp.MUL, True),
    (0xF0F0, 0xFF, BinOp.AND, True),
    (0xF0F0, 0xFF, BinOp.OR, False),
    (0xF0F0, 0xFF, BinOp.XOR, True),
    (0xFFFF, 0x7, BinOp.LSH, True),
    (0xFFFF, 0x7, BinOp.RSH, False),
    (0xFFFF, 0x7, BinOp.ARSH, True),
    (0xFFFF, 0x3F, BinOp.LSH, False),
    (0x7FFF_FFFF, 0xFF, BinOp.MOV, False),
    (0xFF, 0x7FFF_FFFF, BinOp.MOV, True),
]


def kernel_register_result(mask0: int, mask2: int, op: BinOp, is64: bool) -> Scalar:
    program: list[Instruction] = [Load(Size.W, R0, Reg.R1, 0), Load(Size.W, R2, Reg.R1, 0),
               Bin(BinOp.AND, R0, Imm(mask0), True), Bin(BinOp.AND, R2, Imm(mask2), True),
               Bin(op, R0, R2, is64), Bin(BinOp.MOV, R0, Imm(0), True), Exit()]
    loaded = prog_load_with_log(BpfProgType.SOCKET_FILTER, encode_program(program), log_level=2)
    with loaded.fd:
        line = next(ln for ln in loaded.log.splitlines() if ln.startswith("4: ("))
    match = re.search(r"R0(?:_w)?=(scalar\((?:[^()]|\([^()]*\))*\)|-?\w+)", line)
    assert match, line
    return parse_scalar(match[1])


@pytest.mark.parametrize(("mask0", "mask2", "op", "is64"), REGISTER_CASES,
                         ids=[f"{op.name}{'' if w else '32'}-{m0:#x}-{m2:#x}" for m0, m2, op, w in REGISTER_CASES])
def test_register_operands_match_kernel(mask0: int, mask2: int, op: BinOp, is64: bool) -> None:
    unknown = Scalar.from_urange(0, U32)
    dst = alu(BinOp.AND, unknown, Scalar.const(mask0), True)
    src = alu(BinOp.AND, unknown, Scalar.const(mask2), True)
    assert alu(op, dst, src, is64) == kernel_register_result(mask0, mask2, op, is64)
