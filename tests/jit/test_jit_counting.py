"""Exact instruction counts under the JIT (``count_instructions=True``) equal the interpreter's.

The interpreter counts every instruction it starts: an ``lddw`` is one, a helper call is one
(plus whatever callbacks it runs), the instruction that stops a run counts, and a tail call goes
on counting in the target. Native code counts whole straight-line segments on entry; these
tests compare the two on random programs, on hand-written edge cases and on every object in
tests/progs through the runtime's ``test_run(count_instructions=True)``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pybpf.asm import assemble
from pybpf.errors import PybpfError
from pybpf.isa import LabeledInsn
from pybpf.runtime.helpers.services import ManualClock
from pybpf.runtime.loader import load
from pybpf.runtime.progtypes import run_kind
from pybpf.vm import Interpreter
from pybpf.vm.execution import ExecutionContext
from pybpf.vm.jit import JitProgram
from pybpf.vm.jit.cache import CompileCache
from pybpf.vm.memory import Region, RegionKind

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS / "differential"))  # the random program generator lives there

from diffgen import PACKET_SIZE, generate, labeled  # noqa: E402

PROGS = TESTS / "progs"
HELPER = 6  # trace_printk's id: never served natively


def _both(insns: list[LabeledInsn], region: Region | None = None, **options: Any) -> tuple[Any, Any]:
    """(interpreter result, counting JIT result) for one run on ``region``."""
    reference = Interpreter(insns, **options).run(region)
    native = JitProgram(insns, cache=None, count_instructions=True, **options).run(region)
    return reference, native


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32 - 1))
def test_random_programs_count_as_the_interpreter_counts(seed: int) -> None:
    program = generate(seed)
    insns = labeled(program.interpreter_program())
    reference = Interpreter(insns).run(Region.from_bytes(RegionKind.PACKET, "packet", program.packet))
    native = JitProgram(insns, cache=None, count_instructions=True).run(
        Region.from_bytes(RegionKind.PACKET, "packet", program.packet)
    )
    assert len(program.packet) == PACKET_SIZE
    assert native.r0 == reference.r0
    assert native.instructions == reference.instructions > 0


def test_lddw_loops_and_bpf_to_bpf_calls() -> None:
    text = """
    lddw %r6, 0x1122334455667788
    mov %r0, 0
    mov %r3, 0
    loop:
    add %r0, %r3
    jeq %r3, 5, +1
    add %r0, 1
    add %r3, 1
    jlt %r3, 9, loop
    mov %r1, %r0
    call local twice
    call local twice
    exit
    twice:
    mov %r0, %r1
    lsh %r0, 1
    jgt %r0, 1000, +1
    add %r0, 3
    exit
    """
    reference, native = _both(assemble(text))
    assert (native.r0, native.instructions) == (reference.r0, reference.instructions)
    assert native.registers[:10] == reference.registers[:10]


def test_a_helper_stop_counts_the_call_and_nothing_after_it() -> None:
    def stop_on_odd(env: ExecutionContext, *args: int) -> int:
        if args[0] % 2:
            env.stop(args[0])
        return 0

    text = f"mov %r1, %r6\ncall {HELPER}\nmov %r0, 1\nadd %r0, 2\nadd %r0, 3\nexit"
    for value in (4, 5):
        insns = assemble(f"mov %r6, {value}\n{text}")
        reference, native = _both(insns, helpers={HELPER: stop_on_odd})
        assert (native.r0, native.instructions) == (reference.r0, reference.instructions)
    assert native.instructions == 3  # mov, mov, the stopping call


def test_callbacks_a_helper_runs_are_counted() -> None:
    def call_back_three_times(env: ExecutionContext, *args: int) -> int:
        return sum(env.call_function(args[0], number) for number in range(3))

    text = f"""
    lddw %r1, func callback
    call {HELPER}
    exit
    callback:
    mov %r0, %r1
    mul %r0, 10
    jlt %r0, 15, +1
    add %r0, 1
    exit
    """
    reference, native = _both(assemble(text), helpers={HELPER: call_back_three_times})
    assert (native.r0, native.instructions) == (reference.r0, reference.instructions)
    assert reference.instructions > 3  # the callbacks' instructions are in the count


def test_may_goto_and_ld_abs_stops() -> None:
    text = """
    mov %r0, 0
    top:
    may_goto +3
    add %r0, 1
    jgt %r0, 40, +1
    ja top
    exit
    """
    reference, native = _both(assemble(text))
    assert (native.r0, native.instructions) == (reference.r0, reference.instructions)
    # LD_ABS past the packet stops the run (r0 = 0): it counts, the rest does not.
    text = "mov %r6, %r1\nmov %r0, 7\nldabsw 2\nldabsw 100\nadd %r0, 1\nexit"
    packet = Region.from_bytes(RegionKind.PACKET, "packet", bytes(range(32)))
    insns = assemble(text)
    reference = Interpreter(insns).run(packet=packet)
    native = JitProgram(insns, cache=None, count_instructions=True).run(packet=packet)
    assert (native.r0, native.instructions) == (reference.r0, reference.instructions) == (0, 4)


def test_repeats_report_the_last_runs_count_and_counting_is_a_separate_compilation() -> None:
    insns = assemble("mov %r0, 0\ntop:\nadd %r0, 1\njlt %r0, 20, top\nexit")
    cache = CompileCache()
    plain = JitProgram(insns, cache=cache)
    counting = JitProgram(insns, cache=cache, count_instructions=True)
    assert not counting.from_cache  # the plain compilation does not count: another key
    assert JitProgram(insns, cache=cache, count_instructions=True).from_cache
    expected = Interpreter(insns).run().instructions
    assert plain.run().instructions == 0  # "not counted"
    assert counting.run().instructions == expected
    assert counting.run_repeated(repeat=5)[0].instructions == expected


def _packets_or_contexts(prog_type: Any) -> list[tuple[bytes, bytes | None]]:
    if run_kind(prog_type).takes_data:
        udp = bytes.fromhex("00112233445566778899aabb0800" "4500002e1234400040110000c0a80001c0a800c7")
        return [(bytes(64), None), (udp + bytes.fromhex("d43100350012abcd") + b"payload-te", None)]
    return [(b"", bytes(64)), (b"", bytes(range(1, 65)))]


def _count(obj: Any, name: str, data: bytes, ctx: bytes | None, engine: str) -> tuple[Any, ...]:
    try:
        result = obj.program(name).test_run(data, ctx, engine=engine, count_instructions=True)
    except PybpfError as error:
        return ("error", type(error).__name__)
    return ("ok", result.retval, result.instructions)


@pytest.mark.parametrize(
    "stem", ["xdp_firewall", "xdp_lb", "tc_mark", "bpf2bpf", "tail_calls", "tail_chain", "loop_callback", "map_foreach"]
)
def test_runtime_test_runs_count_the_same_under_both_engines(stem: str) -> None:
    with load(PROGS / f"{stem}.o", seed=7) as reference, load(PROGS / f"{stem}.o", seed=7) as native:
        for obj in (reference, native):
            obj.services.clock = ManualClock(1_000_000_007)
        counted = 0
        for name, program in reference.programs.items():
            for data, ctx in _packets_or_contexts(program.prog_type):
                expected = _count(reference, name, data, ctx, "interp")
                assert _count(native, name, data, ctx, "jit") == expected, f"{name} on {data[:16].hex()}"
                counted += expected[0] == "ok" and expected[2] > 0
        assert counted, "no program ran: the comparison would be vacuous"


def test_prog_run_reports_counts_when_asked() -> None:
    import io
    import json

    from pybpf.cli.main import main

    packet = bytes.fromhex("00112233445566778899aabbccddeeff0800450000280000000040060000c0a80001c0a80002")
    with load(PROGS / "xdp_firewall.o") as obj:
        name = next(iter(obj.programs))
    counts = {}
    for engine in ("interp", "jit"):
        out = io.StringIO()
        argv = ["prog", "run", str(PROGS / "xdp_firewall.o"), "--prog", name, "--data-in", packet.hex()]
        assert main([*argv, "--engine", engine, "--count-instructions", "--json"], out) == 0
        counts[engine] = json.loads(out.getvalue())["runs"][0]["instructions"]
        plain = io.StringIO()
        assert main([*argv, "--engine", engine, "--json"], plain) == 0
        assert "instructions" not in json.loads(plain.getvalue())["runs"][0]  # only when asked
    assert counts["jit"] == counts["interp"] > 0
