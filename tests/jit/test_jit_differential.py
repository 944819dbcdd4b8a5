"""The JIT against the interpreter: random straight-line arithmetic, and the benchmark programs."""

from __future__ import annotations

from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jit_build import run_both

from pybpf.isa import (
    Bin,
    BinOp,
    Cond,
    Endian,
    EndianOrder,
    Exit,
    Imm,
    Instruction,
    Jump,
    LabeledInsn,
    Load,
    LoadImm64,
    Neg,
    Reg,
    Size,
    Store,
    decode_program,
)
from pybpf.isa.insn import slot_count

PROGS = Path(__file__).resolve().parents[2] / "benchmarks" / "progs"
U64 = (1 << 64) - 1

registers = st.sampled_from([Reg(number) for number in range(10)])
interesting = st.sampled_from([0, 1, 7, 31, 32, 63, 64, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 1 << 63, U64, U64 - 1])
words = st.one_of(interesting, st.integers(0, U64))
immediates = st.one_of(
    st.sampled_from([0, 1, -1, 31, 32, 63, -(1 << 31), (1 << 31) - 1]), st.integers(-(1 << 31), (1 << 31) - 1)
)


@st.composite
def alu_insns(draw: st.DrawFn) -> Instruction:
    kind = draw(st.sampled_from(["bin", "bin", "bin", "bin", "neg", "endian", "lddw"]))
    dst = draw(registers)
    if kind == "neg":
        return Neg(dst, draw(st.booleans()))
    if kind == "endian":
        return Endian(dst, draw(st.sampled_from([16, 32, 64])), draw(st.sampled_from(list(EndianOrder))))
    if kind == "lddw":
        return LoadImm64.constant(dst, draw(words))
    src = draw(st.one_of(registers, immediates.map(Imm)))
    return Bin(draw(st.sampled_from(list(BinOp))), dst, src, draw(st.booleans()))


def numbered(insns: list[Instruction]) -> list[LabeledInsn]:
    out, pc = [], 0
    for insn in insns:
        out.append(LabeledInsn(pc, insn))
        pc += slot_count(insn)
    return out


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(alu_insns(), min_size=1, max_size=24), st.lists(words, min_size=10, max_size=10))
def test_straight_line_alu_matches_the_interpreter(insns: list[Instruction], initial: list[int]) -> None:
    program = numbered([*insns, Exit()])
    (interp, _), (jit, _) = run_both(program, registers=dict(enumerate(initial)))
    assert jit.registers[:10] == interp.registers[:10]  # r10 is each engine's own stack


# A small pool makes equal operands (the edge of every comparison) frequent.
few_values = st.one_of(st.sampled_from([0, 1, 5, 0xFFFFFFFF, 1 << 63, U64]), words)


@st.composite
def branchy_programs(draw: st.DrawFn) -> list[LabeledInsn]:
    """Arithmetic, stack loads and stores, and forward jumps (so every program ends)."""
    length = draw(st.integers(1, 30))
    insns: list[Instruction] = []
    for pc in range(length):
        kind = draw(st.sampled_from(["alu", "alu", "jump", "store", "load"]))
        if kind == "alu":
            insn = draw(alu_insns())
            insns.append(insn if not isinstance(insn, LoadImm64) else Neg(insn.dst, True))  # one slot each
        elif kind == "jump":
            src = draw(st.one_of(registers, st.sampled_from([0, 1, 5, -1]).map(Imm), immediates.map(Imm)))
            off = draw(st.integers(0, length - pc - 1))  # lands on a later instruction or the final exit
            insns.append(Jump(draw(st.sampled_from(list(Cond))), draw(registers), src, off, draw(st.booleans())))
        else:
            size = draw(st.sampled_from(list(Size)))
            off = -draw(st.integers(size.nbytes, 64))
            if kind == "store":
                value = draw(st.one_of(registers, immediates.map(Imm)))
                insns.append(Store(size, Reg.R10, off, value))
            else:
                insns.append(Load(size, draw(registers), Reg.R10, off, draw(st.booleans())))
    return numbered([*insns, Exit()])


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(branchy_programs(), st.lists(few_values, min_size=10, max_size=10))
def test_programs_with_jumps_and_stack_memory_match_the_interpreter(
    program: list[LabeledInsn], initial: list[int]
) -> None:
    (interp, _), (jit, _) = run_both(program, registers=dict(enumerate(initial)))
    assert jit.registers[:10] == interp.registers[:10]


def load_section(path: Path, section: str = "bench") -> bytes:
    with path.open("rb") as stream:
        elf = ELFFile(stream)
        found = elf.get_section_by_name(section)
        assert found is not None, f"{path}: no section {section}"
        assert elf.get_section_by_name(f".rel{section}") is None, f"{path}: {section} has relocations"
        data: bytes = found.data()
        return data


BENCH_INPUTS = {
    "sum64k": bytes((i * 7) & 0xFF for i in range(4096)),
    "fnv1a": bytes((i * 13 + 5) & 0xFF for i in range(200)),
    "sort": (12345).to_bytes(4, "little"),
    "sieve": bytes(2048),
}


@pytest.mark.parametrize("name", sorted(BENCH_INPUTS))
def test_benchmark_programs_match_the_interpreter(name: str) -> None:
    path = PROGS / f"{name}.o"
    if not path.exists():
        pytest.skip(f"{path} is not built")
    program = decode_program(load_section(path))
    (interp, interp_memory), (jit, jit_memory) = run_both(program, memory=BENCH_INPUTS[name])
    assert jit.r0 == interp.r0
    assert jit_memory == interp_memory
