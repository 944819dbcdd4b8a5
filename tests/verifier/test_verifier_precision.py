"""Precision tracking: imprecise scalars stop blocking pruning; precise ones still must match.

The soundness cases (two paths meeting with different constants, the second one unsafe) are in
``corpus/precision.txt``, where they are also checked against the kernel. Here: the comparison
rule itself, that pruning gets better (fewer processed instructions), and a differential
property that precision tracking never changes a verdict.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pybpf.errors import PybpfError
from pybpf.isa.insn import (
    Bin,
    BinOp,
    Call,
    CallLocal,
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
from pybpf.obj import ObjectSpec, ProgramSpec, load_spec
from pybpf.platform import HelperId
from pybpf.verifier import IdMap, RegState, Scalar, explore, precision, regsafe, verify, verify_program
from pybpf.verifier.precision import HistEntry, demanded_by_insn, history_entry
from pybpf.verifier.state import RegType

from .corpus import assemble_case, load_corpus
from .programs import label, mov
from .test_verifier_soundness import SMALL, SPEC, instruction, programs

PROGS = Path(__file__).parent.parent / "progs"
TAIL = 20


@contextmanager
def without_precision() -> Iterator[None]:
    """Verify as before precision tracking: every scalar of a stored state compared exactly."""
    original = explore.Explorer.__post_init__

    def exact(self: explore.Explorer) -> None:
        original(self)
        self.track_precision = self.states.track_precision = False

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(explore.Explorer, "__post_init__", exact)
        yield


def test_imprecise_old_scalar_covers_any_scalar() -> None:
    # The flag decides, and only with precision on; it never makes a scalar cover a pointer.
    assert not RegState.const(1).precise
    assert regsafe(RegState.const(1), RegState.scalar(), IdMap(), precision=True)
    assert not regsafe(RegState.const(1), RegState.scalar(), IdMap(), precision=False)
    assert not regsafe(RegState.const(1).as_precise(), RegState.const(2), IdMap(), precision=True)
    assert regsafe(RegState.scalar(Scalar.from_urange(0, 9)).as_precise(), RegState.const(3), IdMap(),
                   precision=True)
    assert not regsafe(RegState.const(1), RegState.pointer(RegType.PTR_TO_CTX), IdMap(), precision=True)


def test_precise_flag_is_not_part_of_the_value() -> None:
    assert RegState.const(5) == RegState.const(5).as_precise()


def _diamond(at_join: list[Instruction]) -> list[Instruction]:
    """Two paths leave r3 = 1 or r3 = 2 and meet at pc 5."""
    return [
        Load(Size.W, Reg.R2, Reg.R1, 0),
        Jump(Cond.JGT, Reg.R2, Imm(5), 2, True),
        mov(Reg.R3, 1),
        Goto(1),
        mov(Reg.R3, 2),
        *at_join,
    ]


def _tail() -> list[Instruction]:
    return [*(Bin(BinOp.ADD, Reg.R0, Imm(1), True) for _ in range(TAIL)), Exit()]


def test_pruning_improves_with_precision() -> None:
    # r3 flows into r0, which is returned: a socket filter may return anything, so nothing
    # relies on its value and the second path is pruned at the join.
    program = label(_diamond([Bin(BinOp.MOV, Reg.R0, Reg.R3, True), *_tail()]))
    # (A state at every prune point: the path to the join is too short for a checkpoint.)
    tracked = verify(program, test_state_freq=True)
    with without_precision():
        exact = verify(program, test_state_freq=True)
    assert tracked.accepted and exact.accepted
    # Without precision the second path walks the tail again; with it, it stops at the join.
    assert tracked.processed_insns + TAIL <= exact.processed_insns


def test_value_through_a_stack_slot_stays_precise() -> None:
    # r3 is spilled at the join and filled back; its value then decides a jump that guards an
    # out-of-bounds context read: the path with r3 = 2 must be explored and rejected.
    program = label(_diamond([
        Store(Size.DW, Reg.R10, -8, Reg.R3),
        mov(Reg.R3, 0),
        Load(Size.DW, Reg.R4, Reg.R10, -8),
        Jump(Cond.JEQ, Reg.R4, Imm(1), 1, True),
        Load(Size.W, Reg.R0, Reg.R1, 4000),
        mov(Reg.R0, 0),
        Exit(),
    ]))
    assert not verify(program).accepted


def test_linked_registers_are_backtracked_through_a_jump() -> None:
    case = next(c for c in load_corpus() if c.name == "linked-copy-refined-after-the-join")
    insns = assemble_case(case)
    # (A state at every prune point, so that one is stored at the join.)
    assert not verify(insns, test_state_freq=True).accepted
    # Without following the link at the jump, r2 would stay imprecise at the join and the
    # second path would be pruned there: the program would pass.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(precision, "_linked", lambda _insn, _state: ())
        assert verify(insns, test_state_freq=True).accepted


def test_unprivileged_loads_compare_every_scalar() -> None:
    # The kernel tracks precision for privileged loaders only: an unprivileged one walks the
    # tail twice (and the program is otherwise fine for it).
    program = label(_diamond([mov(Reg.R0, 0), Bin(BinOp.ADD, Reg.R0, Reg.R3, True), *_tail()]))
    privileged = verify(program, test_state_freq=True)
    unprivileged = verify(program, privileged=False, test_state_freq=True)
    assert privileged.accepted and unprivileged.accepted
    assert privileged.processed_insns + TAIL <= unprivileged.processed_insns


def test_demands_of_an_instruction() -> None:
    from pybpf.verifier.machine import Frame, State
    from pybpf.verifier.state import StackState

    regs = [RegState.not_init() for _ in range(11)]
    regs[1] = RegState.pointer(RegType.PTR_TO_MAP_VALUE, map_uid=0)
    regs[2] = RegState.const(4)
    regs[10] = RegState.pointer(RegType.PTR_TO_STACK)
    state = State([Frame(regs, StackState(), -1, 0, 0)])
    # pointer += scalar: the scalar's value is the offset.
    assert demanded_by_insn(Bin(BinOp.ADD, Reg.R1, Reg.R2, True), state) == 1 << 2
    # scalar += scalar: nothing yet (only if the result is later relied on).
    assert demanded_by_insn(Bin(BinOp.ADD, Reg.R2, Reg.R2, True), state) == 0
    # bpf_loop: nr_loops (r1, an ANYTHING argument) bounds the callback iterations explored.
    regs[1] = RegState.const(8)
    assert demanded_by_insn(Call(int(HelperId.LOOP)), state) & 1 << 1
    assert not demanded_by_insn(Call(int(HelperId.GET_PRANDOM_U32)), state)
    # A store through r10 records the slot it writes, whole.
    entry = history_entry(7, Store(Size.DW, Reg.R10, -16, Reg.R2), state, None)
    assert isinstance(entry, HistEntry) and entry.slots == ((0, 1),) and entry.whole
    narrow = history_entry(8, Store(Size.W, Reg.R10, -12, Reg.R2), state, entry)
    assert narrow.slots == ((0, 1),) and not narrow.whole and narrow.prev is entry
    # Entering or leaving a frame renumbers the registers: backtracking does not walk through.
    assert history_entry(9, CallLocal(3), state, None).crossing
    assert not history_entry(9, Exit(), state, None).crossing  # the main program's exit
    callee = State([Frame(list(regs), StackState(), -1, 0, 0), Frame(list(regs), StackState(), 9, 13, 1)])
    assert history_entry(15, Exit(), callee, None).crossing


def _objects() -> list[tuple[str, ProgramSpec, ObjectSpec]]:
    found: list[tuple[str, ProgramSpec, ObjectSpec]] = []
    for path in sorted(PROGS.glob("*.o")):
        try:
            spec = load_spec(path)
        except PybpfError:
            continue
        found.extend((f"{path.stem}/{name}", program, spec) for name, program in spec.programs.items())
    return found


def test_test_objects_process_fewer_insns_with_precision() -> None:
    objects = _objects()
    tracked = {name: verify_program(program, spec) for name, program, spec in objects}
    with without_precision():
        exact = {name: verify_program(program, spec) for name, program, spec in objects}
    for name, report in tracked.items():
        assert report.accepted == exact[name].accepted, name
    assert sum(r.processed_insns for r in tracked.values()) < sum(r.processed_insns for r in exact.values())


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(programs())
def test_precision_never_changes_a_verdict(insns: list[LabeledInsn]) -> None:
    """Differential: pruning with imprecise scalars reaches the verdict exact comparison reaches."""
    tracked = verify(insns, prog_type=SPEC)
    with without_precision():
        exact = verify(insns, prog_type=SPEC)
    assert tracked.accepted == exact.accepted, tracked.summary()


@st.composite
def diamonds(draw: st.DrawFn) -> list[LabeledInsn]:
    """Two paths give r7 (and the stack slot at fp-8) different values and meet; a random tail
    from the soundness grammar follows, so whether the join may prune depends on what it does.
    Optionally the join is a bpf-to-bpf call whose callee writes registers of the same numbers
    in its own frame (r7, r8 survive the call in the caller's)."""
    values = draw(st.lists(SMALL, min_size=2, max_size=2))
    head: list[Instruction] = [
        Bin(BinOp.MOV, Reg.R0, Imm(0), True),
        Bin(BinOp.MOV, Reg.R2, Reg.R10, True),
        Bin(BinOp.ADD, Reg.R2, Imm(draw(st.sampled_from([-32, -16, -8]))), True),
        Bin(BinOp.MOV, Reg.R8, Reg.R2, True),
        Bin(BinOp.MOV, Reg.R6, Reg.R1, True),
        Load(Size.W, Reg.R4, Reg.R1, 0),
        Bin(BinOp.MOV, Reg.R7, Imm(values[0]), True),
        Bin(BinOp.MOV, Reg.R3, Reg.R7, True),
        Jump(Cond.JGT, Reg.R4, Imm(draw(st.integers(0, 9))), 2, True),
        Bin(BinOp.MOV, Reg.R7, Imm(values[1]), True),
        Bin(BinOp.MOV, Reg.R3, Reg.R7, True),
    ]
    if draw(st.booleans()):
        head.append(Store(Size.DW, Reg.R10, -8, Reg.R7))
    use = draw(st.booleans())
    count = draw(st.integers(0, 2 if use else 8))
    tail = [draw(instruction(count - index - 1)) for index in range(count)]
    if use:
        # Put the differing value to use: an offset from a stack pointer, written through.
        tail[:0] = [Bin(BinOp.ADD, Reg.R8, Reg.R7, True), Store(Size.B, Reg.R8, 0, Imm(0))]
    main = [*head, *tail, Exit()]
    if draw(st.booleans()):
        body = [Bin(draw(st.sampled_from([BinOp.MOV, BinOp.ADD])), draw(st.sampled_from([Reg.R7, Reg.R8, Reg.R3])),
                    Imm(draw(SMALL)), True) for _ in range(draw(st.integers(1, 3)))]
        at = len(head)
        main.insert(at, CallLocal(len(main) + 1 - (at + 1)))  # to the first insn after main's exit
        main += [Bin(BinOp.MOV, Reg.R7, Imm(0), True), Bin(BinOp.MOV, Reg.R8, Imm(0), True), *body,
                 Bin(BinOp.MOV, Reg.R0, Imm(0), True), Exit()]
    return [LabeledInsn(pc, insn) for pc, insn in enumerate(main)]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(diamonds())
def test_precision_never_changes_a_verdict_at_a_join(insns: list[LabeledInsn]) -> None:
    tracked = verify(insns, prog_type=SPEC)
    with without_precision():
        exact = verify(insns, prog_type=SPEC)
    assert tracked.accepted == exact.accepted, tracked.summary()
