"""The native repeat and batch entries against single runs.

All but the last run of a repeat (and every run of a batch) skip storing the final registers;
these tests check that nothing observable changes: the result of ``run_repeated`` is the last
run's (r0, every register), helpers see every run, stops and errors of any run behave as in a
single run, and a batch gives each packet the r0 a single run gives.
"""

from __future__ import annotations

import ctypes

import pytest

from pybpf.asm import assemble
from pybpf.errors import InstructionLimitError, MemoryAccessError
from pybpf.vm import Interpreter
from pybpf.vm.execution import ExecutionContext
from pybpf.vm.jit import JitProgram
from pybpf.vm.memory import Region, RegionKind

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

SUM_LOOP = """
mov %r0, 0
mov %r3, 0
mov %r6, 77
loop:
ldxb %r4, [%r1]
add %r0, %r4
add %r1, 1
add %r3, 1
jlt %r3, %r2, loop
mov %r7, %r0
mul %r7, 3
exit
"""

COUNTER_HELPER = 6  # trace_printk's id: never served natively, so every call reaches Python


def _set_u64(region: Region, offset: int, value: int) -> None:
    ctypes.c_uint64.from_address(region.address + offset).value = value


def _input(size: int = 48) -> Region:
    return Region.from_bytes(RegionKind.INPUT, "input", bytes((7 * index + 3) & 0xFF for index in range(size)))


@pytest.mark.parametrize("checked", [True, False])
@pytest.mark.parametrize("repeat", [1, 2, 7])
def test_repeat_reports_the_last_runs_registers(checked: bool, repeat: int) -> None:
    insns = assemble(SUM_LOOP)
    region = _input()
    expected = Interpreter(insns).run(region)
    program = JitProgram(insns, cache=None, bounds_checks=checked)
    single = program.run(region)
    repeated, elapsed = program.run_repeated(region, repeat=repeat)
    assert elapsed > 0
    assert single.r0 == expected.r0 == repeated.r0
    # r1 moved through the buffer, r3 counted, r6/r7 set: all from the last run.
    assert repeated.registers == single.registers
    assert repeated.registers[:10] == expected.registers[:10]  # r10: each engine has its own stack


def test_repeat_runs_every_run_through_the_helper() -> None:
    calls: list[int] = []

    def counter(env: ExecutionContext, *args: int) -> int:
        calls.append(args[0])
        return len(calls) * 10

    insns = assemble(f"mov %r1, 5\ncall {COUNTER_HELPER}\nmov %r6, %r0\nadd %r0, 1\nexit")
    program = JitProgram(insns, helpers={COUNTER_HELPER: counter}, cache=None)
    result, _ = program.run_repeated(repeat=4)
    assert calls == [5, 5, 5, 5]
    assert result.r0 == 41  # the fourth call's answer, plus one
    assert result.registers[6] == 40


def test_a_stop_before_the_last_run_does_not_end_the_repeat() -> None:
    calls: list[int] = []

    def stopping(env: ExecutionContext, *args: int) -> int:
        calls.append(args[0])
        if len(calls) % 2:
            env.stop(1000 + len(calls))
        return 0

    insns = assemble(f"mov %r1, 9\ncall {COUNTER_HELPER}\nmov %r0, 3\nexit")
    program = JitProgram(insns, helpers={COUNTER_HELPER: stopping}, cache=None)
    assert program.run_repeated(repeat=4)[0].r0 == 3  # runs 1 and 3 stopped, run 4 returned
    calls.clear()
    stopped, _ = program.run_repeated(repeat=3)
    assert len(calls) == 3
    assert stopped.r0 == 1003  # the last run stopped: its stop value


def test_a_fault_in_an_early_run_raises_as_a_single_run_does() -> None:
    calls: list[int] = []

    def flip(env: ExecutionContext, *args: int) -> int:
        calls.append(args[0])
        return 0 if len(calls) == 2 else 1

    # The second run reads through a null pointer: the repeat stops there with the same error.
    insns = assemble(f"call {COUNTER_HELPER}\njne %r0, 0, +1\nldxdw %r0, [%r0]\nexit")
    program = JitProgram(insns, helpers={COUNTER_HELPER: flip}, cache=None)
    with pytest.raises(MemoryAccessError) as caught:
        program.run_repeated(repeat=5)
    assert caught.value.pc == 2
    assert len(calls) == 2


def test_the_loop_budget_applies_to_every_run_and_errors_name_the_limit_passed() -> None:
    program = JitProgram(assemble("mov %r0, 0\ntop:\nadd %r0, 1\njlt %r0, 50, top\nexit"), cache=None)
    assert program.run_repeated(repeat=6, instruction_limit=60)[0].r0 == 50
    with pytest.raises(InstructionLimitError, match="of 20 iterations"):
        program.run_repeated(repeat=6, instruction_limit=20)
    with pytest.raises(InstructionLimitError, match="of 30 iterations"):  # the limit passed, not the default
        program.run(instruction_limit=30)


def test_a_batch_gives_every_packet_the_r0_of_a_single_run() -> None:
    # r1 = the context (data, data_end as u64 at offsets 0 and 8): the sum of the packet's bytes.
    insns = assemble(
        """
        ldxdw %r2, [%r1+0]
        ldxdw %r3, [%r1+8]
        mov %r0, 0
        loop:
        jge %r2, %r3, done
        ldxb %r4, [%r2]
        add %r0, %r4
        add %r2, 1
        ja loop
        done:
        mov %r6, %r0
        exit
        """
    )
    program = JitProgram(insns, cache=None)
    packets = [bytes((index * 31 + size) & 0xFF for index in range(size)) for size in (0, 1, 17, 64, 3)]
    frame = Region.zeroed(RegionKind.PACKET, "frame", 128)
    context = Region.zeroed(RegionKind.CONTEXT, "ctx", 16)
    program.memory.add(frame)
    program.memory.add(context)
    try:
        singles = []
        for packet in packets:
            ctypes.memmove(frame.address, packet, len(packet))
            _set_u64(context, 0, frame.address)
            _set_u64(context, 8, frame.address + len(packet))
            singles.append(program.run(context, map_inputs=False).r0)
        buffer = (ctypes.c_uint8 * sum(map(len, packets)))(*b"".join(packets))
        _set_u64(context, 0, frame.address)
        retvals, _ = program.run_batch(
            context,
            buffer=buffer,
            lengths=[len(packet) for packet in packets],
            data=frame.address,
            data_end_slot=context.address + 8,
        )
    finally:
        program.memory.remove(frame)
        program.memory.remove(context)
    assert singles == [sum(packet) for packet in packets]
    assert retvals == singles
