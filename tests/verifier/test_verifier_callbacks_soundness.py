"""Soundness of callback verification: a random bpf_loop program our verifier accepts never
faults in the interpreter, however many times the loop runs its callback.

Each program keeps an index in the caller's stack (fp-8), passes a pointer to it as the
callback's ctx, and the callback writes the caller's stack at an address computed from the
index, then updates the index (add, and, xor, sub or set by a constant), optionally behind a
bounds check. The caller may use the index again after the loop. Only a verifier that covers
0..n iterations (not just one) accepts exactly the safe ones.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pybpf.asm import Syntax, assemble
from pybpf.errors import VmError
from pybpf.platform import BpfProgType, prog_type_spec
from pybpf.runtime.helpers.registry import default_helpers
from pybpf.verifier import verify
from pybpf.vm import Interpreter, Region, RegionKind

_OPS = ("+=", "&=", "^=", "-=", "=")
SPEC = prog_type_spec(BpfProgType.SOCKET_FILTER)


@st.composite
def loop_programs(draw: st.DrawFn) -> str:
    initial = draw(st.integers(0, 520))
    count = draw(st.one_of(st.integers(0, 12).map(str), st.just("unknown")))
    guard = draw(st.one_of(st.none(), st.integers(0, 520)))
    op = draw(st.sampled_from(_OPS))
    constant = draw(st.one_of(st.integers(0, 64), st.sampled_from([255, 496, 504, 1000])))
    use_after = draw(st.booleans())
    # nr_loops: a constant, or a number up to 15 read from the context (unknown to the verifier).
    nr_loops = "r1 = *(u32 *)(r6 + 0)\n r1 &= 15" if count == "unknown" else f"r1 = {count}"
    # fp-16 - index, as fp-16 + (0 - index): a register is never subtracted from a stack pointer.
    after = ("r1 = *(u64 *)(r10 - 8)\n r4 = 0\n r4 -= r1\n r2 = r10\n r2 += -16\n r2 += r4\n *(u8 *)(r2 + 0) = 1"
             if use_after else "")
    check = f"if r1 > {guard} goto +5" if guard is not None else ""
    callback = f"""
        r1 = *(u64 *)(r2 + 0)
        {check}
        r4 = 0
        r4 -= r1
        r3 = r2
        r3 += r4
        *(u8 *)(r3 - 8) = 1
        r1 {op} {constant}
        *(u64 *)(r2 + 0) = r1
        r0 = 0
        exit
    """
    main = f"""
        r6 = r1
        r1 = {initial}
        *(u64 *)(r10 - 8) = r1
        {nr_loops}
        r2 = func pc+FUNC
        r3 = r10
        r3 += -8
        r4 = 0
        call 181
        {after}
        r0 = 0
        exit
    """
    main_lines = [line.strip() for line in main.replace("\n ", "\n").splitlines() if line.strip()]
    lddw = next(index for index, line in enumerate(main_lines) if "func pc+" in line)
    # pcs: every line is one slot except the lddw (two); the callback starts after main.
    callback_pc = len(main_lines) + 1
    main_lines[lddw] = main_lines[lddw].replace("FUNC", str(callback_pc - lddw - 1))
    callback_lines = [line.strip() for line in callback.splitlines() if line.strip()]
    return "\n".join(main_lines + callback_lines)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(loop_programs(), st.integers(0, 15))
def test_accepted_loop_programs_do_not_fault(text: str, runs: int) -> None:
    insns = assemble(text, Syntax.LLVM)
    report = verify(insns)
    if not report.accepted:
        return
    interpreter = Interpreter(insns, helpers=default_helpers(), name="callback-soundness")
    context = runs.to_bytes(4, "little") + bytes(SPEC.context.size - 4)
    try:
        interpreter.run(Region.from_bytes(RegionKind.INPUT, "ctx", context))
    except VmError as error:  # pragma: no cover - a failure is a soundness bug
        raise AssertionError(f"accepted but faulted: {error}\n{text}") from error


def test_the_generator_yields_both_verdicts() -> None:
    """An index walking off the stack after a few runs is refused; fewer runs are accepted."""
    walking = """
        r1 = 0
        *(u64 *)(r10 - 8) = r1
        r1 = 12
        r2 = func pc+7
        r3 = r10
        r3 += -8
        r4 = 0
        call 181
        r0 = 0
        exit
        r1 = *(u64 *)(r2 + 0)
        r4 = 0
        r4 -= r1
        r3 = r2
        r3 += r4
        *(u8 *)(r3 - 8) = 1
        r1 += 64
        *(u64 *)(r2 + 0) = r1
        r0 = 0
        exit
    """
    # 12 runs move the write to fp-16-704: outside the 512-byte stack by the ninth.
    assert not verify(assemble(walking, Syntax.LLVM)).accepted
    bounded = walking.replace("r1 = 12", "r1 = 7")
    report = verify(assemble(bounded, Syntax.LLVM))
    assert report.accepted, report.summary()
