"""The same object, the same packets: ``backend="vm"`` and ``backend="kernel"`` must agree.

Each case loads one committed object with both backends, gives both the same map updates through
the same map API, runs the same packets in the same order through ``test_run`` and compares
retval, data_out, ctx_out and then every map's contents (per-CPU values summed, since the kernel
runs a test on whichever CPU it likes). Global data maps are compared too: both backends name
them by section. Skipped, with the probe's reason, where bpf(2) does not work.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

import pybpf
from pybpf.errors import MapKeyNotFoundError, TestRunError
from pybpf.kernel import available
from pybpf.kernel.object import KernelObject
from pybpf.platform.map_api import UserMapApi
from pybpf.platform.test_run import TestRunResult
from pybpf.platform.uapi_generated import BpfMapType
from pybpf.runtime.object import Object
from pybpf.runtime.program import TestRunResult as RuntimeTestRunResult

PROGS = Path(__file__).resolve().parents[1] / "progs"
SKB_CTX = bytes(192)  # a zeroed __sk_buff: both fill wire_len etc. and report ctx_out
# Maps whose contents are not comparable values: prog arrays and maps of maps hold object ids
# (kernel ids or runtime ids); event maps have no elements to read.
UNCOMPARABLE = (
    BpfMapType.PROG_ARRAY,
    BpfMapType.ARRAY_OF_MAPS,
    BpfMapType.HASH_OF_MAPS,
    BpfMapType.RINGBUF,
    BpfMapType.PERF_EVENT_ARRAY,
)


@pytest.fixture(scope="module", autouse=True)
def kernel() -> None:
    ok, reason = available()
    if not ok:
        pytest.skip(f"bpf() unavailable: {reason}")


def _checksum(header: bytes) -> int:
    total: int = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def frame(src: str, dst: str, proto: int = 17, ethertype: int = 0x0800, payload: bytes = bytes(8)) -> bytes:
    """An Ethernet frame with an IPv4 header (valid checksum), whatever ``ethertype`` says."""
    eth = b"\x02" * 6 + b"\x04" * 6 + struct.pack("!H", ethertype)
    addresses = bytes(int(p) for p in src.split(".")) + bytes(int(p) for p in dst.split("."))
    header = struct.pack("!BBHHHBBH", 0x45, 0, 20 + len(payload), 1, 0, 64, proto, 0) + addresses
    header = header[:10] + struct.pack("!H", _checksum(header)) + header[12:]
    return eth + header + payload


PACKETS = [
    frame("10.0.0.1", "10.0.0.2"),
    frame("8.0.0.1", "10.0.0.2", payload=b"\x00\x35\x00\x11" + bytes(4)),
    frame("192.168.1.7", "10.0.0.9", proto=6),
    frame("172.16.0.3", "10.0.0.2", proto=1),
    frame("1.2.3.4", "5.6.7.8", ethertype=0x86DD),  # too short for IPv6: skb runs are refused by both
    frame("1.2.3.4", "5.6.7.8", ethertype=0x86DD, payload=bytes(40)),
    frame("1.2.3.4", "5.6.7.8", ethertype=0x0806),
    frame("1.2.3.4", "5.6.7.8") + bytes(100),
]

DENY = {"deny_v4": [(struct.pack("<I", 24) + bytes([192, 168, 1, 0]), b"\1\0\0\0")]}
BACKENDS = {
    "backends": [
        (struct.pack("<I", 3), bytes([10, 1, 1, 5, 0xAA, 0xBB, 0xCC, 0xDD, 0xEE, 0xFF, 0, 0])),
        (struct.pack("<I", 7), bytes([10, 1, 1, 9, 1, 2, 3, 4, 5, 6, 0, 0])),
    ]
}
CASES: list[tuple[str, str, bytes | None, dict[str, list[tuple[bytes, bytes]]]]] = [
    ("socket_filter", "udp_only", None, {}),
    ("socket_filter", "udp_only", SKB_CTX, {}),
    ("tc_mark", "tc_mark", SKB_CTX, {}),
    ("xdp_firewall", "xdp_firewall", None, DENY),
    ("xdp_lb", "xdp_lb", None, BACKENDS),
    ("bpf2bpf", "count_len", SKB_CTX, {}),
    ("bpf2bpf", "count_scaled", SKB_CTX, {}),
    ("bpf2bpf", "xdp_no_calls", None, {}),
    ("bpf2bpf.v4", "count_scaled", SKB_CTX, {}),
    ("tail_calls", "dispatch", SKB_CTX, {}),
    ("tail_chain", "chain", SKB_CTX, {}),
    ("global_data", "global_filter", None, {}),
    ("legacy_maps", "legacy_filter", None, {}),
    ("loop_callback", "xdp_loop", None, {}),
    ("map_in_map", "mim_count", None, {}),
    ("queue_stack", "queue_stack", None, {}),
    ("map_foreach", "count_lengths", None, {}),
    ("spin_lock", "locked_count", None, {}),
]


def entries(obj: Object | KernelObject, name: str) -> dict[bytes, bytes | int]:
    """A map's elements from ``map_entries`` (both backends have it), per-CPU values summed."""
    out: dict[bytes, bytes | int] = {}
    for entry in obj.map_entries(name):
        if isinstance(entry.value, tuple):
            out[entry.key] = sum(int.from_bytes(copy, "little") for copy in entry.value)
        else:
            out[entry.key] = entry.value
    return out


def drain(found: UserMapApi) -> list[bytes]:
    """Pop a queue or stack empty (the same call on both backends), in pop order."""
    popped: list[bytes] = []
    while True:
        try:
            popped.append(found.lookup_and_delete_raw())
        except MapKeyNotFoundError:
            return popped


def test_both_backends_return_the_same_result_type() -> None:
    assert RuntimeTestRunResult is TestRunResult
    with pybpf.load(PROGS / "socket_filter.o", backend="kernel") as obj:
        result = obj.program("udp_only").test_run(PACKETS[0])
    assert type(result) is TestRunResult
    assert result.r0 == result.retval and result.ctx_out is None


@pytest.mark.parametrize(
    ("name", "program", "ctx_in", "updates"),
    CASES,
    ids=[f"{c[0]}-{c[1]}-{'ctx' if c[2] else 'noctx'}" for c in CASES],
)
def test_vm_and_kernel_agree(
    name: str, program: str, ctx_in: bytes | None, updates: dict[str, list[tuple[bytes, bytes]]]
) -> None:
    path = PROGS / f"{name}.o"
    with pybpf.load(path) as user, pybpf.load(path, backend="kernel") as kernel_object:
        assert isinstance(kernel_object, KernelObject)
        for map_name, items in updates.items():
            for key, value in items:
                user.maps[map_name].update_raw(key, value)
                kernel_object.maps[map_name].update_raw(key, value)
        ran = 0
        for number, packet in enumerate(PACKETS):
            try:
                expected = kernel_object.program(program).test_run(packet, ctx_in)
            except TestRunError:
                with pytest.raises(TestRunError):
                    user.program(program).test_run(packet, ctx_in)
                continue
            got = user.program(program).test_run(packet, ctx_in)
            ran += 1
            assert got.retval == expected.retval, f"packet {number}: retval"
            assert got.data_out == expected.data_out, f"packet {number}: data_out"
            if ctx_in is not None:
                # Without ctx_in the kernel copies no context back (the runtime reports its own).
                assert got.ctx_out == expected.ctx_out, f"packet {number}: ctx_out"
        assert ran >= len(PACKETS) // 2
        compared = 0
        for map_name, found in kernel_object.maps.items():
            if found.type in UNCOMPARABLE:
                continue
            if found.type in (BpfMapType.QUEUE, BpfMapType.STACK):
                assert drain(user.maps[map_name]) == drain(found), map_name
            else:
                assert entries(user, map_name) == entries(kernel_object, map_name), map_name
            compared += 1
        assert compared == sum(1 for found in kernel_object.maps.values() if found.type not in UNCOMPARABLE)


def test_counters_move_the_same_way_over_repeated_runs() -> None:
    # The same map, read through the same API on both backends, after the same ten runs.
    path = PROGS / "xdp_firewall.o"
    with pybpf.load(path) as user, pybpf.load(path, backend="kernel") as kernel_object:
        for packet in PACKETS[:4] * 3:
            assert user.program("xdp_firewall").test_run(packet).retval == (
                kernel_object.program("xdp_firewall").test_run(packet).retval
            )
        user_counts = {key: sum(value) for key, value in user.maps["verdict_count"].items()}
        kernel_counts = {key: sum(value) for key, value in kernel_object.maps["verdict_count"].items()}
        assert user_counts == kernel_counts
        assert sum(kernel_counts.values()) == 12
