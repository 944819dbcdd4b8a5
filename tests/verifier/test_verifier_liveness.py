"""Register liveness: dead registers of a stored state no longer block pruning; live ones still do."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

from pybpf.isa.insn import (
    Bin,
    BinOp,
    Call,
    Cond,
    Exit,
    Goto,
    Imm,
    Instruction,
    Jump,
    LabeledInsn,
    Load,
    Reg,
    Store,
)
from pybpf.isa.opcodes import Size
from pybpf.platform import HelperId
from pybpf.verifier import explore, verify
from pybpf.verifier.liveness import ALL_REGS, ALL_SLOTS, live_registers, stack_use_def, use_def

from .programs import label, mov
from .test_verifier_soundness import SPEC, programs

TAIL = 20  # instructions after the join, walked once per path that is not pruned


def _diamond(at_join: list[Instruction]) -> list[Instruction]:
    """Two paths leave r3 = 1 or r3 = 2 and meet; ``at_join`` runs at the meeting point."""
    return [
        Load(Size.W, Reg.R2, Reg.R1, 0),  # r2 = skb->len: unknown
        Jump(Cond.JGT, Reg.R2, Imm(5), 2, True),
        mov(Reg.R3, 1),
        Goto(1),
        mov(Reg.R3, 2),
        *at_join,  # the join: pc 5, a jump target and so a prune point
    ]


def _tail() -> list[Instruction]:
    tail: list[Instruction] = [Bin(BinOp.ADD, Reg.R0, Imm(1), True) for _ in range(TAIL)]
    return [*tail, Exit()]


def _decided_tail() -> list[Instruction]:
    """The tail, then a jump on r0 that its value decides (r0 is never 100 there)."""
    tail: list[Instruction] = [Bin(BinOp.ADD, Reg.R0, Imm(1), True) for _ in range(TAIL)]
    return [*tail, Jump(Cond.JEQ, Reg.R0, Imm(100), 0, True), Exit()]


def test_dead_register_difference_prunes() -> None:
    dead = _diamond([mov(Reg.R3, 0), mov(Reg.R0, 0), *_tail()])
    # r3 is read, and at the end its value decides a jump (so it is precise at the join; see
    # test_verifier_precision: a value nothing relies on would not stop pruning).
    live = _diamond([Bin(BinOp.MOV, Reg.R0, Reg.R3, True), mov(Reg.R3, 0), *_decided_tail()])
    # A state at every prune point (the kernel's selftests load these with BPF_F_TEST_STATE_FREQ):
    # a path this short would store none under the checkpoint spacing of pybpf.verifier.states.
    dead_report = verify(label(dead), test_state_freq=True)
    live_report = verify(label(live), test_state_freq=True)
    assert dead_report.accepted and live_report.accepted
    # With r3 dead at the join, the second path is pruned there; with r3 relied on it must walk the tail.
    assert dead_report.processed_insns + TAIL <= live_report.processed_insns


def test_live_register_difference_still_explored() -> None:
    # r3 = 1 is safe; r3 = 2 reads past the context: the second path must not be pruned away.
    program = _diamond([
        Jump(Cond.JEQ, Reg.R3, Imm(1), 1, True),
        Load(Size.W, Reg.R0, Reg.R1, 4000),
        mov(Reg.R0, 0),
        Exit(),
    ])
    assert not verify(label(program)).accepted


def test_use_def_sets() -> None:
    assert use_def(Bin(BinOp.MOV, Reg.R1, Reg.R2, True)) == (1 << 2, 1 << 1)
    assert use_def(Bin(BinOp.ADD, Reg.R1, Imm(3), True)) == (1 << 1, 1 << 1)
    assert use_def(Store(Size.DW, Reg.R10, -8, Reg.R4)) == ((1 << 10) | (1 << 4), 0)
    read, written = use_def(Call(int(HelperId.MAP_LOOKUP_ELEM)))
    assert read == 0b110 and written == 0b111111
    assert use_def(Exit()) == (1, 0)


def test_live_sets_over_a_branch() -> None:
    program = label([
        mov(Reg.R6, 1),
        Jump(Cond.JEQ, Reg.R1, Imm(0), 1, True),
        mov(Reg.R7, 2),  # r7 is only written: never live
        Bin(BinOp.MOV, Reg.R0, Reg.R6, True),
        Exit(),
    ])
    live = live_registers(program)
    r = [1 << n for n in range(11)]
    assert live[4] == r[0] | r[10]
    assert live[3] == r[6] | r[10]
    assert live[1] == r[1] | r[6] | r[10]
    assert not live[0] & r[6] and live[0] & r[1]
    assert not any(mask & r[7] for mask in live.values())


def _stack_diamond(at_join: list[Instruction]) -> list[Instruction]:
    """Two paths store 1 or 2 at fp-8 and meet; ``at_join`` runs at the meeting point."""
    return [
        Load(Size.W, Reg.R2, Reg.R1, 0),
        Jump(Cond.JGT, Reg.R2, Imm(5), 2, True),
        Store(Size.DW, Reg.R10, -8, Imm(1)),
        Goto(1),
        Store(Size.DW, Reg.R10, -8, Imm(2)),
        *at_join,
    ]


def test_dead_stack_slot_difference_prunes() -> None:
    dead = _stack_diamond([Store(Size.DW, Reg.R10, -8, Imm(0)), mov(Reg.R0, 0), *_tail()])
    live = _stack_diamond([Load(Size.DW, Reg.R0, Reg.R10, -8), *_decided_tail()])
    dead_report, live_report = verify(label(dead), test_state_freq=True), verify(label(live), test_state_freq=True)
    assert dead_report.accepted and live_report.accepted
    assert dead_report.processed_insns + TAIL <= live_report.processed_insns


def test_live_stack_slot_difference_still_explored() -> None:
    # Read back through another pointer (r4 = fp-8): every slot counts as live.
    program = _stack_diamond([
        Bin(BinOp.MOV, Reg.R4, Reg.R10, True),
        Bin(BinOp.ADD, Reg.R4, Imm(-8), True),
        Load(Size.DW, Reg.R3, Reg.R4, 0),
        Jump(Cond.JEQ, Reg.R3, Imm(1), 1, True),
        Load(Size.W, Reg.R0, Reg.R1, 4000),
        mov(Reg.R0, 0),
        Exit(),
    ])
    assert not verify(label(program)).accepted


def test_stack_use_def_sets() -> None:
    assert stack_use_def(Store(Size.DW, Reg.R10, -16, Imm(0))) == (0, 0b10)
    assert stack_use_def(Store(Size.W, Reg.R10, -12, Imm(0))) == (0b10, 0)
    assert stack_use_def(Load(Size.DW, Reg.R0, Reg.R10, -12)) == (0b11, 0)
    assert stack_use_def(Load(Size.DW, Reg.R0, Reg.R2, 0)) == (ALL_SLOTS, 0)
    assert stack_use_def(Call(int(HelperId.MAP_LOOKUP_ELEM))) == (ALL_SLOTS, 0)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(programs())
def test_liveness_never_changes_a_verdict(insns: list[LabeledInsn]) -> None:
    """Differential: pruning with liveness reaches the same verdict as comparing everything."""
    with_liveness = verify(insns, prog_type=SPEC)
    with pytest.MonkeyPatch.context() as patch:
        everything = len(insns) * 2 + 1  # a list entry for every slot
        patch.setattr(explore, "live_masks", lambda _insns: ([ALL_REGS] * everything, [ALL_SLOTS] * everything))
        without = verify(insns, prog_type=SPEC)
    assert with_liveness.accepted == without.accepted, with_liveness.summary()
    assert with_liveness.processed_insns <= without.processed_insns
