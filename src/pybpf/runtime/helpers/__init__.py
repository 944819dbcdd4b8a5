"""pybpf.runtime.helpers: user-space implementations of the eBPF helper functions.

- :func:`default_helpers` / :class:`HelperTable`: ``id -> HelperFn`` for ``Interpreter(helpers=...)``;
- :class:`RuntimeServices`: maps by pointer (:class:`MapRegistry`), clock, seeded PRNG, virtual
  CPUs, the current task, the :class:`TracePipe`;
- :class:`RunState`: per-run data passed as ``Interpreter.run(user=...)`` (packet, ctx pointer,
  recorded redirect / override_return);
- :class:`PacketContext`: the packet buffer XDP/skb helpers reshape;
- :mod:`~pybpf.runtime.helpers.csum`: kernel-exact checksum arithmetic.
"""

from pybpf.runtime.helpers.csum import csum_diff, csum_fold, csum_partial
from pybpf.runtime.helpers.packet_context import PacketContext, PacketKind, SkbFields
from pybpf.runtime.helpers.registry import HelperTable, default_helpers
from pybpf.runtime.helpers.services import (
    Clock,
    ManualClock,
    MapRegistry,
    Redirect,
    RunState,
    RuntimeServices,
    SystemClock,
    TaskInfo,
    TraceEvent,
    TracePipe,
    run_state,
)

__all__ = [
    "Clock",
    "HelperTable",
    "ManualClock",
    "MapRegistry",
    "PacketContext",
    "PacketKind",
    "Redirect",
    "RunState",
    "RuntimeServices",
    "SkbFields",
    "SystemClock",
    "TaskInfo",
    "TraceEvent",
    "TracePipe",
    "csum_diff",
    "csum_fold",
    "csum_partial",
    "default_helpers",
    "run_state",
]
