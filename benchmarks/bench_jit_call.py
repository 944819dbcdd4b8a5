"""Per-call overhead: one Python call running a program once, interpreter against JIT.

Run with ``python benchmarks/bench_jit_call.py [--rounds N] [--calls N]``. Hooks fire one run per
event and ``Program.test_run`` runs once per call, so what a single call costs in Python (mapping,
filling the run-state block, building the result) matters more there than native speed. Rows:

- ``test_run`` of XDP programs from ``tests/progs`` (the runtime's whole per-call path: context and
  packet prepared, the run, the result);
- ``run`` of a two-instruction program (``r0 = 42; exit``): the engine's own per-call cost;
- a hook-style ``run``: a context region mapped once and passed by address (``map_inputs=False``),
  the program reading the context and using its stack.

Engines are interleaved within every round; each cell is the median over rounds of the per-call
time (wall clock, the median over batches of 25 calls) in microseconds. The last column is
JIT / interpreter (below 1x: the JIT call is cheaper).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pybpf.asm import assemble
from pybpf.vm import Interpreter, Region, RegionKind
from pybpf.vm.jit import JitProgram

TEST_PROGS = Path(__file__).resolve().parents[1] / "tests" / "progs"
PACKET = (
    bytes.fromhex("00112233445566778899aabb0800")
    + bytes.fromhex("4500002e1234400040110000c0a80001c0a800c7")
    + bytes.fromhex("d43100350012abcd")
    + bytes(18)
)
HOOK_STYLE = """
ldxdw %r2, [%r1]
stxdw [%r10-8], %r2
ldxdw %r3, [%r1+8]
stxdw [%r10-16], %r3
ldxdw %r0, [%r10-8]
ldxdw %r4, [%r10-16]
add %r0, %r4
exit
"""

_Call = Callable[[], object]


def per_call_us(call: _Call, calls: int, batch: int = 25) -> float:
    """Median over batches of ``batch`` calls of the mean time of one ``call``, in microseconds.

    Short batches and a median: a batch the scheduler interrupted (a loaded machine preempts
    for milliseconds) is an outlier, not a share of every call's time.
    """
    means = []
    for _ in range(max(1, calls // batch)):
        started = time.perf_counter_ns()
        for _ in range(batch):
            call()
        means.append((time.perf_counter_ns() - started) / batch / 1000)
    return statistics.median(means)


def _test_run_cases() -> tuple[list[tuple[str, _Call, _Call]], list[Any]]:
    from pybpf.runtime.loader import load

    cases: list[tuple[str, _Call, _Call]] = []
    objects: list[Any] = []
    for file, name in (("bpf2bpf", "xdp_no_calls"), ("xdp_firewall", "xdp_firewall")):
        interp: Any = load(TEST_PROGS / f"{file}.o", engine="interp")
        jit: Any = load(TEST_PROGS / f"{file}.o", engine="jit")
        objects += (interp, jit)
        slow, fast = interp.program(name), jit.program(name)
        if fast.test_run(PACKET).retval != slow.test_run(PACKET).retval:
            raise SystemExit(f"{name}: the engines disagree")
        cases.append((f"test_run {name}", _bound_test_run(slow), _bound_test_run(fast)))
    return cases, objects


def _bound_test_run(program: Any) -> _Call:
    def call() -> object:
        return program.test_run(PACKET)

    return call


def _run_cases() -> list[tuple[str, _Call, _Call]]:
    tiny = assemble("mov %r0, 42\nexit")
    tiny_interp, tiny_jit = Interpreter(tiny), JitProgram(tiny)
    hook = assemble(HOOK_STYLE)
    hook_interp = Interpreter(hook)
    hook_jit = JitProgram.of(hook_interp)  # one address space, as the runtime's engines share
    context = Region.from_bytes(RegionKind.CONTEXT, "ctx", (3).to_bytes(8, "little") + (4).to_bytes(8, "little"))
    hook_interp.memory.add(context)  # mapped once: the runs find it mapped and leave it
    if hook_interp.run(context).r0 != 7 or hook_jit.run(context, map_inputs=False).r0 != 7:
        raise SystemExit("hook-style program: wrong result")
    return [
        ("run r0=42 (2 insns)", tiny_interp.run, tiny_jit.run),
        (
            "hook-style run (ctx mapped once)",
            lambda: hook_interp.run(context),
            lambda: hook_jit.run(context, map_inputs=False),
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds (medians are reported)")
    parser.add_argument("--calls", type=int, default=2000, help="calls per engine per round")
    args = parser.parse_args(argv)
    cases, objects = _test_run_cases()
    cases += _run_cases()
    try:
        print(f"Python {sys.version.split()[0]}; median of {args.rounds} rounds of {args.calls} calls; µs per call\n")
        print("| call | interp | JIT | JIT/interp |")
        print("|---|---:|---:|---:|")
        for label, interp_call, jit_call in cases:
            for call in (interp_call, jit_call):  # warm up: compile, first sessions, caches
                per_call_us(call, 50)
            samples: tuple[list[float], list[float]] = ([], [])
            for _ in range(args.rounds):
                samples[0].append(per_call_us(interp_call, args.calls))
                samples[1].append(per_call_us(jit_call, args.calls))
            interp_us, jit_us = (statistics.median(column) for column in samples)
            print(f"| {label} | {interp_us:.2f} | {jit_us:.2f} | {jit_us / interp_us:.2f}x |")
    finally:
        for obj in objects:
            obj.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
