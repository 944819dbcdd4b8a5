"""The program-type table shared by the loader, verifier and runtime.

One :class:`ProgTypeSpec` per supported ``BpfProgType``: its context layout, the helpers the
kernel offers it, the return values it may produce and whether it may touch packet data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from types import MappingProxyType

from pybpf.errors import NotSupportedError
from pybpf.platform import contexts
from pybpf.platform.progtypes._spec import BASE_HELPERS, PacketAccess, ProgTypeSpec
from pybpf.platform.progtypes.cgroup import CGROUP_PROG_TYPES
from pybpf.platform.progtypes.packet import PACKET_PROG_TYPES
from pybpf.platform.progtypes.tracing import PERF_EVENT, TRACING_PROG_TYPES
from pybpf.platform.uapi_generated import BpfProgType

__all__ = ["BASE_HELPERS", "PROG_TYPES", "PacketAccess", "ProgTypeSpec", "prog_type_spec"]


def _index(specs: tuple[ProgTypeSpec, ...]) -> Mapping[BpfProgType, ProgTypeSpec]:
    table: dict[BpfProgType, ProgTypeSpec] = {}
    for spec in specs:
        if spec.prog_type in table:
            raise ValueError(f"duplicate program type {spec.prog_type!r}")
        table[spec.prog_type] = spec
    return MappingProxyType(table)


PROG_TYPES: Mapping[BpfProgType, ProgTypeSpec] = _index(
    PACKET_PROG_TYPES + TRACING_PROG_TYPES + CGROUP_PROG_TYPES
)

_ARCH_LAYOUT_TYPES = (BpfProgType.KPROBE, BpfProgType.PERF_EVENT)


def prog_type_spec(prog_type: int, arch: str = "x86_64") -> ProgTypeSpec:
    """The spec for ``prog_type``; kprobe and perf_event contexts depend on ``arch``
    (``x86_64`` or ``arm64``).  NotSupportedError for types we do not model."""
    try:
        spec = PROG_TYPES[BpfProgType(prog_type)]
    except (ValueError, KeyError):
        raise NotSupportedError(f"program type {prog_type} is not supported") from None
    if arch == "x86_64" or spec.prog_type not in _ARCH_LAYOUT_TYPES:
        return spec
    regs = contexts.PT_REGS.get(arch)
    if regs is None:
        raise NotSupportedError(f"architecture {arch!r} has no register layout (x86_64, arm64)")
    layout = contexts.perf_event_data(regs) if spec is PERF_EVENT else regs.layout
    return replace(spec, context=layout)
