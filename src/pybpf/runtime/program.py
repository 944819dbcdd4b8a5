"""A loaded program and its test runs: the user-space BPF_PROG_TEST_RUN.

:meth:`Program.test_run` follows ``net/bpf/test_run.c``: the program type's
:class:`~pybpf.runtime.progtypes.RunKind` builds the context and packet from ``data_in`` and
``ctx_in``, the program runs ``repeat`` times on that same state (as the kernel's loop does),
and ``data_out``/``ctx_out`` are read back. ``duration_ns`` is the mean wall time of one run.
What the kernel keeps out of the test-run result but a user-space run can show is reported as
well (:class:`RuntimeTestRunResult`): where bpf_redirect/bpf_redirect_map sent the packet.
"""

from __future__ import annotations

import time
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pybpf.errors import TestRunError
from pybpf.obj import ProgramSpec
from pybpf.platform.progtypes import ProgTypeSpec
from pybpf.platform.test_run import TestRunResult
from pybpf.runtime.attach import AttachMethods
from pybpf.runtime.context import InternalLayout, RewriteResult
from pybpf.runtime.helpers.services import Redirect, RunState, RuntimeServices
from pybpf.runtime.progtypes import PreparedRun, run_kind
from pybpf.vm.execution import ExecutionContext, ProgramStop, execute
from pybpf.vm.interpreter import Interpreter

if TYPE_CHECKING:
    from pybpf.vm.jit import JitProgram

__all__ = ["ENGINES", "BatchResult", "Engine", "Program", "RuntimeTestRunResult", "TestRunResult"]

Engine = Literal["interp", "jit"]
"""What runs a program: the reference interpreter or the LLVM JIT (:mod:`pybpf.vm.jit`)."""
ENGINES: tuple[Engine, ...] = ("interp", "jit")


@dataclass(frozen=True, slots=True)
class BatchResult:
    """What :meth:`Program.run_batch` gives: one u32 retval per packet, and the mean time per packet."""

    retvals: array[int]
    duration_ns: float


@dataclass(frozen=True, slots=True)
class RuntimeTestRunResult(TestRunResult):
    """A user-space test run's result: :class:`TestRunResult` plus what only user space can see.

    ``redirect`` is where the last run's bpf_redirect/bpf_redirect_map sent the packet (the
    kernel's test run drops that: it reports XDP_REDIRECT and forgets the target), or None.
    """

    __test__ = False  # not a pytest test class

    redirect: Redirect | None = None


class Program(AttachMethods):
    """A program instantiated in user space: relocated, context-converted, helpers bound.

    ``attach_probe``/``attach_tracepoint``/``attach_audit``/``attach_xdp``/``attach_tc`` come from
    :class:`~pybpf.runtime.attach.AttachMethods` (served by :mod:`pybpf.hooks` once imported).
    """

    def __init__(
        self,
        spec: ProgramSpec,
        type_spec: ProgTypeSpec,
        interpreter: Interpreter,
        *,
        services: RuntimeServices,
        conversion: RewriteResult | None,
        program_id: int,
        engine: Engine = "interp",
    ) -> None:
        self.spec = spec
        self.name = spec.name
        self.type_spec = type_spec
        self.prog_type = type_spec.prog_type
        self.interpreter = interpreter
        self.services = services
        self.conversion = conversion
        self.id = program_id
        self.layout = conversion.layout if conversion is not None else InternalLayout.of(type_spec.context)
        self.engine: Engine = check_engine(engine)
        self._jit: JitProgram | None = None  # compiled on first use: loading stays cheap

    @property
    def jit(self) -> JitProgram:
        """The program compiled to native code (same helpers, resolver and memory as the interpreter)."""
        if self._jit is None:
            from pybpf.vm.jit import JitProgram

            self._jit = JitProgram.of(self.interpreter)
        return self._jit

    def __repr__(self) -> str:
        return f"Program({self.name!r}, {self.type_spec.name}, id={self.id})"

    def test_run(
        self,
        data_in: bytes = b"",
        ctx_in: bytes | None = None,
        repeat: int = 1,
        *,
        cpu: int | None = None,
        instruction_limit: int | None = None,
        engine: Engine | None = None,
    ) -> RuntimeTestRunResult:
        """Run the program on ``data_in``/``ctx_in`` ``repeat`` times, as BPF_PROG_TEST_RUN does.

        ``engine`` overrides the program's (``load(..., engine=...)``) for this call; the JIT
        reports ``instructions`` as 0 (native code does not count them).
        """
        run_once = self._run_interp
        native = check_engine(engine or self.engine) == "jit"
        if native:
            _ = self.jit  # compiled before the clock starts: duration_ns is run time only
            run_once = self._run_native
        kind = run_kind(self.prog_type)
        if data_in and not kind.takes_data:
            raise TestRunError(f"{self.type_spec.name} programs take no data_in (only ctx_in)")
        if repeat < 0:
            raise TestRunError(f"repeat must not be negative, got {repeat}")
        if repeat > 1 and not kind.allows_repeat:
            raise TestRunError(f"{self.type_spec.name} programs cannot be run repeatedly")
        runs = max(repeat, 1)
        prepared = kind.prepare(self.interpreter.memory, self.layout, bytes(data_in), ctx_in)
        try:
            state = RunState(self.services, packet=prepared.packet_state, ctx=prepared.context.address, cpu=cpu)
            r0, executed, elapsed = 0, 0, 0
            if native and runs > 1:  # the kernel's loop, inside one native call; native time only
                result, elapsed = self.jit.run_repeated(
                    repeat=runs, user=state, map_inputs=False, **self._native_inputs(prepared, instruction_limit)
                )
                r0, runs_left = result.r0, 0
            else:
                runs_left = runs
            for _ in range(runs_left):
                state.redirect = None  # each run of a repeat starts without a target, as in the kernel
                started = time.perf_counter_ns()
                r0, executed = run_once(prepared, state, instruction_limit)
                elapsed += time.perf_counter_ns() - started
            data_out, ctx_out = prepared.finish()
            return RuntimeTestRunResult(
                prepared.retval(r0), data_out, ctx_out, elapsed / runs, r0, executed, redirect=state.redirect
            )
        finally:
            prepared.close()

    def _run_once(self, prepared: PreparedRun, state: RunState, instruction_limit: int | None) -> tuple[int, int]:
        """One run on ``prepared`` with the program's engine: (r0, instructions executed)."""
        if self.engine == "jit":
            return self._run_native(prepared, state, instruction_limit)
        return self._run_interp(prepared, state, instruction_limit)

    def _run_interp(self, prepared: PreparedRun, state: RunState, instruction_limit: int | None) -> tuple[int, int]:
        interpreter = self.interpreter
        limit = interpreter.instruction_limit if instruction_limit is None else instruction_limit
        run = ExecutionContext(interpreter, limit, prepared.packet_region(), state)
        regs = run.regs
        regs[1] = prepared.context.address
        regs[10] = run.stack_top(0)
        try:
            execute(run, 0)
        except ProgramStop as stop:
            regs[0] = stop.r0
        finally:
            run.release()
        return regs[0], run.executed

    def _run_native(self, prepared: PreparedRun, state: RunState, instruction_limit: int | None) -> tuple[int, int]:
        result = self.jit.run(user=state, map_inputs=False, **self._native_inputs(prepared, instruction_limit))
        return result.r0, result.instructions

    @staticmethod
    def _native_inputs(prepared: PreparedRun, instruction_limit: int | None) -> dict[str, Any]:
        # r1 only, as in _run_interp: the runtime's runs leave r2 zero.
        return {
            "packet": prepared.packet_region(),
            "registers": {1: prepared.context.address},
            "instruction_limit": instruction_limit,
        }

    def run_batch(
        self,
        packets: Sequence[bytes],
        *,
        engine: Engine | None = None,
        cpu: int | None = None,
        data_out: bool = False,
    ) -> BatchResult:
        """Run the program once per packet; ``retvals[i]`` is what ``test_run(packets[i]).retval`` gives.

        Under the JIT, XDP and socket-buffer programs (tc, socket filters, cgroup_skb...) whose
        helpers need no per-run Python packet state run the whole batch inside one native call;
        otherwise each packet is one test run (see :mod:`pybpf.runtime.batch`). ``data_out=True``
        also returns every packet as the program left it. Maps see the runs in order.
        """
        from pybpf.runtime.batch import run_batch

        return run_batch(self, packets, engine=engine, cpu=cpu, data_out=data_out)

    def _batches_natively(self) -> bool:
        """Whether a JIT batch runs inside one native call (:func:`pybpf.runtime.batch.native_batch_blocker`)."""
        from pybpf.runtime.batch import native_batch_blocker

        return native_batch_blocker(self) is None
def check_engine(engine: str) -> Engine:
    """``engine`` if it names an engine, else TestRunError listing them."""
    for known in ENGINES:
        if engine == known:
            return known
    raise TestRunError(f"unknown engine {engine!r} (engines: {', '.join(ENGINES)})")
