"""The hooks as the runtime's attach provider: what ``prog.attach_probe(func)`` and its kin call.

:mod:`pybpf.runtime.attach` declares the :class:`~pybpf.runtime.attach.AttachProvider` protocol
(the runtime cannot import the hooks, which sit above it). A :class:`HooksAttachProvider`
attaches in one :class:`~pybpf.hooks.link.HookRuntime` (the process's by default), and
:func:`install` puts a provider into every program of a loaded object; :func:`pybpf.load` installs
:data:`HOOKS_PROVIDER`. The provider belongs to the programs it is installed in: there is no
process-wide registry. Each method imports its hook module on first use, so installing costs
nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from pybpf.runtime.object import Object

if TYPE_CHECKING:
    from pybpf.hooks.link import HookRuntime
    from pybpf.hooks.lsm import AuditLink
    from pybpf.hooks.packets.live import PacketLink
    from pybpf.hooks.probes import ProbeLink
    from pybpf.hooks.tracepoints import TracepointLink
    from pybpf.runtime.attach import AttachProvider
    from pybpf.runtime.program import Program


class HooksAttachProvider:
    """Forwards ``Program.attach_*`` to :mod:`pybpf.hooks`, attaching in ``runtime``.

    ``runtime`` None means the process's :func:`~pybpf.hooks.link.hook_runtime`, looked up at
    each attachment (the provider itself holds no state).
    """

    def __init__(self, runtime: HookRuntime | None = None) -> None:
        self.runtime = runtime

    def __repr__(self) -> str:
        where = "the process's hook runtime" if self.runtime is None else repr(self.runtime)
        return f"HooksAttachProvider({where})"

    def attach_probe(self, program: Program, function: Callable[..., Any], *, cookie: int, install: bool) -> ProbeLink:
        from pybpf.hooks.probes import attach_probe

        return attach_probe(program, function, cookie=cookie, install=install, runtime=self.runtime)

    def attach_tracepoint(self, program: Program, category: str | None, name: str | None) -> TracepointLink:
        from pybpf.hooks.tracepoints import attach_tracepoint

        return attach_tracepoint(program, category, name, runtime=self.runtime)

    def attach_audit(self, program: Program, event: str) -> AuditLink:
        from pybpf.hooks.lsm import attach_audit

        return attach_audit(program, event, runtime=self.runtime)

    def attach_xdp(self, program: Program, ifname: str) -> PacketLink:
        from pybpf.hooks.packets.live import attach_xdp

        return attach_xdp(program, ifname, runtime=self.runtime)

    def attach_tc(self, program: Program, ifname: str) -> PacketLink:
        from pybpf.hooks.packets.live import attach_tc

        return attach_tc(program, ifname, runtime=self.runtime)


HOOKS_PROVIDER = HooksAttachProvider()
"""The provider :func:`pybpf.load` installs: attaches in the process's hook runtime (stateless)."""


def install(target: Object | Iterable[Program], provider: AttachProvider = HOOKS_PROVIDER) -> None:
    """Serve the ``attach_*`` methods of ``target``'s programs (an object, or programs) with ``provider``."""
    programs = target.programs.values() if isinstance(target, Object) else target
    for program in programs:
        program.use_attach_provider(provider)


__all__ = ["HOOKS_PROVIDER", "HooksAttachProvider", "install"]
