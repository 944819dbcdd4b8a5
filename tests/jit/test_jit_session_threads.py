"""JIT sessions: runs reuse their state block and stacks, concurrent runs never share them, compiles are serialised."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pybpf.asm import assemble
from pybpf.errors import MemoryAccessError
from pybpf.vm import Interpreter, Region, RegionKind
from pybpf.vm.execution import ExecutionContext
from pybpf.vm.jit import JitProgram
from pybpf.vm.jit.cache import CompileCache
from pybpf.vm.memory import AddressSpace

THREADS = 4
RUNS = 150
MASK = 2**64 - 1

# 64 stack slots filled from the seed in r6 through a moving pointer, a helper that reads slot 0
# back through env.memory (and lets other threads run), a bpf-to-bpf call that fills 32 slots of
# its own frame, then an order-sensitive checksum over the 64 slots: any slot another run wrote
# in between changes the result.
STACK_HEAVY = """
mov %r7, 0
fill:
mov %r1, %r6
mul %r1, 31
add %r1, %r7
mov %r2, %r7
lsh %r2, 3
mov %r3, %r10
sub %r3, %r2
stxdw [%r3-8], %r1
add %r7, 1
jlt %r7, 64, fill
mov %r1, %r10
sub %r1, 8
call 1
mov %r9, %r0
mov %r1, %r6
call local callee
mov %r8, %r0
mov %r7, 0
mov %r0, 0
sum:
mov %r2, %r7
lsh %r2, 3
mov %r3, %r10
sub %r3, %r2
ldxdw %r1, [%r3-8]
mul %r0, 3
add %r0, %r1
add %r7, 1
jlt %r7, 64, sum
add %r0, %r8
add %r0, %r9
exit
callee:
mov %r4, %r1
mov %r5, 0
callee_fill:
mov %r2, %r5
lsh %r2, 3
mov %r3, %r10
sub %r3, %r2
mov %r0, %r4
xor %r0, %r5
stxdw [%r3-8], %r0
add %r5, 1
jlt %r5, 32, callee_fill
mov %r0, 0
mov %r5, 0
callee_sum:
mov %r2, %r5
lsh %r2, 3
mov %r3, %r10
sub %r3, %r2
ldxdw %r1, [%r3-8]
add %r0, %r1
add %r5, 1
jlt %r5, 32, callee_sum
exit
"""


def _expected(seed: int) -> int:
    """What STACK_HEAVY returns for ``seed``, computed in Python."""
    slots = [(seed * 31 + k) & MASK for k in range(64)]
    checksum = 0
    for value in slots:
        checksum = (checksum * 3 + value) & MASK
    callee = sum(seed ^ k for k in range(32)) & MASK
    return (checksum + callee + slots[0]) & MASK


def _read_slot(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int, /) -> int:  # noqa: PLR0917
    time.sleep(0)  # give the other threads the GIL in the middle of the run
    return env.memory.load(r1, 8)


def _in_threads(work: Callable[[int], list[str]]) -> list[str]:
    """``work(thread_number)`` in THREADS threads started together; every error message they report."""
    errors: list[str] = []
    barrier = threading.Barrier(THREADS)

    def body(number: int) -> None:
        try:
            barrier.wait()
            errors.extend(work(number))
        except Exception as error:  # reported, not lost in the thread
            errors.append(f"thread {number}: {type(error).__name__}: {error}")

    threads = [threading.Thread(target=body, args=(number,)) for number in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return errors


def test_the_checksum_program_agrees_with_the_interpreter() -> None:
    insns = assemble(STACK_HEAVY)
    interpreter = Interpreter(insns, helpers={1: _read_slot})
    jit = JitProgram(insns, helpers={1: _read_slot})
    for seed in (0, 1, 0xDEADBEEF, MASK):
        assert interpreter.run(registers={6: seed}).r0 == _expected(seed)
        assert jit.run(registers={6: seed}).r0 == _expected(seed)


def test_concurrent_runs_of_one_program_keep_their_own_stacks() -> None:
    jit = JitProgram(assemble(STACK_HEAVY), helpers={1: _read_slot})

    def work(number: int) -> list[str]:
        wrong = []
        for run in range(RUNS):
            seed = number * 1_000_003 + run
            r0 = jit.run(registers={6: seed}).r0
            if r0 != _expected(seed):
                wrong.append(f"thread {number} run {run}: {r0:#x} != {_expected(seed):#x}")
        return wrong

    errors = _in_threads(work)
    assert not errors, errors[:5]
    # One session per run that was in progress at once, kept for later runs.
    assert 1 <= jit.sessions.sessions <= THREADS


def test_sequential_runs_reuse_one_session_and_leave_the_layout_alone() -> None:
    jit = JitProgram(assemble(STACK_HEAVY), helpers={1: _read_slot})
    jit.run(registers={6: 1})
    layout = jit.memory.regions
    generation = jit.memory.generation
    for seed in range(20):
        assert jit.run(registers={6: seed}).r0 == _expected(seed)
    assert jit.sessions.sessions == 1
    assert jit.memory.regions == layout  # the stacks stay mapped: nothing mapped or unmapped per run
    assert jit.memory.generation == generation


def test_a_nested_run_takes_a_second_session() -> None:
    programs: list[JitProgram] = []

    def recurse(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int, /) -> int:  # noqa: PLR0917
        return programs[0].run(registers={6: r1 - 1}).r0

    text = "stxdw [%r10-8], %r6\njeq %r6, 0, done\nmov %r1, %r6\ncall 1\nldxdw %r1, [%r10-8]\nadd %r0, %r1\nexit\n"
    programs.append(JitProgram(assemble(text + "done:\nmov %r0, 0\nexit"), helpers={1: recurse}))
    assert programs[0].run(registers={6: 3}).r0 == 3 + 2 + 1
    assert programs[0].sessions.sessions == 4  # runs for 3, 2, 1 and 0 were in progress at once


def test_a_region_unmapped_between_runs_faults_in_the_next_run() -> None:
    memory = AddressSpace()
    jit = JitProgram(assemble("ldxdw %r0, [%r1]\nexit"), memory=memory)
    region = Region.from_bytes(RegionKind.INPUT, "input", (77).to_bytes(8, "little"))
    memory.add(region)
    assert jit.run(registers={1: region.address}).r0 == 77  # the range table holds the region
    memory.remove(region)
    with pytest.raises(MemoryAccessError):
        jit.run(registers={1: region.address})  # a table cached before the unmap would allow it
    other = Region.from_bytes(RegionKind.INPUT, "other", (5).to_bytes(8, "little"))
    memory.add(other)
    assert jit.run(registers={1: other.address}).r0 == 5


def test_the_address_space_generation_moves_on_every_change() -> None:
    memory = AddressSpace()
    region = Region.zeroed(RegionKind.OTHER, "r", 8)
    before = memory.generation
    memory.add(region)
    after_add = memory.generation
    memory.remove(region)
    assert before < after_add < memory.generation


def test_closing_the_pool_unmaps_the_idle_sessions_stacks() -> None:
    jit = JitProgram(assemble("stdw [%r10-8], 1\nmov %r0, 0\nexit"))
    jit.run()
    stacks = [region for region in jit.memory.regions if region.kind is RegionKind.STACK]
    assert len(stacks) == 1
    jit.sessions.close()
    assert not jit.memory.regions
    assert jit.run().r0 == 0  # a new session is made when needed


def test_concurrent_compiles_of_one_program_compile_once() -> None:
    cache = CompileCache()
    # A program no other test compiles (the constant is unusual), so the cache starts empty.
    text = "mov %r0, 0x5e55\nmov %r1, 3\nloop:\nadd %r0, %r1\nsub %r1, 1\njne %r1, 0, loop\nexit"
    built: list[JitProgram] = []

    def work(number: int) -> list[str]:
        program = JitProgram(assemble(text), cache=cache)
        built.append(program)
        r0 = program.run().r0
        return [] if r0 == 0x5E55 + 6 else [f"thread {number}: r0 {r0:#x}"]

    errors = _in_threads(work)
    assert not errors, errors
    assert len(built) == THREADS
    assert cache.misses == 1  # the others waited for the first compilation and found it cached
    assert cache.hits == THREADS - 1


def test_concurrent_uncached_compiles_give_valid_code() -> None:
    def work(number: int) -> list[str]:
        program = JitProgram(assemble(STACK_HEAVY), helpers={1: _read_slot}, cache=None)
        r0 = program.run(registers={6: number}).r0
        return [] if r0 == _expected(number) else [f"thread {number}: r0 {r0:#x}"]

    errors = _in_threads(work)
    assert not errors, errors


PROGS = Path(__file__).resolve().parents[1] / "progs"


@pytest.mark.parametrize(("file", "name"), [("xdp_firewall", "xdp_firewall"), ("bpf2bpf", "xdp_no_calls")])
def test_concurrent_test_runs_equal_the_interpreters(file: str, name: str) -> None:
    from pybpf.runtime.loader import load

    packets = [
        bytes.fromhex("00112233445566778899aabb0800")
        + bytes.fromhex(f"4500002e1234400040110000c0a800{source:02x}c0a800c7")
        + bytes.fromhex("d43100350012abcd")
        + bytes(18)
        for source in range(1, 9)
    ]
    reference: Any = load(PROGS / f"{file}.o", engine="interp")
    native: Any = load(PROGS / f"{file}.o", engine="jit")
    try:
        expected = [reference.program(name).test_run(packet) for packet in packets]
        program = native.program(name)

        def work(number: int) -> list[str]:
            wrong = []
            for run in range(60):
                index = (number + run) % len(packets)
                result = program.test_run(packets[index])
                want = expected[index]
                if (result.engine, result.retval, result.data_out) != ("jit", want.retval, want.data_out):
                    wrong.append(f"thread {number} packet {index}: {result.retval} != {want.retval}")
            return wrong

        errors = _in_threads(work)
        assert not errors, errors[:5]
    finally:
        reference.close()
        native.close()
