"""How each program type is test-run: one module per family (``net/bpf/test_run.c``'s split).

:func:`run_kind` picks the :class:`RunKind` for a program type; :data:`CONVERTS_CONTEXT` says
whether its context accesses go through the conversion of :mod:`pybpf.runtime.context`.
"""

from __future__ import annotations

from pybpf.errors import NotSupportedError
from pybpf.platform.uapi_generated import BpfProgType
from pybpf.runtime.progtypes._base import PreparedRun, RunKind
from pybpf.runtime.progtypes.flow_dissector import FlowDissectorKind
from pybpf.runtime.progtypes.skb import SkbKind
from pybpf.runtime.progtypes.tracing import ArgsKind, SyscallKind
from pybpf.runtime.progtypes.xdp import XdpKind

P = BpfProgType

_KINDS: dict[BpfProgType, RunKind] = {
    P.XDP: XdpKind(),
    P.SCHED_CLS: SkbKind(is_l2=True),
    P.SCHED_ACT: SkbKind(is_l2=True),
    P.SOCKET_FILTER: SkbKind(is_l2=False),
    P.CGROUP_SKB: SkbKind(is_l2=False),
    P.LWT_IN: SkbKind(is_l2=False),
    P.LWT_OUT: SkbKind(is_l2=False),
    P.LWT_XMIT: SkbKind(is_l2=False),
    P.FLOW_DISSECTOR: FlowDissectorKind(),
    P.RAW_TRACEPOINT: ArgsKind(),
    P.RAW_TRACEPOINT_WRITABLE: ArgsKind(),
    P.TRACING: ArgsKind(),
    P.KPROBE: ArgsKind(),
    P.TRACEPOINT: ArgsKind(),
    P.PERF_EVENT: ArgsKind(),
    P.SYSCALL: SyscallKind(),
}

NO_CONTEXT_CONVERSION = frozenset({P.SYSCALL})
"""Program types whose context is a plain buffer: accesses are neither checked nor rewritten."""


def run_kind(prog_type: BpfProgType) -> RunKind:
    """The test-run behaviour of ``prog_type``; NotSupportedError for types the kernel cannot test-run."""
    kind = _KINDS.get(prog_type)
    if kind is None:
        raise NotSupportedError(f"program type {prog_type.name.lower()} cannot be test-run")
    return kind


__all__ = [
    "NO_CONTEXT_CONVERSION",
    "PreparedRun",
    "RunKind",
    "run_kind",
]
