"""The kernel's limit on branch states waiting to be explored (``BPF_COMPLEXITY_LIMIT_JMP_SEQ``).

``push_stack`` refuses a program once more than 8192 states are pushed and not yet popped:
"The sequence of N jumps is too complex." A chain of conditional jumps on an unknown value, each
possible both ways because its bound drops by one, pushes one state per jump before the
fall-through path reaches ``exit``.
"""

from __future__ import annotations

import pytest

from pybpf.errors import VerifierRejectedError
from pybpf.isa.codec import encode_program
from pybpf.isa.insn import Bin, BinOp, Call, Cond, Exit, Imm, Instruction, Jump, LabeledInsn, Reg
from pybpf.kernel.probe import available
from pybpf.kernel.progs import prog_load
from pybpf.platform import BpfProgType, HelperId
from pybpf.verifier import BPF_COMPLEXITY_LIMIT_JMP_SEQ, verify

_AVAILABLE, _REASON = available()


def jump_chain(jumps: int) -> list[LabeledInsn]:
    """r0 = an unknown u32, then ``if r0 > K goto +0`` for K = 20000, 19999, ... (both edges
    possible each time, so each pushes its taken edge), then ``return 0``."""
    body: list[Instruction] = [Call(HelperId.GET_PRANDOM_U32)]
    body += [Jump(Cond.JGT, Reg.R0, Imm(20000 - i), 0, False) for i in range(jumps)]
    body += [Bin(BinOp.MOV, Reg.R0, Imm(0), True), Exit()]
    return [LabeledInsn(pc, insn) for pc, insn in enumerate(body)]


TOO_MANY = BPF_COMPLEXITY_LIMIT_JMP_SEQ + 1
MESSAGE = f"The sequence of {TOO_MANY} jumps is too complex."


def test_one_pending_state_too_many_is_refused_at_that_jump() -> None:
    report = verify(jump_chain(TOO_MANY))
    assert not report.accepted
    assert report.reason == MESSAGE
    assert report.error is not None and report.error.pc == TOO_MANY  # the jump that pushed it
    assert report.processed_insns == TOO_MANY + 1


def test_a_short_chain_is_not_concerned() -> None:
    report = verify(jump_chain(64))
    assert report.accepted, report.summary()


@pytest.mark.kernel
@pytest.mark.skipif(not _AVAILABLE, reason=_REASON or "bpf() unavailable")
def test_kernel_refuses_the_same_chain_with_the_same_count() -> None:
    insns = jump_chain(TOO_MANY)
    with pytest.raises(VerifierRejectedError) as caught:
        prog_load(BpfProgType.SOCKET_FILTER, encode_program(insns), "GPL", log_level=1).close()
    log = caught.value.log or ""
    assert MESSAGE in log
    ours = verify(insns)
    assert f"processed {ours.processed_insns} insns" in log
