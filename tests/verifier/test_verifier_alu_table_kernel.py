"""Differential: every ALU operation over a table of operand shapes, our verifier against the kernel's.

Each program builds ``r0`` and ``r2`` into one of a few shapes (constants, an unknown u32, a small
range, a negative range, a range crossing zero, a 64-bit unknown), runs one ALU instruction and
exits. The whole verifier runs at log level 2, and the register ``r0`` it prints after the
instruction must equal the one the kernel prints (or both must refuse the program). This is the
sibling hunt for transfer functions that are more (or less) precise than the kernel's
``adjust_scalar_min_max_vals``: a shift by 0 of a value with its top bit set, ``<<32`` of a
negative s32 range and ``le16``/``le32``/``le64`` were found this way.
"""

from __future__ import annotations

import itertools
import re

import pytest

from pybpf.errors import VerifierRejectedError
from pybpf.isa.codec import encode_program
from pybpf.isa.insn import Bin, BinOp, Endian, Exit, Imm, Instruction, LabeledInsn, Load, Neg, Reg
from pybpf.isa.opcodes import EndianOrder, Size
from pybpf.kernel.probe import available
from pybpf.kernel.progs import prog_load_with_log
from pybpf.platform import BpfProgType
from pybpf.verifier import verify

from .test_verifier_scalar_kernel import parse_scalar

_AVAILABLE, _REASON = available()
pytestmark = [pytest.mark.kernel, pytest.mark.skipif(not _AVAILABLE, reason=_REASON or "bpf() unavailable")]

R0, R1, R2, R3 = Reg.R0, Reg.R1, Reg.R2, Reg.R3


def _len(reg: Reg) -> Load:
    return Load(Size.W, reg, R1, 0)  # skb->len: an unknown u32


def shape(reg: Reg, name: str) -> list[Instruction]:
    """Instructions leaving ``reg`` in the named shape (r3 is scratch)."""
    nibble: list[Instruction] = [_len(reg), Bin(BinOp.AND, reg, Imm(15), True)]
    shapes: dict[str, list[Instruction]] = {
        "zero": [Bin(BinOp.MOV, reg, Imm(0), True)],
        "five": [Bin(BinOp.MOV, reg, Imm(5), True)],
        "minus3": [Bin(BinOp.MOV, reg, Imm(-3), True)],
        "u32": [_len(reg)],
        "nibble": nibble,
        "negative": [*nibble, Bin(BinOp.SUB, reg, Imm(20), True)],
        "mixed": [*nibble, Bin(BinOp.SUB, reg, Imm(8), True)],
        "wide": [_len(reg), Bin(BinOp.LSH, reg, Imm(32), True), _len(R3), Bin(BinOp.OR, reg, R3, True)],
    }
    return shapes[name]


SHAPES = ("zero", "five", "minus3", "u32", "nibble", "negative", "mixed", "wide")
_R0 = re.compile(r"R0(?:_w)?=(scalar\((?:[^()]|\([^()]*\))*\)|-?\w+)")


def _r0_after(log: str, pc: int) -> str:
    line = next(ln for ln in log.splitlines() if ln.startswith(f"{pc}: ("))
    _, _, state = line.partition(";")
    match = _R0.search(state)
    assert match, line
    return match[1]


def _verdicts(op_insn: Instruction, dst: str, src: str) -> tuple[str, str]:
    """(kernel, ours): r0 after ``op_insn`` in a canonical form, or ``reject: <last line>``."""
    body = shape(R0, dst) + shape(R2, src)
    pc = len(body)
    insns = [LabeledInsn(i, insn) for i, insn in
             enumerate([*body, op_insn, Bin(BinOp.MOV, R0, Imm(0), True), Exit()])]
    try:
        loaded = prog_load_with_log(BpfProgType.SOCKET_FILTER, encode_program(insns), log_level=2)
    except VerifierRejectedError as error:
        kernel = "reject: " + (error.log or "").strip().splitlines()[-2]
    else:
        with loaded.fd:
            kernel = str(parse_scalar(_r0_after(loaded.log, pc)))
    report = verify(insns, log_level=2)
    ours = str(parse_scalar(_r0_after("\n".join(report.log), pc))) if report.accepted else f"reject: {report.reason}"
    return kernel, ours


def _encodable(op: BinOp, is64: bool) -> bool:
    return is64 or op is not BinOp.MOVSX32  # ALU32 has no 32-bit sign extension


BINARY = [(op, is64) for op in BinOp for is64 in (True, False) if _encodable(op, is64)]


@pytest.mark.parametrize(("op", "is64"), BINARY, ids=[f"{op.name}{'' if w else '32'}" for op, w in BINARY])
def test_register_operands_match_kernel(op: BinOp, is64: bool) -> None:
    mismatches = []
    for dst, src in itertools.product(SHAPES, SHAPES):
        kernel, ours = _verdicts(Bin(op, R0, R2, is64), dst, src)
        if kernel != ours:
            mismatches.append(f"r0={dst} r2={src}: kernel {kernel}\n    ours {ours}")
    assert not mismatches, "\n".join(mismatches)


_IMMEDIATES = (0, 1, 5, -3, 31, 32, 63, 0x7FFF_FFFF, -0x8000_0000)
_SHIFTS = frozenset({BinOp.LSH, BinOp.RSH, BinOp.ARSH})
_DIVISIONS = frozenset({BinOp.DIV, BinOp.SDIV, BinOp.MOD, BinOp.SMOD})
IMMEDIATE_OPS = [(op, is64) for op, is64 in BINARY if op not in (BinOp.MOVSX8, BinOp.MOVSX16, BinOp.MOVSX32)]
_IMMEDIATE_IDS = [f"{op.name}{'' if w else '32'}" for op, w in IMMEDIATE_OPS]


@pytest.mark.parametrize(("op", "is64"), IMMEDIATE_OPS, ids=_IMMEDIATE_IDS)
def test_immediate_operands_match_kernel(op: BinOp, is64: bool) -> None:
    mismatches = []
    for dst, imm in itertools.product(SHAPES, _IMMEDIATES):
        if op in _DIVISIONS and imm == 0:
            continue  # refused before any tracking (corpus and check_alu_op tests cover it)
        if op in _SHIFTS and not 0 <= imm < (64 if is64 else 32):
            continue
        kernel, ours = _verdicts(Bin(op, R0, Imm(imm), is64), dst, "zero")
        if kernel != ours:
            mismatches.append(f"r0={dst} imm={imm}: kernel {kernel}\n    ours {ours}")
    assert not mismatches, "\n".join(mismatches)


UNARY: list[tuple[str, Instruction]] = [
    ("neg", Neg(R0, True)),
    ("neg32", Neg(R0, False)),
    *[(f"{order.name.lower()}{width}", Endian(R0, width, order))
      for width in (16, 32, 64) for order in EndianOrder],
]


@pytest.mark.parametrize("insn", [insn for _, insn in UNARY], ids=[name for name, _ in UNARY])
def test_unary_operations_match_kernel(insn: Instruction) -> None:
    mismatches = []
    for dst in SHAPES:
        kernel, ours = _verdicts(insn, dst, "zero")
        if kernel != ours:
            mismatches.append(f"r0={dst}: kernel {kernel}\n    ours {ours}")
    assert not mismatches, "\n".join(mismatches)


# Sign-extending moves the encoding allows but check_alu_op refuses ("BPF_MOV uses reserved
# fields"): a 32-bit move from 32 bits (off 32 in the ALU class) and any with an immediate.
RESERVED_MOVES = [Bin(BinOp.MOVSX32, R0, R2, False), Bin(BinOp.MOVSX8, R0, Imm(3), True),
                  Bin(BinOp.MOVSX16, R0, Imm(3), False)]


@pytest.mark.parametrize("insn", RESERVED_MOVES, ids=["movsx32-alu32", "movsx8-imm", "movsx16-imm32"])
def test_reserved_move_encodings_match_kernel(insn: Instruction) -> None:
    kernel, ours = _verdicts(insn, "five", "nibble")
    assert kernel == ours == "reject: BPF_MOV uses reserved fields"
