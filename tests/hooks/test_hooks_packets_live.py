"""Live attachment through AF_PACKET, on veth pairs whose far ends live in a private network namespace.

Each test gets a fresh namespace ``pybpf-test-<random>`` and veth pairs named after it; the link
attaches to the near end (created by the test, IPv6 off so the kernel sends nothing on it), and
the far end sends and receives raw frames from inside the namespace. Addresses come from
198.18.0.0/15 (RFC 2544's benchmarking range). Everything is deleted in the fixture's teardown,
and every wait is bounded. Never touches this machine's own interfaces.
"""

from __future__ import annotations

import io
import json
import os
import random
import select
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pybpf import load
from pybpf.cli.main import main
from pybpf.hooks.link import LinkError, hook_runtime
from pybpf.hooks.packets import PacketAction, PacketLink, attach_tc, attach_xdp, replay
from pybpf.runtime.object import Object

PROGS = Path(__file__).resolve().parents[1] / "progs"
COMMAND_TIMEOUT_S = 20.0
SETTLE_TIMEOUT_S = 5.0

# Runs inside the namespace: bind to IFACE and say "ready", send the frames (hex on stdin), then
# collect what arrives (not our own transmissions) until EXPECT frames came or TIMEOUT seconds
# passed; print them as JSON on the last line.
PEER_SCRIPT = r"""
import json, socket, sys, time
ifname, expect, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
s.setsockopt(263, 23, 1)
s.bind((ifname, 3))
s.settimeout(0.05)
print("ready", flush=True)
frames = [bytes.fromhex(h) for h in sys.stdin.read().split()]
for frame in frames:
    s.send(frame)
    time.sleep(0.002)
got, deadline = [], time.monotonic() + timeout
while time.monotonic() < deadline and len(got) < expect:
    try:
        data, address = s.recvfrom(65535)
    except TimeoutError:
        continue
    if address[2] != 4:
        got.append(data.hex())
print(json.dumps(got))
"""


def run(argv: list[str], *, check: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=check, capture_output=True, text=True, input=stdin, timeout=COMMAND_TIMEOUT_S)


@dataclass(frozen=True, slots=True)
class Veth:
    """One pair: ``near`` in our namespace (where the link attaches), ``far`` inside ``netns``."""

    netns: str
    near: str
    far: str
    near_mac: bytes
    far_mac: bytes
    far_ip: str

    def exchange(self, frames: list[bytes], expect: int, timeout: float = 2.0) -> list[bytes]:
        """Send ``frames`` from the far end; return what arrives there (up to ``expect`` frames, bounded wait)."""
        result = run(
            ["ip", "netns", "exec", self.netns, sys.executable, "-c", PEER_SCRIPT, self.far, str(expect), str(timeout)],
            stdin=" ".join(frame.hex() for frame in frames),
        )
        return [bytes.fromhex(item) for item in json.loads(result.stdout.splitlines()[-1])]


def _mac(path: str) -> bytes:
    return bytes.fromhex(path.strip().replace(":", ""))


@pytest.fixture
def netns_veths() -> Iterator[Callable[[int], list[Veth]]]:
    """A factory of veth pairs in one private namespace: ``make(n)`` creates n pairs."""
    if os.geteuid() != 0:
        pytest.skip("needs root to create a network namespace and veth pairs")
    if shutil.which("ip") is None:
        pytest.skip("iproute2's `ip` is not installed")
    tag = f"{random.randrange(16**6):06x}"
    netns = f"pybpf-test-{tag}"
    created: list[str] = []
    try:
        run(["ip", "netns", "add", netns])
    except subprocess.CalledProcessError as error:
        pytest.skip(f"cannot create a network namespace: {error.stderr.strip()}")
    subnet = random.randrange(256)

    def make(count: int) -> list[Veth]:
        pairs = []
        for number in range(count):
            near, far = f"pbn{tag}{number}", f"pbf{tag}{number}"
            run(["ip", "link", "add", near, "type", "veth", "peer", "name", far, "netns", netns])
            created.append(near)
            # No IPv6 on either end: no router solicitations or DAD probes to show up as traffic.
            Path(f"/proc/sys/net/ipv6/conf/{near}/disable_ipv6").write_text("1")
            run(["ip", "netns", "exec", netns, "sysctl", "-qw", f"net.ipv6.conf.{far}.disable_ipv6=1"])
            far_ip = f"198.18.{subnet}.{4 * number + 2}"
            run(["ip", "-n", netns, "addr", "add", f"{far_ip}/30", "dev", far])
            run(["ip", "-n", netns, "link", "set", far, "up"])
            run(["ip", "link", "set", near, "up"])
            far_mac = run(["ip", "netns", "exec", netns, "cat", f"/sys/class/net/{far}/address"]).stdout
            near_mac = Path(f"/sys/class/net/{near}/address").read_text()
            pairs.append(Veth(netns, near, far, _mac(near_mac), _mac(far_mac), far_ip))
        return pairs

    try:
        yield make
    finally:
        for near in created:
            run(["ip", "link", "del", near], check=False)  # deletes the far end too
        run(["ip", "netns", "del", netns], check=False)


def ipv4_frame(dst_mac: bytes, src_mac: bytes, src: str, dst: str, payload: bytes) -> bytes:
    total = 20 + 8 + len(payload)
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, 7, 0, 64, 17, 0, socket.inet_aton(src), socket.inet_aton(dst))
    header = header[:10] + struct.pack("!H", checksum(header)) + header[12:]
    udp = struct.pack("!HHHH", 40000, 9, 8 + len(payload), 0)  # checksum 0: none (IPv4)
    return dst_mac + src_mac + b"\x08\x00" + header + udp + payload


def checksum(data: bytes) -> int:
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def wait_for(condition: Callable[[], bool], timeout: float = SETTLE_TIMEOUT_S) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def percpu_total(obj: Object, map_name: str, key: int) -> int:
    for entry in obj.map_entries(map_name):
        if int.from_bytes(entry.key, "little") == key:
            assert isinstance(entry.value, tuple), "a per-CPU map entry holds one value per CPU"
            return sum(int.from_bytes(part, "little") for part in entry.value)
    raise KeyError(key)


def test_xdp_firewall_counts_drops_and_passes_of_real_frames(netns_veths: Callable[[int], list[Veth]]) -> None:
    (veth,) = netns_veths(1)
    denied, allowed = 5, 3
    frames = [ipv4_frame(veth.near_mac, veth.far_mac, veth.far_ip, "198.18.255.1", b"deny") for _ in range(denied)]
    frames += [ipv4_frame(veth.near_mac, veth.far_mac, "198.19.0.9", "198.18.255.1", b"ok") for _ in range(allowed)]
    with load(PROGS / "xdp_firewall.o") as obj:
        key = struct.pack("<I", 32) + socket.inet_aton(veth.far_ip)
        obj.maps["deny_v4"].update_raw(key, struct.pack("<I", 1))
        with attach_xdp(obj.program("xdp_firewall"), veth.near) as link:
            assert isinstance(link, PacketLink) and link.attached and link.ifindex == socket.if_nametoindex(veth.near)
            arrived = veth.exchange(frames, expect=1, timeout=0.5)
            assert wait_for(lambda: link.counters().verdicts.get("XDP_DROP", 0) >= denied)
            assert wait_for(lambda: link.counters().verdicts.get("XDP_PASS", 0) >= allowed)
            counters = link.counters()
        assert not link.attached
        assert (percpu_total(obj, "verdict_count", 0), percpu_total(obj, "verdict_count", 1)) == (denied, allowed)
    assert counters.verdicts["XDP_DROP"] == denied
    assert counters.transmitted == 0 and counters.errors == 0
    assert arrived == []  # the firewall never transmits anything back


def test_xdp_tx_reflects_the_rewritten_frame(netns_veths: Callable[[int], list[Veth]]) -> None:
    (veth,) = netns_veths(1)
    backend_ip, backend_mac = "198.18.254.7", bytes.fromhex("020000bacc07")
    source = veth.far_ip
    index = int.from_bytes(socket.inet_aton(source), "big") & 7
    frames = [
        ipv4_frame(veth.near_mac, veth.far_mac, source, "198.18.255.1", f"packet {n}".encode()) for n in range(4)
    ]
    with load(PROGS / "xdp_lb.o") as obj:
        obj.maps["backends"].update_raw(struct.pack("<I", index), socket.inet_aton(backend_ip) + backend_mac + bytes(2))
        with attach_xdp(obj.program("xdp_lb"), veth.near) as link:
            arrived = veth.exchange(frames, expect=len(frames), timeout=3.0)
            assert wait_for(lambda: link.counters().transmitted >= len(frames))
            counters = link.counters()
    assert counters.verdicts.get("XDP_TX") == len(frames)
    assert len(arrived) == len(frames)
    for sent, got in zip(frames, arrived, strict=True):
        assert got[0:6] == backend_mac
        assert got[6:12] == veth.near_mac  # the frame's old destination
        assert got[30:34] == socket.inet_aton(backend_ip)
        assert checksum(got[14:34]) == 0  # a header with a correct checksum sums to 0xffff
        assert got[34:] == sent[34:]


def test_tc_program_runs_on_each_received_frame(netns_veths: Callable[[int], list[Veth]]) -> None:
    (veth,) = netns_veths(1)
    frames = [ipv4_frame(veth.near_mac, veth.far_mac, veth.far_ip, "198.18.255.1", b"tc") for _ in range(3)]
    # The method form (Program.attach_tc, served by pybpf.hooks) gives the same PacketLink.
    with load(PROGS / "tc_mark.o") as obj, obj.program("tc_mark").attach_tc(veth.near) as attachment:
        assert isinstance(attachment, PacketLink)
        link = attachment
        veth.exchange(frames, expect=0, timeout=0.1)
        assert wait_for(lambda: link.counters().verdicts.get("TC_ACT_OK", 0) >= len(frames))
        assert link.counters().transmitted == 0


def test_cli_attach_prints_counters_when_stopped(netns_veths: Callable[[int], list[Veth]]) -> None:
    (veth,) = netns_veths(1)
    frames = [ipv4_frame(veth.near_mac, veth.far_mac, "198.19.0.1", "198.18.255.1", b"cli") for _ in range(4)]
    out = io.StringIO()
    codes: list[int] = []
    argv = ["attach", "xdp", str(PROGS / "xdp_firewall.o"), "--prog", "xdp_firewall", "--dev", veth.near,
            "--duration", "3", "--json", "--dump-maps"]
    worker = threading.Thread(target=lambda: codes.append(main(argv, out)))
    worker.start()
    try:
        # The command's link shows up in this process's registry once its socket is bound.
        assert wait_for(lambda: any(link.target == veth.near for link in hook_runtime().links.list()))
        veth.exchange(frames, expect=0, timeout=0.1)
    finally:
        worker.join(COMMAND_TIMEOUT_S)
    assert codes == [0]
    record = json.loads(out.getvalue())
    assert record["dev"] == veth.near
    assert record["verdicts"].get("XDP_PASS", 0) >= len(frames)
    passed = {key: values for key, values in record["maps"]["verdict_count"]["entries"]}["01000000"]
    assert sum(int.from_bytes(bytes.fromhex(value), "little") for value in passed) == len(frames)


def test_attach_refuses_wrong_program_types_and_missing_interfaces() -> None:
    with load(PROGS / "tc_mark.o") as obj:
        with pytest.raises(LinkError, match="XDP"):
            attach_xdp(obj.program("tc_mark"), "pybpf-none0")
        with pytest.raises(LinkError, match="no network interface"):
            attach_tc(obj.program("tc_mark"), "pybpf-none0")


REDIRECT_SOURCE = r"""
#include "bpf_helpers.h"

static long (*bpf_redirect_map)(void *map, __u64 key, __u64 flags) = (void *)BPF_FUNC_redirect_map;

struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u32);
} tx_port SEC(".maps");

SEC("xdp")
int xdp_redirect(struct xdp_md *ctx)
{
	/* Slot 0 names the egress device; an empty slot falls back to XDP_PASS. */
	return bpf_redirect_map(&tx_port, 0, XDP_PASS);
}

char LICENSE[] SEC("license") = "GPL";
"""


@pytest.fixture(scope="module")
def redirect_object(tmp_path_factory: pytest.TempPathFactory) -> Path:
    clang = shutil.which("clang-19") or shutil.which("clang")
    if clang is None:
        pytest.skip("clang is not installed (the devmap redirect program is built at test time)")
    directory = tmp_path_factory.mktemp("redirect")
    (directory / "redirect.c").write_text(REDIRECT_SOURCE)
    arch_include = f"/usr/include/{os.uname().machine}-linux-gnu"
    result = subprocess.run(
        [clang, "-O2", "-g", "-target", "bpf", "-mcpu=v3", f"-I{PROGS}", f"-I{arch_include}",
         "-c", str(directory / "redirect.c"), "-o", str(directory / "redirect.o")],
        capture_output=True, text=True, check=False, timeout=COMMAND_TIMEOUT_S,
    )
    if result.returncode != 0:
        pytest.skip(f"clang cannot build BPF objects here: {result.stderr[-300:]}")
    return directory / "redirect.o"


def test_devmap_redirect_sends_frames_out_of_the_target_interface(
    netns_veths: Callable[[int], list[Veth]], redirect_object: Path
) -> None:
    ingress, egress = netns_veths(2)
    frames = [
        ipv4_frame(ingress.near_mac, ingress.far_mac, ingress.far_ip, "198.18.255.1", b"r%d" % n) for n in range(3)
    ]
    with load(redirect_object) as obj:
        obj.maps["tx_port"].update_raw(struct.pack("<I", 0), struct.pack("<I", socket.if_nametoindex(egress.near)))
        with attach_xdp(obj.program("xdp_redirect"), ingress.near) as link:
            # Listen on the egress pair's far end while the ingress far end sends.
            listener = subprocess.Popen(
                ["ip", "netns", "exec", egress.netns, sys.executable, "-c", PEER_SCRIPT, egress.far, str(len(frames)),
                 "3.0"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            )
            try:
                assert listener.stdout is not None
                readable, _, _ = select.select([listener.stdout], [], [], COMMAND_TIMEOUT_S)  # bounded
                assert readable and listener.stdout.readline().strip() == "ready"  # its socket is bound
                ingress.exchange(frames, expect=0, timeout=0.1)
                output, _ = listener.communicate("", timeout=COMMAND_TIMEOUT_S)
            finally:
                if listener.poll() is None:
                    listener.kill()
                    listener.wait(COMMAND_TIMEOUT_S)
            assert wait_for(lambda: link.counters().transmitted >= len(frames))
            counters = link.counters()
    assert counters.verdicts.get("XDP_REDIRECT") == len(frames)
    assert [bytes.fromhex(item) for item in json.loads(output.splitlines()[-1])] == frames


def test_replay_records_the_devmap_redirect_target(redirect_object: Path) -> None:
    frame = ipv4_frame(b"\x02" * 6, b"\x04" * 6, "198.18.0.1", "198.18.0.2", b"x")
    with load(redirect_object) as obj:
        program = obj.program("xdp_redirect")
        empty = replay(program, [frame])
        obj.maps["tx_port"].update_raw(struct.pack("<I", 0), struct.pack("<I", 77))
        full = replay(program, [frame])
    assert empty.verdicts == {"XDP_PASS": 1}  # the fallback action in the flags
    assert full.verdicts == {"XDP_REDIRECT": 1}
    (out,) = full.outputs
    assert (out.action, out.redirect_ifindex, out.data) == (PacketAction.REDIRECT, 77, frame)
