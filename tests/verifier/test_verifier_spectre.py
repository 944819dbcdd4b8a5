"""Spectre mitigations of unprivileged loads (pybpf.verifier.spectre): speculative paths,
speculation barriers, pointer-arithmetic sanitation and Spectre v4 stores.

The expectations come from the kernel's own selftests as of Linux 6.17/6.18
(tools/testing/selftests/bpf/progs/verifier_unpriv.c, verifier_bounds.c,
verifier_bounds_deduction.c, verifier_value_ptr_arith.c and verifier/{jset,dead_code}.c: their
``__success_unpriv``/``__failure_unpriv``, ``__msg_unpriv`` and ``__xlated_unpriv("nospec")``
annotations). They could not be checked against this machine's kernel: it refuses unprivileged
``bpf()`` and we must not change sysctls. Each case names the selftest it is taken from.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pybpf.asm import Syntax, assemble
from pybpf.errors import VmError
from pybpf.isa.insn import Bin, BinOp, Cond, Exit, Goto, Imm, Instruction, Jump, LabeledInsn, Load, Reg
from pybpf.isa.opcodes import Size
from pybpf.platform import BpfMapType
from pybpf.verifier import MapInfo, VerifierReport, verify
from pybpf.verifier.rewrite import eliminate_dead_code
from pybpf.vm import Interpreter, Region, RegionKind

from .test_verifier_soundness import SPEC, programs

HASH_8B = MapInfo(BpfMapType.HASH, 8, 8, 1)
ARRAY_48B = MapInfo(BpfMapType.ARRAY, 4, 48, 1)

_LOOKUP_HASH = """
    r1 = 0
    *(u64 *)(r10 - 8) = r1
    r2 = r10
    r2 += -8
    r1 = map[fd:0]
    call 1
"""


@dataclass(frozen=True, slots=True)
class Case:
    name: str  # the selftest's __description
    asm: str
    expect: str | None  # None: accepted unprivileged; else the rejection's reason
    before: tuple[int, ...] = ()  # pcs the kernel puts a nospec before (__xlated_unpriv)
    dead: tuple[int, ...] = ()  # of those, the ones only a mispredicted branch reaches ("goto pc-1")
    maps: tuple[MapInfo, ...] = ()
    retval: int | None = None  # __retval, for programs the interpreter can run alone


CASES = (
    Case("alu32: mov u32 const", """
        w7 = 0
        w7 &= 1
        w0 = w7
        if r0 == 0 goto +1
        r0 = *(u64 *)(r7 + 0)
        exit
    """, None, before=(4,), dead=(4,), retval=0),
    Case("bounds check mixed 32bit and 64bit arithmetic. test2", """
        r0 = 0
        r1 = -1
        r1 <<= 32
        r1 += 1
        r2 = 3
        w1 += 1
        if r1 > r2 goto +1
        goto +1
        r0 = *(u64 *)(r0 - 1)
        exit
    """, None, before=(8,), dead=(8,), retval=0),
    Case("bounds check for reg = 0, reg xor 1", _LOOKUP_HASH + """
        if r0 != 0 goto +1
        exit
        r1 = 0
        r1 ^= 1
        if r1 != 0 goto +1
        r0 = *(u64 *)(r0 + 8)
        r0 = 0
        exit
    """, None, before=(12,), dead=(12,), maps=(HASH_8B,)),
    Case("bounds check for reg32 = 0, reg32 xor 1", _LOOKUP_HASH + """
        if r0 != 0 goto +1
        exit
        w1 = 0
        w1 ^= 1
        if w1 != 0 goto +1
        r0 = *(u64 *)(r0 + 8)
        r0 = 0
        exit
    """, None, before=(12,), dead=(12,), maps=(HASH_8B,)),
    Case("bounds check for reg = any, reg xor 3", _LOOKUP_HASH + """
        if r0 != 0 goto +1
        exit
        r1 = *(u64 *)(r0 + 0)
        r1 ^= 3
        if r1 != 0 goto +1
        r0 = *(u64 *)(r0 + 8)
        r0 = 0
        exit
    """, "invalid access to map value, value_size=8 off=8 size=8", maps=(HASH_8B,)),
    Case("jset: known const, unsafe fall-through (verifier/jset.c)", """
        r0 = 1
        if r0 & 1 goto +1
        r8 = *(u8 *)(r9 + 0)
        exit
    """, None, before=(2,), dead=(2,), retval=1),
    Case("dead code: start (verifier/dead_code.c)", """
        goto +2
        r8 = *(u8 *)(r9 + 0)
        goto +2
        r0 = 7
        if r0 >= 10 goto -4
        exit
    """, None, before=(1,), dead=(1,), retval=7),
    Case("unpriv: Spectre v1 path-based type confusion of scalar as stack-ptr", _LOOKUP_HASH + """
        if r0 == 0 goto +17
        r2 = r10
        r2 += -8
        r1 = map[fd:0]
        r6 = r10
        r6 += -8
        r9 = 0xffffc900
        r9 <<= 32
        r0 = *(u64 *)(r0 + 0)
        if r0 != 0 goto +1
        r6 = r9
        if r0 != 1 goto +1
        r9 = *(u8 *)(r6 + 0)
        r9 &= 1
        r9 <<= 9
        *(u64 *)(r10 - 8) = r9
        call 1
        if r0 == 0 goto +1
        r0 = *(u64 *)(r0 + 0)
        r0 = 0
        exit
    """, None, before=(20, 26), maps=(HASH_8B,)),
    Case("map access: value_ptr -= unknown scalar, 2", _LOOKUP_HASH + """
        if r0 == 0 goto +8
        r1 = *(u8 *)(r0 + 0)
        r1 &= 0xf
        r1 |= 0x7
        r0 += r1
        r1 = *(u8 *)(r0 + 0)
        r1 &= 0x7
        r0 -= r1
        r1 = *(u8 *)(r0 + 0)
        r0 = 1
        exit
    """, None, before=(14,), maps=(ARRAY_48B,)),
    # Sanitation failures on real paths still reject in 6.17/6.18 (the patch turning them into
    # barriers too, "bpf: Fall back to nospec for sanitization-failures", was not merged).
    Case("check deducing bounds from const, 2", """
        r0 = 1
        if r0 s>= 1 goto +1
        exit
        if r0 s<= 1 goto +1
        exit
        r1 -= r0
        exit
    """, "R1 has pointer with unsupported alu operation, pointer arithmetic with it prohibited for !root"),
    Case("check deducing bounds from const, 4", """
        r6 = r1
        r0 = 0
        if r0 s<= 0 goto +1
        exit
        if r0 s>= 0 goto +1
        exit
        r6 -= r0
        exit
    """, "R6 has pointer with unsupported alu operation, pointer arithmetic with it prohibited for !root"),
    Case("check deducing bounds from const, 5", """
        r0 = 0
        if r0 s>= 1 goto +1
        r0 -= r1
        exit
    """, "R1 has pointer with unsupported alu operation, pointer arithmetic with it prohibited for !root"),
    Case("subtraction bounds (map value) variant 2", _LOOKUP_HASH + """
        if r0 == 0 goto +8
        r1 = *(u8 *)(r0 + 0)
        if r1 > 0xff goto +6
        r3 = *(u8 *)(r0 + 1)
        if r3 > 0xff goto +4
        r1 -= r3
        r0 += r1
        r0 = *(u8 *)(r0 + 0)
        exit
        r0 = 0
        exit
    """, "R1 has unknown scalar with mixed signed bounds, pointer arithmetic with it prohibited for !root",
         maps=(HASH_8B,)),
    Case("map access: mixing value pointer and scalar, 1", """
        r0 = 1
        r1 = map[fd:0]
        r2 = r10
        r2 += -16
        r6 = 0
        *(u64 *)(r10 - 16) = r6
        call 1
        if r0 != 0 goto +1
        exit
        r1 = *(u8 *)(r0 + 0)
        if r1 != 0 goto +3
        r2 = r0
        r3 = 0
        goto +2
        r2 = 0
        r3 = 0x100000
        r2 += r3
        if r1 != 0 goto +1
        goto +4
        r0 = 0x13371337
        if r2 != 0x100000 goto +2
        r0 = 0
        exit
        r0 = *(u8 *)(r0 + 0)
        r0 = 0
        exit
    """, "R2 tried to add from different maps, paths or scalars, pointer arithmetic with it prohibited for !root",
         maps=(ARRAY_48B,)),
    Case("map access: value_ptr += known scalar, upper oob arith, test 1", _LOOKUP_HASH + """
        if r0 == 0 goto +4
        r1 = 48
        r0 += r1
        r0 -= r1
        r0 = *(u8 *)(r0 + 0)
        r0 = 1
        exit
    """, "R0 pointer arithmetic of map value goes out of range, prohibited for !root", maps=(ARRAY_48B,)),
    Case("map access: unknown scalar += value_ptr, 1", _LOOKUP_HASH + """
        if r0 == 0 goto +4
        r1 = *(u8 *)(r0 + 0)
        r1 &= 0xf
        r1 += r0
        r0 = *(u8 *)(r1 + 0)
        r0 = 1
        exit
    """, None, maps=(ARRAY_48B,)),
    Case("sanitation: alu with different scalars 1", """
        r0 = 1
        r1 = map[fd:0]
        r2 = r10
        r2 += -16
        r6 = 0
        *(u64 *)(r10 - 16) = r6
        call 1
        if r0 != 0 goto +1
        exit
        r1 = *(u32 *)(r0 + 0)
        if r1 == 0 goto +3
        r2 = 0
        r3 = 0x100000
        goto +2
        r2 = 42
        r3 = 0x100001
        r2 += r3
        r0 = r2
        exit
    """, None, maps=(ARRAY_48B,)),
)


def _verify(case: Case, *, privileged: bool = False, log_level: int = 0) -> VerifierReport:
    return verify(assemble(case.asm, Syntax.LLVM), maps=list(case.maps), privileged=privileged,
                  log_level=log_level)


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_unprivileged_verdict_and_barriers(case: Case) -> None:
    report = _verify(case)
    if case.expect is not None:
        assert not report.accepted, report.summary()
        assert report.reason == case.expect
        return
    assert report.accepted, report.summary()
    before = {barrier.pc for barrier in report.barriers if not barrier.after}
    assert before == set(case.before)
    # A failing instruction reached only speculatively is dead code (sanitised in place); one
    # real paths reach too keeps running there, behind its barrier.
    assert set(case.dead) == set(case.before) - report.seen


@pytest.mark.parametrize("case", [case for case in CASES if case.before], ids=lambda case: case.name)
def test_root_explores_no_speculative_path(case: Case) -> None:
    # bypass_spec_v1: root gets no barriers, and walks fewer instructions.
    privileged, unprivileged = _verify(case, privileged=True), _verify(case)
    assert privileged.accepted and not privileged.barriers
    assert privileged.processed_insns < unprivileged.processed_insns


@pytest.mark.parametrize("case", [case for case in CASES if case.retval is not None], ids=lambda case: case.name)
def test_rewritten_program_runs_with_barriers_recorded(case: Case) -> None:
    # A barrier is a no-op for our engines: the rewrite records it, traps the dead slot, and
    # the program still returns what the selftest expects.
    insns = assemble(case.asm, Syntax.LLVM)
    report = verify(insns, privileged=False)
    result = eliminate_dead_code(insns, report.seen, privileged=False, barriers=report.barriers)
    assert result.barriers == report.barriers
    by_pc = {labeled.pc: labeled.insn for labeled in result.insns}
    assert all(by_pc[pc] == Goto(-1) for pc in case.dead)
    assert Interpreter(result.insns).run().r0 == case.retval


def test_barrier_explained_in_report_and_log() -> None:
    case = CASES[0]
    report = _verify(case, log_level=2)
    text = report.summary()
    assert "speculation barrier inserted before insn 4 because" in text
    assert "R7 invalid mem access 'scalar'" in text
    # The kernel-style log: the speculative path's start, the error it met, the barrier.
    assert "from 3 to 4 (speculative execution):" in "\n".join(report.log)
    assert "; speculation barrier inserted before insn 4" in report.log


def test_spectre_v4_store_gets_barrier_after() -> None:
    # check_stack_write_fixed_off: the first store to a never-written slot, and any pointer
    # spill, need a barrier after them; overwriting plain data does not.
    insns = assemble("""
        r1 = 0
        *(u64 *)(r10 - 8) = r1
        *(u64 *)(r10 - 8) = r1
        *(u64 *)(r10 - 16) = r10
        r0 = 0
        exit
    """, Syntax.LLVM)
    report = verify(insns, privileged=False)
    assert report.accepted, report.summary()
    assert [(barrier.pc, barrier.after) for barrier in report.barriers] == [(1, True), (3, True)]
    assert not verify(insns).barriers


def test_unprivileged_scalar_store_is_not_a_spill() -> None:
    # Only a bpf_capable loader's scalar spills are tracked: unprivileged, the bounded value
    # reads back unknown, so the access it bounds is refused (as the kernel does).
    insns = assemble(_LOOKUP_HASH + """
        if r0 == 0 goto +7
        r1 = *(u8 *)(r0 + 0)
        r1 &= 7
        *(u64 *)(r10 - 16) = r1
        r1 = *(u64 *)(r10 - 16)
        r0 += r1
        r0 = *(u8 *)(r0 + 0)
        exit
        r0 = 0
        exit
    """, Syntax.LLVM)
    assert verify(insns, maps=[HASH_8B]).accepted
    report = verify(insns, maps=[HASH_8B], privileged=False)
    assert not report.accepted
    assert report.reason == "math between map_value pointer and register with unbounded min value is not allowed"


def test_speculative_states_count_as_processed() -> None:
    # Every instruction a speculative path walks is processed (the kernel's insn_processed),
    # and a barrier stops later speculative paths at it.
    case = CASES[0]
    report = _verify(case)
    # 0-3 and 5 on the real path, 4 once speculatively.
    assert report.processed_insns == 6
    assert report.seen == {0, 1, 2, 3, 5}


def test_callx_is_refused_even_where_only_speculation_reaches_it() -> None:
    # The kernel refuses a callx before exploring ("unknown opcode 8d"), whatever reaches it:
    # a barrier cannot recover from it.
    insns = assemble("""
        r0 = 0
        if r0 == 0 goto +1
        callx r1
        exit
    """, Syntax.LLVM)
    report = verify(insns, privileged=False)
    assert not report.accepted
    assert report.error is not None and report.error.pc == 2
    assert report.error.reason == "unknown opcode 8d"


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(programs(), st.binary(min_size=SPEC.context.size, max_size=SPEC.context.size))
def test_unprivileged_acceptance_is_sound(insns: list[LabeledInsn], context: bytes) -> None:
    # What an unprivileged load accepts, root accepts too (speculative paths only add barriers);
    # and the rewritten program, whose speculation-only code is now a trap, runs without ever
    # meeting a trap or a fault.
    report = verify(insns, prog_type=SPEC, privileged=False)
    if not report.accepted:
        return
    assert verify(insns, prog_type=SPEC).accepted
    rewritten = eliminate_dead_code(insns, report.seen, privileged=False, barriers=report.barriers)
    try:
        Interpreter(rewritten.insns, name="unprivileged", instruction_limit=10_000).run(
            Region.from_bytes(RegionKind.INPUT, "ctx", context))
    except VmError as error:  # pragma: no cover - a failure is a soundness bug
        raise AssertionError(f"accepted but faulted: {error}\n{report.summary()}") from error


_SCALARS = st.sampled_from([Reg.R0, Reg.R2, Reg.R3, Reg.R4])


@st.composite
def decided_branches(draw: st.DrawFn) -> list[LabeledInsn]:
    """Constant scalars, arithmetic on them, branches on them (often decided), and "poison":
    loads through a scalar, which only a path no execution takes may contain."""
    insns: list[Instruction] = [Bin(BinOp.MOV, reg, Imm(draw(st.integers(0, 4))), True)
                                for reg in (Reg.R0, Reg.R2, Reg.R3, Reg.R4)]
    count = draw(st.integers(1, 10))
    for index in range(count):
        kind = draw(st.sampled_from(["alu", "jump", "guard", "guard", "poison"]))
        if kind == "guard":
            # Jump over the poison: when the jump is decided "taken", only misprediction reaches it.
            cond = draw(st.sampled_from([Cond.JEQ, Cond.JNE, Cond.JGE, Cond.JLE, Cond.JSET]))
            insns.append(Jump(cond, draw(_SCALARS), Imm(draw(st.integers(0, 4))), 1, draw(st.booleans())))
            insns.append(Load(Size.B, Reg.R5, draw(_SCALARS), 0))
        elif kind == "alu":
            op = draw(st.sampled_from([BinOp.ADD, BinOp.SUB, BinOp.AND, BinOp.OR, BinOp.XOR, BinOp.MOV]))
            insns.append(Bin(op, draw(_SCALARS), Imm(draw(st.integers(0, 4))), draw(st.booleans())))
        elif kind == "jump":
            cond = draw(st.sampled_from([Cond.JEQ, Cond.JNE, Cond.JGT, Cond.JLT, Cond.JSET, Cond.JSGE]))
            insns.append(Jump(cond, draw(_SCALARS), Imm(draw(st.integers(0, 4))), draw(st.integers(0, count - index)),
                              draw(st.booleans())))
        else:
            insns.append(Load(Size.B, Reg.R5, draw(_SCALARS), 0))
    insns.append(Exit())
    return [LabeledInsn(pc, insn) for pc, insn in enumerate(insns)]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(decided_branches())
def test_barriers_only_guard_paths_no_execution_takes(insns: list[LabeledInsn]) -> None:
    # An accepted program whose poison sits behind a barrier: the barrier's instruction either
    # runs on real paths too (then it must be safe there: root accepts the program) or is dead
    # and becomes a trap that the run never meets.
    report = verify(insns, privileged=False)
    if not report.accepted:
        return
    assert verify(insns).accepted
    rewritten = eliminate_dead_code(insns, report.seen, privileged=False, barriers=report.barriers)
    Interpreter(rewritten.insns, name="decided", instruction_limit=1_000).run()


def test_decided_branches_yield_barriers() -> None:
    """The property above is only meaningful if its generator produces barriers."""
    guarded: list[Instruction] = [Bin(BinOp.MOV, Reg.R0, Imm(1), True), Jump(Cond.JEQ, Reg.R0, Imm(1), 1, False),
                                  Load(Size.B, Reg.R5, Reg.R0, 0), Exit()]
    program = [LabeledInsn(pc, insn) for pc, insn in enumerate(guarded)]
    assert [barrier.pc for barrier in verify(program, privileged=False).barriers] == [2]
