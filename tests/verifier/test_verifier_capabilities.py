"""The load-time capability checks of an unprivileged load (``bpf_prog_load``/``map_create``).

These verdicts cannot be compared with the kernel here: this machine refuses unprivileged
``bpf()`` altogether (``kernel.unprivileged_bpf_disabled``). They follow kernel/bpf/syscall.c
as of 6.18, whose lists the tables in :mod:`pybpf.platform` copy.
"""

from __future__ import annotations

import pytest

from pybpf.asm import Syntax, assemble
from pybpf.platform import MAP_TYPES, PROG_TYPES, BpfMapType, BpfProgType, Capability
from pybpf.verifier import MapInfo, verify

RETURN_ZERO = assemble("r0 = 0\nexit\n", Syntax.LLVM)
USES_MAP = assemble("r1 = map[fd:0]\nr0 = 0\nexit\n", Syntax.LLVM)
OPEN_PROG_TYPES = {BpfProgType.SOCKET_FILTER, BpfProgType.CGROUP_SKB}


@pytest.mark.parametrize("prog_type", sorted(PROG_TYPES), ids=[PROG_TYPES[t].name for t in sorted(PROG_TYPES)])
def test_only_socket_filters_and_cgroup_skb_load_without_capabilities(prog_type: BpfProgType) -> None:
    spec = PROG_TYPES[prog_type]
    privileged = verify(RETURN_ZERO, prog_type=prog_type)
    unprivileged = verify(RETURN_ZERO, prog_type=prog_type, privileged=False)
    if prog_type in OPEN_PROG_TYPES:
        assert spec.load_capabilities == ()
        assert unprivileged.accepted == privileged.accepted, unprivileged.summary()
        return
    assert spec.load_capabilities[0] is Capability.BPF
    assert not unprivileged.accepted
    assert unprivileged.reason is not None and unprivileged.reason.startswith(f"program type {spec.name} needs CAP_BPF")
    for capability in spec.load_capabilities:
        assert capability.value in unprivileged.reason
    assert unprivileged.error is not None and unprivileged.error.pc is None
    # A privileged load is not concerned (whatever else it thinks of the program).
    assert privileged.reason is None or "needs CAP_" not in privileged.reason


@pytest.mark.parametrize(("prog_type", "expected"), [
    (BpfProgType.XDP, (Capability.BPF, Capability.NET_ADMIN)),
    (BpfProgType.SCHED_CLS, (Capability.BPF, Capability.NET_ADMIN)),
    (BpfProgType.CGROUP_SOCK, (Capability.BPF, Capability.NET_ADMIN)),
    (BpfProgType.KPROBE, (Capability.BPF, Capability.PERFMON)),
    (BpfProgType.TRACING, (Capability.BPF, Capability.PERFMON)),
    (BpfProgType.CGROUP_SKB, ()),
    (BpfProgType.SOCKET_FILTER, ()),
])
def test_load_capabilities_per_type(prog_type: BpfProgType, expected: tuple[Capability, ...]) -> None:
    if prog_type not in PROG_TYPES:
        pytest.skip(f"{prog_type.name} is not modelled")
    assert PROG_TYPES[prog_type].load_capabilities == expected


def test_xdp_message_names_both_capabilities() -> None:
    report = verify(RETURN_ZERO, prog_type=BpfProgType.XDP, privileged=False)
    assert report.reason == ("program type xdp needs CAP_BPF and CAP_NET_ADMIN (bpf_prog_load: EPERM); "
                             "without capabilities only socket_filter and cgroup_skb programs load")


OPEN_MAP_TYPES = {
    BpfMapType.ARRAY, BpfMapType.PERCPU_ARRAY, BpfMapType.PROG_ARRAY, BpfMapType.PERF_EVENT_ARRAY,
    BpfMapType.CGROUP_ARRAY, BpfMapType.ARRAY_OF_MAPS, BpfMapType.HASH, BpfMapType.PERCPU_HASH,
    BpfMapType.HASH_OF_MAPS, BpfMapType.RINGBUF, BpfMapType.USER_RINGBUF, BpfMapType.CGROUP_STORAGE,
    BpfMapType.PERCPU_CGROUP_STORAGE,
}
NET_ADMIN_MAP_TYPES = {BpfMapType.SOCKMAP, BpfMapType.SOCKHASH, BpfMapType.DEVMAP, BpfMapType.DEVMAP_HASH,
                       BpfMapType.XSKMAP}


@pytest.mark.parametrize("map_type", sorted(MAP_TYPES), ids=[MAP_TYPES[t].name for t in sorted(MAP_TYPES)])
def test_map_types_an_unprivileged_loader_cannot_create(map_type: BpfMapType) -> None:
    spec = MAP_TYPES[map_type]
    info = MapInfo(map_type, 4, 8, 1, name="m")
    report = verify(USES_MAP, maps=[info], privileged=False)
    if map_type in OPEN_MAP_TYPES:
        assert spec.create_capabilities == ()
        assert report.reason is None or "needs CAP_" not in report.reason
        return
    expected = Capability.NET_ADMIN if map_type in NET_ADMIN_MAP_TYPES else Capability.BPF
    assert spec.create_capabilities == (expected,)
    assert report.reason == f"map 'm' of type {spec.name} needs {expected.value} (map_create: EPERM)"
    assert "needs CAP_" not in (verify(USES_MAP, maps=[info]).reason or "")


def test_unused_maps_do_not_matter() -> None:
    report = verify(RETURN_ZERO, maps=[MapInfo(BpfMapType.LRU_HASH, 4, 8, 1)], privileged=False)
    assert report.accepted, report.summary()


def test_cli_unprivileged_refuses_an_xdp_object() -> None:
    import io
    import json
    from pathlib import Path

    from pybpf.cli.main import main

    out = io.StringIO()
    status = main(["verify", str(Path(__file__).parent.parent / "progs" / "xdp_firewall.o"), "--unprivileged",
                   "--json"], out)
    assert status == 1
    (entry,) = json.loads(out.getvalue())["programs"]
    assert entry["accepted"] is False and entry["pc"] is None
    assert entry["error"].startswith("program type xdp needs CAP_BPF and CAP_NET_ADMIN")
