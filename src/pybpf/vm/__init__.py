"""pybpf.vm: the memory model and the reference interpreter.

- :mod:`pybpf.vm.memory`: regions at real native addresses and the checked address space;
- :mod:`pybpf.vm.interpreter`: :class:`Interpreter`, one closure per pc;
- :mod:`pybpf.vm.execution`: per-run state, the run loop, and the helper-facing environment;
- :mod:`pybpf.vm.conformance`: the bpf_conformance plugin's logic.
"""

from __future__ import annotations

from pybpf.vm.code_addresses import CODE_BASE
from pybpf.vm.execution import (
    DEFAULT_INSTRUCTION_LIMIT,
    MAX_CALL_FRAMES,
    MAX_LOOPS,
    MAX_TAIL_CALLS,
    STACK_SIZE,
    ExecutionContext,
    HelperFn,
    ProgramStop,
    PseudoResolver,
    RunResult,
)
from pybpf.vm.interpreter import Interpreter
from pybpf.vm.memory import AddressSpace, Region, RegionKind

__all__ = [
    "CODE_BASE",
    "DEFAULT_INSTRUCTION_LIMIT",
    "MAX_CALL_FRAMES",
    "MAX_LOOPS",
    "MAX_TAIL_CALLS",
    "STACK_SIZE",
    "AddressSpace",
    "ExecutionContext",
    "HelperFn",
    "Interpreter",
    "ProgramStop",
    "PseudoResolver",
    "Region",
    "RegionKind",
    "RunResult",
]
