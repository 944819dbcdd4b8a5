"""The explored-state lists (:mod:`pybpf.verifier.states`) against the kernel's.

Program shapes whose cost is decided by where states are stored and how long they are kept: a
chain of conditional jumps (every popped path runs on to the next checkpoint), a branch explosion
with a distinct precise value per path, a counted loop, a loop that never changes (an infinite
loop), an unrolled loop, and a ``bpf_loop`` callback whose counter never repeats. Each is
verified here and by the kernel; verdicts, messages, processed-instruction counts and
``peak_states`` must agree (they are equal on 6.18; the bounds below leave 10% for other
kernels). The sizes that reach the 1M-instruction limit take ~20 s each here and run only with
``PYBPF_SLOW_TESTS=1``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from pybpf.asm import Syntax, assemble
from pybpf.errors import VerifierRejectedError
from pybpf.isa.codec import encode_program
from pybpf.isa.insn import LabeledInsn
from pybpf.kernel.progs import prog_load_with_log
from pybpf.kernel.uapi import BpfProgLoadFlag
from pybpf.obj import load_spec
from pybpf.platform import BpfProgType
from pybpf.verifier import verify, verify_program
from pybpf.verifier.states import FORCED_EVICT_FACTOR, prune_points

from .c_objects import KERNEL_AVAILABLE, KERNEL_REASON, compile_c

BPF_LOG_STATS = 4
FACTOR = 1.1  # processed instructions and peak states, ours over the kernel's (1.0 on 6.18)
SLOW = os.environ.get("PYBPF_SLOW_TESTS") == "1"
SLOW_REASON = "reaches the 1M-instruction limit (~20 s): set PYBPF_SLOW_TESTS=1"
_STATS = re.compile(r"processed (\d+) insns \(limit \d+\) max_states_per_insn (\d+) total_states (\d+) "
                    r"peak_states (\d+)")


def chain(jumps: int) -> list[LabeledInsn]:
    """``if r0 > K goto +0`` for K = 20000, 19999, ...: each taken edge leaves r0 one constant
    (precise once a later jump is decided by it), so a popped path prunes only where a state
    was stored on its way; with the kernel's spacing most run to the end (quadratic)."""
    text = "call 7\n" + "".join(f"if r0 > {20000 - i} goto +0\n" for i in range(jumps)) + "r0 = 0\nexit\n"
    return assemble(text, Syntax.LLVM)


def explosion(branches: int) -> list[LabeledInsn]:
    """Independent branches, one arm adding 2**i to r6, which then offsets a stack read: every
    path has its own precise r6 (2**branches paths)."""
    text = "r6 = 0\ncall 7\nr7 = r0\n"
    for i in range(branches):
        text += f"r1 = r7\nr1 >>= {i}\nr1 &= 1\nif r1 == 0 goto +1\nr6 += {1 << i}\n"
    text += "r6 &= 255\nr2 = r10\nr2 += -256\nr2 += r6\nr0 = *(u8 *)(r2 + 0)\nr0 = 0\nexit\n"
    return assemble(text, Syntax.LLVM)


def counted(bound: int) -> list[LabeledInsn]:
    """``r1 += 1`` until ``bound``: one iteration per state, a checkpoint every 20 jumps."""
    return assemble(f"r1 = 0\nr1 += 1\nif r1 < {bound} goto -2\nr0 = 0\nexit\n", Syntax.LLVM)


def self_loop() -> list[LabeledInsn]:
    """A jump to itself on a value that never changes: found once a state is stored there."""
    return assemble("r0 = 0\nif r0 == 0 goto -1\nexit\n", Syntax.LLVM)


def unbounded_counter() -> list[LabeledInsn]:
    """``i++`` while a random bit is set, then ``i`` offsets a stack read (precise): no state
    ever repeats, and each iteration leaves its exit edge pending, so the 8192-pending-states
    limit ends it."""
    return assemble("""r6 = 0
call 7
r0 &= 1
if r0 == 0 goto +2
r6 += 1
goto -5
r6 &= 7
r2 = r10
r2 += -8
r2 += r6
r0 = *(u8 *)(r2 + 0)
r0 = 0
exit
""", Syntax.LLVM)


def unrolled(iterations: int) -> list[LabeledInsn]:
    """An unrolled loop summing nibbles of a random value, the sum compared every iteration."""
    text = "call 7\nr6 = r0\nr7 = 0\n"
    for i in range(iterations):
        text += f"r1 = r6\nr1 >>= {i % 32}\nr1 &= 15\nr7 += r1\nif r7 > {iterations * 8} goto +0\n"
    return assemble(text + "r0 = 0\nexit\n", Syntax.LLVM)


def zero_store_join() -> list[LabeledInsn]:
    """Two paths meet at a 4-byte store of r1 (0 on the first, 1 on the second): a zero written
    other than as a whole spill leaves STACK_ZERO bytes, so the kernel marks r1 precise there
    and the second path is not pruned at the store (with a state stored there)."""
    return assemble("""r2 = *(u32 *)(r1 + 0)
r1 = 1
if r2 > 5 goto +1
r1 = 0
*(u32 *)(r10 - 4) = r1
r0 = 0
exit
""", Syntax.LLVM)


CALLBACK = r"""
#include "bpf_helpers.h"
struct counter { __u64 n; __u64 sum; };
static long step(__u32 index, void *data)
{
	struct counter *c = data;
	c->n++;
	if (c->n > 100000000) /* decided by the constant n: n is precise, states never repeat */
		return 1;
	c->sum += index;
	return 0;
}
SEC("xdp") int prog(struct xdp_md *ctx)
{
	struct counter c = { 0, 0 };
	bpf_loop(LOOPS, step, &c, 0);
	return c.sum > 100 ? XDP_DROP : XDP_PASS;
}
char LICENSE[] SEC("license") = "GPL";
"""


def _kernel_stats(log: str) -> tuple[int, int]:
    """(processed insns, peak states) from the kernel's statistics line."""
    found = _STATS.search(log)
    assert found is not None, log[-500:]
    return int(found.group(1)), int(found.group(4))


def _kernel_raw(insns: list[LabeledInsn], *, test_state_freq: bool = False) -> tuple[bool, str]:
    flags = BpfProgLoadFlag.TEST_STATE_FREQ if test_state_freq else 0
    try:
        loaded = prog_load_with_log(BpfProgType.SOCKET_FILTER, encode_program(insns), "GPL", log_level=BPF_LOG_STATS,
                                    prog_flags=flags)
    except VerifierRejectedError as error:
        return False, error.log or ""
    loaded.fd.close()
    return True, loaded.log


def _agree(insns: list[LabeledInsn], *, test_state_freq: bool = False) -> None:
    theirs_ok, log = _kernel_raw(insns, test_state_freq=test_state_freq)
    ours = verify(insns, test_state_freq=test_state_freq)
    assert ours.accepted == theirs_ok, (ours.summary(), log[-300:])
    if not theirs_ok:
        assert ours.reason is not None and ours.reason in log, (ours.reason, log[-300:])
    processed, peak = _kernel_stats(log)
    assert processed / FACTOR <= ours.processed_insns <= processed * FACTOR, (ours.processed_insns, processed)
    assert peak / FACTOR <= ours.peak_states <= peak * FACTOR, (ours.peak_states, peak)


SHAPES: dict[str, Callable[[], list[LabeledInsn]]] = {
    "jump-chain-100": lambda: chain(100),
    "jump-chain-200": lambda: chain(200),
    "branch-explosion-10": lambda: explosion(10),
    "counted-loop-1000": lambda: counted(1000),
    "self-loop": self_loop,
    "unrolled-200": lambda: unrolled(200),
    # Each iteration pushes its exit edge: "The sequence of 8193 jumps is too complex."
    "unbounded-counter": unbounded_counter,
    "zero-store-join": zero_store_join,
}

SLOW_SHAPES: dict[str, Callable[[], list[LabeledInsn]]] = {
    "jump-chain-8192": lambda: chain(8192),  # we accepted it after 8195 insns before the spacing
    "branch-explosion-17": lambda: explosion(17),
}


def test_prune_points_are_the_kernels() -> None:
    marks = prune_points(assemble("""r0 = 0
if r0 > 1 goto +2
call 7
goto +1
r0 = 1
exit
""", Syntax.LLVM))
    # The jump and its target, the insn after the call, the goto's target; not the jump's
    # fall-through (pc 2) nor the call itself.
    assert marks.prune == {1, 4, 3, 5}
    assert not marks.forced


def test_state_freq_stores_at_every_prune_point() -> None:
    insns = chain(40)
    spaced, every = verify(insns), verify(insns, test_state_freq=True)
    assert spaced.accepted and every.accepted
    # A state at each jump prunes each popped path at once (one state per jump); spaced states
    # let them run on, storing more states on the way.
    assert every.total_states == 41
    assert every.processed_insns < spaced.processed_insns


def test_a_callback_that_never_repeats_keeps_few_states_per_pc(tmp_path: Path) -> None:
    obj = compile_c(tmp_path, "callback", CALLBACK.replace("LOOPS", "1000000"))
    spec = load_spec(obj)
    report = verify_program(spec.programs["prog"], spec, insn_limit=30_000)
    assert report.reason == "BPF program is too large. Processed 30001 insn"
    # In-progress states at the call site are evicted after 64 misses, elsewhere after 3.
    assert report.max_states_per_insn <= FORCED_EVICT_FACTOR + 1


@pytest.mark.kernel
@pytest.mark.skipif(not KERNEL_AVAILABLE, reason=KERNEL_REASON or "bpf() unavailable")
@pytest.mark.parametrize("name", sorted(SHAPES))
def test_shape_agrees_with_the_kernel(name: str) -> None:
    _agree(SHAPES[name]())


@pytest.mark.kernel
@pytest.mark.skipif(not KERNEL_AVAILABLE, reason=KERNEL_REASON or "bpf() unavailable")
@pytest.mark.parametrize("name", sorted(SHAPES))
def test_shape_with_a_state_at_every_prune_point_agrees_with_the_kernel(name: str) -> None:
    # BPF_F_TEST_STATE_FREQ on both sides.
    _agree(SHAPES[name](), test_state_freq=True)


@pytest.mark.kernel
@pytest.mark.skipif(not KERNEL_AVAILABLE, reason=KERNEL_REASON or "bpf() unavailable")
@pytest.mark.skipif(not SLOW, reason=SLOW_REASON)
@pytest.mark.parametrize("name", sorted(SLOW_SHAPES))
def test_slow_shape_agrees_with_the_kernel(name: str) -> None:
    _agree(SLOW_SHAPES[name]())


def _agree_object(obj: Path) -> None:
    from pybpf.kernel.loader import load

    try:
        with load(obj, log_level=BPF_LOG_STATS) as loaded:
            log, theirs_ok = loaded.programs["prog"].log, True
    except VerifierRejectedError as error:
        log, theirs_ok = error.log or "", False
    spec = load_spec(obj)
    ours = verify_program(spec.programs["prog"], spec)
    assert ours.accepted == theirs_ok, ours.summary()
    if not theirs_ok:
        assert ours.reason is not None and ours.reason in log
    processed, peak = _kernel_stats(log)
    assert processed / FACTOR <= ours.processed_insns <= processed * FACTOR, (ours.processed_insns, processed)
    assert peak / FACTOR <= ours.peak_states <= peak * FACTOR, (ours.peak_states, peak)


@pytest.mark.kernel
@pytest.mark.skipif(not KERNEL_AVAILABLE, reason=KERNEL_REASON or "bpf() unavailable")
def test_callback_counter_agrees_with_the_kernel(tmp_path: Path) -> None:
    # bpf_loop stops queueing iterations at nr_loops: 2000 iterations, each a new state.
    _agree_object(compile_c(tmp_path, "callback", CALLBACK.replace("LOOPS", "2000")))


@pytest.mark.kernel
@pytest.mark.skipif(not KERNEL_AVAILABLE, reason=KERNEL_REASON or "bpf() unavailable")
@pytest.mark.skipif(not SLOW, reason=SLOW_REASON)
def test_callback_counter_at_the_limit_agrees_with_the_kernel(tmp_path: Path) -> None:
    # "BPF program is too large. Processed 1000001 insn", peak_states 55558 on both sides.
    _agree_object(compile_c(tmp_path, "callback", CALLBACK.replace("LOOPS", "1000000")))
