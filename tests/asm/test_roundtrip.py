"""Property tests: print -> parse -> encode gives back the same bytes, in both syntaxes and every mode."""

from __future__ import annotations

import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pybpf.asm import assemble, assemble_bytes, format_conformance, format_insn, format_program, parse_llvm
from pybpf.asm.conformance import parse_conformance
from pybpf.errors import InvalidInstructionError
from pybpf.isa.codec import decode, encode, encode_program
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
    Load,
    LoadImm64,
    MayGoto,
    Neg,
    PacketLoad,
    RawInsn,
    Reg,
    Store,
)
from pybpf.isa.opcodes import AtomicCode, EndianOrder, Mode, PseudoSrc, Size

int16 = st.integers(-(1 << 15), (1 << 15) - 1)
int32 = st.integers(-(1 << 31), (1 << 31) - 1)
regs = st.sampled_from(list(Reg))
imms = st.builds(Imm, int32)
operands = st.one_of(regs, imms)
sizes = st.sampled_from(list(Size))
MOVSX = (BinOp.MOVSX8, BinOp.MOVSX16, BinOp.MOVSX32)
PLAIN_OPS = [op for op in BinOp if op not in MOVSX]
RMW = [op for op in AtomicCode if op not in (AtomicCode.LOAD_ACQ, AtomicCode.STORE_REL)]


@st.composite
def movsx(draw: st.DrawFn) -> Bin:
    op = draw(st.sampled_from(MOVSX))
    is64 = True if op is BinOp.MOVSX32 else draw(st.booleans())
    return Bin(op, draw(regs), draw(regs), is64)


@st.composite
def atomics(draw: st.DrawFn) -> Atomic:
    if draw(st.booleans()):
        op = draw(st.sampled_from(RMW))
        size = draw(st.sampled_from([Size.W, Size.DW]))
    else:
        op = draw(st.sampled_from([AtomicCode.LOAD_ACQ, AtomicCode.STORE_REL]))
        size = draw(sizes)
    return Atomic(op, size, draw(regs), draw(int16), draw(regs))


@st.composite
def load_imm64(draw: st.DrawFn) -> LoadImm64:
    src = draw(st.sampled_from(list(PseudoSrc)))
    return LoadImm64(draw(regs), draw(int32), draw(int32), src)


@st.composite
def packet_loads(draw: st.DrawFn) -> PacketLoad:
    size = draw(st.sampled_from([Size.B, Size.H, Size.W]))
    if draw(st.booleans()):
        return PacketLoad(size, Mode.ABS, None, draw(int32))
    return PacketLoad(size, Mode.IND, draw(regs), draw(int32))


@st.composite
def loads(draw: st.DrawFn) -> Load:
    size = draw(sizes)
    sign = size is not Size.DW and draw(st.booleans())
    return Load(size, draw(regs), draw(regs), draw(int16), sign)


instructions: st.SearchStrategy[Instruction] = st.one_of(
    st.builds(Bin, st.sampled_from(PLAIN_OPS), regs, operands, st.booleans()),
    movsx(),
    st.builds(Neg, regs, st.booleans()),
    st.builds(lambda dst, src, spaces: AddrSpaceCast(dst, src, *spaces), regs, regs, st.sampled_from([(0, 1), (1, 0)])),
    st.builds(Endian, regs, st.sampled_from([16, 32, 64]), st.sampled_from(list(EndianOrder))),
    load_imm64(),
    loads(),
    st.builds(Store, sizes, regs, int16, operands),
    packet_loads(),
    atomics(),
    st.builds(Jump, st.sampled_from(list(Cond)), regs, operands, int16, st.booleans()),
    st.builds(Goto, int16, st.just(False)),
    st.builds(Goto, int32, st.just(True)),
    st.builds(MayGoto, int16),
    st.builds(Call, int32),
    st.builds(CallLocal, int32),
    st.builds(CallKfunc, int32, int16),
    st.builds(CallReg, regs),
    st.just(Exit()),
)


def _decodable(data: bytes) -> Instruction | None:
    raws = [RawInsn.from_bytes(data, offset) for offset in (0, 8)]
    try:
        return decode(raws[0], raws[1])
    except InvalidInstructionError:
        return None


# Random slots: mostly junk, so bias the opcode towards real ones and keep reserved fields small.
raw_slots = st.builds(
    lambda opcode, regs_byte, off, imm, second: struct.pack("<BBhi", opcode, regs_byte, off, imm) + second,
    st.integers(0, 255),
    st.integers(0, 255),
    st.one_of(int16, st.sampled_from([0, 1, 8, 16, 32])),
    st.one_of(int32, st.sampled_from([0, 1, 16, 32, 64, 0xE1, 0xF1, 0x100, 0x110, 0x10000])),
    st.one_of(st.just(bytes(8)), st.binary(min_size=8, max_size=8)),
)


def _bytes_of(insn: Instruction) -> bytes:
    return b"".join(raw.to_bytes() for raw in encode(insn))


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(instructions)
def test_llvm_text_round_trips(insn: Instruction) -> None:
    text = format_insn(insn)
    assert encode_program(parse_llvm(text)) == _bytes_of(insn), text
    assert assemble_bytes(text) == _bytes_of(insn), text  # syntax detection agrees


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(instructions)
def test_conformance_text_round_trips(insn: Instruction) -> None:
    text = format_conformance([insn])
    assert encode_program(parse_conformance(text)) == _bytes_of(insn), text
    assert assemble_bytes(text) == _bytes_of(insn), text


@settings(max_examples=400, suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
@given(raw_slots.map(_decodable).filter(lambda insn: insn is not None))
def test_random_decodable_slots_round_trip(insn: Instruction | None) -> None:
    assert insn is not None
    expected = _bytes_of(insn)
    assert encode_program(parse_llvm(format_insn(insn))) == expected
    assert encode_program(parse_conformance(format_conformance([insn]))) == expected


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(instructions, min_size=1, max_size=12),
    st.booleans(),
    st.booleans(),
    st.booleans(),
)
def test_program_listing_round_trips_in_every_mode(
    program: list[Instruction], labels: bool, with_pc: bool, with_bytes: bool
) -> None:
    expected = encode_program(program)
    listing = format_program(program, labels=labels, with_pc=with_pc, with_bytes=with_bytes)
    parsed = assemble(listing)
    assert encode_program(parsed) == expected, listing
    assert [item.insn for item in parsed] == program
