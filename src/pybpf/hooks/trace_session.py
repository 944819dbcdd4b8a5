"""A tracing session: programs attached to one hook while a Python script runs (``pybpf trace``).

:class:`TraceSession` attaches every named program of a loaded object to one
:class:`TraceTarget`: a Python function (``module:qualname``), a tracepoint (``category/name``)
or an audit event. Targets the script has not created yet are attached as soon as it does:

* a function of ``__main__`` (the script itself) is probed right after the top-level statement
  that defines it (see :mod:`pybpf.hooks.script`), so the script's later statements call the
  probed function; a function of another module is imported and probed before the script starts
  (the script's directory is on ``sys.path`` first, as for ``python SCRIPT.py``);
* a tracepoint the script declares (``pybpf.Tracepoint(...)``) is attached inside its
  declaration, through :meth:`~pybpf.hooks.tracepoints.TracepointTable.watch`.

Afterwards :meth:`TraceSession.report` gives each link's counters, what the programs printed
(trace_pipe) and what they wrote to ring buffers; :meth:`TraceSession.close` detaches everything.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from types import ModuleType
from typing import Any

from pybpf.errors import PybpfError
from pybpf.hooks.link import HookRuntime, Link, LinkError, hook_runtime
from pybpf.hooks.lsm import attach_audit
from pybpf.hooks.probes import attach_probe, probe_kind
from pybpf.hooks.script import ScriptOutcome, run_script
from pybpf.hooks.tracepoints import Tracepoint, TracepointLink, tracepoint_kind, tracepoint_table
from pybpf.runtime.maps.ringbuf import RingBufMap
from pybpf.runtime.object import Object
from pybpf.runtime.program import Program

SCRIPT_MODULE = "__main__"


class TraceHook(StrEnum):
    """What a session attaches to."""

    FUNC = "func"
    TRACEPOINT = "tracepoint"
    AUDIT = "audit"


@dataclass(frozen=True, slots=True)
class TraceTarget:
    """One hook: ``func`` ``module:qualname``, ``tracepoint`` ``category/name``, or ``audit`` ``event``."""

    hook: TraceHook
    name: str

    def split_function(self) -> tuple[str, str]:
        """``(module, qualname)`` of a ``func`` target."""
        module, sep, qualname = self.name.partition(":")
        if not sep or not module or not qualname:
            raise LinkError(f"--func wants module:qualname (__main__:name for the script's own), got {self.name!r}")
        return module, qualname


@dataclass(frozen=True, slots=True)
class LinkReport:
    """One link's counters at the end of the session."""

    id: int
    program: str
    kind: str
    target: str
    runs: int
    errors: int
    denials: int | None = None
    last_error: str | None = None

    def to_json(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "id": self.id,
            "program": self.program,
            "kind": self.kind,
            "target": self.target,
            "runs": self.runs,
            "errors": self.errors,
        }
        if self.denials is not None:
            record["denials"] = self.denials
        if self.last_error is not None:
            record["last_error"] = self.last_error
        return record


@dataclass(frozen=True, slots=True)
class SessionReport:
    """What a session saw: links, unattached programs (target never appeared), output."""

    links: list[LinkReport]
    unattached: list[str]
    trace: list[str]
    ring_buffers: dict[str, list[bytes]] = field(default_factory=dict)


def _resolve(owner: object, qualname: str) -> Callable[..., Any] | None:
    for part in qualname.split("."):
        owner = getattr(owner, part, None)
        if owner is None:
            return None
    return owner if callable(owner) else None


def _link_report(link: Link) -> LinkReport:
    # Audit links count checks, probes and tracepoints fires.
    checks = getattr(link, "checks", None)
    runs = checks if isinstance(checks, int) else int(getattr(link, "fires", 0))
    last_error = getattr(link, "last_error", None)
    return LinkReport(
        id=link.id,
        program=link.program.name,
        kind=str(link.kind),
        target=link.target,
        runs=runs,
        errors=int(getattr(link, "errors", 0)),
        denials=getattr(link, "denials", None),
        last_error=str(last_error) if last_error is not None else None,
    )


class TraceSession:
    """Programs of ``obj`` attached to ``target`` for the duration of a script (a context manager)."""

    def __init__(
        self, obj: Object, programs: Sequence[str], target: TraceTarget, *, runtime: HookRuntime | None = None
    ) -> None:
        if not programs:
            raise LinkError("name at least one program to attach")
        self.obj = obj
        self.programs: list[Program] = [obj.program(name) for name in programs]
        self.target = target
        self.runtime = runtime if runtime is not None else hook_runtime()
        self.links: list[Link] = []
        self.attach_errors: list[str] = []
        self._pending: list[Program] = []
        self._cancel: Callable[[], None] | None = None
        self._check()

    def _check(self) -> None:
        """Refuse programs of the wrong type before anything runs (the script would not notice)."""
        for program in self.programs:
            if self.target.hook is TraceHook.FUNC:
                probe_kind(program)
            elif self.target.hook is TraceHook.TRACEPOINT:
                tracepoint_kind(program)
        if self.target.hook is TraceHook.FUNC:
            self.target.split_function()

    # -- attaching ----------------------------------------------------------------------------

    def start(self, script_dir: str | Path | None = None) -> None:
        """Attach what exists now; arrange for the rest to attach when the script creates it."""
        hook, name = self.target.hook, self.target.name
        if hook is TraceHook.AUDIT:
            self.links.extend(attach_audit(program, name, runtime=self.runtime) for program in self.programs)
        elif hook is TraceHook.TRACEPOINT:
            table = tracepoint_table(self.runtime)
            self._pending = list(self.programs)
            if table.declared(name):
                self._on_tracepoint(table.find(name))
            else:
                self._cancel = table.watch(name, self._on_tracepoint)
        else:
            module_name, qualname = self.target.split_function()
            self._pending = list(self.programs)
            if module_name != SCRIPT_MODULE:
                self._import_and_probe(module_name, qualname, script_dir)

    def _import_and_probe(self, module_name: str, qualname: str, script_dir: str | Path | None) -> None:
        saved = list(sys.path)
        if script_dir is not None:
            sys.path.insert(0, str(Path(script_dir).resolve()))
        try:
            module = importlib.import_module(module_name)
        except ImportError as error:
            raise LinkError(f"--func {self.target.name}: cannot import {module_name}: {error}") from error
        finally:
            sys.path[:] = saved
        if not self._probe_in(module, qualname):
            raise LinkError(f"--func {self.target.name}: {module_name} has no function {qualname}")

    def _probe_in(self, module: ModuleType, qualname: str) -> bool:
        """Probe ``qualname`` of ``module`` with every pending program; False if it is not there yet."""
        while self._pending:
            function = _resolve(module, qualname)
            if function is None:
                return False
            program = self._pending.pop(0)
            # Resolved again for each program: the previous one replaced it by its wrapper.
            self.links.append(attach_probe(program, function, runtime=self.runtime))
        return True

    def _on_tracepoint(self, tracepoint: Tracepoint) -> None:
        # Runs inside the script's Tracepoint(...) call: errors are recorded, never raised there.
        while self._pending:
            program = self._pending.pop(0)
            try:
                self.links.append(TracepointLink(program, tracepoint, tracepoint_kind(program), runtime=self.runtime))
            except PybpfError as error:
                self.attach_errors.append(f"{program.name}: {error}")
        if self._cancel is not None:
            self._cancel()
            self._cancel = None

    def _after_statement(self, module: ModuleType) -> None:
        if self._pending and self.target.hook is TraceHook.FUNC:
            _, qualname = self.target.split_function()
            try:
                self._probe_in(module, qualname)
            except PybpfError as error:
                self.attach_errors.append(str(error))
                self._pending.clear()

    # -- running ------------------------------------------------------------------------------

    def run(self, script: str | Path, args: Sequence[str] = ()) -> ScriptOutcome:
        """Attach (see :meth:`start`), run ``script`` as ``__main__`` with ``args``; links stay attached."""
        self.start(Path(script).parent)
        return run_script(script, args, self._after_statement)

    def report(self) -> SessionReport:
        """Link counters, programs never attached, and the drained trace_pipe and ring buffers."""
        rings: dict[str, list[bytes]] = {}
        for name, found in sorted(self.obj.maps.items()):
            if isinstance(found, RingBufMap):
                records: list[bytes] = []

                def take(data: bytes, records: list[bytes] = records) -> int:
                    records.append(data)
                    return 0

                found.consume(take)
                rings[name] = records
        target = f"{self.target.hook} {self.target.name}"
        unattached = [f"{program.name}: {target} never appeared" for program in self._pending]
        return SessionReport(
            links=[_link_report(link) for link in self.links],
            unattached=[*self.attach_errors, *unattached],
            trace=[event.format() for event in self.obj.trace_pipe.drain()],
            ring_buffers=rings,
        )

    def close(self) -> None:
        """Detach every link and stop watching for the target."""
        if self._cancel is not None:
            self._cancel()
            self._cancel = None
        for link in self.links:
            link.detach()

    def __enter__(self) -> TraceSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["LinkReport", "SessionReport", "TraceHook", "TraceSession", "TraceTarget"]
