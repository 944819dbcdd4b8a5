"""JIT against interpreter on the CPU-bound benchmark programs: seconds per run and the speed ratio.

Run with ``python benchmarks/bench_jit.py [--runs N] [names...]``. The programs and inputs are
those of ``bench_interp.py``. Engines are interleaved run by run (so machine noise hits both
alike) and each reports its median; compilation is timed separately, once per program.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_interp import BENCHMARKS, PROGS, Benchmark, load_section

from pybpf.isa import decode_program
from pybpf.vm import Interpreter, Region, RegionKind
from pybpf.vm.jit import JitProgram

LIMIT = 100_000_000


def measure(bench: Benchmark, runs: int) -> tuple[float, float, float]:
    """(compile seconds, interpreter median seconds, JIT median seconds)."""
    insns = decode_program(load_section(PROGS / f"{bench.name}.o"))
    interpreter = Interpreter(insns, name=bench.name)
    start = time.perf_counter()
    jit = JitProgram(insns, name=bench.name)
    compile_seconds = time.perf_counter() - start
    data = bench.make_input()
    timings: dict[str, list[float]] = {"interp": [], "jit": []}
    for _ in range(runs):
        for label, engine in (("interp", interpreter), ("jit", jit)):
            region = Region.from_bytes(RegionKind.INPUT, "input", data)
            start = time.perf_counter()
            result = engine.run(region, instruction_limit=LIMIT)
            timings[label].append(time.perf_counter() - start)
            if not bench.check(data, result.r0):
                raise SystemExit(f"{bench.name} ({label}): wrong result {result.r0:#x}")
    return compile_seconds, statistics.median(timings["interp"]), statistics.median(timings["jit"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per engine and program (medians are reported)")
    parser.add_argument("names", nargs="*", help="programs to run (default: all)")
    args = parser.parse_args(argv)
    selected = [bench for bench in BENCHMARKS if not args.names or bench.name in args.names]
    print(f"Python {sys.version.split()[0]}, median of {args.runs} interleaved runs per engine")
    print(f"{'program':<10} {'compile s':>10} {'interp s':>10} {'jit s':>10} {'speedup':>9}")
    for bench in selected:
        compile_seconds, interp_seconds, jit_seconds = measure(bench, args.runs)
        ratio = interp_seconds / jit_seconds
        print(f"{bench.name:<10} {compile_seconds:>10.4f} {interp_seconds:>10.4f} {jit_seconds:>10.6f} {ratio:>8.0f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
