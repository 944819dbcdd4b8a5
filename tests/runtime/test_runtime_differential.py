"""Differential tests: the same objects and packets through the kernel and through pybpf.

The kernel side loads each object with bpftool into a private bpffs mount (programs and maps
pinned there, nothing attached) and test-runs the pinned programs with BPF_PROG_TEST_RUN; the
user-space side is pybpf.load. Both get the same map updates and the same packets in the same
order; retval, data_out, ctx_out and the named maps' contents must agree.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

import pybpf
from pybpf.errors import InvalidArgumentError, PybpfError, TestRunError
from pybpf.kernel import Fd, map_keys, map_lookup, map_update
from pybpf.kernel.bpffs import private_bpffs
from pybpf.kernel.objects import map_info, obj_get
from pybpf.kernel.probe import available
from pybpf.kernel.progs import prog_test_run
from pybpf.platform.uapi_generated import BpfMapType
from pybpf.runtime.object import Object

PROGS = Path(__file__).resolve().parents[1] / "progs"
SKB_CTX = bytes(192)  # a zeroed __sk_buff: the kernel then fills wire_len and reports ctx_out

pytestmark = pytest.mark.kernel


def _ip_checksum(header: bytes) -> int:
    total = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def frame(src: str, dst: str, proto: int = 17, ethertype: int = 0x0800, payload: bytes = bytes(8)) -> bytes:
    eth = b"\x02" * 6 + b"\x04" * 6 + struct.pack("!H", ethertype)
    addresses = bytes(int(p) for p in src.split(".")) + bytes(int(p) for p in dst.split("."))
    header = struct.pack("!BBHHHBBH", 0x45, 0, 20 + len(payload), 1, 0, 64, proto, 0) + addresses
    header = header[:10] + struct.pack("!H", _ip_checksum(header)) + header[12:]
    return eth + header + payload


PACKETS = [
    frame("10.0.0.1", "10.0.0.2"),
    frame("8.0.0.1", "10.0.0.2", payload=b"\x00\x35\x00\x11" + bytes(4)),
    frame("192.168.1.7", "10.0.0.9", proto=6),
    frame("172.16.0.3", "10.0.0.2", proto=1),
    frame("1.2.3.4", "5.6.7.8", ethertype=0x86DD),  # IPv6 ethertype, too short: both refuse skb runs
    frame("1.2.3.4", "5.6.7.8", ethertype=0x86DD, payload=bytes(40)),
    frame("1.2.3.4", "5.6.7.8", ethertype=0x0806),
    frame("1.2.3.4", "5.6.7.8") + bytes(100),
]


def _possible_cpus() -> int:
    text = Path("/sys/devices/system/cpu/possible").read_text().strip()
    total = 0
    for part in text.split(","):
        low, _, high = part.partition("-")
        total += int(high or low) - int(low) + 1
    return total


@pytest.fixture(scope="module")
def bpffs() -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("needs root for bpf() and mounting bpffs")
    ok, reason = available()
    if not ok:
        pytest.skip(f"bpf() unavailable: {reason}")
    if shutil.which("bpftool") is None:
        pytest.skip("bpftool is not installed")
    try:
        with private_bpffs() as directory:
            yield directory
    except PybpfError as error:
        pytest.skip(f"cannot mount a private bpffs: {error}")


class KernelObject:
    """An object loaded by bpftool: programs and maps pinned under ``root``."""

    def __init__(self, root: Path, name: str, tag: str) -> None:
        self.progs = root / f"{tag}-progs"
        self.maps = root / f"{tag}-maps"
        result = subprocess.run(
            ["bpftool", "prog", "loadall", str(PROGS / f"{name}.o"), str(self.progs), "pinmaps", str(self.maps)],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            pytest.skip(f"bpftool could not load {name}.o: {result.stderr.strip()[-300:]}")

    def run(self, program: str, data: bytes, ctx_in: bytes | None) -> tuple[int, bytes, bytes]:
        with obj_get(self.progs / program) as fd:
            result = prog_test_run(fd, data, ctx_in=ctx_in, data_size_out=len(data) + 512)
        return result.retval, result.data_out, result.ctx_out

    def map_fd(self, name: str) -> Fd:
        return obj_get(self.maps / name)

    def entries(self, name: str, value_size: int) -> dict[bytes, bytes | int]:
        with self.map_fd(name) as fd:
            info = map_info(fd)
            percpu = info.type in (BpfMapType.PERCPU_ARRAY, BpfMapType.PERCPU_HASH, BpfMapType.LRU_PERCPU_HASH)
            out: dict[bytes, bytes | int] = {}
            for key in list(map_keys(fd, info.key_size)):
                size = (value_size + 7) // 8 * 8 * _possible_cpus() if percpu else value_size
                value = map_lookup(fd, key, size)
                out[bytes(key)] = _sum_percpu(value, value_size, _possible_cpus()) if percpu else bytes(value)
            return out


def _sum_percpu(value: bytes, value_size: int, cpus: int) -> int:
    stride = (value_size + 7) // 8 * 8
    return sum(int.from_bytes(value[i * stride : i * stride + value_size], "little") for i in range(cpus))


def user_entries(obj: Object, name: str) -> dict[bytes, bytes | int]:
    out: dict[bytes, bytes | int] = {}
    for entry in obj.map_entries(name):
        if isinstance(entry.value, tuple):
            out[entry.key] = sum(int.from_bytes(copy, "little") for copy in entry.value)
        else:
            out[entry.key] = entry.value
    return out


DENY = {"deny_v4": [(struct.pack("<I", 24) + bytes([192, 168, 1, 0]), b"\1\0\0\0")]}
BACKENDS = {
    "backends": [
        (struct.pack("<I", 3), bytes([10, 1, 1, 5, 0xAA, 0xBB, 0xCC, 0xDD, 0xEE, 0xFF, 0, 0])),
        (struct.pack("<I", 7), bytes([10, 1, 1, 9, 1, 2, 3, 4, 5, 6, 0, 0])),
    ]
}
CASES = [
    ("socket_filter", "udp_only", None, {}),
    ("socket_filter", "udp_only", SKB_CTX, {}),
    ("tc_mark", "tc_mark", SKB_CTX, {}),
    ("xdp_firewall", "xdp_firewall", None, DENY),
    ("xdp_lb", "xdp_lb", None, BACKENDS),
    ("bpf2bpf", "count_len", SKB_CTX, {}),
    ("bpf2bpf", "count_scaled", SKB_CTX, {}),
    ("tail_calls", "dispatch", SKB_CTX, {}),
    ("global_data", "global_filter", None, {}),
    ("loop_callback", "xdp_loop", None, {}),
]


@pytest.mark.parametrize(("name", "program", "ctx_in", "updates"), CASES,
                         ids=[f"{c[0]}-{c[1]}-{'ctx' if c[2] else 'noctx'}" for c in CASES])
def test_same_results_as_the_kernel(
    bpffs: Path, name: str, program: str, ctx_in: bytes | None, updates: dict[str, list[tuple[bytes, bytes]]]
) -> None:
    tag = f"{name}-{program}-{'ctx' if ctx_in else 'noctx'}"
    kernel = KernelObject(bpffs, name, tag)
    with pybpf.load(PROGS / f"{name}.o") as user:
        for map_name, items in updates.items():
            with kernel.map_fd(map_name) as fd:
                for key, value in items:
                    map_update(fd, key, value)
            for key, value in items:
                user.maps[map_name].update_raw(key, value)
        for number, packet in enumerate(PACKETS):
            try:
                k_retval, k_data, k_ctx = kernel.run(program, packet, ctx_in)
            except InvalidArgumentError:
                with pytest.raises(TestRunError):
                    user.programs[program].test_run(packet, ctx_in)
                continue
            result = user.programs[program].test_run(packet, ctx_in)
            assert result.retval == k_retval, f"packet {number}: retval"
            assert result.data_out == k_data, f"packet {number}: data_out"
            if ctx_in is not None:
                assert result.ctx_out == k_ctx, f"packet {number}: ctx_out"
        for map_name, found in user.maps.items():
            if map_name.startswith(".") or getattr(found, "type", None) is BpfMapType.PROG_ARRAY:
                continue  # libbpf renames global data maps; prog arrays hold fds
            assert user_entries(user, map_name) == kernel.entries(map_name, found.value_size), map_name
