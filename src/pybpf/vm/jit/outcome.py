"""The typed error a run's status stands for, as the interpreter would have raised it.

Native code never raises: it leaves a :class:`~pybpf.vm.jit.state.Status` (and the pc it
concerns) in the run-state block and returns. :func:`status_error` turns a status other than
RUNNING and STOPPED (which are results, not errors) into the error with the interpreter's words.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pybpf.errors import CallDepthError, InstructionLimitError, VmError
from pybpf.vm.execution import MAX_CALL_FRAMES
from pybpf.vm.jit.state import Slot, Status


def status_error(status: Status, state: Any, traps: Mapping[int, str], limit: int) -> VmError:
    """The error for ``status`` read from ``state``; ``traps`` says why each trapping pc traps,
    ``limit`` is the loop budget the run was given."""
    pc = int(state[Slot.ERROR_PC])
    if status is Status.CALL_DEPTH:
        return CallDepthError(f"a call would exceed the limit of {MAX_CALL_FRAMES} call frames", pc)
    if status is Status.BUDGET:
        return InstructionLimitError(f"loop budget of {limit} iterations exhausted", pc)
    if status is Status.BAD_CALL:
        target = int(state[Slot.ERROR_VALUE])
        return VmError(f"callx: {target:#x} is not the address of a function of this program", pc)
    if status is Status.TRAP:
        return VmError(traps.get(pc, "cannot execute this instruction"), pc)
    if status is Status.TAIL_CALL_IN_FUNCTION:
        return VmError("tail calls from inside a bpf-to-bpf function or callback are not supported", pc)
    if status is Status.NO_PACKET:
        return VmError("LD_ABS/LD_IND needs a packet, and this run has none", pc)
    return VmError(f"native code reported status {status.name} without an error", pc)
