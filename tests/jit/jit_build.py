"""Shared helpers for the JIT tests: run one program under both engines."""

from __future__ import annotations

import platform
import shutil
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from pybpf.asm import assemble
from pybpf.isa import LabeledInsn
from pybpf.vm import HelperFn, Interpreter, Region, RegionKind, RunResult
from pybpf.vm.jit import JitProgram

PROGS = Path(__file__).resolve().parents[1] / "progs"


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


def build_object(source: str, directory: Path) -> Path:
    """``source`` (C including tests/progs' bpf_helpers.h) compiled with clang-19; skips without clang."""
    clang = shutil.which("clang-19")
    if clang is None:
        pytest.skip("clang-19 is not installed: the test program cannot be built")
    path, obj = directory / "prog.c", directory / "prog.o"
    path.write_text(source)
    arch = f"/usr/include/{platform.machine()}-linux-gnu"
    flags = ["-O2", "-g", "-target", "bpf", "-mcpu=v3", f"-I{PROGS}", f"-I{arch}"]
    subprocess.run([clang, *flags, "-c", str(path), "-o", str(obj)], check=True, capture_output=True)
    return obj


@contextmanager
def trampoline_calls(helper: int) -> Iterator[list[int]]:
    """r1 of every call of ``helper`` that reached the Python trampoline of a JitProgram made inside."""
    seen: list[int] = []
    original = JitProgram._serve_helper

    def counting(self: JitProgram, key: int, called: int, pc: int, *registers: int) -> int:
        if called == helper:
            seen.append(registers[0])
        return original(self, key, called, pc, *registers)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(JitProgram, "_serve_helper", counting)
        yield seen
