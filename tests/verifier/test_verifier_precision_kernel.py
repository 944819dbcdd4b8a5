"""Loops with per-iteration state: our processed-instruction counts next to the kernel's.

Each program's loop carries a counter (precise: it decides the loop's exit) and other state
that nothing relies on exactly (imprecise). Precision tracking lets the imprecise state differ
between stored and new states at the loop's join points; the counter still has to match, so a
loop is walked once per iteration, as the kernel walks it. Ours must stay within the kernel's
``verified_insns`` (a small factor), and never above our own count without precision tracking.
"""

from __future__ import annotations

import pytest

from pybpf.asm import Syntax, assemble
from pybpf.isa.codec import encode_program
from pybpf.kernel.objects import prog_info
from pybpf.kernel.probe import available
from pybpf.kernel.progs import prog_load
from pybpf.platform import BpfProgType
from pybpf.verifier import verify

from .test_verifier_precision import without_precision

_AVAILABLE, _REASON = available()
MAX_RATIO = 1.5

LOOPS = {
    # A counted loop adding a random number each time: the sum differs on every iteration.
    "counter-and-random-sum": """
r6 = 0
r7 = 0
call 7
r7 += r0
r6 += 1
if r6 < 50 goto -4
r0 = 0
exit
""",
    # The bound is unknown (0..63): the counter is compared with a register.
    "unknown-bound": """
call 7
r8 = r0
r8 &= 63
r6 = 0
r7 = 0
r7 += r6
r6 += 1
if r6 < r8 goto -3
r0 = 0
exit
""",
    # Each iteration branches on a random number: both arms meet again with different sums.
    "branchy-body": """
r6 = 0
r7 = 0
call 7
if r0 > 100 goto +2
r7 += 1
goto +1
r7 += 2
r6 += 1
if r6 < 30 goto -8
r0 = r7
exit
""",
}


@pytest.mark.parametrize("name", sorted(LOOPS))
def test_precision_never_costs_more_on_loops(name: str) -> None:
    insns = assemble(LOOPS[name], Syntax.LLVM)
    tracked = verify(insns)
    with without_precision():
        exact = verify(insns)
    assert tracked.accepted and exact.accepted
    assert tracked.processed_insns <= exact.processed_insns


def test_precision_prunes_the_branchy_loop() -> None:
    insns = assemble(LOOPS["branchy-body"], Syntax.LLVM)
    tracked = verify(insns)
    with without_precision():
        exact = verify(insns)
    # The two arms leave different sums at the join; only precision lets the second be pruned.
    assert tracked.processed_insns < exact.processed_insns


@pytest.mark.kernel
@pytest.mark.skipif(not _AVAILABLE, reason=_REASON or "bpf() unavailable")
@pytest.mark.parametrize("name", sorted(LOOPS))
def test_loops_near_the_kernel(name: str) -> None:
    insns = assemble(LOOPS[name], Syntax.LLVM)
    ours = verify(insns)
    fd = prog_load(BpfProgType.SOCKET_FILTER, encode_program(insns), "GPL")
    try:
        theirs = prog_info(fd).verified_insns
    finally:
        fd.close()
    assert ours.accepted
    assert ours.processed_insns <= MAX_RATIO * theirs, f"we processed {ours.processed_insns}, the kernel {theirs}"
