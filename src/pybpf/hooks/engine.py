"""Running a hooked program once with its engine (the interpreter or the JIT), from any thread.

:func:`run_program` is the one entry hooks use: it runs ``program`` on a context region that is
already mapped, with the engine ``program.engine`` names (the JIT for a verified program, else the
interpreter), and returns r0.

A run may overlap runs in other threads: each native run takes a session of its own (state block
and stacks) from its :class:`~pybpf.vm.jit.JitProgram`, and the interpreter keeps all per-run state
in the run. What hooks add is the current task per run (:class:`TaskServices`):
get_current_pid_tgid and friends read ``services.task``; instead of swapping that attribute on the
object's shared services (which another thread's run would see), a run gets a view of the services
whose ``task`` is its own thread's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from pybpf.runtime.helpers.services import RunState, RuntimeServices, TaskInfo

if TYPE_CHECKING:
    from pybpf.runtime.program import Program
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


def run_program(program: Program, context: Region, state: RunState) -> int:
    """Run ``program`` once with its engine on ``context`` (mapped), ``state`` as ``env.user``; r0.

    The engine is ``program.engine``, settled when the hook attached (``Program.resolve_engine``
    compiles, or falls back to the interpreter when the JIT cannot compile a program it was not
    asked for), so no first run compiles.
    """
    if program.engine == "jit":
        return program.jit.run(context, user=state).r0
    return program.interpreter.run(context, user=state).r0


__all__ = ["TaskServices", "run_program", "run_services"]
