"""Soundness property: a random program our verifier accepts never faults in the interpreter.

Programs are drawn from a small grammar (moves, ALU, loads and stores through the context, the
stack and arbitrary registers, forward conditional jumps) so that many are accepted and many are
rejected. Every accepted one runs in the reference interpreter on a random context image of the
program type's size, and must finish without a memory or runtime error.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pybpf.errors import VmError
from pybpf.isa.insn import Bin, BinOp, Cond, Exit, Imm, Instruction, Jump, LabeledInsn, Load, Reg, Store
from pybpf.isa.opcodes import Size
from pybpf.platform import BpfProgType, prog_type_spec
from pybpf.verifier import verify
from pybpf.vm import Interpreter, Region, RegionKind

SPEC = prog_type_spec(BpfProgType.SOCKET_FILTER)
REGS = st.sampled_from([Reg.R0, Reg.R1, Reg.R2, Reg.R3, Reg.R6])
SRC_REGS = st.sampled_from([Reg.R0, Reg.R1, Reg.R2, Reg.R3, Reg.R6, Reg.R10])
SIZES = st.sampled_from(list(Size))
SMALL = st.one_of(st.integers(-16, 16), st.sampled_from([-512, -8, 64, 255, 1 << 31, -(1 << 31)]))
OPS = st.sampled_from([BinOp.MOV, BinOp.ADD, BinOp.SUB, BinOp.AND, BinOp.OR, BinOp.LSH, BinOp.RSH, BinOp.MUL])


@st.composite
def instruction(draw: st.DrawFn, remaining: int) -> Instruction:
    kind = draw(st.sampled_from(["alu", "alu", "load", "store", "jump"]))
    if kind == "alu":
        src = draw(st.one_of(SRC_REGS, SMALL.map(Imm)))
        return Bin(draw(OPS), draw(REGS), src, draw(st.booleans()))
    if kind == "load":
        base = draw(st.sampled_from([Reg.R1, Reg.R10, Reg.R2, Reg.R6]))
        offset = draw(st.one_of(st.integers(-64, 0).map(lambda o: o - o % 8), st.integers(-8, 200)))
        return Load(draw(SIZES), draw(REGS), base, offset)
    if kind == "store":
        base = draw(st.sampled_from([Reg.R10, Reg.R1, Reg.R2]))
        offset = draw(st.integers(-64, 8))
        return Store(draw(SIZES), base, offset, draw(st.one_of(SRC_REGS, SMALL.map(Imm))))
    src = draw(st.one_of(REGS, SMALL.map(Imm)))
    cond = draw(st.sampled_from(list(Cond)))
    return Jump(cond, draw(REGS), src, draw(st.integers(0, remaining)), draw(st.booleans()))


@st.composite
def programs(draw: st.DrawFn) -> list[LabeledInsn]:
    count = draw(st.integers(1, 10))
    # Start with every register the grammar uses initialised: r2 a stack pointer, r6 the context.
    insns: list[Instruction] = [
        Bin(BinOp.MOV, Reg.R0, Imm(0), True),
        Bin(BinOp.MOV, Reg.R2, Reg.R10, True),
        Bin(BinOp.ADD, Reg.R2, Imm(draw(st.sampled_from([-32, -16, -8, -3]))), True),
        Bin(BinOp.MOV, Reg.R3, Imm(draw(SMALL)), True),
        Bin(BinOp.MOV, Reg.R6, Reg.R1, True),
    ]
    for index in range(count):
        insns.append(draw(instruction(count - index - 1)))
    insns.append(Exit())
    return [LabeledInsn(pc, insn) for pc, insn in enumerate(insns)]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(programs(), st.binary(min_size=SPEC.context.size, max_size=SPEC.context.size))
def test_accepted_programs_do_not_fault(insns: list[LabeledInsn], context: bytes) -> None:
    report = verify(insns, prog_type=SPEC)
    if not report.accepted:
        return
    interpreter = Interpreter(insns, name="soundness")
    try:
        interpreter.run(Region.from_bytes(RegionKind.INPUT, "ctx", context))
    except VmError as error:  # pragma: no cover - a failure is a soundness bug
        raise AssertionError(f"accepted but faulted: {error}\n{report.summary()}") from error


def test_the_grammar_yields_both_verdicts() -> None:
    """The property is only meaningful if the generator produces accepted programs too."""
    accepted: list[Instruction] = [
        Load(Size.W, Reg.R0, Reg.R1, 0),
        Store(Size.DW, Reg.R10, -8, Reg.R0),
    ]
    insns = [LabeledInsn(pc, insn) for pc, insn in enumerate([*accepted, Exit()])]
    assert verify(insns, prog_type=SPEC).accepted
    bad = [LabeledInsn(0, Load(Size.W, Reg.R0, Reg.R1, 300)), LabeledInsn(1, Exit())]
    assert not verify(bad, prog_type=SPEC).accepted
