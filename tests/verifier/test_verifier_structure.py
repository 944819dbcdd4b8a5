"""The structural pass: subprograms, jump ranges, reachability, back-edges, frame pointer writes."""

from __future__ import annotations

import pytest

from pybpf.errors import VerifierError
from pybpf.isa.insn import Bin, BinOp, CallLocal, Cond, Exit, Goto, Imm, Jump, LabeledInsn, LoadImm64, Reg, SourceLine
from pybpf.isa.opcodes import PseudoSrc
from pybpf.verifier.cfg import Subprog
from pybpf.verifier.structure import StructureConfig, check_structure

from .programs import CASES, Case, label, mov

R0, R1 = Reg.R0, Reg.R1


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_structural_verdicts(case: Case) -> None:
    program = label(case.insns)
    if case.expected is None:
        check_structure(program)
        return
    with pytest.raises(VerifierError) as caught:
        check_structure(program)
    assert caught.value.reason == case.expected


def test_subprogs_and_back_edges_are_recorded() -> None:
    program = label([mov(R0, 0), CallLocal(1), Exit(),
                     mov(R0, 0), Bin(BinOp.ADD, R0, Imm(1), True), Jump(Cond.JLT, R0, Imm(5), -2, False), Exit()])
    structure = check_structure(program)
    assert structure.subprogs == (Subprog(0, 3), Subprog(3, 7))
    assert structure.back_edges == ((5, 4),)
    assert structure.subprog_of(4) == Subprog(3, 7)


def test_lddw_func_starts_a_subprog() -> None:
    # r1 = &callback (pc 0 + 1 + 3 = 4); the callback itself is otherwise unreferenced.
    program = label([LoadImm64(R1, 3, 0, PseudoSrc.FUNC), mov(R0, 0), Exit(), mov(R0, 1), Exit()])
    assert check_structure(program).subprogs == (Subprog(0, 4), Subprog(4, 6))


def test_unprivileged_rejects_back_edges_and_large_programs() -> None:
    loop = label([mov(R0, 0), Bin(BinOp.ADD, R0, Imm(1), True), Jump(Cond.JLT, R0, Imm(10), -2, False), Exit()])
    check_structure(loop)
    with pytest.raises(VerifierError, match="back-edge from insn 2 to 1"):
        check_structure(loop, StructureConfig.unprivileged())
    big = label([mov(R0, 0)] * 4096 + [Exit()])
    check_structure(big)
    with pytest.raises(VerifierError, match="too large"):
        check_structure(big, StructureConfig.unprivileged())


def test_unprivileged_rejects_functions() -> None:
    # add_subprog_and_kfunc without bpf_capable (selftests verifier/calls.c "calls: basic sanity",
    # errstr_unpriv; this kernel refuses unprivileged bpf(), so not checked against it).
    message = "loading/calling other bpf or kernel functions are allowed for CAP_BPF and CAP_SYS_ADMIN"
    call = label([CallLocal(1), Exit(), mov(R0, 0), Exit()])
    pointer = label([LoadImm64(R1, 3, 0, PseudoSrc.FUNC), mov(R0, 0), Exit(), mov(R0, 1), Exit()])
    for program in (call, pointer):
        check_structure(program)
        with pytest.raises(VerifierError) as caught:
            check_structure(program, StructureConfig.unprivileged())
        assert caught.value.reason == message and caught.value.pc is None


def test_infinite_self_loop_is_only_a_back_edge_here() -> None:
    # The kernel rejects this later, during exploration ("infinite loop detected").
    assert check_structure(label([Goto(-1)])).back_edges == ((0, 0),)


def test_error_names_pc_and_source_line() -> None:
    line = SourceLine("prog.c", 12, 5, "  fp = 0;")
    program = [LabeledInsn(0, mov(R0, 0)), LabeledInsn(1, mov(Reg.R10, 0), line), LabeledInsn(2, Exit())]
    with pytest.raises(VerifierError) as caught:
        check_structure(program)
    error = caught.value
    assert error.pc == 1
    assert error.source == "prog.c:12: fp = 0;"
    assert str(error) == "instruction 1: frame pointer is read only (prog.c:12: fp = 0;)"


def test_empty_program_is_rejected() -> None:
    with pytest.raises(VerifierError):
        check_structure([])


def test_lddw_imm_to_r10_is_a_frame_pointer_write() -> None:
    with pytest.raises(VerifierError, match="frame pointer is read only"):
        check_structure(label([LoadImm64.constant(Reg.R10, 1), mov(R0, 0), Exit()]))
