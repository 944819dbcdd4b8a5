"""Differential: branch refinement against the kernel's log (both edges of ``if r0 cond imm``).

r0 starts as an unknown 32-bit value (``skb->len``), optionally shifted by a prefix of ALU
instructions; the kernel prints the fall-through state on the jump's line and the taken state on
its ``from 1 to N:`` line. Our :func:`refine` must produce exactly those scalars.
"""

from __future__ import annotations

import itertools
import re

import pytest

from pybpf.errors import VerifierRejectedError
from pybpf.isa.codec import encode_program
from pybpf.isa.insn import Bin, BinOp, Cond, Exit, Imm, Instruction, Jump, Load, Reg
from pybpf.isa.opcodes import Size
from pybpf.kernel.probe import available
from pybpf.kernel.progs import prog_load_with_log
from pybpf.kernel.uapi import BpfProgType
from pybpf.verifier.branch import refine
from pybpf.verifier.scalar import Scalar
from pybpf.verifier.tnum import U64

from .test_verifier_scalar_kernel import our_trace, parse_scalar

_AVAILABLE, _REASON = available()
pytestmark = [pytest.mark.kernel, pytest.mark.skipif(not _AVAILABLE, reason=_REASON or "bpf() unavailable")]

R0 = Reg.R0
PREFIXES: dict[str, list[Instruction]] = {
    "u32": [],
    "minus100": [Bin(BinOp.SUB, R0, Imm(100), True)],
}
IMMEDIATES = (10, -5)
_R0 = r"R0(?:_w)?=(scalar\((?:[^()]|\([^()]*\))*\)|-?\w+)"


def _kernel_edges(prefix: list[Instruction], jump: Jump) -> tuple[Scalar | None, Scalar | None]:
    """(taken, fall-through) states of r0 as the kernel logs them; None for an edge it never walks."""
    skip = Bin(BinOp.ADD, R0, Imm(0), True)  # a no-op that makes the log print r0
    program = [Load(Size.W, R0, Reg.R1, 0), *prefix, jump, skip, Exit(), skip, Exit()]
    jump_pc = 1 + len(prefix)
    try:
        loaded = prog_load_with_log(BpfProgType.SOCKET_FILTER, encode_program(program), log_level=2)
    except VerifierRejectedError as error:
        pytest.fail(f"kernel rejected:\n{error.log}")
    with loaded.fd:
        log = loaded.log
    taken = fallthrough = None
    for line in log.splitlines():
        # A branch the kernel decides statically has no "from" line: the taken path just continues.
        if line.startswith((f"from {jump_pc} to {jump_pc + 3}:", f"{jump_pc + 3}: (07)")) and taken is None:
            match = re.search(_R0, line)
            taken = parse_scalar(match[1]) if match else None
        elif line.startswith(f"{jump_pc + 1}: (07)"):
            match = re.search(_R0, line)
            fallthrough = parse_scalar(match[1]) if match else None
    return taken, fallthrough


CASES = list(itertools.product(sorted(PREFIXES), list(Cond), (False, True), IMMEDIATES))


@pytest.mark.parametrize(("prefix", "cond", "is32", "imm"), CASES,
                         ids=[f"{p}-{c.name}{'32' if w else ''}-{i}" for p, c, w, i in CASES])
def test_refinement_matches_kernel(prefix: str, cond: Cond, is32: bool, imm: int) -> None:
    start = our_trace(PREFIXES[prefix])[-1]
    kernel_taken, kernel_fallthrough = _kernel_edges(PREFIXES[prefix], Jump(cond, R0, Imm(imm), 2, is32))
    constant = Scalar.const(imm & U64)
    ours_taken = refine(cond, start, constant, is32, True)
    ours_fallthrough = refine(cond, start, constant, is32, False)
    assert (ours_taken[0] if ours_taken else None) == kernel_taken, "taken edge"
    assert (ours_fallthrough[0] if ours_fallthrough else None) == kernel_fallthrough, "fall-through edge"
