"""JIT against the interpreter, the kernel's JIT and gcc -O2: nanoseconds per run and the ratios.

Run with ``python benchmarks/bench_jit.py [--runs N] [names...]``. Two tables:

- CPU-bound programs (``benchmarks/progs/*.c``: those of ``bench_interp.py``, jhash, fibonacci): our
  interpreter (one run), our JIT (one Python call per run, and ``run_repeated``: the loop in
  native code), the kernel's JIT through BPF_PROG_TEST_RUN with ``repeat`` (the same C built
  with ``-DBENCH_KERNEL`` as an XDP program reading its input from an array map), and the same C
  built by ``gcc -O2 -DBENCH_NATIVE`` as a shared library, called ``repeat`` times from a C loop.
  Compile time is LLVM's (no cache), per 1,000 eBPF instructions.
- XDP programs from ``tests/progs``: ``test_run`` under the interpreter, ``test_run(repeat=N)``
  under the JIT (native loop), ``run_batch`` over 256 packets, and the kernel's test run.

Engines are interleaved within every round (machine noise hits all alike); medians are
reported. The repeat loops (JIT and gcc) are timed in CPU time of the calling thread, as the
kernel's test run leaves out the time it was rescheduled: on a loaded machine wall time would
count other processes' turns against us and not against the kernel. A column the machine
cannot provide (no bpf(), no clang or gcc, a program the kernel's verifier rejects) is marked
with the reason.
"""

from __future__ import annotations

import argparse
import ctypes
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_interp import BENCHMARKS, PROGS, Benchmark, load_section

from pybpf.errors import PybpfError
from pybpf.isa import decode_program
from pybpf.vm import Interpreter, Region, RegionKind
from pybpf.vm.jit import JitProgram

LIMIT = 100_000_000
TARGET_SECONDS = 0.02  # each repeat measurement runs about this long
TEST_PROGS = Path(__file__).resolve().parents[1] / "tests" / "progs"
INPUT_SIZES = {"sum64k": 65536, "fnv1a": 1500, "sort": 4, "sieve": 16384, "jhash": 1500, "fibonacci": 4}
"""Input bytes per program, as BENCH_ENTRY in the sources says (the kernel's input map value)."""
U32, U64 = (1 << 32) - 1, (1 << 64) - 1
HARNESS = """
typedef unsigned long long u64;
typedef u64 (*bench_fn)(void *input, u64 len);
/* The kernel's test-run loop, in C: the barrier keeps gcc from hoisting the call out of the loop. */
u64 bench_repeat(bench_fn fn, void *input, u64 len, u64 count)
{
	u64 result = 0;
	for (u64 i = 0; i < count; i++) {
		__asm__ volatile("" ::: "memory");
		result = fn(input, len);
	}
	return result;
}
"""


def _rol32(word: int, shift: int) -> int:
    return ((word << shift) | (word >> (32 - shift))) & U32


def _jhash_mix(a: int, b: int, c: int) -> tuple[int, int, int]:
    """lookup3's mix of three 32-bit words (the kernel's __jhash_mix): x -= y; x ^= rol(y, s); y += z."""
    words = [a, b, c]
    for x, y, z, shift in ((0, 2, 1, 4), (1, 0, 2, 6), (2, 1, 0, 8), (0, 2, 1, 16), (1, 0, 2, 19), (2, 1, 0, 4)):
        words[x] = ((words[x] - words[y]) & U32) ^ _rol32(words[y], shift)
        words[y] = (words[y] + words[z]) & U32
    return words[0], words[1], words[2]


def _jhash_final(a: int, b: int, c: int) -> int:
    """lookup3's final mix (the kernel's __jhash_final); returns c."""
    words = [a, b, c]
    for x, y, shift in ((2, 1, 14), (0, 2, 11), (1, 0, 25), (2, 1, 16), (0, 2, 4), (1, 0, 14), (2, 1, 24)):
        words[x] = ((words[x] ^ words[y]) - _rol32(words[y], shift)) & U32  # x ^= y; x -= rol(y, s)
    return words[2]


def _jhash(data: bytes, r0: int) -> bool:
    """What jhash.c computes: 16 chained jhash rounds over the whole 12-byte blocks of the packet."""
    length = min(len(data), 1500) // 12 * 12
    value = 0
    for _ in range(16 if length else 0):
        a = b = c = (0xDEADBEEF + length + value) & U32
        words = [int.from_bytes(data[i : i + 4], "little") for i in range(0, length, 4)]
        for block in range(0, len(words) - 3, 3):
            a, b, c = (a + words[block]) & U32, (b + words[block + 1]) & U32, (c + words[block + 2]) & U32
            a, b, c = _jhash_mix(a, b, c)
        a, b, c = (a + words[-3]) & U32, (b + words[-2]) & U32, (c + words[-1]) & U32
        value = _jhash_final(a, b, c)
    return r0 == value


def _fibonacci(data: bytes, r0: int) -> bool:
    """fibonacci.c: 20,000 steps of (a, b) -> (b, a + b) from (the input's first u32, 1)."""
    a, b = (int.from_bytes(data[:4], "little") if len(data) >= 4 else 0), 1
    for _ in range(20_000):
        a, b = b, (a + b) & U64
    return r0 == a


def _sorted_check(data: bytes, r0: int) -> bool:
    """sort.c's checksum: 8 rounds of 64 LCG values, sorted, folded with * 31."""
    state = int.from_bytes(data[:4], "little") if len(data) >= 4 else 1
    check = 0
    for _ in range(8):
        values = []
        for _ in range(64):
            state = (state * 1103515245 + 12345) & U32
            values.append(state >> 8)
        for value in sorted(values):
            check = (check * 31 + value) & U64
    return r0 == check


CPU_BENCHMARKS = (
    *(
        Benchmark(bench.name, bench.make_input, _sorted_check) if bench.name == "sort" else bench
        for bench in BENCHMARKS
    ),
    Benchmark("jhash", lambda: bytes((i * 29 + 3) & 0xFF for i in range(1500)), _jhash),
    Benchmark("fibonacci", lambda: (12345).to_bytes(4, "little"), _fibonacci),
)
"""bench_interp's programs (sort with an exact check) and the hashes and loops only this table runs."""


@dataclass(slots=True)
class Column:
    """One engine's samples (ns per run), or why it has none."""

    samples: list[float] = field(default_factory=list)
    skipped: str = ""

    def median(self) -> float | None:
        return statistics.median(self.samples) if self.samples and not self.skipped else None


def repeat_count(seconds_per_run: float) -> int:
    return max(1, int(TARGET_SECONDS / max(seconds_per_run, 1e-9)))


def build_native(tmp: Path) -> tuple[Any, str]:
    """The gcc -O2 shared library of every benchmark source plus the repeat harness, or (None, why)."""
    gcc = shutil.which("gcc")
    if gcc is None:
        return None, "no gcc"
    harness = tmp / "harness.c"
    harness.write_text(HARNESS)
    library = tmp / "libbench.so"
    sources = [str(PROGS / f"{bench.name}.c") for bench in CPU_BENCHMARKS]
    command = [gcc, "-O2", "-DBENCH_NATIVE", "-shared", "-fPIC", *sources, str(harness), "-o", str(library)]
    built = subprocess.run(command, capture_output=True, text=True, check=False)
    if built.returncode:
        return None, f"gcc failed: {built.stderr.strip()[:80]}"
    native = ctypes.CDLL(str(library))
    native.bench_repeat.restype = ctypes.c_uint64
    native.bench_repeat.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint64]
    return native, ""


def build_kernel(tmp: Path, name: str) -> tuple[Any, str]:
    """The kernel object of ``name`` built with -DBENCH_KERNEL and loaded, or (None, why)."""
    clang = shutil.which("clang-19") or shutil.which("clang")
    if clang is None:
        return None, "no clang"
    obj_path = tmp / f"{name}.kernel.o"
    command = [clang, "-O2", "-g", "-target", "bpf", "-mcpu=v3", "-fno-unroll-loops", "-fno-builtin", "-DBENCH_KERNEL"]
    built = subprocess.run(
        [*command, "-c", str(PROGS / f"{name}.c"), "-o", str(obj_path)], capture_output=True, text=True, check=False
    )
    if built.returncode:
        return None, "clang failed"
    import pybpf

    try:
        return pybpf.load(obj_path, backend="kernel"), ""
    except PybpfError as error:
        reason = "verifier rejects it" if "verif" in type(error).__name__.lower() + str(error).lower() else str(error)
        return None, reason[:60]
    except OSError as error:
        return None, f"bpf() unavailable: {error}"[:60]


@dataclass(slots=True)
class CpuRow:
    name: str
    instructions: int
    compile_ms: float
    columns: dict[str, Column]


def measure_cpu(bench: Benchmark, runs: int, tmp: Path, native: Any, native_why: str) -> CpuRow:
    insns = decode_program(load_section(PROGS / f"{bench.name}.o"))
    interpreter = Interpreter(insns, name=bench.name)
    jit = JitProgram(insns, name=bench.name, cache=None)  # compile time is LLVM's, never a cache hit
    # Without range checks, as a verified program may run (the benchmark programs are safe).
    unchecked = JitProgram(insns, name=bench.name, cache=None, bounds_checks=False)
    slots = insns[-1].pc + 1
    data = bench.make_input()
    size = INPUT_SIZES[bench.name]
    columns = {key: Column() for key in ("interp", "jit call", "jit repeat", "jit unchecked", "kernel", "gcc -O2")}
    if native is None:
        columns["gcc -O2"].skipped = native_why
    kernel, kernel_why = build_kernel(tmp, bench.name)
    if kernel is None:
        columns["kernel"].skipped = kernel_why
    else:
        kernel.map("bench_input").update_raw(bytes(4), data.ljust(size, b"\0")[:size])

    def check(label: str, r0: int) -> None:
        if not bench.check(data, r0):
            raise SystemExit(f"{bench.name} ({label}): wrong result {r0:#x}")

    def run_interp() -> float:
        region = Region.from_bytes(RegionKind.INPUT, "input", data)
        start = time.perf_counter_ns()
        result = interpreter.run(region, instruction_limit=LIMIT)
        elapsed = time.perf_counter_ns() - start
        check("interp", result.r0)
        return elapsed

    def run_jit_call() -> float:
        region = Region.from_bytes(RegionKind.INPUT, "input", data)
        start = time.perf_counter_ns()
        result = jit.run(region, instruction_limit=LIMIT)
        elapsed = time.perf_counter_ns() - start
        check("jit", result.r0)
        return elapsed

    single = run_jit_call() / 1e9
    count = repeat_count(single)

    def run_jit_repeat() -> float:
        region = Region.from_bytes(RegionKind.INPUT, "input", data)
        start = time.thread_time_ns()
        result, _ = jit.run_repeated(region, repeat=count, instruction_limit=LIMIT)
        elapsed = time.thread_time_ns() - start
        check("jit repeat", result.r0)
        return elapsed / count

    def run_unchecked() -> float:
        region = Region.from_bytes(RegionKind.INPUT, "input", data)
        start = time.thread_time_ns()
        result, _ = unchecked.run_repeated(region, repeat=count, instruction_limit=LIMIT)
        elapsed = time.thread_time_ns() - start
        check("jit unchecked", result.r0)
        return elapsed / count

    def run_kernel() -> float:
        result = kernel.program(f"{bench.name}_xdp").test_run(bytes(64), repeat=count)
        check("kernel", int.from_bytes(kernel.map("bench_output").lookup_raw(bytes(4))[:8], "little"))
        return float(result.duration_ns)

    buffer = ctypes.create_string_buffer(data, len(data))
    function = ctypes.cast(getattr(native, bench.name), ctypes.c_void_p).value if native is not None else None

    def run_gcc() -> float:
        start = time.thread_time_ns()
        r0 = native.bench_repeat(function, buffer, len(data), count)
        elapsed = time.thread_time_ns() - start
        check("gcc", r0)
        return elapsed / count

    engines: list[tuple[str, Callable[[], float]]] = [
        ("jit call", run_jit_call),
        ("jit repeat", run_jit_repeat),
        ("jit unchecked", run_unchecked),
    ]
    if kernel is not None:
        engines.append(("kernel", run_kernel))
    if native is not None:
        engines.append(("gcc -O2", run_gcc))
    interp_runs = max(1, min(runs, 3))  # the interpreter takes seconds on the larger programs
    try:
        for round_number in range(runs):
            if round_number < interp_runs:
                columns["interp"].samples.append(run_interp())
            for label, run in engines:
                columns[label].samples.append(run())
    finally:
        if kernel is not None:
            kernel.close()
    return CpuRow(bench.name, slots, jit.compile_ns / 1e6, columns)


@dataclass(frozen=True, slots=True)
class XdpCase:
    file: str
    program: str
    setup: Callable[[Any], None] | None = None
    label: str = ""  # the row's name (the program's when empty)


def _deny_first_source(obj: Any) -> None:
    obj.maps["deny_v4"].update_raw((32).to_bytes(4, "little") + bytes.fromhex("c0a80001"), bytes(4))


def _set_backends(obj: Any) -> None:
    """Every xdp_lb backend slot filled: each packet takes the whole path (lookup, rewrite, bpf_csum_diff)."""
    for index in range(8):
        backend = bytes([10, 0, 1, index + 1]) + bytes.fromhex("020000000a") + bytes([index]) + bytes(2)
        obj.maps["backends"].update_raw(index.to_bytes(4, "little"), backend)


XDP_CASES = (
    XdpCase("bpf2bpf", "xdp_no_calls"),
    XdpCase("xdp_firewall", "xdp_firewall", _deny_first_source),
    XdpCase("xdp_lb", "xdp_lb"),
    XdpCase("xdp_lb", "xdp_lb", _set_backends, "xdp_lb (backends set: bpf_csum_diff)"),
    XdpCase("tc_mark", "tc_mark", label="tc_mark (tc, bpf_skb_load_bytes)"),
)
PACKET = (
    bytes.fromhex("00112233445566778899aabb0800")
    + bytes.fromhex("4500002e1234400040110000c0a80001c0a800c7")
    + bytes.fromhex("d43100350012abcd")
    + bytes(18)
)


def measure_xdp(case: XdpCase, runs: int) -> dict[str, Column]:
    import pybpf
    from pybpf.runtime.loader import load

    columns = {key: Column() for key in ("interp", "jit repeat", "jit batch/pkt", "kernel")}
    path = TEST_PROGS / f"{case.file}.o"
    reference, native = load(path, engine="interp"), load(path, engine="jit")
    try:
        kernel: Any = pybpf.load(path, backend="kernel")
    except (PybpfError, OSError) as error:
        kernel = None
        columns["kernel"].skipped = f"{type(error).__name__}"[:40]
    for obj in (reference, native, kernel):
        if obj is not None and case.setup is not None:
            case.setup(obj if obj is not kernel else _KernelMaps(obj))
    batch = [PACKET] * 256
    count = 20_000
    try:
        for _ in range(runs):
            columns["interp"].samples.append(reference.program(case.program).test_run(PACKET, repeat=20).duration_ns)
            columns["jit repeat"].samples.append(
                native.program(case.program).test_run(PACKET, repeat=count).duration_ns
            )
            columns["jit batch/pkt"].samples.append(native.program(case.program).run_batch(batch).duration_ns)
            if kernel is not None:
                columns["kernel"].samples.append(
                    kernel.program(case.program).test_run(PACKET, repeat=count).duration_ns
                )
    finally:
        for obj in (reference, native, kernel):
            if obj is not None:
                obj.close()
    return columns


class _KernelMaps:
    """``obj.maps[name]`` for a kernel object (its maps are reached with ``obj.map(name)``)."""

    def __init__(self, obj: Any) -> None:
        self.maps = _ByName(obj)


class _ByName:
    def __init__(self, obj: Any) -> None:
        self._obj = obj

    def __getitem__(self, name: str) -> Any:
        return self._obj.map(name)


def synthetic_program(blocks: int) -> str:
    """Assembly of ``blocks`` x 10 instructions: ALU work, stack stores and loads, a forward branch."""
    lines = ["mov %r0, 0", "mov %r2, 1"]
    for number in range(blocks):
        lines += [
            f"add %r0, {number + 1}",
            "mul %r2, 3",
            "xor %r0, %r2",
            f"stxdw [%r10-{8 + 8 * (number % 32)}], %r0",
            f"ldxdw %r3, [%r10-{8 + 8 * ((number + 5) % 32)}]",
            "add %r0, %r3",
            "rsh %r2, 1",
            f"jgt %r0, {number * 7}, +1",
            "add %r0, 1",
            "or %r2, 1",
        ]
    lines.append("exit")
    return "\n".join(lines) + "\n"


def compile_scaling() -> tuple[float, float]:
    """(fixed ms per program, ms per 1,000 instructions) from two synthetic sizes, median of 3 each."""
    from pybpf.asm import assemble

    sizes = (10, 200)  # 100 and 2,000 instructions
    times = []
    for blocks in sizes:
        insns = assemble(synthetic_program(blocks))
        times.append(statistics.median(JitProgram(insns, cache=None).compile_ns / 1e6 for _ in range(3)))
    per_1k = (times[1] - times[0]) / ((sizes[1] - sizes[0]) * 10) * 1000
    return times[0] - per_1k * sizes[0] * 10 / 1000, per_1k


def _ns(value: float | None, why: str = "") -> str:
    if value is None:
        return f"— ({why})" if why else "—"
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def _ratio(numerator: float | None, denominator: float | None) -> str:
    return f"{numerator / denominator:.2f}x" if numerator and denominator else "—"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="interleaved rounds (medians are reported)")
    parser.add_argument("names", nargs="*", help="CPU-bound programs to run (default: all)")
    parser.add_argument("--xdp-only", action="store_true", help="only the XDP table (tests/progs programs)")
    args = parser.parse_args(argv)
    if args.xdp_only:
        print(f"Python {sys.version.split()[0]}, median of {args.runs} interleaved rounds; ns per run")
        _xdp_table(args.runs)
        return 0
    selected = [bench for bench in CPU_BENCHMARKS if not args.names or bench.name in args.names]
    print(f"Python {sys.version.split()[0]}, median of {args.runs} interleaved rounds; ns per run\n")
    print(
        "| program | insns | compile ms | interp | JIT (call) | JIT (repeat) | JIT (repeat, unchecked) "
        "| kernel JIT | gcc -O2 | JIT/kernel | JIT/gcc |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    JitProgram(decode_program(load_section(PROGS / "sort.o")), cache=None)  # LLVM's one-time setup: not timed
    with tempfile.TemporaryDirectory() as directory:
        tmp = Path(directory)
        native, native_why = build_native(tmp)
        compile_total, instruction_total = 0.0, 0
        for bench in selected:
            row = measure_cpu(bench, args.runs, tmp, native, native_why)
            med = {key: column.median() for key, column in row.columns.items()}
            cells = [_ns(med[key], row.columns[key].skipped) for key in row.columns]
            to_kernel = f"{_ratio(med['jit repeat'], med['kernel'])} / {_ratio(med['jit unchecked'], med['kernel'])}"
            to_gcc = f"{_ratio(med['jit repeat'], med['gcc -O2'])} / {_ratio(med['jit unchecked'], med['gcc -O2'])}"
            head = f"| {row.name} | {row.instructions} | {row.compile_ms:.1f}"
            print(f"{head} | {' | '.join(cells)} | {to_kernel} | {to_gcc} |")
            compile_total += row.compile_ms
            instruction_total += row.instructions
    fixed, per_1k = compile_scaling()
    print(
        f"\nCompile time (LLVM -O2, no cache): {per_1k:.0f} ms per 1,000 instructions on top of {fixed:.0f} ms"
        f" per program (synthetic 100- and 2,000-instruction programs); the programs above:"
        f" {compile_total:.0f} ms for {instruction_total} instructions"
    )
    print("Ratios: checked / unchecked JIT (repeat) over the kernel's JIT and gcc -O2; below 1x is faster.")
    _xdp_table(args.runs)
    return 0


def _xdp_table(runs: int) -> None:
    print("\n| XDP program | interp | JIT (repeat) | JIT (batch of 256, per packet) | kernel JIT | JIT/kernel |")
    print("|---|---:|---:|---:|---:|---:|")
    for case in XDP_CASES:
        columns = measure_xdp(case, runs)
        med = {key: column.median() for key, column in columns.items()}
        cells = [_ns(med[key], columns[key].skipped) for key in columns]
        print(f"| {case.label or case.program} | {' | '.join(cells)} | {_ratio(med['jit repeat'], med['kernel'])} |")


if __name__ == "__main__":
    sys.exit(main())
