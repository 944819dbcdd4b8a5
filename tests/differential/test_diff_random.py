"""Differential test: 300 seeded random programs, run by the kernel and by our interpreter.

The generator and the way both sides see one program are described in ``diffgen``; the
harness in ``diff_harness``. Reproduce one seed with ``python tests/differential/diff_harness.py SEED``; run other
seeds with ``PYBPF_DIFF_SEEDS=first:stop`` in the environment.
Kernel tests skip, with the probe's reason, where bpf() does not work; the generator checks run anywhere.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, replace

import pytest
from diff_harness import Comparison, compare, report_disagreement, run_interpreter, shrink
from diffgen import XDP_PASS, DiffProgram, generate

import pybpf.vm.interpreter
from pybpf.isa import (
    Atomic,
    AtomicCode,
    Bin,
    BinOp,
    Endian,
    EndianOrder,
    Goto,
    Instruction,
    Jump,
    Load,
    Neg,
    Reg,
    Size,
    Store,
    encode_program,
)
from pybpf.isa.insn import Cond
from pybpf.kernel import available
from pybpf.vm.alu_ops import build_jump
from pybpf.vm.execution import Op


def _seeds() -> range:
    """300 seeds by default; ``PYBPF_DIFF_SEEDS=first:stop`` (or a count) runs another range."""
    spec = os.environ.get("PYBPF_DIFF_SEEDS", "300")
    first, _, stop = spec.rpartition(":")
    return range(int(first or 0), int(stop))


SEEDS = _seeds()
MAX_REFUSED_FRACTION = 0.01

_OK, _REASON = available()
needs_kernel = pytest.mark.skipif(not _OK, reason=f"bpf() unavailable: {_REASON}")


@dataclass(frozen=True, slots=True)
class Campaign:
    """Every seed's comparison."""

    outcomes: tuple[Comparison, ...]

    @property
    def accepted(self) -> list[Comparison]:
        return [outcome for outcome in self.outcomes if not outcome.refused]

    @property
    def refused(self) -> list[Comparison]:
        return [outcome for outcome in self.outcomes if outcome.refused]

    @property
    def unexplained(self) -> list[Comparison]:
        return [o for o in self.accepted if not o.agree and o.divergence is None]

    def summary(self) -> str:
        known = [o for o in self.accepted if not o.agree and o.divergence is not None]
        agreed = sum(o.agree for o in self.accepted)
        return (
            f"{len(self.outcomes)} programs: {len(self.refused)} refused by the verifier, {agreed} agreed, "
            f"{len(known)} differed by a known kernel divergence, {len(self.unexplained)} disagreed"
        )


def programs() -> Iterator[DiffProgram]:
    return (generate(seed) for seed in SEEDS)


@pytest.fixture(scope="module")
def campaign() -> Campaign:
    if not _OK:
        pytest.skip(f"bpf() unavailable: {_REASON}")
    return Campaign(tuple(compare(program) for program in programs()))


# -- the generator (no kernel needed) ---------------------------------------------------------


def test_generation_is_reproducible_by_seed() -> None:
    for seed in (0, 1, 123, 299):
        first, second = generate(seed), generate(seed)
        assert first == second
        assert encode_program(first.kernel_program()) == encode_program(second.kernel_program())
    assert len({encode_program(program.kernel_program()) for program in programs()}) == len(SEEDS)
    assert generate(0) != generate(1)


def _features(insn: Instruction) -> set[tuple[object, ...]]:
    """What one body instruction exercises, in the terms the coverage test asks for."""
    match insn:
        case Bin(op, _, src, is64):
            return {("alu", op, is64, isinstance(src, Reg))}
        case Neg(_, is64):
            return {("neg", is64)}
        case Endian(_, width, order):
            return {("endian", width, order)}
        case Load(size, _, _, _, sign_extend):
            return {("load", size, sign_extend)}
        case Store(size, _, _, src):
            return {("store", size, isinstance(src, Reg))}
        case Atomic(op, size, _, _, _):
            return {("atomic", op, size)}
        case Jump(cond, _, src, off, is32):
            return {("jump", cond, is32, isinstance(src, Reg), "backward" if off < 0 else "forward")}
        case Goto(_, long):
            return {("goto", long)}
    return set()


def test_generator_covers_the_instruction_set() -> None:
    seen: set[tuple[object, ...]] = set()
    for program in map(generate, range(300)):  # the default campaign, whatever PYBPF_DIFF_SEEDS says
        for insn in program.body():
            seen |= _features(insn)
    wanted: set[tuple[object, ...]] = set()
    for op in BinOp:
        for is64 in (False, True):
            if op is BinOp.MOVSX32 and not is64:
                continue  # not an instruction
            wanted.add(("alu", op, is64, True))
            if op not in (BinOp.MOVSX8, BinOp.MOVSX16, BinOp.MOVSX32):
                wanted.add(("alu", op, is64, False))
    wanted |= {("neg", is64) for is64 in (False, True)}
    wanted |= {("endian", width, order) for width in (16, 32, 64) for order in EndianOrder}
    wanted |= {("load", size, False) for size in Size} | {("load", size, True) for size in (Size.B, Size.H, Size.W)}
    wanted |= {("store", size, by_reg) for size in Size for by_reg in (False, True)}
    wanted |= {
        ("atomic", code, size)
        for code in AtomicCode
        if code not in (AtomicCode.LOAD_ACQ, AtomicCode.STORE_REL)
        for size in (Size.W, Size.DW)
    }
    wanted |= {
        ("jump", cond, is32, by_reg, "forward") for cond in Cond for is32 in (False, True) for by_reg in (False, True)
    }
    wanted |= {("goto", long) for long in (False, True)}
    wanted |= {("jump", Cond.JNE, is32, False, "backward") for is32 in (False, True)}  # loop back-edges
    assert not wanted - seen, f"the generator never produced: {sorted(map(str, wanted - seen))}"


def test_interpreter_runs_every_program() -> None:
    for program in programs():
        assert run_interpreter(program).retval == XDP_PASS, f"seed {program.seed}"


# -- against the kernel -----------------------------------------------------------------------


@pytest.mark.kernel
@needs_kernel
def test_kernel_accepts_generated_programs(campaign: Campaign) -> None:
    refused = campaign.refused
    print(campaign.summary())
    assert len(refused) <= MAX_REFUSED_FRACTION * len(campaign.outcomes), (
        f"{campaign.summary()}; refused seeds {[o.program.seed for o in refused]} (a generator bug). "
        f"First:\n{report_disagreement(refused[0])}"
    )


@pytest.mark.kernel
@needs_kernel
def test_kernel_and_interpreter_agree(campaign: Campaign) -> None:
    bad = campaign.unexplained
    print(campaign.summary())
    assert not bad, (
        f"{campaign.summary()}; seeds {[o.program.seed for o in bad]}. First:\n{report_disagreement(bad[0])}"
    )
    assert len(campaign.accepted) >= (1 - MAX_REFUSED_FRACTION) * len(campaign.outcomes)


@pytest.mark.kernel
@needs_kernel
def test_harness_catches_a_planted_interpreter_bug(monkeypatch: pytest.MonkeyPatch) -> None:
    """If the interpreter compared JMP32 operands on all 64 bits, the campaign must notice and shrink it."""

    def jump_ignoring_is32(insn: Jump, pc: int) -> Op:
        return build_jump(replace(insn, is32=False), pc)

    monkeypatch.setattr(pybpf.vm.interpreter, "build_jump", jump_ignoring_is32)
    caught = [
        outcome
        for outcome in (compare(generate(seed), explain_known=False) for seed in range(60))
        if not outcome.refused and not outcome.agree
    ]
    assert caught, "60 programs ran with a broken JMP32 and none disagreed with the kernel"

    def still_bad(program: DiffProgram) -> bool:
        outcome = compare(program, explain_known=False)
        return not outcome.refused and not outcome.agree

    small = shrink(caught[0].program, still_bad)
    assert still_bad(small)
    assert len(small.blocks) < len(caught[0].program.blocks)
    assert any(isinstance(insn, Jump) and insn.is32 for insn in small.body()), "the shrunk program lost the JMP32"
