"""Links: what every attachment returns, mirroring the kernel's ``struct bpf_link``.

A :class:`Link` ties one loaded :class:`~pybpf.runtime.program.Program` to one hook (a Python
function, a tracepoint, an audit event, a network interface...). It has an ``id`` unique in the
process, a :class:`LinkKind`, the program, and a ``target`` naming the hook; ``detach()`` (also
called on leaving a ``with`` block) unhooks the program, after which the hook no longer runs it.

The links of a process live in a :class:`LinkRegistry` held by a :class:`HookRuntime`. The hooks
that exist only once per process (the ``sys.addaudithook`` dispatcher, the tracepoint table)
live there too, with one :class:`~pybpf.hooks.run_gate.RunGate` per loaded object: it decides
which runs fired by different threads may overlap (see :mod:`pybpf.hooks.run_gate`) and
:meth:`HookRuntime.hooked` gives a link everything it needs to run its program. While a hook
runs a program, the "current task" is the thread that fired it (:meth:`HookRuntime.current_task`),
so get_current_pid_tgid and get_current_comm report that thread, as in the kernel.

Subclasses (probes, tracepoints, audit hooks, packet attachments) implement :meth:`Link._unhook`;
``detach`` does the bookkeeping.
"""

from __future__ import annotations

import functools
import itertools
import os
import threading
import weakref
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from pybpf.errors import PybpfError
from pybpf.hooks.invoke import HookedProgram
from pybpf.hooks.run_gate import RunGate, parallel_safe
from pybpf.runtime.helpers.services import TASK_COMM_LEN, TaskInfo

if TYPE_CHECKING:
    from pybpf.runtime.program import Program


class LinkError(PybpfError):
    """An attachment that cannot be made or undone (wrong program type, unknown hook...)."""


class LinkKind(StrEnum):
    """What a link attaches to; the kernel's link types, with the user-space hooks pybpf adds."""

    KPROBE = "kprobe"
    KRETPROBE = "kretprobe"
    UPROBE = "uprobe"
    URETPROBE = "uretprobe"
    FENTRY = "fentry"
    FEXIT = "fexit"
    TRACEPOINT = "tracepoint"
    RAW_TRACEPOINT = "raw_tracepoint"
    LSM = "lsm"  # an audit event (sys.addaudithook) standing in for an LSM hook
    XDP = "xdp"
    TC = "tc"
    SOCKET_FILTER = "socket_filter"
    CGROUP_SKB = "cgroup_skb"
    PCAP = "pcap"  # a capture file replayed through a packet program


@dataclass(frozen=True, slots=True)
class LinkInfo:
    """What ``bpftool link show`` prints about one link (BPF_OBJ_GET_INFO_BY_FD on a link)."""

    id: int
    kind: LinkKind
    program: str  # the program's name
    program_id: int
    target: str  # the hook: "module.func", "app/request", "open", "veth0"...
    attached: bool
    pid: int  # the process that holds the link

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": str(self.kind),
            "program": self.program,
            "program_id": self.program_id,
            "target": self.target,
            "attached": self.attached,
            "pid": self.pid,
        }


class LinkRegistry:
    """The links of one process, by id (ids start at 1 and are never reused)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._links: dict[int, Link] = {}

    def add(self, link: Link) -> int:
        with self._lock:
            link_id = next(self._ids)
            self._links[link_id] = link
        return link_id

    def remove(self, link: Link) -> None:
        with self._lock:
            self._links.pop(link.id, None)

    def get(self, link_id: int) -> Link | None:
        with self._lock:
            return self._links.get(link_id)

    def list(self) -> list[Link]:
        """The attached links, by id."""
        with self._lock:
            return [self._links[key] for key in sorted(self._links)]

    def __len__(self) -> int:
        with self._lock:
            return len(self._links)


class HookRuntime:
    """Per-process hook state: the link registry, the run gates, and the process-wide hooks.

    There is one per process (:func:`hook_runtime`), because the hooks it fronts are per process
    themselves (``sys.addaudithook`` cannot be undone); tests may make their own.
    """

    def __init__(self) -> None:
        self.links = LinkRegistry()
        self._guard = threading.Lock()
        # One gate per loaded object (keyed by its RuntimeServices).
        self._gates: weakref.WeakKeyDictionary[object, RunGate] = weakref.WeakKeyDictionary()
        # Extensions (the audit dispatcher, the tracepoint table) are created on first use.
        self._extensions: dict[str, object] = {}
        self._tasks: dict[int, TaskInfo] = {}

    def gate(self, program: Program) -> RunGate:
        """The gate of ``program``'s object: every hook run on that address space passes it."""
        services = program.services
        with self._guard:
            gate = self._gates.get(services)
            if gate is None:
                gate = RunGate(services.cpus)
                self._gates[services] = gate
            return gate

    def run_lock(self, program: Program) -> RunGate:
        """What ``with`` takes for a run that must be alone on ``program``'s object (packet hooks).

        Re-entrant in one thread: a probed function called from inside a hook still runs.
        """
        return self.gate(program)

    def hooked(self, program: Program) -> HookedProgram:
        """``program`` ready to run from hooks: its gate and its admission mode."""
        gate = self.gate(program)
        program.resolve_engine()  # compiled at attach time, not by a first run (vm.jit serialises compiles)
        # Native code checks accesses against the regions mapped when its run started; a region
        # another thread unmaps meanwhile would stay in that table. Only a program the verifier
        # proved never strays there may overlap other runs under the JIT (the interpreter looks
        # every access up in the live address space).
        parallel = parallel_safe(program) and (program.verified or program.engine == "interp")
        return HookedProgram(program, gate, parallel)

    def current_task(self) -> TaskInfo:
        """What get_current_pid_tgid/comm/uid_gid report for the calling thread (cached per thread id)."""
        tid = threading.get_native_id()
        with self._guard:
            task = self._tasks.get(tid)
        if task is None:
            task = TaskInfo.current()
            try:
                comm = Path(f"/proc/self/task/{tid}/comm").read_bytes().rstrip(b"\n")
            except OSError:
                comm = task.comm
            task = replace(task, pid=tid, comm=comm[: TASK_COMM_LEN - 1])
            with self._guard:
                self._tasks[tid] = task
        return task

    def extension(self, name: str, factory: Any) -> Any:
        """The per-process object ``name``, made by ``factory()`` the first time it is asked for."""
        with self._guard:
            found = self._extensions.get(name)
            if found is None:
                found = factory()
                self._extensions[name] = found
            return found


@functools.cache
def hook_runtime() -> HookRuntime:
    """This process's :class:`HookRuntime` (created on first use)."""
    return HookRuntime()


class Link:
    """One program attached to one hook; ``detach()`` or a ``with`` block ends the attachment."""

    def __init__(self, kind: LinkKind, program: Program, target: str, *, runtime: HookRuntime | None = None) -> None:
        self.kind = kind
        self.program = program
        self.target = target
        self.runtime = runtime if runtime is not None else hook_runtime()
        self.attached = True
        self.pid = os.getpid()
        self.id = self.runtime.links.add(self)
        self._detach_lock = threading.Lock()
        # Counters (fires, errors...) are bumped by every thread that fires the hook: exact, as
        # the kernel's per-program stats are, needs the read-add-write under a lock.
        self._stats_lock = threading.Lock()

    def __repr__(self) -> str:
        state = "attached" if self.attached else "detached"
        return f"{type(self).__name__}(id={self.id}, {self.kind}, {self.program.name!r} -> {self.target!r}, {state})"

    def _unhook(self) -> None:
        """Undo the attachment at the hook itself (subclasses); called once, by :meth:`detach`."""

    def detach(self) -> None:
        """Unhook the program; the link leaves the registry. Detaching twice does nothing."""
        with self._detach_lock:
            if not self.attached:
                return
            self.attached = False
        try:
            self._unhook()
        finally:
            self.runtime.links.remove(self)

    def info(self) -> LinkInfo:
        return LinkInfo(
            id=self.id,
            kind=self.kind,
            program=self.program.name,
            program_id=self.program.id,
            target=self.target,
            attached=self.attached,
            pid=self.pid,
        )

    def pin(self, path: str | os.PathLike[str], root: str | os.PathLike[str] | None = None) -> Path:
        """Pin this link's description under the pin root (``pybpf link list`` reads it)."""
        from pybpf.hooks.pinning import pin_link

        return pin_link(self, path, root)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.detach()


__all__ = ["HookRuntime", "Link", "LinkError", "LinkInfo", "LinkKind", "LinkRegistry", "hook_runtime"]
