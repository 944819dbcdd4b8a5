"""Encode/decode tables for every opcode, validation errors, and lossless round trips."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pybpf.errors import InvalidInstructionError
from pybpf.isa import (
    AddrSpaceCast,
    Atomic,
    AtomicCode,
    Bin,
    BinOp,
    Call,
    CallKfunc,
    CallLocal,
    CallReg,
    Cond,
    Endian,
    EndianOrder,
    Exit,
    Goto,
    Imm,
    Instruction,
    Jump,
    Load,
    LoadImm64,
    MayGoto,
    Mode,
    Neg,
    PacketLoad,
    PseudoSrc,
    RawInsn,
    Reg,
    Size,
    Store,
    decode,
    decode_program,
    encode,
    encode_program,
)

R0, R1, R2, R10 = Reg.R0, Reg.R1, Reg.R2, Reg.R10

# (instruction, expected (opcode, dst, src, off, imm)) -- opcodes written from the RFC 9669 tables.
TABLE = [
    (Bin(BinOp.ADD, R1, Imm(22), True), (0x07, 1, 0, 0, 22)),
    (Bin(BinOp.ADD, R1, R2, True), (0x0F, 1, 2, 0, 0)),
    (Bin(BinOp.ADD, R1, Imm(-3), False), (0x04, 1, 0, 0, -3)),
    (Bin(BinOp.SUB, R1, R2, False), (0x1C, 1, 2, 0, 0)),
    (Bin(BinOp.MUL, R1, Imm(3), True), (0x27, 1, 0, 0, 3)),
    (Bin(BinOp.DIV, R1, R2, True), (0x3F, 1, 2, 0, 0)),
    (Bin(BinOp.SDIV, R1, R2, True), (0x3F, 1, 2, 1, 0)),
    (Bin(BinOp.SDIV, R1, Imm(-2), False), (0x34, 1, 0, 1, -2)),
    (Bin(BinOp.OR, R1, Imm(1), True), (0x47, 1, 0, 0, 1)),
    (Bin(BinOp.AND, R1, R2, False), (0x5C, 1, 2, 0, 0)),
    (Bin(BinOp.LSH, R1, Imm(63), True), (0x67, 1, 0, 0, 63)),
    (Bin(BinOp.RSH, R1, R2, True), (0x7F, 1, 2, 0, 0)),
    (Bin(BinOp.MOD, R1, R2, True), (0x9F, 1, 2, 0, 0)),
    (Bin(BinOp.SMOD, R1, Imm(7), True), (0x97, 1, 0, 1, 7)),
    (Bin(BinOp.XOR, R1, R2, True), (0xAF, 1, 2, 0, 0)),
    (Bin(BinOp.MOV, R0, Imm(1), True), (0xB7, 0, 0, 0, 1)),
    (Bin(BinOp.MOV, R0, R1, False), (0xBC, 0, 1, 0, 0)),
    (Bin(BinOp.MOVSX8, R0, R1, True), (0xBF, 0, 1, 8, 0)),
    (Bin(BinOp.MOVSX16, R0, R1, False), (0xBC, 0, 1, 16, 0)),
    (Bin(BinOp.MOVSX32, R0, R1, True), (0xBF, 0, 1, 32, 0)),
    (Bin(BinOp.ARSH, R1, Imm(4), True), (0xC7, 1, 0, 0, 4)),
    (AddrSpaceCast(R1, R0, 0, 1), (0xBF, 1, 0, 1, 1)),
    (AddrSpaceCast(R2, R1, 1, 0), (0xBF, 2, 1, 1, 1 << 16)),
    (Neg(R1, True), (0x87, 1, 0, 0, 0)),
    (Neg(R1, False), (0x84, 1, 0, 0, 0)),
    (Endian(R0, 16, EndianOrder.LE), (0xD4, 0, 0, 0, 16)),
    (Endian(R0, 32, EndianOrder.BE), (0xDC, 0, 0, 0, 32)),
    (Endian(R0, 64, EndianOrder.SWAP), (0xD7, 0, 0, 0, 64)),
    (Load(Size.W, R0, R1, 4), (0x61, 0, 1, 4, 0)),
    (Load(Size.H, R0, R1, -2), (0x69, 0, 1, -2, 0)),
    (Load(Size.B, R0, R1, 0), (0x71, 0, 1, 0, 0)),
    (Load(Size.DW, R0, R10, -8), (0x79, 0, 10, -8, 0)),
    (Load(Size.B, R0, R1, 1, sign_extend=True), (0x91, 0, 1, 1, 0)),
    (Load(Size.H, R0, R1, 2, sign_extend=True), (0x89, 0, 1, 2, 0)),
    (Load(Size.W, R0, R1, 4, sign_extend=True), (0x81, 0, 1, 4, 0)),
    (Store(Size.W, R10, -4, Imm(7)), (0x62, 10, 0, -4, 7)),
    (Store(Size.DW, R10, -8, R1), (0x7B, 10, 1, -8, 0)),
    (Store(Size.B, R1, 3, R2), (0x73, 1, 2, 3, 0)),
    (Atomic(AtomicCode.ADD, Size.DW, R10, -8, R1), (0xDB, 10, 1, -8, 0x00)),
    (Atomic(AtomicCode.FETCH_OR, Size.W, R10, -4, R1), (0xC3, 10, 1, -4, 0x41)),
    (Atomic(AtomicCode.XCHG, Size.DW, R1, 0, R2), (0xDB, 1, 2, 0, 0xE1)),
    (Atomic(AtomicCode.CMPXCHG, Size.W, R1, 0, R2), (0xC3, 1, 2, 0, 0xF1)),
    (Atomic(AtomicCode.LOAD_ACQ, Size.B, R0, 0, R1), (0xD3, 0, 1, 0, 0x100)),
    (Atomic(AtomicCode.STORE_REL, Size.H, R1, 0, R2), (0xCB, 1, 2, 0, 0x110)),
    (PacketLoad(Size.H, Mode.ABS, None, 12), (0x28, 0, 0, 0, 12)),
    (PacketLoad(Size.W, Mode.IND, R1, 4), (0x40, 0, 1, 0, 4)),
    (Jump(Cond.JEQ, R1, Imm(0), 3, False), (0x15, 1, 0, 3, 0)),
    (Jump(Cond.JGT, R1, R2, -2, False), (0x2D, 1, 2, -2, 0)),
    (Jump(Cond.JSET, R1, Imm(1), 1, True), (0x46, 1, 0, 1, 1)),
    (Jump(Cond.JNE, R1, R2, 1, True), (0x5E, 1, 2, 1, 0)),
    (Jump(Cond.JSLE, R1, Imm(-1), 1, False), (0xD5, 1, 0, 1, -1)),
    (Jump(Cond.JLT, R1, R2, 1, False), (0xAD, 1, 2, 1, 0)),
    (Goto(5), (0x05, 0, 0, 5, 0)),
    (Goto(70000, long=True), (0x06, 0, 0, 0, 70000)),
    (MayGoto(2), (0xE5, 0, 0, 2, 0)),
    (Call(1), (0x85, 0, 0, 0, 1)),
    (CallLocal(4), (0x85, 0, 1, 0, 4)),
    (CallKfunc(1234, 1), (0x85, 0, 2, 1, 1234)),
    (CallReg(R2), (0x8D, 2, 0, 0, 0)),
    (Exit(), (0x95, 0, 0, 0, 0)),
]


@pytest.mark.parametrize(("insn", "fields"), TABLE, ids=lambda v: repr(v)[:40])
def test_encode_decode_table(insn: Instruction, fields: tuple[int, int, int, int, int]) -> None:
    (raw,) = encode(insn)
    assert (raw.opcode, raw.dst, raw.src, raw.off, raw.imm) == fields
    assert decode(raw) == insn


def test_lddw_two_slots_and_value() -> None:
    insn = LoadImm64.constant(R0, 0x1122334455667788)
    lo, hi = encode(insn)
    assert (lo.opcode, lo.imm, hi.opcode, hi.imm) == (0x18, 0x55667788, 0, 0x11223344)
    assert insn.value == 0x1122334455667788
    assert decode(lo, hi) == insn
    neg = LoadImm64.constant(R1, -1)
    assert neg.value == (1 << 64) - 1 and neg.imm == -1 and neg.next_imm == -1


@pytest.mark.parametrize("src", list(PseudoSrc))
def test_lddw_pseudo_sources_round_trip(src: PseudoSrc) -> None:
    insn = LoadImm64(R1, 3, 8 if src in (PseudoSrc.MAP_VALUE, PseudoSrc.MAP_IDX_VALUE) else 0, src)
    data = encode_program([insn, Exit()])
    if src is PseudoSrc.FUNC:  # a function reference must point at an instruction
        data = encode_program([LoadImm64(R1, 1, 0, src), Exit(), Exit()])
    assert encode_program(decode_program(data)) == data


def raw(opcode: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", opcode, (src << 4) | dst, off, imm)


EXIT = raw(0x95)


@pytest.mark.parametrize(
    ("program", "pc", "reason"),
    [
        (raw(0x07, off=1, imm=1) + EXIT, 0, "reserved field 'off'"),
        (raw(0x07, src=1, imm=1) + EXIT, 0, "reserved field 'src'"),
        (raw(0x0F, imm=1) + EXIT, 0, "reserved field 'imm'"),
        (raw(0x95, dst=1), 0, "reserved field 'dst'"),
        (raw(0xB7) + raw(0x95, imm=3), 1, "reserved field 'imm'"),
        (raw(0x07, dst=11) + EXIT, 0, "invalid destination register r11"),
        (raw(0x0F, src=12) + EXIT, 0, "invalid source register r12"),
        (raw(0xFF) + EXIT, 0, "unknown opcode 0xff"),
        (raw(0x8F) + EXIT, 0, "unknown opcode 0x8f"),  # neg with X bit
        (raw(0x18, imm=1), 0, "lddw is truncated"),
        (raw(0x18) + raw(0x07) + EXIT, 0, "second slot must have opcode 0"),
        (raw(0x05, off=5) + EXIT, 0, "jump out of range"),
        (raw(0x05, off=-3) + EXIT, 0, "jump out of range"),
        (raw(0x05, off=1) + raw(0x18) + raw(0) + EXIT, 0, "middle of an lddw"),
        (raw(0x85, src=1, imm=10) + EXIT, 0, "call out of range"),
        (raw(0x3F, dst=1, src=2, off=2) + EXIT, 0, "offset must be 0 (unsigned) or 1 (signed)"),
        (raw(0xBC, src=1, off=32) + EXIT, 0, "sign-extension width"),
        (raw(0xBF, src=1, off=1) + EXIT, 0, "can only convert between address space 1 and 0"),
        (raw(0xBF, src=1, off=1, imm=0x10001) + EXIT, 0, "can only convert between address space 1 and 0"),
        (raw(0xBC, src=1, off=1, imm=1) + EXIT, 0, "sign-extension width"),
        (raw(0xD4, imm=8) + EXIT, 0, "width must be 16, 32 or 64"),
        (raw(0xDF, imm=16) + EXIT, 0, "unknown opcode 0xdf"),
        (raw(0x99) + EXIT, 0, "no 8-byte sign-extending load"),
        (raw(0xDB, imm=0x02) + EXIT, 0, "unknown atomic operation"),
        (raw(0xD3, imm=0x01) + EXIT, 0, "does not exist for size B"),
        (raw(0x95) + b"\x00\x00\x00", 1, "not a multiple of 8"),
        (raw(0x85, src=3) + EXIT, 0, "call source must be"),
        (raw(0x18, src=7) + raw(0) + EXIT, 0, "unknown pseudo source 7"),
    ],
)
def test_validation_errors_name_pc_and_reason(program: bytes, pc: int, reason: str) -> None:
    with pytest.raises(InvalidInstructionError) as info:
        decode_program(program)
    assert info.value.pc == pc
    assert reason in str(info.value)
    assert str(info.value).startswith(f"instruction {pc}: ")


def test_empty_program_rejected() -> None:
    with pytest.raises(InvalidInstructionError, match="empty"):
        decode_program(b"")


def test_conformance_unused_field_negatives_rejected() -> None:
    from pathlib import Path

    negatives = sorted((Path(__file__).parents[2].parent / "shared/conformance/negative").glob("unused-*.data"))
    if not negatives:
        pytest.skip("../shared/conformance/negative not present")
    for path in negatives:
        lines = path.read_text().split("-- raw", 1)[1].split("--", 1)[0].split()
        data = bytes.fromhex("".join(lines))
        # mov64 with offset 1 is addr_space_cast since Linux 6.9: its imm (0 here) is the fault.
        with pytest.raises(InvalidInstructionError, match=r"reserved field|offset must be|addr_space_cast"):
            decode_program(data)


slots = st.binary(min_size=8, max_size=8)


@settings(max_examples=3000)
@given(slots, slots)
def test_any_accepted_slot_round_trips(first: bytes, second: bytes) -> None:
    """Lossless: whatever decode accepts, encode reproduces byte for byte."""
    a, b = RawInsn.from_bytes(first), RawInsn.from_bytes(second)
    try:
        insn = decode(a, b)
    except InvalidInstructionError:
        return
    out = b"".join(r.to_bytes() for r in encode(insn))
    assert out == (first + second)[: len(out)]


@settings(max_examples=500)
@given(st.lists(slots, min_size=1, max_size=12))
def test_random_programs_decode_or_fail_cleanly(chunks: list[bytes]) -> None:
    data = b"".join(chunks)
    try:
        insns = decode_program(data)
    except InvalidInstructionError as error:
        assert error.pc is None or 0 <= error.pc <= len(chunks)
        return
    assert encode_program(insns) == data
    assert sum(2 if isinstance(i.insn, LoadImm64) else 1 for i in insns) == len(chunks)
