"""The hooks as the runtime's attach provider: what ``prog.attach_probe(func)`` and its kin call.

:mod:`pybpf.runtime.attach` declares the :class:`~pybpf.runtime.attach.AttachProvider` protocol
(the runtime cannot import the hooks, which sit above it); ``import pybpf.hooks`` registers
:data:`HOOKS_PROVIDER` there. Each method imports its hook module on first use, so registering
costs nothing, and attaches in the process's :class:`~pybpf.hooks.link.HookRuntime`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pybpf.hooks.lsm import AuditLink
    from pybpf.hooks.packets.live import PacketLink
    from pybpf.hooks.probes import ProbeLink
    from pybpf.hooks.tracepoints import TracepointLink
    from pybpf.runtime.program import Program


class HooksAttachProvider:
    """Forwards ``Program.attach_*`` to :mod:`pybpf.hooks` (probes, tracepoints, audit, packets)."""

    def __repr__(self) -> str:
        return "HooksAttachProvider(pybpf.hooks)"

    def attach_probe(self, program: Program, function: Callable[..., Any], *, cookie: int, install: bool) -> ProbeLink:
        from pybpf.hooks.probes import attach_probe

        return attach_probe(program, function, cookie=cookie, install=install)

    def attach_tracepoint(self, program: Program, category: str | None, name: str | None) -> TracepointLink:
        from pybpf.hooks.tracepoints import attach_tracepoint

        return attach_tracepoint(program, category, name)

    def attach_audit(self, program: Program, event: str) -> AuditLink:
        from pybpf.hooks.lsm import attach_audit

        return attach_audit(program, event)

    def attach_xdp(self, program: Program, ifname: str) -> PacketLink:
        from pybpf.hooks.packets.live import attach_xdp

        return attach_xdp(program, ifname)

    def attach_tc(self, program: Program, ifname: str) -> PacketLink:
        from pybpf.hooks.packets.live import attach_tc

        return attach_tc(program, ifname)


HOOKS_PROVIDER = HooksAttachProvider()
"""The provider ``import pybpf.hooks`` registers (one per process, stateless)."""

__all__ = ["HOOKS_PROVIDER", "HooksAttachProvider"]
