"""Control transfer: bpf-to-bpf calls, callx, helpers, tail calls, callbacks, stop, budgets."""

from __future__ import annotations

import pytest
from vm_build import U64, const, labeled, mov, prepare, ret, run

from pybpf.errors import CallDepthError, HelperError, InstructionLimitError, VmError
from pybpf.isa import (
    Bin,
    BinOp,
    Call,
    CallKfunc,
    CallLocal,
    CallReg,
    Cond,
    Exit,
    Goto,
    Imm,
    Instruction,
    Jump,
    Load,
    LoadImm64,
    MayGoto,
    PseudoSrc,
    Reg,
    Size,
    Store,
)
from pybpf.vm import CODE_BASE, MAX_LOOPS, ExecutionContext, Interpreter, Region, RegionKind
from pybpf.vm.execution import kfunc_key


def add(dst: Reg, src: Reg | int) -> Bin:
    return Bin(BinOp.ADD, dst, src if isinstance(src, Reg) else Imm(src), True)  # Reg is an int too


def test_local_call_passes_r1_r5_returns_r0_and_preserves_r6_r9_r10() -> None:
    program: list[Instruction] = [
        *[mov(Reg(n), n) for n in range(1, 10)],
        Store(Size.DW, Reg.R10, -8, Imm(42)),
        CallLocal(7),  # pc 10 -> function at pc 18
        # back in main: check r6-r9, our stack slot, and keep r0
        Load(Size.DW, Reg.R1, Reg.R10, -8),
        add(Reg.R0, Reg.R6),  # + 6
        add(Reg.R0, Reg.R7),
        add(Reg.R0, Reg.R8),
        add(Reg.R0, Reg.R9),  # + 9
        add(Reg.R0, Reg.R1),  # + 42
        Exit(),
        # function: r0 = r1 + ... + r5, clobber r6-r9 and its own stack slot
        mov(Reg.R0, 0),
        *[add(Reg.R0, Reg(n)) for n in range(1, 6)],
        *[mov(Reg(n), 1000) for n in range(6, 10)],
        Store(Size.DW, Reg.R10, -8, Imm(-1)),
        Exit(),
    ]
    assert run(program).r0 == 15 + 6 + 7 + 8 + 9 + 42


def test_each_frame_has_its_own_stack() -> None:
    program: list[Instruction] = [
        Bin(BinOp.MOV, Reg.R6, Reg.R10, True),
        CallLocal(2),
        Bin(BinOp.SUB, Reg.R0, Reg.R6, True),  # r0 = callee's r10 - caller's r10
        Exit(),
        Bin(BinOp.MOV, Reg.R0, Reg.R10, True),
        Exit(),
    ]
    result = run(program)
    assert result.r0 != 0
    assert result.registers[10] == result.registers[6]  # the caller's r10 is restored


def _recursion(depth: int) -> list[Instruction]:
    """main calls f(depth); f(n) calls f(n - 1) until n == 1: depth + 1 frames in all."""
    return [
        mov(Reg.R1, depth),
        CallLocal(1),
        Exit(),
        Jump(Cond.JEQ, Reg.R1, Imm(1), 3, False),  # f: pc 3
        Bin(BinOp.SUB, Reg.R1, Imm(1), True),
        CallLocal(-3),
        Exit(),
        *ret(7),
    ]


def test_eight_frames_are_allowed_and_a_ninth_is_not() -> None:
    assert run(_recursion(7)).r0 == 7
    with pytest.raises(CallDepthError, match="pc 5: call to pc 3 exceeds the limit of 8 call frames"):
        run(_recursion(8))


def test_function_address_and_callx_local() -> None:
    program: list[Instruction] = [
        LoadImm64(Reg.R6, 5, 0, PseudoSrc.FUNC),  # pc 0: address of pc 0 + 1 + 5 = 6
        mov(Reg.R1, 20),
        CallReg(Reg.R6),  # pc 3
        add(Reg.R0, Reg.R6),
        Exit(),
        Bin(BinOp.MOV, Reg.R0, Reg.R1, True),  # pc 6
        Exit(),
    ]
    interpreter = prepare(program)
    assert interpreter.code_address(6) == CODE_BASE + 48
    assert interpreter.run().r0 == (20 + CODE_BASE + 48) & U64


def test_callx_with_a_helper_id_calls_the_helper() -> None:
    calls: list[tuple[int, ...]] = []

    def helper(env: ExecutionContext, *args: int) -> int:
        calls.append(args)
        return 3

    program: list[Instruction] = [mov(Reg.R1, 11), mov(Reg.R2, 5), CallReg(Reg.R2), Exit()]
    assert run(program, helpers={5: helper}).r0 == 3
    assert calls == [(11, 5, 0, 0, 0)]


def test_callx_to_neither_code_nor_helper() -> None:
    with pytest.raises(HelperError, match="pc 1: callx r2: 0x63 is neither a code address nor a known helper id"):
        run([mov(Reg.R2, 99), CallReg(Reg.R2), Exit()])
    with pytest.raises(VmError, match="is not the address of an instruction"):
        run([const(Reg.R2, CODE_BASE + 8 * 1000), CallReg(Reg.R2), Exit()])


def test_helper_registry_receives_env_and_arguments() -> None:
    seen: list[object] = []

    def helper(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:  # noqa: PLR0917 - the helper ABI
        seen.append((env.pc, env.program.name, r1, r2, r3, r4, r5, env.memory.read_bytes(r1, 2)))
        return -1  # masked to 64 bits

    program: list[Instruction] = [*[mov(Reg(n), n) for n in range(2, 6)], Call(77), Exit()]
    interpreter = Interpreter(labeled(program), helpers={77: helper}, name="prog")
    result = interpreter.run(Region.from_bytes(RegionKind.INPUT, "in", b"hi"))
    assert result.r0 == U64
    assert seen == [(4, "prog", result.registers[1], 2, 3, 4, 5, b"hi")]


def test_unknown_helper_and_failing_helpers() -> None:
    with pytest.raises(HelperError, match="pc 1: unknown helper id 1234"):
        run([mov(Reg.R0, 0), Call(1234), Exit()])

    def broken(env: ExecutionContext, *args: int) -> int:
        return 1 // 0

    with pytest.raises(HelperError, match="pc 0: helper 9 failed: ZeroDivisionError"):
        run([Call(9), Exit()], helpers={9: broken})

    def not_int(env: ExecutionContext, *args: int) -> int:
        return "x"  # type: ignore[return-value]

    with pytest.raises(HelperError, match="helper 9 returned str"):
        run([Call(9), Exit()], helpers={9: not_int})


def test_stop_ends_the_program_from_any_depth() -> None:
    def unwind(env: ExecutionContext, r1: int, *rest: int) -> int:
        if r1 == 0:
            env.stop(0)
        return r1

    program: list[Instruction] = [mov(Reg.R1, 0), CallLocal(2), *ret(2), Call(5), *ret(9)]
    assert run(program, helpers={5: unwind}).r0 == 0
    program[0] = mov(Reg.R1, 1)
    assert run(program, helpers={5: unwind}).r0 == 2


def _tail_call_helper(table: dict[int, Interpreter]) -> object:
    def tail_call(env: ExecutionContext, ctx: int, prog_array: int, index: int, r4: int, r5: int) -> int:  # noqa: PLR0917 - the helper ABI
        target = table.get(index)
        if target is None or not env.tail_call(target):
            return (-2) & U64  # -ENOENT: execution continues after the call
        return 0

    return tail_call


def test_tail_call_replaces_the_program_with_the_same_r1_and_stack() -> None:
    table: dict[int, Interpreter] = {}
    helpers = {12: _tail_call_helper(table)}
    first = prepare([Store(Size.DW, Reg.R10, -8, Imm(40)), mov(Reg.R3, 1), Call(12), *ret(-1)], helpers=helpers)
    second = prepare(
        [Load(Size.B, Reg.R0, Reg.R1, 0), Load(Size.DW, Reg.R2, Reg.R10, -8), add(Reg.R0, Reg.R2), Exit()],
        helpers=helpers,
        memory=first.memory,
    )
    table[1] = second
    result = first.run(Region.from_bytes(RegionKind.CONTEXT, "ctx", b"\x02"))
    assert result.r0 == 42
    assert result.instructions == 3 + 4


def test_tail_calls_are_limited_to_33_then_fail_softly() -> None:
    table: dict[int, Interpreter] = {}
    # Count runs in the context's first byte, then tail-call ourselves; when that fails, return the count.
    program: list[Instruction] = [
        Load(Size.B, Reg.R2, Reg.R1, 0),
        add(Reg.R2, 1),
        Store(Size.B, Reg.R1, 0, Reg.R2),
        Bin(BinOp.MOV, Reg.R6, Reg.R1, True),
        mov(Reg.R3, 0),
        Call(12),
        Load(Size.B, Reg.R0, Reg.R6, 0),
        Exit(),
    ]
    interpreter = prepare(program, helpers={12: _tail_call_helper(table)})
    table[0] = interpreter
    assert interpreter.run(Region.from_bytes(RegionKind.CONTEXT, "ctx", b"\0")).r0 == 34  # the first run + 33


def test_tail_call_into_another_address_space_is_refused() -> None:
    table: dict[int, Interpreter] = {1: prepare(ret(0))}
    with pytest.raises(VmError, match="different address space"):
        prepare([mov(Reg.R3, 1), Call(12), Exit()], helpers={12: _tail_call_helper(table)}).run()


def _loop_helper(env: ExecutionContext, count: int, callback: int, context: int, flags: int, r5: int) -> int:  # noqa: PLR0917 - the helper ABI
    """A bpf_loop: call callback(i, context) until it returns 1; returns the iterations run."""
    for index in range(count):
        if env.call_function(callback, index, context) == 1:
            return index + 1
    return count


LOOP = {181: _loop_helper}


def _loop_program(count: int) -> list:  # type: ignore[type-arg]
    return [
        mov(Reg.R6, 1000),  # must survive the callbacks
        mov(Reg.R1, count),
        LoadImm64(Reg.R2, 5, 0, PseudoSrc.FUNC),  # pc 2 -> callback at pc 8
        Bin(BinOp.MOV, Reg.R3, Reg.R10, True),
        Call(181),
        add(Reg.R0, Reg.R6),
        Exit(),
        # callback (pc 8): *(u64 *)(ctx - 8) += i; return i == 4
        Load(Size.DW, Reg.R4, Reg.R2, -8),
        add(Reg.R4, Reg.R1),
        Store(Size.DW, Reg.R2, -8, Reg.R4),
        mov(Reg.R6, 0),
        mov(Reg.R0, 0),
        Jump(Cond.JNE, Reg.R1, Imm(4), 1, False),
        mov(Reg.R0, 1),
        Exit(),
    ]


def test_callback_hook_runs_functions_in_new_frames() -> None:
    # As _loop_program, but main returns the callbacks' running sum, kept in main's stack.
    program = [*_loop_program(3)[:5], Load(Size.DW, Reg.R0, Reg.R10, -8), Exit(), *_loop_program(3)[7:]]
    result = prepare(program, helpers=LOOP).run()
    assert result.r0 == 0 + 1 + 2
    assert result.registers[6] == 1000  # the callbacks' frames preserved r6
    assert prepare(_loop_program(100), helpers=LOOP).run().r0 == 5 + 1000  # stopped by the callback returning 1


def test_instruction_count_and_budget_include_callbacks() -> None:
    interpreter = prepare(_loop_program(3), helpers=LOOP)
    result = interpreter.run()
    per_callback = 7  # i != 4: load, add, store, mov, mov, jne, exit
    assert result.instructions == 5 + 3 * per_callback + 2
    assert interpreter.run(instruction_limit=result.instructions).r0 == result.r0
    with pytest.raises(InstructionLimitError, match="instruction budget of 20 exhausted"):
        interpreter.run(instruction_limit=20)


def test_instruction_budget() -> None:
    forever: list[Instruction] = [mov(Reg.R0, 0), add(Reg.R0, 1), Goto(-2)]
    with pytest.raises(InstructionLimitError, match=r"pc 2: instruction budget of 1000 exhausted") as info:
        prepare(forever, instruction_limit=1000).run()
    assert info.value.pc == 2  # 1000 = mov + 499 * (add, goto) + add: the goto was not run
    assert run(ret(3), instruction_limit=2).r0 == 3
    with pytest.raises(InstructionLimitError):
        run(ret(3), instruction_limit=1)


def test_may_goto_falls_through_until_the_loop_budget_is_spent() -> None:
    def set_budget(env: ExecutionContext, r1: int, *rest: int) -> int:
        seen = env.may_goto_left
        env.may_goto_left = r1
        return seen

    program: list[Instruction] = [
        mov(Reg.R1, 5),
        Call(1),
        Bin(BinOp.MOV, Reg.R6, Reg.R0, True),
        mov(Reg.R0, 0),
        MayGoto(2),  # pc 4
        add(Reg.R0, 1),
        Goto(-3),
        Exit(),
    ]
    result = run(program, helpers={1: set_budget})
    assert result.r0 == 5
    assert result.registers[6] == MAX_LOOPS


class _Resolver:
    def resolve(self, insn: LoadImm64, pc: int) -> int:
        return 0x1000 + insn.imm * 16 + pc


def test_pseudo_lddw_needs_a_resolver() -> None:
    program: list[Instruction] = [LoadImm64(Reg.R0, 3, 0, PseudoSrc.MAP_FD), Exit()]
    with pytest.raises(VmError, match="pc 0: lddw with pseudo source MAP_FD needs a resolver"):
        prepare(program)
    assert prepare(program, resolver=_Resolver()).run().r0 == 0x1000 + 48


def test_kfunc_calls_without_an_implementation_are_refused_when_reached() -> None:
    interpreter = prepare([mov(Reg.R0, 0), Jump(Cond.JEQ, Reg.R0, Imm(0), 1, False), CallKfunc(77), Exit()])
    assert interpreter.run().r0 == 0  # unreachable kfunc calls do not matter
    with pytest.raises(HelperError, match="pc 0: unknown kfunc #77"):
        run([CallKfunc(77), Exit()])


def test_kfunc_calls_dispatch_to_the_kfunc_key() -> None:
    seen: list[int] = []

    def kfunc(env: object, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:  # noqa: PLR0917 (the helper ABI)
        seen.append(r1)
        return r1 + 1

    interpreter = prepare([mov(Reg.R1, 41), CallKfunc(3), Exit()], helpers={kfunc_key(3): kfunc})
    assert interpreter.run().r0 == 42
    assert seen == [41]


def test_falling_off_the_end() -> None:
    with pytest.raises(VmError, match="pc 1: cannot execute past the last instruction"):
        run([mov(Reg.R0, 0)])
