"""The conformance plugin's ``jit`` engine: the same program and helpers, compiled."""

from __future__ import annotations

from pybpf.vm.jit.program import JitProgram
from pybpf.vm.memory import Region, RegionKind


def run_jitted(bytecode: bytes, memory: bytes) -> int:
    """Decode, compile and run ``bytecode`` with r1/r2 = the input memory (0/0 without one)."""
    # Imported here: pybpf.vm.conformance imports this module to register the engine.
    from pybpf.vm.conformance import HELPERS

    program = JitProgram.from_bytecode(bytecode, helpers=HELPERS, name="conformance")
    region = Region.from_bytes(RegionKind.INPUT, "input", memory) if memory else None
    return program.run(region).r0
