"""Per-event cost of the user-space hooks: a probed Python function vs the plain one, and more.

Run with ``python benchmarks/bench_hooks_probes.py [--calls N] [--runs R] [--engine interp|jit]``
(the engine the programs run with; default: what ``pybpf.load`` picks). The programs are the
committed test objects ``tests/progs/hooks_probe.o`` (``count_threads``: an atomic add, a per-CPU
add and a hash lookup; ``on_entry``: counters, a hash update and a probe_read_user_str of the
second argument) and ``tests/progs/hooks_tracepoint.o`` (``on_request``: a ring buffer record
copied from the tracepoint's fields). Each line gives the best of R runs of N events, in
nanoseconds per event; "overhead" is the probed call minus the plain call. "of which the
program run" is the program alone on a ready context, with the same engine, to show what the
wrapper itself adds. The last lines fire one probe from several threads at once (wall time per
event, all threads together): ``count_threads`` updates a map, so its runs go one at a time;
``probe_count`` (tests/hooks/bpf/parallel_counters.c, built with clang when it is installed)
only looks maps up, so its runs overlap (native code runs without the GIL).
"""

from __future__ import annotations

import argparse
import functools
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pybpf import load
from pybpf.hooks.engine import run_program
from pybpf.hooks.invoke import HookScratch
from pybpf.hooks.link import HookRuntime
from pybpf.hooks.probes import attach_probe
from pybpf.hooks.tracepoints import Tracepoint, attach_tracepoint
from pybpf.runtime.helpers.services import RunState
from pybpf.runtime.maps import RingBufferConsumer

PROGS = Path(__file__).resolve().parents[1] / "tests" / "progs"
PARALLEL_SOURCE = PROGS.parent / "hooks" / "bpf" / "parallel_counters.c"
THREADS = 4


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


def threaded_ns(call: Callable[[], object], calls: int, runs: int, threads: int = THREADS) -> float:
    """Best-of-``runs`` wall nanoseconds per call when ``threads`` threads make ``calls`` calls each."""
    results = []

    def worker(barrier: threading.Barrier) -> None:
        barrier.wait()
        for _ in range(calls):
            call()

    for _ in range(runs):
        barrier = threading.Barrier(threads + 1)
        pool = [threading.Thread(target=worker, args=(barrier,)) for _ in range(threads)]
        for thread in pool:
            thread.start()
        barrier.wait()
        started = time.perf_counter_ns()
        for thread in pool:
            thread.join()
        results.append((time.perf_counter_ns() - started) / (calls * threads))
    return min(results)


def build_parallel(directory: str) -> Path | None:
    """parallel_counters.o built with clang, or None (no clang, or it fails)."""
    clang = shutil.which("clang-19") or shutil.which("clang")
    if clang is None:
        return None
    target = Path(directory) / "parallel_counters.o"
    include = f"-I/usr/include/{platform.machine()}-linux-gnu"
    command = [clang, "-O2", "-g", "-target", "bpf", "-mcpu=v3", f"-I{PROGS}", include, "-c", str(PARALLEL_SOURCE)]
    result = subprocess.run([*command, "-o", str(target)], check=False, capture_output=True)
    return target if result.returncode == 0 else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000, help="events per run (default 2000)")
    parser.add_argument("--runs", type=int, default=3, help="runs per line; the best is shown (default 3)")
    parser.add_argument("--engine", choices=("interp", "jit"), default=None, help="default: pybpf.load's choice")
    args = parser.parse_args(argv)
    calls, runs = args.calls, args.runs
    options: dict[str, Any] = {} if args.engine is None else {"engine": args.engine}
    runtime = HookRuntime()
    rows: list[tuple[str, float]] = []
    base = best_ns(lambda: plain(3, "abc"), calls, runs)
    rows.append(("plain Python call", base))
    engine = "?"
    with load(PROGS / "hooks_probe.o", **options) as obj:
        for name in ("count_threads", "on_entry"):
            link = attach_probe(obj.program(name), plain, runtime=runtime, install=False)
            probed = link.wrapper
            rows.append((f"probed call ({name})", best_ns(functools.partial(probed, 3, "abc"), calls, runs)))
            link.detach()
            # The same program run directly on a ready context: what its engine alone costs.
            program = obj.program(name)
            engine = program.engine
            scratch = HookScratch(program)
            state = RunState(program.services, ctx=scratch.image.address)
            run = functools.partial(run_program, program, scratch.image.region, state)
            rows.append((f"  of which the program run ({name})", best_ns(run, calls, runs)))
            scratch.close()
        link = attach_probe(obj.program("on_return"), plain, runtime=runtime, install=False)
        probed = link.wrapper
        rows.append(("probed call (on_return)", best_ns(lambda: probed(3, "abc"), calls, runs)))
        link.detach()
        link = attach_probe(obj.program("count_threads"), plain, runtime=runtime, install=False)
        probed = link.wrapper
        label = f"{THREADS} threads, probed call (count_threads)"
        rows.append((label, threaded_ns(functools.partial(probed, 3, "abc"), calls // THREADS, runs)))
        link.detach()
    with tempfile.TemporaryDirectory(prefix="pybpf-bench-hooks-") as directory:
        parallel = build_parallel(directory)
        if parallel is not None:
            with load(parallel, **options) as obj:
                obj.maps["shared_hash"].update_raw(bytes(4), bytes(8))
                link = attach_probe(obj.program("probe_count"), plain, runtime=runtime, install=False)
                probed = link.wrapper
                rows.append(("1 thread, probed call (probe_count)", best_ns(lambda: probed(3, "abc"), calls, runs)))
                label = f"{THREADS} threads, probed call (probe_count)"
                rows.append((label, threaded_ns(functools.partial(probed, 3, "abc"), calls // THREADS, runs)))
                link.detach()
    tracepoint = Tracepoint("bench", "request", [("id", "u32"), ("status", "u16"), ("path", "char[32]")],
                            runtime=runtime)
    rows.append(("tracepoint fire, nothing attached", best_ns(lambda: tracepoint.fire(id=1), calls, runs)))
    with load(PROGS / "hooks_tracepoint.o", **options) as obj:
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
    print(f"hook cost, engine {engine}, best of {runs} runs of {calls} events (ns per event)")
    print(f"{'event':<44}{'ns/event':>10}{'overhead':>10}")
    for label, value in rows:
        overhead = value - base if "probed" in label or label.startswith("tracepoint") else 0.0
        print(f"{label:<44}{value:>10.0f}{overhead:>10.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
