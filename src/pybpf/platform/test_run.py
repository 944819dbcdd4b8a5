"""The result of BPF_PROG_TEST_RUN, shared by every backend.

Both the user-space runtime (:mod:`pybpf.runtime.program`) and the kernel backend
(:mod:`pybpf.kernel.object`) return this type, so callers compare runs across backends field by
field. It lives here, below both, because the kernel layer may not import the runtime.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TestRunResult:
    """What BPF_PROG_TEST_RUN reports: retval (u32), data_out, ctx_out, mean ns per run.

    ``r0`` is the full 64-bit r0 of the last run and ``instructions`` the number of instructions
    that run executed; the kernel reports neither, so its backend gives ``r0 == retval`` and
    ``instructions == 0``.
    """

    __test__ = False  # not a pytest test class

    retval: int
    data_out: bytes
    ctx_out: bytes | None
    duration_ns: float
    r0: int
    instructions: int
