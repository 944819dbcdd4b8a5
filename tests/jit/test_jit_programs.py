"""JitProgram behaviour: edge cases of the semantics, errors instead of crashes, helpers, calls."""

from __future__ import annotations

import sys
from dataclasses import replace

import pytest
from jit_build import run_both, run_jit

from pybpf.asm import assemble
from pybpf.errors import (
    CallDepthError,
    HelperError,
    InstructionLimitError,
    MemoryAccessError,
    NotSupportedError,
    VmError,
)
from pybpf.isa import Bin, BinOp, CallKfunc, Exit, Imm, LabeledInsn, LoadImm64, PacketLoad, PseudoSrc, Reg, Size
from pybpf.isa.opcodes import Mode
from pybpf.isa.semantics import ALU32, ALU64
from pybpf.vm import ExecutionContext, Region, RegionKind
from pybpf.vm.jit import JitProgram

U64 = (1 << 64) - 1
INT64_MIN = 1 << 63
INT32_MIN = 1 << 31

DIVISION_CASES = [
    (7, 0),
    (0, 0),
    (INT64_MIN, U64),  # INT64_MIN / -1
    (INT32_MIN, 0xFFFFFFFF),  # INT32_MIN / -1 in the low half
    (U64, 3),
    (U64 - 6, 0xFFFFFFFFFFFFFFFD),  # -7 / -3
    (7, 0xFFFFFFFFFFFFFFFD),  # 7 / -3
    (0x1_0000_0005, 0x1_0000_0000),  # the 32-bit form sees a zero divisor
    (12345678901234, 0xFFFFFFFF),
]


@pytest.mark.parametrize(("dividend", "divisor"), DIVISION_CASES)
@pytest.mark.parametrize("op", ["div", "mod", "sdiv", "smod"])
@pytest.mark.parametrize("is64", [True, False])
def test_division_edge_cases_match_the_semantics(dividend: int, divisor: int, op: str, is64: bool) -> None:
    mnemonic = op + ("" if is64 else "32")
    program = f"{mnemonic} %r0, %r1\nexit"
    result = run_jit(program, registers={0: dividend, 1: divisor})
    table = ALU64 if is64 else ALU32
    assert result.r0 == table[BinOp[op.upper()]](dividend, divisor)


@pytest.mark.parametrize("amount", [0, 1, 31, 32, 63, 64, 65, 0xFFFFFFFF, U64])
@pytest.mark.parametrize("mnemonic", ["lsh", "rsh", "arsh", "lsh32", "rsh32", "arsh32"])
def test_shift_amounts_are_masked(amount: int, mnemonic: str) -> None:
    (interp, _), (jit, _) = run_both(f"{mnemonic} %r0, %r1\nexit", registers={0: 0x8000_0001_8000_0003, 1: amount})
    assert jit.r0 == interp.r0


def test_final_registers_are_reported() -> None:
    result = run_jit("mov %r0, 1\nmov %r6, 6\nmov32 %r9, -1\nexit")
    assert result.registers[0] == 1
    assert result.registers[6] == 6
    assert result.registers[9] == 0xFFFFFFFF


@pytest.mark.parametrize(
    ("program", "is_write"),
    [
        ("ldxdw %r0, [%r1+8]\nexit", False),  # one byte past an 8-byte input... and more
        ("ldxb %r0, [%r1-1]\nexit", False),
        ("stxw [%r1+6], %r1\nexit", True),  # straddles the end of the input
        ("mov %r1, 0\nldxdw %r0, [%r1]\nexit", False),  # null
        ("stdw [%r10], 1\nexit", True),  # just above the stack
        ("lddw %r1, 0x123456789ab\nlock add [%r1], %r2\nexit", True),
    ],
)
def test_out_of_bounds_access_raises_memory_access_error(program: str, is_write: bool) -> None:
    with pytest.raises(MemoryAccessError) as caught:
        run_jit(program, memory=bytes(8))
    assert caught.value.is_write is is_write
    assert caught.value.pc is not None
    assert f"{caught.value.address:#x}" in str(caught.value)


def test_out_of_bounds_error_names_the_pc_and_address() -> None:
    program = JitProgram(
        [LabeledInsn(0, _mov(Reg.R0, 0)), *_assemble_at(1, "ldxw %r0, [%r1+5]\nexit")],
    )
    region = Region.from_bytes(RegionKind.INPUT, "input", bytes(8))
    with pytest.raises(MemoryAccessError) as caught:
        program.run(region)
    assert caught.value.pc == 1
    assert caught.value.address == region.address + 5
    assert caught.value.size == 4
    assert "input" in str(caught.value)


def test_write_to_a_read_only_region_is_refused() -> None:
    program = JitProgram(_assemble_at(0, "stb [%r1], 1\nexit"))
    region = Region.from_bytes(RegionKind.RODATA, "ro", b"abcd", writable=False)
    with pytest.raises(MemoryAccessError, match="read-only"):
        program.run(region)
    assert bytes(region.view) == b"abcd"


def test_region_mapped_after_the_run_started_is_reachable_through_the_fault_handler() -> None:
    late = Region.from_bytes(RegionKind.OTHER, "late", (77).to_bytes(8, "little"))

    def map_late(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int, /) -> int:  # noqa: PLR0917
        env.memory.add(late)
        return late.address

    program = JitProgram(_assemble_at(0, "call 1\nldxdw %r0, [%r0]\nexit"), helpers={1: map_late})
    try:
        assert program.run().r0 == 77
    finally:
        program.memory.remove(late)


def test_stack_is_zeroed_for_every_run() -> None:
    program = JitProgram(_assemble_at(0, "ldxdw %r0, [%r10-8]\nstdw [%r10-8], 99\nexit"))
    assert program.run().r0 == 0
    assert program.run().r0 == 0


def test_helper_gets_arguments_and_env_and_its_result_lands_in_r0() -> None:
    seen: list[tuple[int, ...]] = []

    def helper(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int, /) -> int:  # noqa: PLR0917
        seen.append((env.pc, r1, r2, r3, r4, r5))
        return r1 + r5

    text = "mov %r1, 1\nmov %r2, 2\nmov %r3, 3\nmov %r4, 4\nmov %r5, -1\ncall 9\nexit"
    result = run_jit(text, helpers={9: helper})
    assert seen == [(5, 1, 2, 3, 4, U64)]
    assert result.r0 == 0


def test_helper_stop_ends_the_program_from_a_nested_frame() -> None:
    def stop(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int, /) -> int:  # noqa: PLR0917
        env.stop(r1)

    text = "call local f\nmov %r0, 1\nexit\nf:\nmov %r1, 33\ncall 5\nmov %r0, 2\nexit"
    assert run_jit(text, helpers={5: stop}).r0 == 33


def test_unknown_helper_and_failing_helper_raise_helper_error() -> None:
    with pytest.raises(HelperError, match="unknown helper id 7"):
        run_jit("call 7\nexit", helpers={})

    def broken(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int, /) -> int:  # noqa: PLR0917
        raise ZeroDivisionError("boom")

    with pytest.raises(HelperError, match="ZeroDivisionError"):
        run_jit("call 3\nexit", helpers={3: broken})


def test_recursion_beyond_eight_frames_raises_call_depth_error() -> None:
    text = "f:\ncall local f\nexit"
    with pytest.raises(CallDepthError) as caught:
        run_jit(text)
    assert caught.value.pc == 0


def test_eight_frames_are_allowed_and_nine_are_not() -> None:
    # Depth counts down in r1: main plus 7 nested calls is the limit.
    text = """
    mov %r1, 6
    call local f
    exit
    f:
    jeq %r1, 0, done
    sub %r1, 1
    call local f
    add %r0, 1
    exit
    done:
    mov %r0, 0
    exit
    """
    (interp, _), (jit, _) = run_both(text)
    assert jit.r0 == interp.r0 == 6
    with pytest.raises(CallDepthError):
        run_jit(text.replace("mov %r1, 6", "mov %r1, 7"))


def test_callx_to_a_code_address_and_to_a_bad_target() -> None:
    text = "lddw %r2, 0\nmov %r0, 0\ncall %r2\nexit"
    insns = _assemble_at(0, text)
    first = insns[0].insn
    assert isinstance(first, LoadImm64)
    func = LoadImm64(first.dst, 4, 0, PseudoSrc.FUNC)  # pc 0 + 1 + 4 = pc 5: the "mov" after the exit
    body = [replace(insns[0], insn=func), *insns[1:], *_assemble_at(5, "mov %r0, 42\nexit")]
    (interp, _), (jit, _) = run_both(body)
    assert jit.r0 == interp.r0 == 42
    with pytest.raises(VmError, match="not the address of a function"):
        run_jit("lddw %r2, 0xffff800000001000\ncall %r2\nexit")


def test_infinite_loop_runs_out_of_budget() -> None:
    with pytest.raises(InstructionLimitError):
        run_jit("top:\nadd %r0, 1\nja top", instruction_limit=10_000)


def test_falling_off_the_end_and_kfunc_calls_are_errors() -> None:
    with pytest.raises(VmError, match="fell off"):
        run_jit("mov %r0, 1")
    with pytest.raises(VmError, match="kfunc"):
        JitProgram([LabeledInsn(0, CallKfunc(12)), LabeledInsn(1, Exit())]).run()


def test_packet_loads_are_big_endian_and_stop_outside_the_packet() -> None:
    packet = Region.from_bytes(RegionKind.PACKET, "packet", bytes(range(1, 17)))
    insns = [
        LabeledInsn(0, PacketLoad(Size.W, Mode.ABS, None, 2)),
        LabeledInsn(1, Exit()),
    ]
    assert JitProgram(insns).run(packet=packet).r0 == 0x03040506
    indexed = JitProgram([LabeledInsn(0, PacketLoad(Size.H, Mode.IND, Reg.R1, 14)), LabeledInsn(1, Exit())])
    assert indexed.run(packet=packet, registers={0: 5, 1: 0}).r0 == 0x0F10  # the last two bytes
    assert indexed.run(packet=packet, registers={0: 5, 1: 1}).r0 == 0  # one byte past the end: stopped, r0 = 0
    with pytest.raises(VmError, match="needs a packet"):
        JitProgram(insns).run()


def test_missing_llvmlite_raises_not_supported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "llvmlite", None)
    with pytest.raises(NotSupportedError, match="llvmlite"):
        JitProgram(_assemble_at(0, "mov %r0, 1\nexit"))


# -- small builders -------------------------------------------------------------------------------


def _mov(reg: Reg, value: int) -> Bin:
    return Bin(BinOp.MOV, reg, Imm(value), True)


def _assemble_at(pc: int, text: str) -> list[LabeledInsn]:
    return [LabeledInsn(item.pc + pc, item.insn) for item in assemble(text)]


def test_helper_callback_through_env_call_function() -> None:
    def call_back(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int, /) -> int:  # noqa: PLR0917
        return env.call_function(r1, r2) * 10

    # pc 0-1: lddw r1, <f at pc 5>; pc 2: r2 = 4; pc 3: call 1; pc 4: exit; f: r0 = r1 + 1.
    head = _assemble_at(0, "lddw %r1, 0\nmov %r2, 4\ncall 1\nexit\nmov %r0, %r1\nadd %r0, 1\nexit")
    first = head[0].insn
    assert isinstance(first, LoadImm64)
    insns = [replace(head[0], insn=LoadImm64(first.dst, 4, 0, PseudoSrc.FUNC)), *head[1:]]
    (interp, _), (jit, _) = run_both(insns, helpers={1: call_back})
    assert jit.r0 == interp.r0 == 50


def test_a_helper_may_run_the_same_program_again() -> None:
    programs: list[JitProgram] = []

    def recurse(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int, /) -> int:  # noqa: PLR0917
        return programs[0].run(registers={6: r1 - 1}).r0

    text = """
    stxdw [%r10-8], %r6
    jeq %r6, 0, done
    mov %r1, %r6
    call 1
    ldxdw %r1, [%r10-8]
    add %r0, %r1
    exit
    done:
    mov %r0, 0
    exit
    """
    programs.append(JitProgram(assemble(text), helpers={1: recurse}))
    assert programs[0].run(registers={6: 4}).r0 == 4 + 3 + 2 + 1  # each run kept its own stack slot


def test_atomics_are_real_llvm_atomic_instructions() -> None:
    text = "lock add [%r1], %r2\nlock fetch or32 [%r1], %r2\nlock xchg [%r1], %r2\nlock cmpxchg [%r1], %r2\nexit"
    program = JitProgram(assemble(text))
    for operation in ("atomicrmw add", "atomicrmw or", "atomicrmw xchg", "cmpxchg"):
        assert operation in program.generated_ir
    assert "cmpxchg" in program.native.optimized_ir()  # x86 has no fetch-or: LLVM loops on cmpxchg
    (interp, interp_memory), (jit, jit_memory) = run_both(text, memory=bytes(range(8)), registers={0: 0x0706, 2: 9})
    assert jit_memory == interp_memory
    assert (jit.r0, *jit.registers[2:10]) == (interp.r0, *interp.registers[2:10])  # r1: each run's own input
