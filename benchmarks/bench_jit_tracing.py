"""Tracing programs under the JIT: nanoseconds per run and Python calls per run.

Run with ``python benchmarks/bench_jit_tracing.py [--runs N] [--rounds R]``. Two programs:

- ``kprobe_count`` (``tests/progs``): get_current_pid_tgid, a per-CPU hash lookup/update,
  ringbuf reserve/submit, ktime_get_ns and get_current_comm, as a kprobe counting opens would.
- ``task_sample`` (built here with clang-19): get_current_pid_tgid/uid_gid/comm, a
  get_prandom_u32 sampling decision and an array counter, the helpers of a sampling tracer.

Each round runs the program ``--runs`` times inside one native call (``JitProgram.run_repeated``,
the loop BPF_PROG_TEST_RUN does; kprobe programs cannot be test-run with ``repeat``, so the
benchmark calls the JIT directly on a prepared context) and reports the native time per run; the
ring buffer is drained between rounds so reservations keep succeeding. ``python calls/run`` counts
what reached the Python trampoline, the cost this work removes: each such call is microseconds.
Medians over the rounds.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import statistics
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pybpf
from pybpf.runtime.helpers.services import RunState
from pybpf.runtime.maps.ringbuf import RingBufferConsumer
from pybpf.runtime.progtypes import run_kind
from pybpf.vm.jit import JitProgram

PROGS = Path(__file__).resolve().parents[1] / "tests" / "progs"
TASK_SAMPLE = r"""
#include "bpf_helpers.h"

static __u64 (*bpf_get_current_uid_gid)(void) = (void *)BPF_FUNC_get_current_uid_gid;

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

SEC("raw_tracepoint/sys_enter")
int task_sample(void *ctx)
{
	char comm[16];
	__u64 id = bpf_get_current_pid_tgid();
	__u64 ids = bpf_get_current_uid_gid();
	__u32 key = (bpf_get_prandom_u32() & 7) == 0;
	__u64 *count;

	bpf_get_current_comm(comm, sizeof(comm));
	if (comm[0] == 0 || (__u32)ids == 12345)
		return 1;
	count = bpf_map_lookup_elem(&counters, &key);
	if (count)
		*count += id >> 32 ? 1 : 2;
	return 0;
}
"""


def build_task_sample(directory: Path) -> Path | None:
    clang = shutil.which("clang-19")
    if clang is None:
        return None
    source, obj = directory / "task_sample.c", directory / "task_sample.o"
    source.write_text(TASK_SAMPLE)
    arch = f"/usr/include/{platform.machine()}-linux-gnu"
    flags = ["-O2", "-g", "-target", "bpf", "-mcpu=v3", f"-I{PROGS}", f"-I{arch}"]
    subprocess.run([clang, *flags, "-c", str(source), "-o", str(obj)], check=True)
    return obj


def measure(path: Path, ctx_size: int, runs: int, rounds: int) -> tuple[float, float]:
    """(median ns per run, Python trampoline calls per run) of the object's first program."""
    calls = [0]
    original = JitProgram._serve_helper

    def counting(self: JitProgram, key: int, helper: int, pc: int, *registers: int) -> int:
        calls[0] += 1
        return original(self, key, helper, pc, *registers)

    # The trampoline binds _serve_helper when a JitProgram is made: patch before the load compiles.
    JitProgram._serve_helper = counting  # type: ignore[method-assign,assignment]
    try:
        return _measure(path, ctx_size, runs, rounds, calls)
    finally:
        JitProgram._serve_helper = original  # type: ignore[method-assign]


def _measure(path: Path, ctx_size: int, runs: int, rounds: int, calls: list[int]) -> tuple[float, float]:
    with pybpf.load(path, engine="jit") as obj:
        program = next(iter(obj.programs.values()))
        ctx = bytes(ctx_size)
        program.test_run(ctx_in=ctx)  # compiles
        jit: Any = program.jit
        rings = [ring for ring in obj.maps.values() if hasattr(ring, "consume")]
        consumer = RingBufferConsumer()
        for ring in rings:
            consumer.add(ring, lambda _record: None)
        prepared = run_kind(program.prog_type).prepare(program.interpreter.memory, program.layout, b"", ctx)
        timings = []
        try:
            state = RunState(obj.services, ctx=prepared.context.address)
            inputs = program._native_inputs(prepared, None)
            calls[0] = 0
            for _ in range(rounds):
                consumer.poll()
                _, elapsed = jit.run_repeated(repeat=runs, user=state, map_inputs=False, **inputs)
                timings.append(elapsed / runs)
        finally:
            prepared.close()
        return statistics.median(timings), calls[0] / (runs * rounds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000, help="runs per native call")
    parser.add_argument("--rounds", type=int, default=15)
    options = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as directory:
        programs = {"kprobe_count": (PROGS / "kprobe_count.o", 168)}  # pt_regs
        built = build_task_sample(Path(directory))
        if built is not None:
            programs["task_sample"] = (built, 16)  # two raw tracepoint arguments
        print(f"{'program':<14} {'ns/run':>10} {'python calls/run':>18}")
        for name, (path, ctx_size) in programs.items():
            ns, calls = measure(path, ctx_size, options.runs, options.rounds)
            print(f"{name:<14} {ns:>10.1f} {calls:>18.2f}")
        if built is None:
            print("task_sample: skipped (clang-19 is not installed)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
