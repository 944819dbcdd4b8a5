"""Live XDP and tcx attachments through BPF links, on a veth pair inside a network namespace we create.

Nothing touches this machine's interfaces: the test makes a fresh namespace (``ip netns add``),
puts both ends of a veth pair in it, and runs the attaching part in a child process that lives
in that namespace (``ip netns exec``), so this process never changes namespace. The child loads
xdp_firewall.o into the kernel, denies one source prefix, attaches through a link (generic XDP)
on one end, sends frames from the other through an AF_PACKET socket, reads the per-CPU
counters, detaches and checks that frames after the detach are no longer counted. The namespace
is deleted afterwards, whatever happened.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pybpf.kernel import available

PROGS = Path(__file__).resolve().parents[1] / "progs"
SRC = Path(__file__).resolve().parents[2] / "src"

CHILD = r"""
import json, socket, struct, sys, time
import pybpf

def checksum(header):
    total = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF

def frame(src):
    eth = b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00"
    addresses = socket.inet_aton(src) + socket.inet_aton("10.0.0.2")
    header = struct.pack("!BBHHHBBH", 0x45, 0, 28, 1, 0, 64, 17, 0) + addresses
    header = header[:10] + struct.pack("!H", checksum(header)) + header[12:]
    return eth + header + bytes(8)

def counts(obj):
    return {int(key): sum(value) for key, value in obj.maps["verdict_count"].items()}

def send(sender, packets):
    for packet in packets:
        sender.send(packet)
    time.sleep(0.2)  # veth delivers through the receiving side's backlog, asynchronously

obj = pybpf.load(sys.argv[1], backend="kernel")
obj.maps["deny_v4"][struct.pack("<I", 24) + socket.inet_aton("192.168.1.0")] = 1
sender = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
sender.bind(("pybpf-a", 0))
before = counts(obj)
link = obj.program("xdp_firewall").attach_xdp("pybpf-b", mode="generic")
send(sender, [frame("10.0.0.1")] * 5 + [frame("192.168.1.7")] * 3)
attached = counts(obj)
link.detach()
send(sender, [frame("10.0.0.1")] * 4)
detached = counts(obj)
link.close()
obj.close()
print(json.dumps({"before": before, "attached": attached, "detached": detached}))
"""


TCX_CHILD = r"""
import json, socket, sys, time
import pybpf
from pybpf.kernel import enable_stats

# tc_mark.o only marks packets; the kernel's run count says whether it ran on each.
obj = pybpf.load(sys.argv[1], backend="kernel")
program = obj.program("tc_mark")
sender = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
sender.bind(("pybpf-a", 0))
frame = b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00" + bytes.fromhex("4500001c00010000401166ce0a0000010a000002") + bytes(8)
with enable_stats():
    before = program.info().run_cnt
    with program.attach_tc("pybpf-b", direction="ingress"):
        for _ in range(6):
            sender.send(frame)
        time.sleep(0.2)
        attached = program.info().run_cnt
    # Leaving the with block closed the (unpinned) link: the program is off the hook.
    for _ in range(4):
        sender.send(frame)
    time.sleep(0.2)
    after = program.info().run_cnt
obj.close()
print(json.dumps({"before": before, "attached": attached, "after": after}))
"""


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@pytest.fixture
def netns() -> Iterator[str]:
    if os.geteuid() != 0:
        pytest.skip("needs root to create a network namespace")
    if shutil.which("ip") is None:
        pytest.skip("iproute2's ip is not installed")
    ok, reason = available()
    if not ok:
        pytest.skip(f"bpf() unavailable: {reason}")
    name = f"pybpf-test-{uuid.uuid4().hex[:8]}"
    try:
        _ip("netns", "add", name)
    except subprocess.CalledProcessError as error:
        pytest.skip(f"cannot create a network namespace: {error.stderr.strip()}")
    try:
        # No IPv6 in the namespace: its router solicitations and MLD reports would be extra frames.
        for conf in ("all", "default"):
            _ip("netns", "exec", name, "sh", "-c", f"echo 1 > /proc/sys/net/ipv6/conf/{conf}/disable_ipv6")
        _ip("-n", name, "link", "add", "pybpf-a", "type", "veth", "peer", "name", "pybpf-b")
        _ip("-n", name, "link", "set", "pybpf-a", "up")
        _ip("-n", name, "link", "set", "pybpf-b", "up")
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)


def test_xdp_link_counts_and_drops_then_detaches(netns: str) -> None:
    env = dict(os.environ, PYTHONPATH=str(SRC))
    result = subprocess.run(
        ["ip", "netns", "exec", netns, sys.executable, "-c", CHILD, str(PROGS / "xdp_firewall.o")],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["before"] == {"0": 0, "1": 0}
    # Key 0 counts drops (denied source), key 1 passes.
    assert seen["attached"] == {"0": 3, "1": 5}
    assert seen["detached"] == seen["attached"]


def test_tcx_link_runs_on_ingress_until_closed(netns: str) -> None:
    env = dict(os.environ, PYTHONPATH=str(SRC))
    result = subprocess.run(
        ["ip", "netns", "exec", netns, sys.executable, "-c", TCX_CHILD, str(PROGS / "tc_mark.o")],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["attached"] - seen["before"] == 6
    assert seen["after"] == seen["attached"]
