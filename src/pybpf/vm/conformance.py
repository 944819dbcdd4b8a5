"""The logic of the bpf_conformance plugin: run one program the way the suite expects.

The suite's runner hands a plugin the bytecode and the input memory and reads back r0. Its
test harness defines one helper, number 5 ("unwind"): it returns its first argument, and when
that argument is 0 the program stops at once with r0 = 0 (see ``call_unwind_fail.data``).
"""

from __future__ import annotations

from collections.abc import Callable

from pybpf.vm.execution import ExecutionContext, HelperFn
from pybpf.vm.interpreter import Interpreter
from pybpf.vm.jit.conformance import run_jitted
from pybpf.vm.memory import Region, RegionKind

UNWIND_HELPER = 5


def unwind(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int, /) -> int:  # noqa: PLR0917
    """Helper 5 of the conformance harness: return r1, or stop the program with r0 = 0 when r1 is 0."""
    if r1 == 0:
        env.stop(0)
    return r1


HELPERS: dict[int, HelperFn] = {UNWIND_HELPER: unwind}


def run_interpreted(bytecode: bytes, memory: bytes) -> int:
    """Decode, prepare and interpret ``bytecode`` with r1/r2 = the input memory (0/0 without one)."""
    interpreter = Interpreter.from_bytecode(bytecode, helpers=HELPERS, name="conformance")
    region = Region.from_bytes(RegionKind.INPUT, "input", memory) if memory else None
    return interpreter.run(region).r0


ENGINES: dict[str, Callable[[bytes, bytes], int]] = {"interp": run_interpreted, "jit": run_jitted}
"""Execution engines by name (the JIT registers here when it lands)."""


def run_program(bytecode: bytes, memory: bytes = b"", engine: str = "interp") -> int:
    """Run a conformance program and return r0; raises a PybpfError subclass on any failure."""
    runner = ENGINES.get(engine)
    if runner is None:
        raise ValueError(f"unknown engine {engine!r} (available: {', '.join(sorted(ENGINES))})")
    return runner(bytecode, memory)


def parse_hex(text: str) -> bytes:
    """Hex bytes, whitespace anywhere (the runner separates bytes with spaces and newlines)."""
    return bytes.fromhex("".join(text.split()))


def format_result(r0: int) -> str:
    """r0 as the runner reads it: lowercase hex with a 0x prefix, no leading zeros."""
    return f"{r0:#x}"
