"""Attachment methods on programs (``prog.attach_probe(func)``...), provided by a layer above.

The hooks that make a program run on real events live in :mod:`pybpf.hooks`, which sits above
the runtime in the import layers: the runtime must not import it. So :class:`AttachMethods` (a
base of :class:`~pybpf.runtime.program.Program`) forwards each ``attach_*`` call to the
:class:`AttachProvider` installed in that program (:meth:`AttachMethods.use_attach_provider`).
The hooks package installs its provider into every program of an object
(``pybpf.hooks.install(obj)``; :func:`pybpf.load` does it). The runtime only knows the
:class:`Attachment` protocol of what comes back; the concrete classes (``ProbeLink``,
``TracepointLink``, ``AuditLink``, ``PacketLink``) are in :mod:`pybpf.hooks`.

There is no process-wide provider: each program holds its own, so two objects in one process
may attach through different providers (a test's recorder, an embedder's hooks, another hook
runtime), and a program nobody installed hooks into says so instead of reaching for a global.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, Self, cast, runtime_checkable

from pybpf.errors import NotSupportedError

if TYPE_CHECKING:
    from pybpf.runtime.program import Program


@runtime_checkable
class Attachment(Protocol):
    """What an ``attach_*`` method returns: a link (:class:`pybpf.hooks.link.Link`)."""

    @property
    def id(self) -> int:
        """Unique in the process (``pybpf link list`` shows it)."""
        ...

    @property
    def kind(self) -> str:
        """The hook kind (a :class:`pybpf.hooks.link.LinkKind`: ``uprobe``, ``tracepoint``, ``lsm``...)."""
        ...

    @property
    def target(self) -> str:
        """What the program is attached to (``module.func``, ``app/request``, ``open``, ``eth0``)."""
        ...

    @property
    def attached(self) -> bool:
        """False once detached."""
        ...

    def detach(self) -> None: ...

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc: object) -> None: ...


class AttachProvider(Protocol):
    """The hooks a program can be attached to; :mod:`pybpf.hooks` implements it."""

    def attach_probe(self, program: Program, function: Callable[..., Any], *, cookie: int, install: bool) -> Attachment:
        """A kprobe/uprobe/fentry-style program on a Python function (see pybpf.hooks.probes)."""
        ...

    def attach_tracepoint(self, program: Program, category: str | None, name: str | None) -> Attachment:
        """A tracepoint/raw_tracepoint program on a declared Tracepoint (pybpf.hooks.tracepoints)."""
        ...

    def attach_audit(self, program: Program, event: str) -> Attachment:
        """An lsm/raw_tp/tracing program on a Python audit event (pybpf.hooks.lsm)."""
        ...

    def attach_xdp(self, program: Program, ifname: str) -> Attachment:
        """An XDP program on a live interface, through AF_PACKET (pybpf.hooks.packets)."""
        ...

    def attach_tc(self, program: Program, ifname: str) -> Attachment:
        """A tc (sched_cls/sched_act) program on a live interface, ingress (pybpf.hooks.packets)."""
        ...


class AttachMethods:
    """``attach_*`` methods of :class:`~pybpf.runtime.program.Program`, forwarded to the provider.

    Each returns a link: a context manager whose ``detach()`` ends the attachment.
    """

    # The class attribute is only the "none installed" default; installing sets the instance's.
    _attach_provider: AttachProvider | None = None

    def use_attach_provider(self, provider: AttachProvider) -> None:
        """Serve this program's ``attach_*`` methods with ``provider`` (``pybpf.hooks.install`` calls it)."""
        self._attach_provider = provider

    @property
    def attach_provider(self) -> AttachProvider:
        """The provider installed in this program; NotSupportedError when there is none."""
        provider = self._attach_provider
        if provider is None:
            raise NotSupportedError(
                "no hooks are installed in this program to attach to: import pybpf.hooks and call"
                " pybpf.hooks.install(obj) (pybpf.load does both)"
            )
        return provider

    def _as_program(self) -> Program:
        # Only Program derives from this class; the cast keeps the provider's signature precise.
        return cast("Program", self)

    def attach_probe(self, function: Callable[..., Any], *, cookie: int = 0, install: bool = True) -> Attachment:
        """Run this kprobe/kretprobe/uprobe/uretprobe/fentry/fexit program on calls of ``function``.

        With ``install`` the function is replaced by its probed wrapper where it is defined, until
        the link is detached (see :func:`pybpf.hooks.probes.attach_probe`).
        """
        return self.attach_provider.attach_probe(self._as_program(), function, cookie=cookie, install=install)

    def attach_tracepoint(self, category: str | None = None, name: str | None = None) -> Attachment:
        """Run this tracepoint/raw_tracepoint program on a declared ``category/name`` tracepoint.

        Without arguments the target is the program's section (``tracepoint/app/request``).
        """
        return self.attach_provider.attach_tracepoint(self._as_program(), category, name)

    def attach_audit(self, event: str) -> Attachment:
        """Run this program on the Python audit event ``event``; a negative return denies it."""
        return self.attach_provider.attach_audit(self._as_program(), event)

    def attach_xdp(self, ifname: str) -> Attachment:
        """Run this XDP program on every frame the interface ``ifname`` receives (user space)."""
        return self.attach_provider.attach_xdp(self._as_program(), ifname)

    def attach_tc(self, ifname: str) -> Attachment:
        """Run this tc program on every frame the interface ``ifname`` receives (user space)."""
        return self.attach_provider.attach_tc(self._as_program(), ifname)


__all__ = ["AttachMethods", "AttachProvider", "Attachment"]
