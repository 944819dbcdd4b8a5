"""What the JIT tells LLVM about memory: pointer origins, private frames, frame checks, the budget.

The origin analysis (pybpf.vm.jit.plan.register_origins) decides which accesses become
getelementptrs from a fixed base and whether a function's frame may live in a local array; the
behaviour tests check that every such choice keeps the interpreter's results and errors.
"""

from __future__ import annotations

import ctypes

import pytest
from jit_build import run_both, run_jit

from pybpf.asm import assemble
from pybpf.errors import InstructionLimitError, MemoryAccessError
from pybpf.isa import Reg
from pybpf.vm import ExecutionContext, Interpreter, Region, RegionKind
from pybpf.vm.execution import STACK_SIZE
from pybpf.vm.jit import JitProgram
from pybpf.vm.jit.codegen import _ModuleBuilder
from pybpf.vm.jit.llvm import NativeCode
from pybpf.vm.jit.plan import FRAME, FunctionOrigins, function_origins, plan_program
from pybpf.vm.jit.state import STATE_SLOTS, Slot


def _origins(text: str, function: int = 0) -> tuple[FunctionOrigins, dict[int, object]]:
    insns = tuple(assemble(text))
    plan = plan_program(insns, insns[-1].pc + 1)
    chosen = plan.functions[function]
    return function_origins(plan, chosen), dict(plan.insns)


def _read_u64(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int, /) -> int:  # noqa: PLR0917
    """A helper that reads 8 bytes where r1 points, through the address space (as real helpers do)."""
    return env.memory.load(r1, 8)


def test_origins_follow_pointer_arithmetic() -> None:
    origins, _ = _origins(
        """
        mov %r2, %r10
        add %r2, -8
        mov %r4, 12
        mov %r3, %r1
        add %r3, %r4
        ldxb %r0, [%r3]
        stxdw [%r2], %r0
        add %r3, %r2
        exit
        """
    )
    assert origins.base(5, Reg.R3) == 1  # r1 plus a scalar is still derived from r1
    assert origins.base(6, Reg.R2) == FRAME
    assert origins.base(6, Reg.R0) is None  # loaded: no entry register
    assert origins.base(8, Reg.R3) is None  # derived from r1 and r10: no single base
    assert origins.private_frame


def test_values_spilled_through_r10_keep_their_origins() -> None:
    text = """
    stxdw [%r10-8], %r1
    mov %r3, %r10
    add %r3, -32
    stxdw [%r10-16], %r3
    ldxdw %r2, [%r10-8]
    ldxb %r0, [%r2+3]
    ldxdw %r4, [%r10-16]
    stdw [%r4], 7
    ldxdw %r0, [%r10-32]
    exit
    """
    origins, _ = _origins(text)
    assert origins.base(5, Reg.R2) == 1  # r1, spilled and loaded back
    assert origins.base(7, Reg.R4) == FRAME  # a frame address spilled to the frame stays inside it
    assert origins.private_frame
    memory = bytes(range(8))
    for checked in (True, False):
        program = JitProgram(assemble(text), bounds_checks=checked, cache=None)
        assert program.run(Region.from_bytes(RegionKind.INPUT, "input", memory)).r0 == 7
    assert Interpreter(assemble(text)).run(Region.from_bytes(RegionKind.INPUT, "input", memory)).r0 == 7


def test_a_partly_overwritten_spill_is_no_longer_a_plain_pointer() -> None:
    text = """
    mov %r3, %r10
    add %r3, -32
    stxdw [%r10-16], %r3
    stw [%r10-16], 0
    ldxdw %r4, [%r10-16]
    ldxdw %r0, [%r4]
    exit
    """
    origins, _ = _origins(text)
    assert origins.before[5][4] == frozenset({FRAME, -1})
    assert not origins.private_frame


@pytest.mark.parametrize(
    "text",
    [
        "mov %r2, %r10\nstxdw [%r1], %r2\nexit",  # a frame address stored to memory
        "mov %r2, %r10\nadd %r2, -8\ncall 1\nexit",  # passed to a helper
        "mov %r1, %r10\ncall local f\nexit\nf:\nmov %r0, 0\nexit",  # passed to a function
        "jeq %r2, 0, +1\nmov %r1, %r10\nldxb %r0, [%r1-1]\nexit",  # one register, two possible regions
        "mov %r1, %r10\nlock add [%r1-8], %r2\nexit",  # an atomic on the frame
        "mov %r1, %r10\nand %r1, -8\nldxb %r0, [%r1-1]\nexit",  # masked: no longer plain arithmetic
    ],
)
def test_frame_is_not_private_when_its_address_may_leave(text: str) -> None:
    origins, _ = _origins(text)
    assert not origins.private_frame


def test_a_callee_returning_its_frame_address_keeps_its_frame_in_memory() -> None:
    text = "call local f\nexit\nf:\nmov %r0, %r10\nexit"
    assert _origins(text, 0)[0].private_frame  # main's r0 is only reported, never dereferenced
    assert not _origins(text, 1)[0].private_frame


def test_private_frame_reads_zero_before_writes_and_reports_region_addresses() -> None:
    text = """
    ldxdw %r0, [%r10-8]
    mov %r1, %r10
    add %r1, -16
    stdw [%r1], 5
    ldxdw %r2, [%r10-16]
    add %r0, %r2
    stdw [%r10-8], 99
    exit
    """
    assert _origins(text)[0].private_frame
    for checked in (True, False):
        program = JitProgram(assemble(text), bounds_checks=checked, cache=None)
        for _ in range(2):  # the second run must not see the first one's 99
            result = program.run()
            assert result.r0 == 5
            assert result.registers[1] == result.registers[10] - 16  # frame addresses as the interpreter has them
        repeated, _ = program.run_repeated(repeat=3)
        assert repeated.r0 == 5


def test_frames_of_nested_calls_are_separate() -> None:
    text = """
    stdw [%r10-8], 1
    mov %r6, 3
    call local f
    ldxdw %r0, [%r10-8]
    mul %r0, 10
    exit
    f:
    stdw [%r10-8], 2
    jeq %r6, 0, +3
    sub %r6, 1
    call local f
    ldxdw %r0, [%r10-8]
    exit
    """
    (interp, _), (jit, _) = run_both(text)
    assert jit.r0 == interp.r0 == 10


def test_a_helper_sees_what_the_program_stored_in_its_frame() -> None:
    text = "stdw [%r10-8], 42\nmov %r1, %r10\nadd %r1, -8\ncall 1\nexit"
    assert not _origins(text)[0].private_frame
    for checked in (True, False):
        program = JitProgram(assemble(text), helpers={1: _read_u64}, bounds_checks=checked, cache=None)
        assert program.run().r0 == 42


@pytest.mark.parametrize("checked", [True, False])
def test_variable_offsets_into_the_frame_match_the_interpreter(checked: bool) -> None:
    # An insertion of 16 words into a stack array (sort.c's pattern: r10 - 128 + index * 8).
    text = """
    mov %r6, 0
    fill:
    mov %r1, %r6
    mul %r1, 40503
    and %r1, 255
    mov %r2, %r6
    lsh %r2, 3
    mov %r3, %r10
    add %r3, -128
    add %r3, %r2
    stxdw [%r3], %r1
    add %r6, 1
    jlt %r6, 16, fill
    mov %r0, 0
    mov %r6, 0
    sum:
    mov %r3, %r10
    add %r3, -128
    mov %r2, %r6
    lsh %r2, 3
    add %r3, %r2
    ldxdw %r1, [%r3]
    mul %r0, 31
    add %r0, %r1
    add %r6, 1
    jlt %r6, 16, sum
    exit
    """
    insns = assemble(text)
    expected = Interpreter(insns).run().r0
    assert JitProgram(insns, bounds_checks=checked, cache=None).run().r0 == expected


@pytest.mark.parametrize(
    "text",
    [
        "mov %r2, 600\nmov %r1, %r10\nsub %r1, %r2\nldxdw %r0, [%r1]\nexit",  # below the frame
        "mov %r2, 8\nmov %r1, %r10\nadd %r1, %r2\nstxdw [%r1-8], %r2\nstxdw [%r1-4], %r2\nexit",  # straddles its top
    ],
)
def test_checked_frame_accesses_outside_the_frame_fault(text: str) -> None:
    with pytest.raises(MemoryAccessError):
        Interpreter(assemble(text)).run()
    with pytest.raises(MemoryAccessError):
        run_jit(text)


def test_loop_budget_is_shared_across_calls() -> None:
    # f loops 30 times; main calls it 3 times: 90 iterations in all (plus main's none).
    text = """
    call local f
    call local f
    call local f
    exit
    f:
    mov %r1, 0
    loop:
    add %r1, 1
    jlt %r1, 30, loop
    mov %r0, %r1
    exit
    """
    assert run_jit(text, instruction_limit=200).r0 == 30
    with pytest.raises(InstructionLimitError) as caught:
        run_jit(text, instruction_limit=80)
    assert caught.value.pc == 5  # the loop header in f


def test_budget_exhaustion_in_a_repeat_still_raises() -> None:
    program = JitProgram(assemble("mov %r0, 0\ntop:\nadd %r0, 1\njlt %r0, 50, top\nexit"), cache=None)
    result, _ = program.run_repeated(repeat=5, instruction_limit=100)
    assert result.r0 == 50  # every run gets the whole budget
    with pytest.raises(InstructionLimitError):
        program.run_repeated(repeat=5, instruction_limit=20)


def test_buffer_loops_become_vector_code() -> None:
    # Fill a buffer through r1 + i: a getelementptr from r1's entry value is affine, so LLVM
    # vectorises (or turns into memset) a loop it could only scalarise through inttoptr.
    text = """
    mov %r3, 0
    loop:
    mov %r5, %r1
    add %r5, %r3
    stb [%r5], 1
    add %r3, 1
    jlt %r3, %r2, loop
    exit
    """
    program = JitProgram(assemble(text), bounds_checks=False, cache=None)
    optimized = program.native.optimized_ir()
    assert "store <" in optimized or "llvm.memset" in optimized
    region = Region.from_bytes(RegionKind.INPUT, "input", bytes(100))
    program.run(region, registers={2: 77})
    assert bytes(region.view) == b"\x01" * 77 + bytes(23)


def test_private_frame_slots_live_in_registers() -> None:
    # A spilled counter in a loop: with the frame private, no memory access is left.
    text = """
    stdw [%r10-8], 0
    mov %r2, 0
    loop:
    ldxdw %r3, [%r10-8]
    add %r3, %r2
    stxdw [%r10-8], %r3
    add %r2, 1
    jlt %r2, 1000, loop
    ldxdw %r0, [%r10-8]
    exit
    """
    program = JitProgram(assemble(text), bounds_checks=True, cache=None)
    assert program.run().r0 == sum(range(1000))
    assert "alloca" in program.generated_ir  # the frame (and the registers) before optimisation
    assert "alloca" not in program.native.optimized_ir()  # all promoted to registers


def test_main_without_registers_returns_r0_and_leaves_the_registers_alone() -> None:
    # The variant repeat and batch runs may call: same r0, no final registers, and (no register
    # being live at the exit but r0) LLVM vectorises the summing loop.
    text = """
    mov %r0, 0
    mov %r3, 0
    loop:
    mov %r4, %r3
    lsh %r4, 3
    add %r4, %r1
    ldxdw %r5, [%r4]
    add %r0, %r5
    add %r3, 1
    jlt %r3, %r2, loop
    exit
    """
    insns = tuple(assemble(text))
    parts = _ModuleBuilder(plan_program(insns, insns[-1].pc + 1), {}, {}, bounds_checks=False)
    quiet = parts.main_without_registers()
    quiet.linkage = ""  # callable from here (internal, LLVM would inline it away)
    quiet.calling_convention = "ccc"
    module = parts.build()
    native = NativeCode(module.text)
    words = list(range(1, 65))
    data = (ctypes.c_uint64 * len(words))(*words)
    state = (ctypes.c_uint64 * STATE_SLOTS)()
    stack = ctypes.create_string_buffer(STACK_SIZE)
    state[Slot.STACK_TOPS] = ctypes.addressof(stack) + STACK_SIZE
    state[Slot.BUDGET] = 1_000
    signature = ctypes.CFUNCTYPE(ctypes.c_uint64, ctypes.c_void_p, *([ctypes.c_uint64] * 11))
    call = signature(native.address(quiet.name))
    r0 = call(ctypes.addressof(state), 0, 0, ctypes.addressof(data), len(words), *([0] * 7))
    assert r0 == sum(words)
    assert state[Slot.STATUS] == 0
    assert list(state[Slot.REGS : Slot.REGS + 11]) == [0] * 11
    body = native.optimized_ir().split(f"@{quiet.name}(", 1)[1].split("\n}\n", 1)[0]
    assert "x i64>" in body  # a vector loop


def test_a_main_function_that_is_also_a_callee_keeps_its_frame_in_memory() -> None:
    # The inner call of the main function returns its frame's address; the caller reads it.
    text = """
    start:
    jeq %r1, 7, inner
    mov %r1, 7
    call local start
    ldxdw %r0, [%r0]
    exit
    inner:
    stdw [%r10-8], 9
    mov %r0, %r10
    add %r0, -8
    exit
    """
    assert not _origins(text)[0].private_frame
    (interp, _), (jit, _) = run_both(text)
    assert jit.r0 == interp.r0 == 9
