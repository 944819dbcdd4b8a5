"""A loaded program and its test runs: the user-space BPF_PROG_TEST_RUN.

:meth:`Program.test_run` follows ``net/bpf/test_run.c``: the program type's
:class:`~pybpf.runtime.progtypes.RunKind` builds the context and packet from ``data_in`` and
``ctx_in``, the program runs ``repeat`` times on that same state (as the kernel's loop does),
and ``data_out``/``ctx_out`` are read back. ``duration_ns`` is the mean wall time of one run.
What the kernel keeps out of the test-run result but a user-space run can show is reported as
well (:class:`RuntimeTestRunResult`): where bpf_redirect/bpf_redirect_map sent the packet, and
which engine ran it.

Engines: a program runs under the LLVM JIT (:mod:`pybpf.vm.jit`) or the reference interpreter.
:func:`pybpf.runtime.loader.load` picks the JIT for programs the verifier accepted and the
interpreter for unverified ones (``verify=False``); :attr:`Program.engine_reason` says why. The
JIT compiles on the first run (or :meth:`Program.resolve_engine`); when it cannot compile a
program it was not explicitly asked for, the program falls back to the interpreter and the
reason is recorded. Native code skips its runtime bounds checks only for programs whose safety
the verifier proved (:attr:`Program.jit_bounds_checks`, decided by the loader).
"""

from __future__ import annotations

import time
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property, partial
from typing import TYPE_CHECKING, Any, Literal

from pybpf.errors import NotSupportedError, TestRunError
from pybpf.isa.insn import Call
from pybpf.obj import ProgramSpec
from pybpf.platform.progtypes import ProgTypeSpec
from pybpf.platform.test_run import TestRunResult
from pybpf.runtime.attach import AttachMethods
from pybpf.runtime.context import InternalLayout, RewriteResult
from pybpf.runtime.helpers.services import Redirect, RunState, RuntimeServices
from pybpf.runtime.progtypes import PreparedRun, run_kind
from pybpf.runtime.progtypes.xdp import XdpRun
from pybpf.vm.execution import ExecutionContext, ProgramStop, execute
from pybpf.vm.interpreter import Interpreter
from pybpf.vm.jit.native_xdp import XDP_ADJUST_HELPERS

if TYPE_CHECKING:
    from pybpf.runtime.batch import PacketBatchResult
    from pybpf.vm.jit import JitProgram

__all__ = [
    "ENGINES",
    "BatchResult",
    "Engine",
    "Program",
    "RuntimeTestRunResult",
    "TestRunResult",
    "check_engine",
    "default_engine",
]

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
    ``engine`` is the engine that ran the program. The interpreter always counts instructions;
    under the JIT ``instructions`` is 0 (as with the kernel backend), meaning "not counted",
    unless the run asked for ``count_instructions=True``.
    """

    __test__ = False  # not a pytest test class

    redirect: Redirect | None = None
    engine: Engine = "interp"


class Program(AttachMethods):
    """A program instantiated in user space: relocated, context-converted, helpers bound.

    ``attach_probe``/``attach_tracepoint``/``attach_audit``/``attach_xdp``/``attach_tc`` come from
    :class:`~pybpf.runtime.attach.AttachMethods` (served by :mod:`pybpf.hooks` once imported).

    ``engine`` is what runs the program when a call does not name one; ``engine_reason`` says
    why (the loader's rule, an explicit choice, or the JIT's failure to compile it). ``verified``
    is True when :mod:`pybpf.verifier` accepted the program; ``jit_bounds_checks`` is whether its
    native code keeps the runtime range check on every memory access (always for unverified
    programs; see :func:`pybpf.runtime.loader.load` for when verified ones keep it).
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
        engine: Engine | None = None,
        verified: bool = False,
        jit_bounds_checks: bool = True,
        bounds_checks_reason: str | None = None,
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
        self._verified = verified
        # Unchecked native code is only ever built for a verified program.
        self._jit_bounds_checks = jit_bounds_checks or not verified
        self._engine: Engine
        self.engine_reason: str
        if engine is None:
            self._engine, self.engine_reason = default_engine(verified, self._jit_bounds_checks, bounds_checks_reason)
        else:
            self._engine, self.engine_reason = check_engine(engine), f"{engine}: chosen explicitly"
        # Only an engine picked by the rule may fall back; a JIT asked for must compile or raise.
        self._may_fall_back = engine is None
        self._jit: JitProgram | None = None  # compiled on first use: loading stays cheap
        self._counting_jit: JitProgram | None = None  # the same, counting instructions (on request)

    @property
    def engine(self) -> Engine:
        """The engine runs use unless they name one (``"jit"`` or ``"interp"``)."""
        return self._engine

    @engine.setter
    def engine(self, engine: Engine) -> None:
        self._engine = check_engine(engine)
        self.engine_reason = f"{engine}: chosen explicitly"
        self._may_fall_back = False

    @property
    def verified(self) -> bool:
        """Whether :mod:`pybpf.verifier` accepted this program when it was loaded."""
        return self._verified

    @property
    def jit_bounds_checks(self) -> bool:
        """Whether the native code range-checks every memory access (always, unless verified)."""
        return self._jit_bounds_checks

    @property
    def jit(self) -> JitProgram:
        """The program compiled to native code (same helpers, resolver and memory as the interpreter).

        Compiled on first use, with bounds checks as :attr:`jit_bounds_checks` says; raises
        :class:`~pybpf.errors.NotSupportedError` when the JIT cannot compile the program.
        """
        if self._jit is None:
            from pybpf.vm.jit import JitProgram

            self._jit = JitProgram.of(self.interpreter, bounds_checks=self._jit_bounds_checks)
        return self._jit

    def counting_jit(self) -> JitProgram:
        """:attr:`jit` compiled again with exact instruction counting (on first use; slower code)."""
        if self._counting_jit is None:
            from pybpf.vm.jit import JitProgram

            self._counting_jit = JitProgram.of(
                self.interpreter, bounds_checks=self._jit_bounds_checks, count_instructions=True
            )
        return self._counting_jit

    def resolve_engine(self, engine: Engine | None = None) -> Engine:
        """The engine a run with ``engine`` (None: the program's) uses, compiling the JIT if needed.

        Call it to compile ahead of the first run. When the program's engine is the JIT by the
        loader's rule and the JIT cannot compile the program (NotSupportedError), the program
        falls back to the interpreter for good and ``engine_reason`` says why; a JIT asked for
        explicitly (here, in ``test_run`` or in ``load``) raises instead.
        """
        if engine is not None:
            chosen = check_engine(engine)
            if chosen == "jit":
                _ = self.jit
            return chosen
        if self._engine == "jit" and self._jit is None:
            try:
                _ = self.jit
            except NotSupportedError as error:
                if not self._may_fall_back:
                    raise
                self._engine = "interp"
                self.engine_reason = f"interp: the JIT cannot compile this program ({error})"
        return self._engine

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
        count_instructions: bool = False,
    ) -> RuntimeTestRunResult:
        """Run the program on ``data_in``/``ctx_in`` ``repeat`` times, as BPF_PROG_TEST_RUN does.

        ``engine`` overrides the program's (see :meth:`resolve_engine`); the result's ``engine``
        says which one ran. The interpreter counts instructions (the last run's); under the JIT
        ``instructions`` is 0 unless ``count_instructions=True``, which runs native code
        compiled to count them (once per program, :meth:`counting_jit`; a little slower) and
        gives the interpreter's count. Under the JIT ``instruction_limit`` bounds loop
        iterations (every loop header spends one unit), so a run the interpreter finishes within
        a limit also finishes under the JIT, but a limit that stops the interpreter may not stop
        native code.
        """
        chosen = self.resolve_engine(engine)  # compiled before the clock starts: duration_ns is run time only
        native = chosen == "jit"
        jit = (self.counting_jit() if count_instructions else self.jit) if native else None
        if jit is not None:
            jit.sessions.ready()  # the first session's stacks are mapped before the clock starts too
        run_once = partial(self._run_native, jit=jit) if native else self._run_interp
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
                result, elapsed = (jit or self.jit).run_repeated(
                    repeat=runs, user=state, map_inputs=False, **self._native_inputs(prepared, instruction_limit)
                )
                r0, executed, runs_left = result.r0, result.instructions, 0
            else:
                runs_left = runs
            for _ in range(runs_left):
                state.redirect = None  # each run of a repeat starts without a target, as in the kernel
                started = time.perf_counter_ns()
                r0, executed = run_once(prepared, state, instruction_limit)
                elapsed += time.perf_counter_ns() - started
            data_out, ctx_out = prepared.finish()
            return RuntimeTestRunResult(
                prepared.retval(r0),
                data_out,
                ctx_out,
                elapsed / runs,
                r0,
                executed,
                redirect=state.redirect,
                engine=chosen,
            )
        finally:
            prepared.close()

    def _run_once(self, prepared: PreparedRun, state: RunState, instruction_limit: int | None) -> tuple[int, int]:
        """One run on ``prepared`` with the program's engine: (r0, instructions executed, 0 under the JIT)."""
        if self.resolve_engine() == "jit":
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

    def _run_native(
        self, prepared: PreparedRun, state: RunState, instruction_limit: int | None, *, jit: JitProgram | None = None
    ) -> tuple[int, int]:
        program = self.jit if jit is None else jit
        result = program.run(user=state, map_inputs=False, **self._native_inputs(prepared, instruction_limit))
        return result.r0, result.instructions

    @cached_property
    def adjusts_xdp_frame(self) -> bool:
        """Whether the program calls bpf_xdp_adjust_head/tail/meta (native code then needs the frame)."""
        return any(
            isinstance(item.insn, Call) and item.insn.helper in XDP_ADJUST_HELPERS for item in self.interpreter.insns
        )

    def _native_inputs(self, prepared: PreparedRun, instruction_limit: int | None) -> dict[str, Any]:
        # r1 only, as in _run_interp: the runtime's runs leave r2 zero.
        inputs: dict[str, Any] = {
            "packet": prepared.packet_region(),
            "registers": {1: prepared.context.address},
            "instruction_limit": instruction_limit,
        }
        if self.adjusts_xdp_frame and isinstance(prepared, XdpRun):
            inputs["frame"] = prepared.native_frame()  # native bpf_xdp_adjust_* move the frame's pointers
        return inputs

    def run_batch(
        self,
        packets: Sequence[bytes],
        *,
        engine: Engine | None = None,
        cpu: int | None = None,
        data_out: bool = False,
    ) -> PacketBatchResult:
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


def default_engine(verified: bool, bounds_checks: bool, checks_reason: str | None = None) -> tuple[Engine, str]:
    """The engine rule: (engine, why) for a program the caller named no engine for.

    A program the verifier accepted runs under the JIT; an unverified one under the
    interpreter, so unverified code never runs as native code by default (asked for
    explicitly, it runs with bounds checks). ``checks_reason`` says why a verified program's
    native code keeps its bounds checks, when it does.
    """
    if not verified:
        return "interp", "interp: the program was not verified (verify=False)"
    if not bounds_checks:
        return "jit", "jit: the verifier accepted the program (native code without bounds checks)"
    why = checks_reason or "asked for"
    return "jit", f"jit: the verifier accepted the program (native code keeps bounds checks: {why})"


def check_engine(engine: str) -> Engine:
    """``engine`` if it names an engine, else TestRunError listing them."""
    for known in ENGINES:
        if engine == known:
            return known
    raise TestRunError(f"unknown engine {engine!r} (engines: {', '.join(ENGINES)})")
