"""The kernel side of the runtime's differential tests: objects loaded by bpftool, run by the kernel.

:func:`kernel_bpffs` mounts a private bpffs (skipping with the reason when root, bpf() or
bpftool is missing); :class:`KernelObject` loads one of tests/progs/*.o there with ``bpftool
prog loadall ... pinmaps`` (programs and maps pinned, nothing attached) and test-runs its
programs with BPF_PROG_TEST_RUN. :data:`PACKETS` are the frames every comparison feeds both sides.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import shutil
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

import pybpf
from pybpf.errors import MapKeyNotFoundError, ObjectNotFoundError, PybpfError
from pybpf.kernel import Fd, map_keys, map_lookup, map_lookup_and_delete
from pybpf.kernel.bpffs import private_bpffs
from pybpf.kernel.object import KernelObject as BackendObject
from pybpf.kernel.objects import map_info, obj_get
from pybpf.kernel.probe import available
from pybpf.kernel.progs import prog_test_run
from pybpf.platform.uapi_generated import BpfMapType
from pybpf.runtime.object import Object

PROGS = Path(__file__).resolve().parents[1] / "progs"
SKB_CTX = bytes(192)  # a zeroed __sk_buff: the kernel then fills wire_len and reports ctx_out
PERCPU_TYPES = (BpfMapType.PERCPU_ARRAY, BpfMapType.PERCPU_HASH, BpfMapType.LRU_PERCPU_HASH)


def _ip_checksum(header: bytes) -> int:
    total: int = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def frame(src: str, dst: str, proto: int = 17, ethertype: int = 0x0800, payload: bytes = bytes(8)) -> bytes:
    """An Ethernet frame carrying an IPv4 header (valid checksum) whatever ``ethertype`` says."""
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


def possible_cpus() -> int:
    text = Path("/sys/devices/system/cpu/possible").read_text().strip()
    total = 0
    for part in text.split(","):
        low, _, high = part.partition("-")
        total += int(high or low) - int(low) + 1
    return total


def kernel_bpffs() -> Iterator[Path]:
    """A private bpffs for one module's kernel objects (a fixture body: skips when unusable)."""
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


def _sum_percpu(value: bytes, value_size: int, cpus: int) -> int:
    stride = (value_size + 7) // 8 * 8
    return sum(int.from_bytes(value[i * stride : i * stride + value_size], "little") for i in range(cpus))


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
            pytest.fail(f"bpftool could not load {name}.o: {result.stderr.strip()[-300:]}")

    def run(self, program: str, data: bytes, ctx_in: bytes | None) -> tuple[int, bytes, bytes]:
        with obj_get(self.progs / program) as fd:
            result = prog_test_run(fd, data, ctx_in=ctx_in, data_size_out=len(data) + 512)
        return result.retval, result.data_out, result.ctx_out

    def map_fd(self, name: str) -> Fd:
        return obj_get(self.maps / name)

    def entries(self, name: str, value_size: int) -> dict[bytes, bytes | int]:
        """Every element (per-CPU values summed as integers)."""
        with self.map_fd(name) as fd:
            info = map_info(fd)
            percpu = info.type in PERCPU_TYPES
            out: dict[bytes, bytes | int] = {}
            for key in list(map_keys(fd, info.key_size)):
                size = (value_size + 7) // 8 * 8 * possible_cpus() if percpu else value_size
                try:
                    value = map_lookup(fd, key, size)
                except ObjectNotFoundError:
                    continue  # an empty slot of a devmap or fd array
                out[bytes(key)] = _sum_percpu(value, value_size, possible_cpus()) if percpu else bytes(value)
            return out

    def drain(self, name: str, value_size: int) -> list[bytes]:
        """Pop a queue or stack map empty, in pop order."""
        popped: list[bytes] = []
        with self.map_fd(name) as fd:
            while True:
                try:
                    popped.append(bytes(map_lookup_and_delete(fd, b"", value_size)))
                except (MapKeyNotFoundError, ObjectNotFoundError):
                    return popped


def user_entries(obj: Object, name: str) -> dict[bytes, bytes | int]:
    """Object.map_entries in KernelObject.entries' shape."""
    out: dict[bytes, bytes | int] = {}
    for entry in obj.map_entries(name):
        if isinstance(entry.value, tuple):
            out[entry.key] = sum(int.from_bytes(copy, "little") for copy in entry.value)
        else:
            out[entry.key] = entry.value
    return out


def user_drain(obj: Object, name: str) -> list[bytes]:
    found = obj.maps[name]
    popped: list[bytes] = []
    while len(found):
        popped.append(bytes(found.lookup_and_delete_raw()))
    return popped


PERF_EVENT_OPEN = {"x86_64": 298, "aarch64": 241}
PERF_TYPE_SOFTWARE = 1
PERF_COUNT_SW_BPF_OUTPUT = 10
PERF_SAMPLE_RAW = 1 << 10
PERF_RECORD_SAMPLE = 9
PERF_ATTR_SIZE = 112  # PERF_ATTR_SIZE_VER5
PERF_FLAG_FD_CLOEXEC = 1 << 3
PAGE_SIZE = mmap.PAGESIZE


class KernelPerfRing:
    """One BPF-output perf event on ``cpu`` and its mmap'ed ring: what libbpf's perf_buffer opens.

    Nothing is attached: the event only receives what bpf_perf_event_output writes once its fd
    sits in a perf event array slot.
    """

    def __init__(self, cpu: int, pages: int = 8) -> None:
        number = PERF_EVENT_OPEN.get(os.uname().machine)
        if number is None:
            pytest.skip(f"perf_event_open's syscall number is not known for {os.uname().machine}")
        attr = bytearray(PERF_ATTR_SIZE)
        struct.pack_into("<IIQQQ", attr, 0, PERF_TYPE_SOFTWARE, PERF_ATTR_SIZE, PERF_COUNT_SW_BPF_OUTPUT, 1,
                         PERF_SAMPLE_RAW)
        struct.pack_into("<I", attr, 48, 1)  # wakeup_events
        buffer = ctypes.create_string_buffer(bytes(attr), PERF_ATTR_SIZE)
        libc = ctypes.CDLL(None, use_errno=True)
        libc.syscall.restype = ctypes.c_long
        fd = libc.syscall(number, buffer, -1, cpu, -1, PERF_FLAG_FD_CLOEXEC)
        if fd < 0:
            error = ctypes.get_errno()
            pytest.skip(f"perf_event_open failed: {os.strerror(error)}")
        self.fd = int(fd)
        self.cpu = cpu
        self.ring = mmap.mmap(self.fd, (pages + 1) * PAGE_SIZE, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self.tail = 0

    def samples(self) -> list[bytes]:
        """The raw data of every new PERF_RECORD_SAMPLE, in order (perf_event_mmap_page's head/tail)."""
        head, _, offset, size = struct.unpack_from("<QQQQ", self.ring, 1024)
        data = self.ring[offset : offset + size]
        found: list[bytes] = []
        while self.tail < head:
            at = self.tail % size
            record = (data + data)[at : at + 8]
            kind, _misc, length = struct.unpack("<IHH", record)
            body = (data + data)[at + 8 : at + length]
            if kind == PERF_RECORD_SAMPLE:
                (raw_size,) = struct.unpack_from("<I", body)
                found.append(bytes(body[4 : 4 + raw_size]))
            self.tail += length
        struct.pack_into("<Q", self.ring, 1032, self.tail)  # data_tail: the space is free again
        return found

    def close(self) -> None:
        self.ring.close()
        os.close(self.fd)


def loaded_in_kernel(path: Path) -> Iterator[BackendObject]:
    """A fixture's body: ``path`` loaded through pybpf's kernel backend (not by bpftool, as
    :class:`KernelObject` does; nothing attached), or a skip that says why not (no bpf(), or
    the kernel refused the object)."""
    ok, reason = available()
    if not ok:
        pytest.skip(reason or "bpf() unavailable")
    try:
        with pybpf.load(path, backend="kernel") as obj:
            yield obj
    except PybpfError as error:
        pytest.skip(f"the kernel could not load {path.name}: {error}")
