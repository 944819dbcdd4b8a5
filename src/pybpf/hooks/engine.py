"""Running a hooked program once with its engine (the interpreter or the JIT), from any thread.

:func:`run_program` is the one entry hooks use: it runs ``program`` on a context region that is
already mapped, with the engine ``program.engine`` names (``"jit"`` once the runtime makes native
code the default for verified programs, ``"interp"`` otherwise), and returns r0.

Two things make a run safe to overlap with runs in other threads:

- **Native instances per concurrent run** (:class:`EnginePool`). A :class:`~pybpf.vm.jit.JitProgram`
  keeps one set of stacks and picks between it and fresh ones with a check that is not atomic
  across threads, so two threads must not run the same instance at once. The pool hands each
  run an instance of its own: ``program.jit`` first, then copies made with
  :meth:`JitProgram.of <pybpf.vm.jit.JitProgram.of>` (the compile cache gives them the same
  native code, so a copy costs its preparation, not a compilation). The interpreter keeps all
  per-run state in the run (its :class:`~pybpf.vm.execution.ExecutionContext`) and needs none.
- **The current task per run** (:class:`TaskServices`). get_current_pid_tgid and friends read
  ``services.task``; instead of swapping that attribute on the object's shared services (which
  another thread's run would see), a run gets a view of the services whose ``task`` is its own
  thread's.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, cast

from pybpf.runtime.helpers.services import RunState, RuntimeServices, TaskInfo

if TYPE_CHECKING:
    from pybpf.runtime.program import Program
    from pybpf.vm.jit import JitProgram
    from pybpf.vm.memory import Region


class TaskServices:
    """``services`` as one run sees them: everything shared, except ``task`` (the firing thread)."""

    __slots__ = ("_services", "task")

    def __init__(self, services: RuntimeServices, task: TaskInfo) -> None:
        self._services = services
        self.task = task

    # What helpers read on every run, as properties: a failed slot lookup falling back to
    # __getattr__ costs several times more. They read through, so a later change to the object's
    # services (a test setting its clock or cpu) is seen by the next run.
    @property
    def memory(self) -> Any:
        return self._services.memory

    @property
    def maps(self) -> Any:
        return self._services.maps

    @property
    def clock(self) -> Any:
        return self._services.clock

    @property
    def cpu(self) -> int:
        return self._services.cpu

    @property
    def cpus(self) -> int:
        return self._services.cpus

    @property
    def locks(self) -> Any:
        return self._services.locks

    def __getattr__(self, name: str) -> Any:
        # Everything else (task_struct, trace_pipe, prandom_u32...) is the object's own too.
        return getattr(self._services, name)


def run_services(services: RuntimeServices, task: TaskInfo | None) -> RuntimeServices:
    """What a run's :class:`RunState` holds: ``services``, seen with ``task`` as the current task."""
    if task is None:
        return services
    # A view, not a copy: later changes to the object's services (its clock...) stay visible.
    return cast("RuntimeServices", TaskServices(services, task))


class EnginePool:
    """Native instances of one program, one per run in progress (see the module docstring).

    ``compile_lock`` is held while an instance is made (shared by every pool of a hook runtime).
    """

    def __init__(self, compile_lock: threading.Lock | None = None) -> None:
        self.compile_lock = compile_lock if compile_lock is not None else threading.Lock()
        self._lock = threading.Lock()
        self._free: list[JitProgram] = []
        self._seeded = False

    def acquire(self, program: Program) -> JitProgram:
        """An instance no other run is using: ``program.jit`` the first time, else a free or new copy."""
        with self._lock:
            if self._free:
                return self._free.pop()
            seeded, self._seeded = self._seeded, True
        from pybpf.vm.jit import JitProgram

        with self.compile_lock:
            seed = program.jit
            if not seeded:
                return seed
            # The same options as the program's own instance (bounds checks or not); the compile
            # cache gives it the same native code.
            return JitProgram.of(program.interpreter, bounds_checks=seed.bounds_checks)

    def prepare(self, program: Program) -> None:
        """Settle ``program``'s engine now (compiling its native code), not in a racing first run."""
        with self.compile_lock:
            if program.resolve_engine() == "jit":
                _ = program.jit

    def release(self, native: JitProgram) -> None:
        with self._lock:
            self._free.append(native)

    def __len__(self) -> int:
        """Instances made so far that are free now."""
        with self._lock:
            return len(self._free)


def run_program(program: Program, context: Region, state: RunState, pool: EnginePool) -> int:
    """Run ``program`` once with its engine on ``context`` (mapped), ``state`` as ``env.user``; r0.

    The engine is ``program.engine``, settled when the hook attached (:meth:`EnginePool.prepare`:
    ``Program.resolve_engine`` compiles, or falls back to the interpreter when the JIT cannot
    compile a program it was not asked for).
    """
    if program.engine == "jit":
        native = pool.acquire(program)
        try:
            return native.run(context, user=state).r0
        finally:
            pool.release(native)
    return program.interpreter.run(context, user=state).r0


__all__ = ["EnginePool", "TaskServices", "run_program", "run_services"]
