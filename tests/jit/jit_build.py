"""Shared helpers for the JIT tests: run one program under both engines."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pybpf.asm import assemble
from pybpf.isa import LabeledInsn
from pybpf.vm import HelperFn, Interpreter, Region, RegionKind, RunResult
from pybpf.vm.jit import JitProgram


def input_region(memory: bytes | None) -> Region | None:
    return Region.from_bytes(RegionKind.INPUT, "input", memory) if memory else None


def run_jit(
    program: str | Sequence[LabeledInsn],
    *,
    memory: bytes | None = None,
    helpers: Mapping[int, HelperFn] | None = None,
    **run_options: Any,
) -> RunResult:
    insns = assemble(program) if isinstance(program, str) else program
    return JitProgram(insns, helpers=helpers).run(input_region(memory), **run_options)


def run_both(
    program: str | Sequence[LabeledInsn],
    *,
    memory: bytes | None = None,
    helpers: Mapping[int, HelperFn] | None = None,
    **run_options: Any,
) -> tuple[tuple[RunResult, bytes], tuple[RunResult, bytes]]:
    """(interpreter result, input after), (JIT result, input after) for the same program and input."""
    insns = assemble(program) if isinstance(program, str) else program
    outcomes = []
    for engine in (Interpreter(insns, helpers=helpers), JitProgram(insns, helpers=helpers)):
        region = input_region(memory)
        result = engine.run(region, **run_options)
        outcomes.append((result, bytes(region.view) if region is not None else b""))
    return outcomes[0], outcomes[1]
