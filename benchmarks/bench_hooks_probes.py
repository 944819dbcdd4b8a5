"""Per-event cost of the user-space hooks: a probed Python function vs the plain one, and more.

Run with ``python benchmarks/bench_hooks_probes.py [--calls N] [--runs R]``. The programs are the
committed test objects ``tests/progs/hooks_probe.o`` (``count_threads``: an atomic add, a per-CPU
add and a hash lookup; ``on_entry``: counters, a hash update and a probe_read_user_str of the
second argument) and ``tests/progs/hooks_tracepoint.o`` (``on_request``: a ring buffer record
copied from the tracepoint's fields). Each line gives the best of R runs of N events, in
nanoseconds per event; "overhead" is the probed call minus the plain call. "hooked run" is the
part of an event spent in :func:`pybpf.hooks.invoke.run_hooked` (context, mapping, lock,
interpreter), measured separately, to show what the wrapper itself adds.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from collections.abc import Callable
from pathlib import Path

from pybpf import load
from pybpf.hooks.invoke import HookScratch
from pybpf.hooks.link import HookRuntime
from pybpf.hooks.probes import attach_probe
from pybpf.hooks.tracepoints import Tracepoint, attach_tracepoint
from pybpf.runtime.helpers.services import RunState
from pybpf.runtime.maps import RingBufferConsumer

PROGS = Path(__file__).resolve().parents[1] / "tests" / "progs"


def best_ns(call: Callable[[], object], calls: int, runs: int) -> float:
    """Best-of-``runs`` mean nanoseconds of ``call()`` over ``calls`` calls (timeit's advice)."""
    results = []
    for _ in range(runs):
        started = time.perf_counter_ns()
        for _ in range(calls):
            call()
        results.append((time.perf_counter_ns() - started) / calls)
    return min(results)


def plain(n: int, name: str) -> int:
    return n + len(name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000, help="events per run (default 2000)")
    parser.add_argument("--runs", type=int, default=3, help="runs per line; the best is shown (default 3)")
    args = parser.parse_args(argv)
    calls, runs = args.calls, args.runs
    runtime = HookRuntime()
    rows: list[tuple[str, float]] = []
    base = best_ns(lambda: plain(3, "abc"), calls, runs)
    rows.append(("plain Python call", base))
    with load(PROGS / "hooks_probe.o") as obj:
        for name in ("count_threads", "on_entry"):
            link = attach_probe(obj.program(name), plain, runtime=runtime, install=False)
            probed = link.wrapper
            rows.append((f"probed call ({name})", best_ns(functools.partial(probed, 3, "abc"), calls, runs)))
            link.detach()
            # The same program run directly on a ready context: what the interpreter alone costs.
            program = obj.program(name)
            scratch = HookScratch(program)
            state = RunState(program.services, ctx=scratch.image.address)
            region = scratch.image.region
            run = functools.partial(program.interpreter.run, region, user=state)
            rows.append((f"  of which the program run ({name})", best_ns(run, calls, runs)))
            scratch.close()
        link = attach_probe(obj.program("on_return"), plain, runtime=runtime, install=False)
        probed = link.wrapper
        rows.append(("probed call (on_return)", best_ns(lambda: probed(3, "abc"), calls, runs)))
        link.detach()
    tracepoint = Tracepoint("bench", "request", [("id", "u32"), ("status", "u16"), ("path", "char[32]")],
                            runtime=runtime)
    rows.append(("tracepoint fire, nothing attached", best_ns(lambda: tracepoint.fire(id=1), calls, runs)))
    with load(PROGS / "hooks_tracepoint.o") as obj:
        tp_link = attach_tracepoint(obj.program("on_request"), "bench/request", runtime=runtime)
        consumer = RingBufferConsumer()
        consumer.add(obj.maps["requests"], lambda data: 0)

        def fire() -> None:
            tracepoint.fire(id=1, status=200, path="/index.html")

        total = 0.0
        for _ in range(runs):  # the ring buffer holds ~1300 records: drain between batches
            total = min(total or float("inf"), best_ns(fire, min(calls, 1000), 1))
            consumer.poll()
        rows.append(("tracepoint fire (on_request -> ringbuf)", total))
        tp_link.detach()
    print(f"hook cost, best of {runs} runs of {calls} events (ns per event)")
    print(f"{'event':<42}{'ns/event':>10}{'overhead':>10}")
    for label, value in rows:
        overhead = value - base if label.startswith(("probed", "tracepoint")) else 0.0
        print(f"{label:<42}{value:>10.0f}{overhead:>10.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
