"""pcap replay: captures of mixed traffic (crafted with dpkt) through the committed packet programs.

Expected outputs are computed here from the packets themselves (ipaddress, our own checksum), never
read back from pybpf, so a wrong verdict or a wrong rewrite fails the comparison.
"""

from __future__ import annotations

import io
import ipaddress
import json
import os
import shutil
import socket
import struct
import subprocess
from pathlib import Path

import dpkt
import pytest

from pybpf import load
from pybpf.cli.main import main
from pybpf.hooks.packets import (
    CapturedPacket,
    CaptureError,
    CaptureFormat,
    PacketAction,
    ReplayError,
    read_capture,
    replay,
    write_capture,
)
from pybpf.runtime.object import Object

PROGS = Path(__file__).resolve().parents[1] / "progs"
MAC_A = bytes.fromhex("020000000001")
MAC_B = bytes.fromhex("020000000002")
DENIED_NETS = (ipaddress.ip_network("192.0.2.0/24"), ipaddress.ip_network("198.51.100.7/32"))


def ipv4(src: str, dst: str, payload: dpkt.Packet, proto: int) -> dpkt.ip.IP:
    return dpkt.ip.IP(src=socket.inet_aton(src), dst=socket.inet_aton(dst), p=proto, ttl=64, data=payload)


def ether(payload: dpkt.Packet, eth_type: int, src: bytes = MAC_A, dst: bytes = MAC_B) -> bytes:
    return bytes(dpkt.ethernet.Ethernet(src=src, dst=dst, type=eth_type, data=payload))


def tcp_frame(src: str, dst: str, sport: int = 40000, dport: int = 80) -> bytes:
    segment = dpkt.tcp.TCP(sport=sport, dport=dport, seq=1, flags=dpkt.tcp.TH_SYN, data=b"")
    return ether(ipv4(src, dst, segment, dpkt.ip.IP_PROTO_TCP), dpkt.ethernet.ETH_TYPE_IP)


def udp_frame(src: str, dst: str, data: bytes = b"hello") -> bytes:
    datagram = dpkt.udp.UDP(sport=5353, dport=53, data=data)
    return ether(ipv4(src, dst, datagram, dpkt.ip.IP_PROTO_UDP), dpkt.ethernet.ETH_TYPE_IP)


def icmp_frame(src: str, dst: str) -> bytes:
    echo = dpkt.icmp.ICMP(type=dpkt.icmp.ICMP_ECHO, data=dpkt.icmp.ICMP.Echo(id=1, seq=1, data=b"ping"))
    return ether(ipv4(src, dst, echo, dpkt.ip.IP_PROTO_ICMP), dpkt.ethernet.ETH_TYPE_IP)


def arp_frame() -> bytes:
    arp = dpkt.arp.ARP(
        sha=MAC_A, spa=socket.inet_aton("192.0.2.9"), tha=bytes(6), tpa=socket.inet_aton("192.0.2.1"),
        op=dpkt.arp.ARP_OP_REQUEST,
    )
    return ether(arp, dpkt.ethernet.ETH_TYPE_ARP, dst=b"\xff" * 6)


def ipv6_frame() -> bytes:
    datagram = dpkt.udp.UDP(sport=1000, dport=2000, data=b"v6")
    packet = dpkt.ip6.IP6(
        src=socket.inet_pton(socket.AF_INET6, "2001:db8::1"), dst=socket.inet_pton(socket.AF_INET6, "2001:db8::2"),
        nxt=dpkt.ip.IP_PROTO_UDP, hlim=64, data=datagram, plen=len(bytes(datagram)),
    )
    return ether(packet, dpkt.ethernet.ETH_TYPE_IP6)


def mixed_traffic() -> list[bytes]:
    frames = [
        tcp_frame("10.0.0.1", "10.0.0.2"),
        udp_frame("192.0.2.33", "10.0.0.2"),  # denied by prefix
        icmp_frame("198.51.100.7", "10.0.0.2"),  # denied by host route
        icmp_frame("198.51.100.8", "10.0.0.2"),  # the neighbour is not
        arp_frame(),
        ipv6_frame(),
        tcp_frame("192.0.2.200", "10.0.0.9", dport=443),  # denied
        udp_frame("203.0.113.5", "10.0.0.2", b"x" * 300),
        tcp_frame("192.0.3.1", "10.0.0.2"),  # just outside the /24
    ]
    truncated_ipv4 = tcp_frame("10.0.0.1", "10.0.0.2")[:24]  # Ethernet + 10 bytes of an IP header
    return [*frames, truncated_ipv4]


def firewall_expectation(frame: bytes) -> PacketAction:
    """What xdp_firewall.c does, derived from its source: drop denied IPv4 sources and short IPv4 headers."""
    if len(frame) < 14 or frame[12:14] != b"\x08\x00":
        return PacketAction.PASS
    if len(frame) < 14 + 20:
        return PacketAction.DROP
    source = ipaddress.ip_address(frame[26:30])
    return PacketAction.DROP if any(source in net for net in DENIED_NETS) else PacketAction.PASS


def fill_deny_list(obj: Object) -> None:
    deny = obj.maps["deny_v4"]
    for net in DENIED_NETS:
        # struct lpm_v4_key: u32 prefixlen (host order), then the address in network order.
        deny.update_raw(struct.pack("<I", net.prefixlen) + net.network_address.packed, struct.pack("<I", 1))


def percpu_total(obj: Object, map_name: str, key: int) -> int:
    for entry in obj.map_entries(map_name):
        if int.from_bytes(entry.key, "little") == key:
            assert isinstance(entry.value, tuple), "a per-CPU map entry holds one value per CPU"
            return sum(int.from_bytes(part, "little") for part in entry.value)
    raise KeyError(key)


def ipv4_header_checksum_ok(header: bytes) -> bool:
    """RFC 1071: the ones'-complement sum of the header's 16-bit words, checksum included, is 0xffff."""
    total: int = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total == 0xFFFF


@pytest.mark.parametrize("capture_format", [CaptureFormat.PCAP, CaptureFormat.PCAPNG])
def test_firewall_replay_outputs_exactly_the_allowed_frames(tmp_path: Path, capture_format: CaptureFormat) -> None:
    frames = mixed_traffic()
    suffix = capture_format.value
    capture = tmp_path / f"in.{suffix}"
    write_capture(capture, [CapturedPacket(1000.0 + i, frame) for i, frame in enumerate(frames)])
    packets = list(read_capture(capture))
    assert [packet.data for packet in packets] == frames

    with load(PROGS / "xdp_firewall.o") as obj:
        fill_deny_list(obj)
        report = replay(obj.program("xdp_firewall"), packets, obj=obj)
        dropped = percpu_total(obj, "verdict_count", 0)
        passed_ipv4 = percpu_total(obj, "verdict_count", 1)

    expected = [firewall_expectation(frame) for frame in frames]
    assert report.packets == len(frames)
    assert report.verdicts == {
        "XDP_DROP": expected.count(PacketAction.DROP),
        "XDP_PASS": expected.count(PacketAction.PASS),
    }
    kept = [frame for frame, action in zip(frames, expected, strict=True) if action is PacketAction.PASS]
    assert [out.data for out in report.outputs] == kept
    assert [out.timestamp for out in report.outputs] == [
        1000.0 + i for i, action in enumerate(expected) if action is PacketAction.PASS
    ]
    assert not any(out.modified for out in report.outputs)
    # The program's own counters: denied IPv4 sources, and IPv4 packets let through.
    full_ipv4 = [frame for frame in frames if frame[12:14] == b"\x08\x00" and len(frame) >= 34]
    denied = [frame for frame in full_ipv4 if firewall_expectation(frame) is PacketAction.DROP]
    assert (dropped, passed_ipv4) == (len(denied), len(full_ipv4) - len(denied)) == (3, 4)
    assert report.maps["verdict_count"].type == "percpu_array"
    assert report.packets_per_second > 0

    out_path = tmp_path / f"out.{suffix}"
    assert write_capture(out_path, report.output_captures()) == len(kept)
    assert out_path.read_bytes()[:4] == (b"\x0a\x0d\x0d\x0a" if suffix == "pcapng" else b"\xd4\xc3\xb2\xa1")
    assert [packet.data for packet in read_capture(out_path)] == kept


def test_load_balancer_transmits_rewritten_frames_with_valid_checksums() -> None:
    backends = {1: ("10.9.0.1", bytes.fromhex("0a0000000001")), 6: ("10.9.0.6", bytes.fromhex("0a0000000006"))}
    sources = ["10.1.0.1", "10.1.0.6", "10.1.0.2", "10.1.0.9", "10.1.0.14"]  # idx 1, 6, 2 (none), 1, 6
    frames = [udp_frame(src, "10.0.0.100", src.encode()) for src in sources]
    frames += [tcp_frame("10.1.0.1", "10.0.0.100"), icmp_frame("10.1.0.6", "10.0.0.100"), arp_frame(), ipv6_frame()]
    options = dpkt.ip.IP(
        src=socket.inet_aton("10.1.0.1"), dst=socket.inet_aton("10.0.0.100"), p=17, hl=6, opts=b"\x01\x01\x01\x00",
        data=dpkt.udp.UDP(sport=1, dport=2, data=b"opt"),
    )
    frames.append(ether(options, dpkt.ethernet.ETH_TYPE_IP))  # ihl 6: passed untouched

    with load(PROGS / "xdp_lb.o") as obj:
        table = obj.maps["backends"]
        for index, (address, mac) in backends.items():
            table.update_raw(struct.pack("<I", index), socket.inet_aton(address) + mac + bytes(2))
        report = replay(obj.program("xdp_lb"), frames)

    outputs = {out.index: out for out in report.outputs}
    assert sorted(outputs) == list(range(len(frames)))  # nothing is dropped
    transmitted = 0
    for index, frame in enumerate(frames):
        out = outputs[index]
        original = dpkt.ethernet.Ethernet(frame)
        chosen = None
        if isinstance(original.data, dpkt.ip.IP) and original.data.hl == 5:
            chosen = backends.get(int.from_bytes(original.data.src, "big") & 7)
        if chosen is None:
            assert (out.action, out.verdict, out.data, out.modified) == (PacketAction.PASS, "XDP_PASS", frame, False)
            continue
        transmitted += 1
        assert (out.action, out.verdict, out.modified) == (PacketAction.TX, "XDP_TX", True)
        address, mac = chosen
        assert out.data[0:6] == mac
        assert out.data[6:12] == frame[0:6]  # the old destination MAC becomes the source
        header = out.data[14:34]
        assert header[16:20] == socket.inet_aton(address)
        assert ipv4_header_checksum_ok(header)
        # Everything else in the IP header, and the payload, is untouched.
        assert header[:10] == frame[14:24] and header[12:16] == frame[26:30]
        assert out.data[34:] == frame[34:]
    assert transmitted == 6
    assert report.verdicts == {"XDP_PASS": len(frames) - transmitted, "XDP_TX": transmitted}


def test_tc_and_socket_filter_replays() -> None:
    frames = [tcp_frame("10.0.0.1", "10.0.0.2"), udp_frame("10.0.0.1", "10.0.0.2", b"u" * 200), arp_frame()]
    with load(PROGS / "tc_mark.o") as obj:
        report = replay(obj.program("tc_mark"), frames)
    assert report.verdicts == {"TC_ACT_OK": 3}
    assert [out.data for out in report.outputs] == frames

    with load(PROGS / "socket_filter.o") as obj:
        report = replay(obj.program("udp_only"), frames)
    # As in the kernel's skb test runs, a socket filter sees the packet from its network header:
    # udp_only's load_half(skb, 12) then reads the IPv4 source address, never 0x0800, so all drop.
    assert report.actions == {PacketAction.DROP: 3}
    assert report.outputs == ()


def test_refused_frames_are_reported_and_the_replay_goes_on() -> None:
    with load(PROGS / "tc_mark.o") as obj:
        report = replay(obj.program("tc_mark"), [b"\x01" * 8, tcp_frame("10.0.0.1", "10.0.0.2")])
    assert [item.index for item in report.refused] == [0]
    assert "Ethernet header" in report.refused[0].reason
    assert report.verdicts == {"TC_ACT_OK": 1}


def test_program_faults_stop_the_replay_with_the_packet_index() -> None:
    with load(PROGS / "xdp_firewall.o", engine="interp") as obj:  # an instruction budget: interpreter semantics
        fill_deny_list(obj)
        good = udp_frame("10.0.0.1", "10.0.0.2")
        with pytest.raises(ReplayError) as caught:
            replay(obj.program("xdp_firewall"), [good, good], instruction_limit=5)
    assert caught.value.index == 0


def test_unreadable_captures_raise_capture_errors(tmp_path: Path) -> None:
    with pytest.raises(CaptureError, match="not a pcap"):
        list(read_capture(io.BytesIO(b"GIF89a........")))
    cooked = io.BytesIO()
    dpkt.pcap.Writer(cooked, linktype=dpkt.pcap.DLT_LINUX_SLL).writepkt(b"\0" * 20, ts=0)
    cooked.seek(0)
    with pytest.raises(CaptureError, match="not Ethernet"):
        list(read_capture(cooked))
    empty = tmp_path / "empty.pcapng"
    empty.write_bytes(b"\x0a\x0d\x0d\x0a" + bytes(4))
    with pytest.raises(CaptureError, match="pcapng"):
        list(read_capture(empty))


# -- the CLI -------------------------------------------------------------------------------------


def run_cli(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main(list(argv), out)
    return code, out.getvalue()


def test_cli_run_object_replays_a_pcapng_and_writes_the_output(tmp_path: Path) -> None:
    frames = mixed_traffic()
    capture = tmp_path / "in.pcapng"
    write_capture(capture, frames)
    out_path = tmp_path / "out.pcap"
    code, text = run_cli(
        "run", str(PROGS / "xdp_firewall.o"), "--prog", "xdp_firewall", "--pcap", str(capture),
        "--out", str(out_path), "--json", "--dump-maps",
    )
    assert code == 0
    record = json.loads(text)
    # The deny list is empty in a fresh object: only the truncated IPv4 frame is dropped.
    assert record["verdicts"] == {"XDP_DROP": 1, "XDP_PASS": len(frames) - 1}
    assert record["packets"] == len(frames)
    assert record["written"] == len(frames) - 1
    assert record["maps"]["deny_v4"]["entries"] == []
    assert [packet.data for packet in read_capture(out_path)] == frames[:-1]
    # --no-batch runs one test run per frame: the same report.
    code, text = run_cli(
        "run", str(PROGS / "xdp_firewall.o"), "--prog", "xdp_firewall", "--pcap", str(capture), "--json", "--no-batch",
    )
    assert code == 0
    unbatched = json.loads(text)
    assert (unbatched["verdicts"], unbatched["packets"]) == (record["verdicts"], record["packets"])

    code, text = run_cli("run", str(PROGS / "xdp_firewall.o"), "--prog", "xdp_firewall", "--pcap", str(capture))
    assert code == 0
    assert "XDP_PASS" in text and f"{len(frames)} packets" in text
    assert "maps at the end" not in text
    assert "\x1b[" not in text  # no rich rendering off a terminal


def test_cli_run_keeps_raw_programs_and_checks_object_arguments(tmp_path: Path) -> None:
    raw = tmp_path / "prog.bin"
    raw.write_bytes(bytes.fromhex("b70000002a000000" "9500000000000000"))  # r0 = 42; exit
    assert run_cli("run", str(raw), "--json") == (0, '{"r0": 42, "instructions": 2}\n')
    code, _ = run_cli("run", str(raw), "--pcap", "x.pcap")
    assert code == 1
    code, _ = run_cli("run", str(PROGS / "xdp_firewall.o"), "--prog", "xdp_firewall")
    assert code == 1


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_cli_run_on_a_terminal_shows_progress_and_a_verdict_table(tmp_path: Path) -> None:
    from pybpf.cli.run_cmd import PROGRESS_THRESHOLD

    frames = [udp_frame("10.0.0.1", "10.0.0.2"), arp_frame()] * (PROGRESS_THRESHOLD // 2)
    capture = tmp_path / "big.pcap"
    write_capture(capture, frames)
    out = FakeTerminal()
    assert main(["run", str(PROGS / "xdp_firewall.o"), "--prog", "xdp_firewall", "--pcap", str(capture)], out) == 0
    text = out.getvalue()
    assert "verdicts" in text and "XDP_PASS" in text and "100.0%" in text
    assert "100%" in text and "\x1b[" in text  # the rich progress bar, drawn as it completes
    assert f"{len(frames)} packets" in text


VERDICTS_SOURCE = r"""
#include "bpf_helpers.h"
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>

static long (*bpf_redirect)(__u32 ifindex, __u64 flags) = (void *)BPF_FUNC_redirect;

SEC("socket")
int keep_40(struct __sk_buff *skb)
{
	return 40; /* keep the first 40 bytes of the network packet */
}

SEC("cgroup_skb/ingress")
int deny_udp(struct __sk_buff *skb)
{
	__u8 proto;

	if (bpf_skb_load_bytes(skb, __builtin_offsetof(struct iphdr, protocol), &proto, 1) < 0)
		return 1;
	return proto == 17 ? 0 : 1;
}

SEC("tc")
int tc_verdicts(struct __sk_buff *skb)
{
	__u8 proto;

	if (skb->protocol != bpf_htons(ETH_P_IP))
		return TC_ACT_UNSPEC;
	if (bpf_skb_load_bytes(skb, ETH_HLEN + __builtin_offsetof(struct iphdr, protocol), &proto, 1) < 0)
		return TC_ACT_OK;
	if (proto == 17)
		return TC_ACT_SHOT;
	if (proto == 1)
		return TC_ACT_STOLEN;
	return bpf_redirect(7, 0);
}

char LICENSE[] SEC("license") = "GPL";
"""


@pytest.fixture(scope="module")
def verdicts_object(tmp_path_factory: pytest.TempPathFactory) -> Path:
    clang = shutil.which("clang-19") or shutil.which("clang")
    if clang is None:
        pytest.skip("clang is not installed (the verdict programs are built at test time)")
    directory = tmp_path_factory.mktemp("verdicts")
    (directory / "verdicts.c").write_text(VERDICTS_SOURCE)
    arch_include = f"/usr/include/{os.uname().machine}-linux-gnu"  # <asm/types.h> on Debian
    result = subprocess.run(
        [clang, "-O2", "-g", "-target", "bpf", "-mcpu=v3", f"-I{PROGS}", f"-I{arch_include}",
         "-c", str(directory / "verdicts.c"), "-o", str(directory / "verdicts.o")],
        capture_output=True, text=True, check=False, timeout=60,
    )
    if result.returncode != 0:
        pytest.skip(f"clang cannot build BPF objects here: {result.stderr[-300:]}")
    return directory / "verdicts.o"


def test_socket_filter_cgroup_and_tc_verdicts_become_actions(verdicts_object: Path) -> None:
    frames = [
        tcp_frame("10.0.0.1", "10.0.0.2"), udp_frame("10.0.0.1", "10.0.0.2", b"u" * 100),
        icmp_frame("10.0.0.1", "10.0.0.2"), arp_frame(),
    ]
    with load(verdicts_object) as obj:
        keep = replay(obj.program("keep_40"), frames)
        cgroup = replay(obj.program("deny_udp"), frames)
        tc = replay(obj.program("tc_verdicts"), frames)
    # A socket filter keeps min(retval, len) bytes from the network header; the MAC header stays.
    assert [out.data for out in keep.outputs] == [frame[: 14 + 40] for frame in frames]
    assert [out.modified for out in keep.outputs] == [len(frame) > 54 for frame in frames]
    assert [out.index for out in cgroup.outputs] == [0, 2, 3]
    assert cgroup.actions == {PacketAction.DROP: 1, PacketAction.PASS: 3}
    assert tc.verdicts == {"TC_ACT_REDIRECT": 1, "TC_ACT_SHOT": 1, "TC_ACT_STOLEN": 1, "TC_ACT_UNSPEC": 1}
    assert [(out.index, out.action, out.redirect_ifindex) for out in tc.outputs] == [
        (0, PacketAction.REDIRECT, 7), (3, PacketAction.PASS, None),
    ]
