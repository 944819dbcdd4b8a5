"""Verifier cost per test object: our processed instructions and wall time next to the kernel's.

Run with ``python benchmarks/bench_verifier.py [--runs N] [--clock cpu]``. For every program of
every object under ``tests/progs/`` it prints our processed-instruction count, the best time over
N runs (wall clock, or with ``--clock cpu`` this process's CPU time, which other processes on a
shared machine disturb less) and the resulting instructions per second; where bpf() works it also
loads the object into the
kernel with ``BPF_LOG_STATS`` and prints the kernel's own count and verification time (parsed
from the log's ``processed N insns`` and ``verification time N usec`` lines).
"""

from __future__ import annotations

import argparse
import re
import time
from pathlib import Path

from pybpf.errors import PybpfError
from pybpf.obj import load_spec
from pybpf.verifier import verify_program

PROGS = Path(__file__).resolve().parent.parent / "tests" / "progs"
BPF_LOG_LEVEL1_STATS = 1 | 4  # BPF_LOG_LEVEL1 | BPF_LOG_STATS
_PROCESSED = re.compile(r"processed (\d+) insns")
_TIME = re.compile(r"verification time (\d+) usec")


def kernel_stats(path: Path) -> dict[str, tuple[int, int]]:
    """program name -> (processed insns, verification time in usec), when the kernel loads it."""
    try:
        from pybpf.kernel.loader import load
        from pybpf.kernel.probe import available

        ok, _reason = available()
        if not ok:
            return {}
        stats: dict[str, tuple[int, int]] = {}
        with load(path, log_level=BPF_LOG_LEVEL1_STATS) as obj:
            for name, program in obj.programs.items():
                log = getattr(program, "log", "") or ""
                processed, usec = _PROCESSED.search(log), _TIME.search(log)
                if processed and usec:
                    stats[name] = (int(processed.group(1)), int(usec.group(1)))
        return stats
    except PybpfError:
        return {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    args = parser.parse_args()
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    print(f"{'object/program':40} {'ours':>7} {'ms':>8} {'insn/s':>9} {'kernel':>7} {'k usec':>7} {'ratio':>6}")
    total_insns, total_seconds = 0, 0.0
    for path in sorted(PROGS.glob("*.o")):
        try:
            spec = load_spec(path)
        except PybpfError as error:
            print(f"{path.name:40} skipped: {error}")
            continue
        kernel = kernel_stats(path)
        for name, program in spec.programs.items():
            best = float("inf")
            processed = 0
            for _ in range(args.runs):
                started = clock()
                report = verify_program(program, spec)
                best = min(best, clock() - started)
                processed = report.processed_insns
            total_insns += processed
            total_seconds += best
            k_insns, k_usec = kernel.get(name, (0, 0))
            ratio = f"{processed / k_insns:.1f}" if k_insns else "-"
            label = f"{path.stem}/{name}"
            print(f"{label:40} {processed:7d} {best * 1000:8.2f} {processed / best:9.0f} "
                  f"{k_insns or '-':>7} {k_usec or '-':>7} {ratio:>6}")
    if total_seconds:
        print(f"overall: {total_insns} insns in {total_seconds:.3f} s = {total_insns / total_seconds:.0f} insn/s")


if __name__ == "__main__":
    main()
