"""Interpreter throughput on CPU-bound programs: executed instructions per second.

Run with ``python benchmarks/bench_interp.py [--runs N]``. The programs are C under
``benchmarks/progs/`` compiled by ``progs/build.sh`` (clang-19 -O2 -target bpf -mcpu=v3); the
objects are committed so this runs without clang. Each program uses only its stack and the
input memory in r1/r2, so its section needs no relocation.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from elftools.elf.elffile import ELFFile

from pybpf.isa import decode_program
from pybpf.vm import Interpreter, Region, RegionKind

PROGS = Path(__file__).resolve().parent / "progs"
SECTION = "bench"


@dataclass(frozen=True, slots=True)
class Benchmark:
    name: str
    make_input: Callable[[], bytes]
    check: Callable[[bytes, int], bool]  # input, r0 -> is r0 right?


def _sum_words(data: bytes, r0: int) -> bool:
    return r0 == sum(int.from_bytes(data[i : i + 8], "little") for i in range(0, len(data), 8)) & ((1 << 64) - 1)


def _fnv1a(data: bytes, r0: int) -> bool:
    value = 0xCBF29CE484222325
    for _ in range(16):
        for byte in data:
            value = ((value ^ byte) * 0x100000001B3) & ((1 << 64) - 1)
    return r0 == value


def _prime_count(data: bytes, r0: int) -> bool:
    flags = bytearray([1]) * len(data)
    count = 0
    for i in range(2, len(data)):
        if flags[i]:
            count += 1
            flags[i * i :: i] = bytes(len(range(i * i, len(data), i)))
    return r0 == count


BENCHMARKS = (
    Benchmark("sum64k", lambda: bytes((i * 7) & 0xFF for i in range(65536)), _sum_words),
    Benchmark("fnv1a", lambda: bytes((i * 13 + 5) & 0xFF for i in range(1500)), _fnv1a),
    Benchmark("sort", lambda: (12345).to_bytes(4, "little"), lambda data, r0: r0 != 0),
    Benchmark("sieve", lambda: bytes(16384), _prime_count),
)


def load_section(path: Path, section: str = SECTION) -> bytes:
    """The bytes of ``section`` in an eBPF object; refuses sections that carry relocations."""
    with path.open("rb") as stream:
        elf = ELFFile(stream)
        if elf.get_section_by_name(f".rel{section}") is not None:
            raise SystemExit(f"{path}: section {section} has relocations; benchmark programs must not")
        found = elf.get_section_by_name(section)
        if found is None:
            raise SystemExit(f"{path}: no section {section!r}")
        data: bytes = found.data()
        return data


def measure(bench: Benchmark, runs: int) -> tuple[int, float]:
    """(instructions per run, median seconds per run)."""
    interpreter = Interpreter(decode_program(load_section(PROGS / f"{bench.name}.o")), name=bench.name)
    data = bench.make_input()
    times, instructions = [], 0
    for _ in range(runs):
        region = Region.from_bytes(RegionKind.INPUT, "input", data)
        start = time.perf_counter()
        result = interpreter.run(region, instruction_limit=100_000_000)
        times.append(time.perf_counter() - start)
        if not bench.check(data, result.r0):
            raise SystemExit(f"{bench.name}: wrong result {result.r0:#x}")
        instructions = result.instructions
    return instructions, statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per program (the median is reported)")
    parser.add_argument("names", nargs="*", help="programs to run (default: all)")
    args = parser.parse_args(argv)
    selected = [bench for bench in BENCHMARKS if not args.names or bench.name in args.names]
    print(f"Python {sys.version.split()[0]}, median of {args.runs} runs")
    print(f"{'program':<10} {'instructions':>13} {'seconds':>9} {'instructions/s':>15}")
    for bench in selected:
        instructions, seconds = measure(bench, args.runs)
        print(f"{bench.name:<10} {instructions:>13,} {seconds:>9.3f} {instructions / seconds:>15,.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
