"""LSM-style hooks on Python audit events: programs that may deny an operation.

CPython raises an audit event before sensitive operations (``open``, ``socket.connect``,
``subprocess.Popen``, ``import``, ``os.remove``...; see the "Audit events table" of the Python
docs), and hooks added with :func:`sys.addaudithook` may abort the operation by raising. That
is the user-space analogue of an LSM hook: ``attach_audit(program, "open")`` runs ``program`` on
every ``open`` event, and a negative return value (``-EPERM``, ``-EACCES``...) makes the
operation raise :class:`PermissionError` (errno set to the program's value) in the application.

The program gets the u64 argument array (the context of lsm, raw_tracepoint and fentry
programs): each event argument in order, integers as u64, ``str``/``bytes``/path-like arguments
as pointers to NUL-terminated buffers mapped for the run, ``None`` as NULL, other objects as
their ``id()``. Tuples and lists are flattened into the following arguments (``socket.connect``
gives ``(socket, (host, port))``, so args[1] points to the host and args[2] is the port); at
most 12 arguments are passed.

Audit hooks cannot be removed, so one hook is installed per process (on the
:class:`~pybpf.hooks.link.HookRuntime`, on first attach) and dispatches to the attached links;
detaching a link takes it out of the dispatcher. Events raised while a program runs (the
runtime itself uses ctypes and mmap, which are audited) are not dispatched, so a program never
runs inside itself. A program that fails (a bad memory access...) does not deny: the link counts
the failure (fail-open, as the kernel skips a faulting program).
"""

from __future__ import annotations

import errno as errno_codes
import os
import sys
import threading
from collections.abc import Iterator
from typing import Any

from pybpf.errors import PybpfError
from pybpf.hooks.invoke import CallMemory, ScratchPool, argument_value, pack_u64s, require_user_space, run_hooked
from pybpf.hooks.link import HookRuntime, Link, LinkError, LinkKind, hook_runtime
from pybpf.platform.contexts import MAX_BPF_FUNC_ARGS
from pybpf.platform.uapi_generated import BpfProgType
from pybpf.runtime.program import Program

MAX_ERRNO = 4095
AUDIT_PROG_TYPES = frozenset(
    {BpfProgType.LSM, BpfProgType.RAW_TRACEPOINT, BpfProgType.RAW_TRACEPOINT_WRITABLE, BpfProgType.TRACING}
)


def _flatten(values: tuple[Any, ...] | list[Any]) -> Iterator[Any]:
    for value in values:
        if isinstance(value, tuple | list):
            yield from _flatten(value)
        elif isinstance(value, os.PathLike):
            yield os.fspath(value)
        else:
            yield value


class AuditDispatcher:
    """The process's one audit hook and the links attached to each event name."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_event: dict[str, tuple[AuditLink, ...]] = {}
        self._installed = False
        # Per-thread "a program is running" flag: events the runtime raises meanwhile are skipped.
        self._local = threading.local()

    def add(self, link: AuditLink) -> None:
        with self._lock:
            self._by_event[link.event] = (*self._by_event.get(link.event, ()), link)
            if not self._installed:
                sys.addaudithook(self._hook)
                self._installed = True

    def remove(self, link: AuditLink) -> None:
        with self._lock:
            remaining = tuple(other for other in self._by_event.get(link.event, ()) if other is not link)
            if remaining:
                self._by_event[link.event] = remaining
            else:
                self._by_event.pop(link.event, None)

    def events(self) -> list[str]:
        with self._lock:
            return sorted(self._by_event)

    def _hook(self, event: str, args: tuple[Any, ...]) -> None:
        links = self._by_event.get(event)
        if not links or getattr(self._local, "busy", False):
            return
        self._local.busy = True
        try:
            for link in links:
                denial = link.check(args)
                if denial is not None:
                    raise denial
        finally:
            self._local.busy = False


def audit_dispatcher(runtime: HookRuntime | None = None) -> AuditDispatcher:
    dispatcher: AuditDispatcher = (runtime or hook_runtime()).extension("audit", AuditDispatcher)
    return dispatcher


class AuditLink(Link):
    """A program attached to one audit event name."""

    def __init__(self, program: Program, event: str, *, runtime: HookRuntime) -> None:
        super().__init__(LinkKind.LSM, program, event, runtime=runtime)
        self.event = event
        self.checks = 0
        self.denials = 0
        self.errors = 0
        self.last_error: PybpfError | None = None
        self._hooked = self.runtime.hooked(program)
        self._scratch = ScratchPool(program)  # one context per run in progress, for any thread
        self._dispatcher = audit_dispatcher(self.runtime)
        self._dispatcher.add(self)

    def check(self, args: tuple[Any, ...]) -> PermissionError | None:
        """Run the program on one event; the error to raise when it denies, else None."""
        if not self.attached:
            return None
        with self._stats_lock:
            self.checks += 1
        size = self.program.layout.uapi.size
        flat = list(_flatten(args))[:MAX_BPF_FUNC_ARGS]

        def build(call: CallMemory) -> bytes:
            values = [argument_value(call, value) for value in flat]
            return pack_u64s(values[: size // 8], size)

        try:
            task = self.runtime.current_task()
            result = run_hooked(self._hooked, build, scratch=self._scratch, task=task)
        except PybpfError as error:
            with self._stats_lock:
                self.errors += 1
            self.last_error = error
            return None
        if result.retval >= 0:
            return None
        with self._stats_lock:
            self.denials += 1
        code = -result.retval if -result.retval <= MAX_ERRNO else errno_codes.EPERM
        subject = next((value for value in flat if isinstance(value, str | bytes)), None)
        message = f"{os.strerror(code)} (denied by BPF program {self.program.name!r} on audit event {self.event!r})"
        return PermissionError(code, message, subject) if subject is not None else PermissionError(code, message)

    def _unhook(self) -> None:
        self._dispatcher.remove(self)
        # No run lock: runs still in progress keep their scratch until they give it back.
        self._scratch.close()


def attach_audit(program: Program, event: str, *, runtime: HookRuntime | None = None) -> AuditLink:
    """Run ``program`` on every audit event named ``event``; a negative return denies it.

    ``program`` is an lsm, raw_tracepoint or tracing (fentry-style) program: all take the u64
    argument array. Events are CPython's audit event names (``open``, ``socket.connect``...).
    """
    require_user_space(program)
    if program.prog_type not in AUDIT_PROG_TYPES:
        raise LinkError(
            f"program {program.name!r} is a {program.type_spec.name} program; audit hooks take lsm, "
            "raw_tracepoint and tracing programs (their context is the u64 argument array)"
        )
    if not event or any(character.isspace() for character in event):
        raise LinkError(f"{event!r} is not an audit event name")
    return AuditLink(program, event, runtime=runtime if runtime is not None else hook_runtime())


__all__ = ["AuditDispatcher", "AuditLink", "attach_audit", "audit_dispatcher"]
