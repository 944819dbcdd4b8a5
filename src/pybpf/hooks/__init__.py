"""pybpf.hooks: programs attached to real user-space events through links.

Packets (pcap replay, live AF_PACKET: :mod:`pybpf.hooks.packets`), Python probes
(:mod:`~pybpf.hooks.probes`), tracepoints (:mod:`~pybpf.hooks.tracepoints`), audit events
(:mod:`~pybpf.hooks.lsm`); every attachment is a :class:`~pybpf.hooks.link.Link`, and maps,
programs and links can be pinned (:mod:`~pybpf.hooks.pinning`). A
:class:`~pybpf.hooks.trace_session.TraceSession` attaches programs while a script runs
(``pybpf trace``).

The names below are imported on first use, so ``import pybpf.hooks`` stays cheap.
:func:`install` (:mod:`pybpf.hooks.provider`; :func:`pybpf.load` calls it) makes the hooks serve
a loaded object's ``attach_probe``, ``attach_tracepoint``, ``attach_audit``, ``attach_xdp`` and
``attach_tc`` methods; the provider lives in the object's programs, not in a global.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from pybpf.hooks.provider import HOOKS_PROVIDER, HooksAttachProvider, install

if TYPE_CHECKING:
    from pybpf.hooks.link import HookRuntime, Link, LinkError, LinkInfo, LinkKind, hook_runtime
    from pybpf.hooks.lsm import AuditLink, attach_audit
    from pybpf.hooks.pinning import (
        PinnedMap,
        list_pins,
        open_pinned_map,
        pin_link,
        pin_map,
        pin_program,
        pin_root,
        unpin,
    )
    from pybpf.hooks.probes import ProbeLink, attach_probe, probe
    from pybpf.hooks.tracepoints import Tracepoint, TracepointLink, attach_tracepoint

_EXPORTS = {
    "HookRuntime": "link",
    "Link": "link",
    "LinkError": "link",
    "LinkInfo": "link",
    "LinkKind": "link",
    "hook_runtime": "link",
    "AuditLink": "lsm",
    "attach_audit": "lsm",
    "PinnedMap": "pinning",
    "list_pins": "pinning",
    "open_pinned_map": "pinning",
    "pin_link": "pinning",
    "pin_map": "pinning",
    "pin_program": "pinning",
    "pin_root": "pinning",
    "unpin": "pinning",
    "ProbeLink": "probes",
    "attach_probe": "probes",
    "probe": "probes",
    "Tracepoint": "tracepoints",
    "TracepointLink": "tracepoints",
    "attach_tracepoint": "tracepoints",
}

__all__ = [
    "HOOKS_PROVIDER",
    "AuditLink",
    "HookRuntime",
    "HooksAttachProvider",
    "Link",
    "LinkError",
    "LinkInfo",
    "LinkKind",
    "PinnedMap",
    "ProbeLink",
    "Tracepoint",
    "TracepointLink",
    "attach_audit",
    "attach_probe",
    "attach_tracepoint",
    "hook_runtime",
    "install",
    "list_pins",
    "open_pinned_map",
    "pin_link",
    "pin_map",
    "pin_program",
    "pin_root",
    "probe",
    "unpin",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pybpf.hooks' has no attribute {name!r}")
    return getattr(importlib.import_module(f"pybpf.hooks.{module}"), name)
