"""The loader's capabilities, checked as ``bpf(2)`` checks them before the verifier runs.

An unprivileged load (``privileged=False``) models a loader without CAP_BPF, CAP_NET_ADMIN and
CAP_PERFMON: ``bpf_prog_load`` refuses it every program type but socket filters and cgroup skb
programs, and ``map_create`` every map type outside its unprivileged list, so such a program
can never reach the kernel's verifier. The tables are the platform's
(:attr:`ProgTypeSpec.load_capabilities`, :attr:`MapTypeSpec.create_capabilities`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from pybpf.errors import MissingCapabilityError, NotSupportedError
from pybpf.isa.insn import LabeledInsn, LoadImm64
from pybpf.isa.opcodes import PseudoSrc
from pybpf.platform import ProgTypeSpec, map_type_spec
from pybpf.platform.capabilities import describe
from pybpf.verifier.machine import MapInfo

_MAP_SOURCES = frozenset({PseudoSrc.MAP_FD, PseudoSrc.MAP_VALUE, PseudoSrc.MAP_IDX, PseudoSrc.MAP_IDX_VALUE})


def check_unprivileged_load(insns: Sequence[LabeledInsn], spec: ProgTypeSpec,
                            resolve: Callable[[int, LoadImm64], MapInfo | None]) -> None:
    """Raise :class:`MissingCapabilityError` when a loader without capabilities could not load
    a program of this type, or could not have created a map its ``lddw`` instructions name."""
    needed = spec.load_capabilities
    if needed:
        raise MissingCapabilityError(
            f"program type {spec.name} needs {describe(needed)} (bpf_prog_load: EPERM); "
            "without capabilities only socket_filter and cgroup_skb programs load",
            tuple(capability.value for capability in needed))
    for labeled in insns:
        insn = labeled.insn
        if not isinstance(insn, LoadImm64) or insn.src not in _MAP_SOURCES:
            continue
        info = resolve(labeled.pc, insn)
        if info is None:
            continue  # an unknown map is the verifier's own complaint, at this instruction
        try:
            map_needs = map_type_spec(info.type).create_capabilities
        except NotSupportedError:
            continue
        if map_needs:
            name = f" {info.name!r}" if info.name else ""
            raise MissingCapabilityError(
                f"map{name} of type {map_type_spec(info.type).name} needs {describe(map_needs)} "
                "(map_create: EPERM)", tuple(capability.value for capability in map_needs))
