"""Hand-written edge cases, each checked against RFC 9669 and against the kernel.

Every case runs twice: once with its inputs read from the packet (unknown to the verifier, so
the kernel runs the plain JIT code) and once with them as constants (the verifier tracks them
exactly, folds branches and may rewrite instructions). ``expected`` values follow from the
RFC's wording, worked out in the comments; registers a case does not mention must keep their input.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pytest
from diff_harness import compare, report_disagreement, run_interpreter
from diffgen import DATA_REGS, R9_SPILL, WINDOW_BYTES, Block, DiffProgram

from pybpf.isa import (
    Atomic,
    AtomicCode,
    Bin,
    BinOp,
    Endian,
    EndianOrder,
    Goto,
    Imm,
    Instruction,
    Jump,
    Load,
    Neg,
    Reg,
    Size,
    Store,
)
from pybpf.isa.insn import Cond
from pybpf.kernel import available

U32 = (1 << 32) - 1
U64 = (1 << 64) - 1
INT64_MIN = 1 << 63
MINUS_1 = U64

R0, R1, R2, R3, R4, R5, R6, R7, R8, R9, R10 = Reg

_OK, _REASON = available()


@dataclass(frozen=True)
class Edge:
    name: str
    inputs: Mapping[Reg, int]
    body: Sequence[Instruction]
    expected: Mapping[Reg, int]
    known_divergence: str | None = field(default=None)


def alu(op: BinOp, dst: Reg, src: Reg | int, is64: bool = True) -> Bin:
    return Bin(op, dst, src if isinstance(src, Reg) else Imm(src), is64)


def not_taken_bit(jump: Jump, bit: int) -> list[Instruction]:
    """``if <jump> goto +1; r0 |= 1 << bit``: the bit is set exactly when the jump is not taken."""
    return [jump, alu(BinOp.OR, R0, 1 << bit)]


# JMP32 against JMP on operands whose low halves tell a different story than the full values.
_JUMP_CHECKS: list[tuple[Jump, bool]] = [
    (Jump(Cond.JEQ, R1, R2, 1, True), True),  # low halves 5 == 5
    (Jump(Cond.JEQ, R1, R2, 1, False), False),  # 0x1_00000005 != 0x2_00000005
    (Jump(Cond.JGT, R3, R4, 1, True), False),  # 1 > 2 is false
    (Jump(Cond.JGT, R3, R4, 1, False), True),  # 0xffffffff_00000001 > 2
    (Jump(Cond.JSGT, R5, Imm(0), 1, True), False),  # (s32)0x80000000 is negative
    (Jump(Cond.JSGT, R5, Imm(0), 1, False), True),  # (s64)0x80000000 is positive
    (Jump(Cond.JSET, R6, R7, 1, True), False),  # the common bits are all in the high half
    (Jump(Cond.JSET, R6, R7, 1, False), True),
    (Jump(Cond.JNE, R1, R2, 1, True), False),
    (Jump(Cond.JSLT, R3, Imm(0), 1, True), False),  # (s32)1 < 0 is false
    (Jump(Cond.JSLT, R3, Imm(0), 1, False), True),  # (s64)0xffffffff_00000001 < 0
    (Jump(Cond.JLE, R1, Imm(5), 1, True), True),
    (Jump(Cond.JLE, R1, Imm(5), 1, False), False),
    (Jump(Cond.JSGE, R8, Imm(-1), 1, True), True),  # (s32)0xffffffff = -1 >= -1
    (Jump(Cond.JSGE, R8, Imm(-1), 1, False), True),  # 0x00000000_ffffffff is positive
    (Jump(Cond.JLT, R8, Imm(-1), 1, True), False),  # 0xffffffff < 0xffffffff is false
    (Jump(Cond.JLT, R8, Imm(-1), 1, False), True),  # imm -1 sign-extends to 2**64 - 1
]

GARBAGE = 0xDEADBEEF_00000000  # a high half that 32-bit operations must ignore

EDGES = [
    Edge(
        "sdiv64 INT64_MIN by -1",
        {R1: INT64_MIN, R2: MINUS_1, R3: INT64_MIN},
        [alu(BinOp.SDIV, R1, R2), alu(BinOp.SDIV, R3, -1)],
        {R1: INT64_MIN, R3: INT64_MIN},  # the quotient 2**63 wraps back to INT64_MIN
    ),
    Edge(
        "smod64 INT64_MIN by -1",
        {R1: INT64_MIN, R2: MINUS_1, R3: INT64_MIN},
        [alu(BinOp.SMOD, R1, R2), alu(BinOp.SMOD, R3, -1)],
        {R1: 0, R3: 0},
    ),
    Edge(
        "sdiv32 and smod32 INT32_MIN by -1, garbage in the high halves",
        {R1: GARBAGE | 0x80000000, R2: 0x12345678_FFFFFFFF, R3: GARBAGE | 0x80000000, R4: GARBAGE | 0x80000000},
        [
            alu(BinOp.SDIV, R1, R2, False),
            alu(BinOp.SMOD, R3, R2, False),
            alu(BinOp.SDIV, R4, -1, False),
            alu(BinOp.MOV, R5, R4),
            alu(BinOp.SMOD, R5, -1, False),
        ],
        {R1: 0x80000000, R3: 0, R4: 0x80000000, R5: 0},
    ),
    Edge(
        "smod by -1 of ordinary values",
        {R1: 7, R2: -7 & U64, R3: MINUS_1, R4: 7, R5: -7 & U64},
        [alu(BinOp.SMOD, R1, R3), alu(BinOp.SMOD, R2, R3), alu(BinOp.SMOD, R4, -1), alu(BinOp.SMOD, R5, -1, False)],
        {R1: 0, R2: 0, R4: 0, R5: 0},
    ),
    Edge(
        "signed division truncates toward zero, the remainder takes the dividend's sign",
        {R1: -7 & U64, R2: 2, R3: -7 & U64, R4: 7, R5: GARBAGE | (-7 & U32)},
        [alu(BinOp.SDIV, R1, R2), alu(BinOp.SMOD, R3, R2), alu(BinOp.SMOD, R4, -2), alu(BinOp.SDIV, R5, 2, False)],
        {R1: -3 & U64, R3: -1 & U64, R4: 1, R5: -3 & U32},
    ),
    Edge(
        "division and modulo by a zero register",
        {
            R0: 0xFFFFFFFF_12345678,
            R1: 0xFFFFFFFF_12345678,
            R2: 0,
            R3: 0xFFFFFFFF_12345678,
            R4: 0xFFFFFFFF_12345678,
            R5: 0xFFFFFFFF_12345678,
            R6: 0xFFFFFFFF_12345678,
            R7: 0xFFFFFFFF_00000000,
            R8: 100,
        },
        [
            alu(BinOp.DIV, R1, R2),  # x / 0 = 0
            alu(BinOp.MOD, R3, R2),  # x % 0 = x
            alu(BinOp.MOD, R4, R2, False),  # x % 0 = x, but a 32-bit result is zero-extended
            alu(BinOp.DIV, R5, R2, False),
            alu(BinOp.SMOD, R6, R2),
            alu(BinOp.DIV, R8, R7, False),  # the divisor's low half is 0
            alu(BinOp.SMOD, R0, R2, False),
        ],
        {R0: 0x12345678, R1: 0, R3: 0xFFFFFFFF_12345678, R4: 0x12345678, R5: 0, R6: 0xFFFFFFFF_12345678, R8: 0},
    ),
    Edge(
        "64-bit shifts by registers holding 63, 64 and 65",
        {R1: 1, R2: 63, R3: 1, R4: 64, R5: 1, R6: 65, R7: INT64_MIN, R8: INT64_MIN, R9: INT64_MIN, R0: 3},
        [
            alu(BinOp.LSH, R1, R2),
            alu(BinOp.LSH, R3, R4),  # 64 & 63 = 0
            alu(BinOp.LSH, R5, R6),  # 65 & 63 = 1
            alu(BinOp.RSH, R7, R2),
            alu(BinOp.ARSH, R8, R2),
            alu(BinOp.ARSH, R9, R4),
            alu(BinOp.RSH, R0, R4),
        ],
        {R1: INT64_MIN, R3: 1, R5: 2, R7: 1, R8: MINUS_1, R9: INT64_MIN, R0: 3},
    ),
    Edge(
        "32-bit shifts by registers holding 31, 32 and 33 (and garbage above)",
        {
            R1: 0xFFFFFFFF_00000001,
            R2: 31,
            R3: 0xFFFFFFFF_00000001,
            R4: 32,
            R5: 0xFFFFFFFF_00000001,
            R6: GARBAGE | 33,
            R7: 0x80000000,
            R8: 0xABCDEF00_00000020,
            R9: 0x12345678_80000000,
            R0: 0x80000000,
        },
        [
            alu(BinOp.LSH, R1, R2, False),
            alu(BinOp.LSH, R3, R4, False),  # 32 & 31 = 0: unchanged low half, zero-extended
            alu(BinOp.LSH, R5, R6, False),  # 33 & 31 = 1
            alu(BinOp.ARSH, R7, R2, False),
            alu(BinOp.ARSH, R9, R8, False),
            alu(BinOp.RSH, R0, R4, False),
        ],
        {R1: 0x80000000, R3: 1, R5: 2, R7: U32, R9: 0x80000000, R0: 0x80000000},
    ),
    Edge(
        "JMP32 and JMP on values differing only in the high half",
        {
            R0: 0,
            R1: 0x1_00000005,
            R2: 0x2_00000005,
            R3: 0xFFFFFFFF_00000001,
            R4: 2,
            R5: 0x80000000,
            R6: 0xFF_00000000,
            R7: 0x0F_00000000,
            R8: 0xFFFFFFFF,
        },
        [insn for bit, (jump, _) in enumerate(_JUMP_CHECKS) for insn in not_taken_bit(jump, bit)],
        {R0: sum(1 << bit for bit, (_, taken) in enumerate(_JUMP_CHECKS) if not taken)},
    ),
    Edge(
        "sign-extending loads of 0x80, 0x8000 and 0x80000000",
        dict.fromkeys((R1, R2, R3, R4, R5, R6, R7), 0x55555555_55555555),
        [
            Store(Size.B, R10, -80, Imm(0x80)),
            Store(Size.H, R10, -72, Imm(0x8000)),
            Store(Size.W, R10, -64, Imm(-0x80000000)),
            Store(Size.B, R10, -56, Imm(0x7F)),
            Load(Size.B, R1, R10, -80, sign_extend=True),
            Load(Size.B, R2, R10, -80),
            Load(Size.H, R3, R10, -72, sign_extend=True),
            Load(Size.H, R4, R10, -72),
            Load(Size.W, R5, R10, -64, sign_extend=True),
            Load(Size.W, R6, R10, -64),
            Load(Size.B, R7, R10, -56, sign_extend=True),
        ],
        {
            R1: 0xFFFFFFFF_FFFFFF80,
            R2: 0x80,
            R3: 0xFFFFFFFF_FFFF8000,
            R4: 0x8000,
            R5: 0xFFFFFFFF_80000000,
            R6: 0x80000000,
            R7: 0x7F,
        },
    ),
    Edge(
        "byte swaps of a value with high bits set",
        dict.fromkeys((R1, R2, R3, R4, R5, R6, R7, R8), 0xDEADBEEF_CAFE1234),
        [
            Endian(R1, 16, EndianOrder.SWAP),
            Endian(R2, 16, EndianOrder.BE),
            Endian(R3, 16, EndianOrder.LE),
            Endian(R4, 32, EndianOrder.SWAP),
            Endian(R5, 32, EndianOrder.LE),
            Endian(R6, 64, EndianOrder.SWAP),
            Endian(R7, 64, EndianOrder.BE),
            Endian(R8, 64, EndianOrder.LE),
        ],
        {
            R1: 0x3412,  # the low 16 bits swapped, the rest cleared
            R2: 0x3412,
            R3: 0x1234,  # to-little-endian on a little-endian machine only truncates
            R4: 0x3412FECA,
            R5: 0xCAFE1234,
            R6: 0x3412FECA_EFBEADDE,
            R7: 0x3412FECA_EFBEADDE,
            R8: 0xDEADBEEF_CAFE1234,
        },
    ),
    Edge(
        "sign-extending moves",
        {R1: 0x12345680, R5: 0xDEAD_0000_8000, R8: 0x1_80000000},
        [
            alu(BinOp.MOVSX8, R2, R1),
            alu(BinOp.MOVSX8, R3, R1, False),
            alu(BinOp.MOVSX16, R4, R1),
            alu(BinOp.MOVSX16, R6, R5),
            alu(BinOp.MOVSX16, R7, R5, False),
            alu(BinOp.MOVSX32, R9, R8),
        ],
        {
            R2: 0xFFFFFFFF_FFFFFF80,
            R3: 0xFFFFFF80,
            R4: 0x5680,
            R6: 0xFFFFFFFF_FFFF8000,
            R7: 0xFFFF8000,
            R9: 0xFFFFFFFF_80000000,
        },
    ),
    Edge(
        "negation at the extremes",
        {R1: INT64_MIN, R2: GARBAGE | 0x80000000, R3: 0, R4: 1},
        [Neg(R1, True), Neg(R2, False), Neg(R3, True), Neg(R4, False)],
        {R1: INT64_MIN, R2: 0x80000000, R3: 0, R4: U32},
    ),
    Edge(
        "32-bit arithmetic zero-extends its result",
        {R1: MINUS_1, R2: 0xAAAAAAAA_55555555, R3: MINUS_1, R4: 0x1_00000000},
        [
            alu(BinOp.ADD, R1, 1, False),
            alu(BinOp.MOV, R2, R2, False),
            alu(BinOp.MUL, R3, 3, False),
            alu(BinOp.SUB, R4, 1, False),
        ],
        {R1: 0, R2: 0x55555555, R3: 0xFFFFFFFD, R4: U32},
    ),
    Edge(
        "cmpxchg32 on the fall-through path zero-extends r0",
        {R0: 0xFFFFFFFF_00000000, R9: 0x55, R8: 0},
        [
            Jump(Cond.JLE, R0, Imm(5), 2, False),
            Atomic(AtomicCode.CMPXCHG, Size.W, R10, -76, R9),
            Goto(1),
            alu(BinOp.MOV, R8, 1),
        ],
        {R0: 0},  # the word at fp-76 is 0 == (u32)r0: stored, and r0 = old value (0), zero-extended
    ),
    Edge(
        "cmpxchg32 reached only by a taken branch zero-extends r0",
        {R0: 0xFFFFFFFF_00000000, R9: 0x55, R8: 0},
        [
            Jump(Cond.JGT, R0, Imm(5), 2, False),
            alu(BinOp.MOV, R8, 1),
            Goto(1),
            Atomic(AtomicCode.CMPXCHG, Size.W, R10, -76, R9),
        ],
        {R0: 0},
        known_divergence="cmpxchg32-r0-zext",
    ),
    Edge(
        "64-bit atomics fetch the old value; failed cmpxchg leaves memory alone",
        {R0: 7, R1: 0x10, R2: 0xF0, R3: 0x1_00000000},
        [
            Store(Size.DW, R10, -80, Imm(0x0F)),
            Atomic(AtomicCode.FETCH_ADD, Size.DW, R10, -80, R1),  # r1 = 0x0f, memory 0x1f
            Atomic(AtomicCode.FETCH_OR, Size.DW, R10, -80, R2),  # r2 = 0x1f, memory 0xff
            Atomic(AtomicCode.XCHG, Size.DW, R10, -80, R3),  # r3 = 0xff, memory 2**32
            Atomic(AtomicCode.CMPXCHG, Size.DW, R10, -80, R1),  # 7 != 2**32: r0 = 2**32
            Load(Size.DW, R4, R10, -80),
        ],
        {R0: 0x1_00000000, R1: 0x0F, R2: 0x1F, R3: 0xFF, R4: 0x1_00000000},
    ),
]


def edge_program(edge: Edge, *, known: bool) -> DiffProgram:
    """The case as a program whose inputs come from the packet, or (``known``) from constants."""
    values = [edge.inputs.get(reg, 0) for reg in DATA_REGS]
    packet = b"".join(value.to_bytes(8, "little") for value in values) + bytes(WINDOW_BYTES)
    reg_init = tuple(values) if known else (None,) * len(DATA_REGS)
    return DiffProgram(
        None, R9_SPILL, reg_init, (None,) * (WINDOW_BYTES // 8), (Block("edge", tuple(edge.body)),), packet
    )


def final_registers(packet: bytes) -> list[int]:
    return [int.from_bytes(packet[8 * i : 8 * i + 8], "little") for i in range(len(DATA_REGS))]


def expected_registers(edge: Edge) -> list[int]:
    return [edge.expected.get(reg, edge.inputs.get(reg, 0)) for reg in DATA_REGS]


CASES = [
    pytest.param(edge, known, id=f"{edge.name} ({'constants' if known else 'packet'})")
    for edge in EDGES
    for known in (False, True)
]


@pytest.mark.parametrize(("edge", "known"), CASES)
def test_interpreter_follows_the_rfc(edge: Edge, known: bool) -> None:
    result = run_interpreter(edge_program(edge, known=known))
    assert [hex(v) for v in final_registers(result.packet)] == [hex(v) for v in expected_registers(edge)]


@pytest.mark.kernel
@pytest.mark.skipif(not _OK, reason=f"bpf() unavailable: {_REASON}")
@pytest.mark.parametrize(("edge", "known"), CASES)
def test_kernel_agrees(edge: Edge, known: bool) -> None:
    outcome = compare(edge_program(edge, known=known))
    assert outcome.kernel is not None, report_disagreement(outcome)
    if outcome.agree:
        assert final_registers(outcome.kernel.packet) == expected_registers(edge)
        return
    # Only the divergence this case documents may explain a difference (and only that one).
    assert edge.known_divergence is not None, report_disagreement(outcome)
    assert outcome.divergence == edge.known_divergence, report_disagreement(outcome)
