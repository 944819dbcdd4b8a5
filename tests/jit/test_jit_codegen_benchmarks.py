"""The CPU-bound benchmark programs give the reference result under every engine.

``benchmarks/bench_jit.py`` times these programs; here each one runs once under the interpreter
and under the JIT with and without bounds checks, single and repeated (the repeat loop inlines
the program, so LLVM optimises it differently), and every result must equal the benchmark's
Python reference. The objects are committed (``benchmarks/progs/build.sh``), so no clang is needed.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from pybpf.isa import decode_program
from pybpf.vm import Interpreter, Region, RegionKind
from pybpf.vm.jit import JitProgram

BENCHMARKS_DIR = Path(__file__).resolve().parents[2] / "benchmarks"
LIMIT = 100_000_000


def _bench_jit() -> ModuleType:
    """benchmarks/bench_jit.py as a module (it imports bench_interp from its own directory)."""
    if str(BENCHMARKS_DIR) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS_DIR))
    spec = importlib.util.spec_from_file_location("bench_jit_under_test", BENCHMARKS_DIR / "bench_jit.py")
    if spec is None or spec.loader is None:
        pytest.skip("benchmarks/bench_jit.py cannot be loaded")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


BENCH = _bench_jit()
NAMES = [bench.name for bench in BENCH.CPU_BENCHMARKS]


def test_the_table_covers_the_programs_the_issue_names() -> None:
    assert {"fnv1a", "jhash", "sort", "sieve", "fibonacci"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_every_engine_computes_the_reference_result(name: str) -> None:
    bench = next(bench for bench in BENCH.CPU_BENCHMARKS if bench.name == name)
    insns = decode_program(BENCH.load_section(BENCH.PROGS / f"{name}.o"))
    data = bench.make_input()

    def region() -> Region:
        return Region.from_bytes(RegionKind.INPUT, "input", data)

    results = {"interp": Interpreter(insns).run(region(), instruction_limit=LIMIT).r0}
    for checked in (True, False):
        program = JitProgram(insns, bounds_checks=checked)
        label = "checked" if checked else "unchecked"
        results[f"jit {label}"] = program.run(region(), instruction_limit=LIMIT).r0
        results[f"jit {label} repeat"] = program.run_repeated(region(), repeat=3, instruction_limit=LIMIT)[0].r0
    assert len(set(results.values())) == 1, results
    assert bench.check(data, results["interp"]), f"{name}: {results['interp']:#x} is not the reference result"
    assert not bench.check(data, results["interp"] ^ 1)  # the reference check can fail
