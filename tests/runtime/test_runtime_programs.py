"""The committed test objects loaded with pybpf.load and run on crafted packets (no kernel needed).

Expected results come from the C sources in tests/progs/ and from net/bpf/test_run.c's rules
(skb programs other than tc see the packet from its network header, XDP's data_out reflects
the program's writes).
"""

from __future__ import annotations

import os
import struct
import threading
from pathlib import Path

import pytest

import pybpf
from pybpf.errors import ContextAccessError, NotSupportedError, ProgramRejectedError, TestRunError
from pybpf.platform.uapi_generated import BpfProgType
from pybpf.runtime.maps import ProgArrayMap
from pybpf.runtime.maps.ringbuf import RingBufferConsumer

PROGS = Path(__file__).resolve().parents[1] / "progs"
XDP_DROP, XDP_PASS, XDP_TX = 1, 2, 3


ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD


def ip_checksum(header: bytes) -> int:
    total: int = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def per_cpu_u64_sum(value: bytes | tuple[bytes, ...]) -> int:
    """The sum of a per-CPU u64 value's copies (user space reads one copy per CPU)."""
    assert isinstance(value, tuple), "a per-CPU map entry holds one value per CPU"
    total: int = sum(struct.unpack("<Q", copy)[0] for copy in value)
    return total


def ipv4_frame(src: str, dst: str, proto: int = 17, payload: bytes = bytes(8), ethertype: int = ETH_P_IP) -> bytes:
    """An Ethernet frame (dst 02:..., src 04:...) carrying an IPv4 packet with a valid checksum."""
    eth = b"\x02" * 6 + b"\x04" * 6 + struct.pack("!H", ethertype)
    addresses = bytes(int(part) for part in src.split(".")) + bytes(int(part) for part in dst.split("."))
    header = struct.pack("!BBHHHBBH", 0x45, 0, 20 + len(payload), 1, 0, 64, proto, 0) + addresses
    header = header[:10] + struct.pack("!H", ip_checksum(header)) + header[12:]
    return eth + header + payload


def test_load_exposes_programs_maps_btf_and_license() -> None:
    with pybpf.load(PROGS / "xdp_firewall.o") as obj:
        assert set(obj.programs) == {"xdp_firewall"}
        assert set(obj.maps) == {"deny_v4", "verdict_count"}
        assert obj.license == "GPL"
        assert obj.btf is not None
        assert obj.programs["xdp_firewall"].prog_type is BpfProgType.XDP


def test_load_from_bytes_gives_the_same_program() -> None:
    data = (PROGS / "socket_filter.o").read_bytes()
    with pybpf.load(data) as obj:
        assert set(obj.programs) == {"udp_only"}


def test_socket_filter_sees_the_packet_from_its_network_header() -> None:
    # LD_ABS offsets count from skb->data, which test runs leave at the IP header: the program's
    # load_half(12) reads the source address's first half, load_byte(23) the UDP port's low byte.
    keep = ipv4_frame("8.0.0.1", "10.0.0.2", payload=b"\x00\x35\x00\x11" + bytes(4))
    other = ipv4_frame("10.0.0.1", "10.0.0.2", payload=b"\x00\x35\x00\x11" + bytes(4))
    with pybpf.load(PROGS / "socket_filter.o") as obj:
        program = obj.programs["udp_only"]
        result = program.test_run(keep)
        assert result.retval == len(keep) - 14  # skb->len: the IP packet
        assert result.data_out == bytes(14) + keep[14:]  # the kernel pushes back a zeroed MAC header
        assert program.test_run(other).retval == 0


def test_xdp_firewall_counts_verdicts_per_cpu_and_drops_denied_sources() -> None:
    with pybpf.load(PROGS / "xdp_firewall.o", ncpus=2) as obj:
        program = obj.programs["xdp_firewall"]
        frame = ipv4_frame("192.168.1.7", "10.0.0.2")
        assert program.test_run(frame).retval == XDP_PASS
        obj.maps["deny_v4"].update_raw(struct.pack("<I", 24) + bytes([192, 168, 1, 0]), struct.pack("<I", 1))
        result = program.test_run(frame, repeat=3)
        assert result.retval == XDP_DROP
        assert result.data_out == frame
        assert program.test_run(ipv4_frame("192.168.2.7", "10.0.0.2")).retval == XDP_PASS
        counts = {entry.key: entry.value for entry in obj.map_entries("verdict_count")}
        dropped = per_cpu_u64_sum(counts[struct.pack("<I", 0)])
        passed = per_cpu_u64_sum(counts[struct.pack("<I", 1)])
        assert (dropped, passed) == (3, 2)
        # Too short for an Ethernet header: passed without counting.
        assert program.test_run(b"\x00" * 10).retval == XDP_PASS


def test_xdp_lb_rewrites_the_packet_and_fixes_the_checksum() -> None:
    with pybpf.load(PROGS / "xdp_lb.o") as obj:
        backend = bytes([10, 1, 1, 5]) + bytes.fromhex("aabbccddeeff") + bytes(2)
        obj.maps["backends"].update_raw(struct.pack("<I", 3), backend)  # source ...3 -> slot 3
        frame = ipv4_frame("172.16.0.3", "10.0.0.2")
        result = obj.programs["xdp_lb"].test_run(frame)
        assert result.retval == XDP_TX
        out = result.data_out
        assert out[0:6] == bytes.fromhex("aabbccddeeff")  # new destination MAC
        assert out[6:12] == frame[0:6]  # old destination becomes the source
        assert out[14 + 16 : 14 + 20] == bytes([10, 1, 1, 5])  # daddr rewritten
        header = out[14:34]
        assert ip_checksum(header) == 0  # the incremental update kept the checksum valid
        # An empty backend slot leaves the packet alone.
        assert obj.programs["xdp_lb"].test_run(ipv4_frame("172.16.0.4", "10.0.0.2")).retval == XDP_PASS


def test_xdp_ctx_in_metadata_and_ctx_out() -> None:
    with pybpf.load(PROGS / "xdp_firewall.o") as obj:
        frame = ipv4_frame("1.2.3.4", "5.6.7.8")
        meta = b"\x11\x22\x33\x44"
        data = meta + frame
        ctx = struct.pack("<6I", 4, len(data), 0, 0, 0, 0)
        result = obj.programs["xdp_firewall"].test_run(data, ctx)
        assert result.retval == XDP_PASS  # the program parsed the frame after the metadata
        assert result.data_out == data
        assert result.ctx_out is not None
        assert struct.unpack_from("<3I", result.ctx_out) == (4, len(data), 0)
        with pytest.raises(TestRunError, match="data_end"):
            obj.programs["xdp_firewall"].test_run(data, struct.pack("<6I", 4, 3, 0, 0, 0, 0))
        with pytest.raises(TestRunError, match="multiple of 4"):
            obj.programs["xdp_firewall"].test_run(data, struct.pack("<6I", 3, len(data), 0, 0, 0, 0))


@pytest.mark.parametrize(("proto", "mark"), [(6, 0x10), (17, 0x20), (1, 0)], ids=["tcp", "udp", "icmp"])
def test_tc_mark_sets_the_mark_from_the_ip_protocol(proto: int, mark: int) -> None:
    with pybpf.load(PROGS / "tc_mark.o") as obj:
        result = obj.programs["tc_mark"].test_run(ipv4_frame("1.1.1.1", "2.2.2.2", proto=proto), bytes(192))
        assert result.retval == 0  # TC_ACT_OK
        assert result.ctx_out is not None
        assert struct.unpack_from("<I", result.ctx_out, 8)[0] == mark
        # Not IPv4: untouched.
        arp = ipv4_frame("1.1.1.1", "2.2.2.2", proto=proto, ethertype=0x0806)
        assert struct.unpack_from("<I", obj.programs["tc_mark"].test_run(arp, bytes(192)).ctx_out or b"", 8)[0] == 0


def test_tail_calls_follow_the_prog_array_initialiser() -> None:
    with pybpf.load(PROGS / "tail_calls.o") as obj:
        assert {entry.key for entry in obj.map_entries("jump_table")} == {struct.pack("<I", 1), struct.pack("<I", 3)}
        ipv4 = ipv4_frame("1.1.1.1", "2.2.2.2")
        ipv6 = ipv4_frame("1.1.1.1", "2.2.2.2", ethertype=0x86DD, payload=bytes(40))
        direct = {name: obj.programs[name].test_run(ipv4, bytes(192)) for name in ("tail_ipv4", "tail_ipv6")}
        via_v4 = obj.programs["dispatch"].test_run(ipv4, bytes(192))
        via_v6 = obj.programs["dispatch"].test_run(ipv6, bytes(192))
        assert via_v4.retval == direct["tail_ipv4"].retval
        assert via_v4.ctx_out == direct["tail_ipv4"].ctx_out
        # tail_ipv4 sets mark 4, tail_ipv6 mark 6 (tests/progs/tail_calls.c).
        assert via_v4.ctx_out is not None
        assert via_v6.ctx_out is not None
        assert struct.unpack_from("<I", via_v4.ctx_out, 8)[0] == 4
        assert struct.unpack_from("<I", via_v6.ctx_out, 8)[0] == 6


def test_prog_arrays_come_from_the_maps_package_and_report_program_ids() -> None:
    with pybpf.load(PROGS / "tail_calls.o") as obj:
        table = obj.maps["jump_table"]
        assert isinstance(table, ProgArrayMap)
        assert table.program_at(1) is obj.programs["tail_ipv4"]
        assert table.program_at(0) is None
        ids = {entry.key: entry.value for entry in obj.map_entries("jump_table")}
        assert ids == {
            struct.pack("<I", 1): struct.pack("<I", obj.programs["tail_ipv4"].id),
            struct.pack("<I", 3): struct.pack("<I", obj.programs["tail_ipv6"].id),
        }
        # User space can empty a slot: dispatch then falls through (mark untouched, TC_ACT_OK).
        del table[1]
        result = obj.programs["dispatch"].test_run(ipv4_frame("1.1.1.1", "2.2.2.2"), bytes(192))
        assert result.ctx_out is not None
        assert struct.unpack_from("<I", result.ctx_out, 8)[0] == 0


def test_tail_call_chain_stops_after_33_tail_calls() -> None:
    with pybpf.load(PROGS / "tail_chain.o") as obj:
        chain = obj.programs["chain"]
        frame = ipv4_frame("1.1.1.1", "2.2.2.2")
        # One run: the first invocation plus 33 tail calls, then bpf_tail_call falls through.
        assert chain.test_run(frame, bytes(192)).retval == 34
        assert chain.test_run(frame, bytes(192)).retval == 68  # the counter map keeps its value
        # An empty slot ends the chain at once.
        del obj.maps["chain_table"][0]
        assert chain.test_run(frame, bytes(192)).retval == 69


def test_global_data_and_rodata() -> None:
    with pybpf.load(PROGS / "global_data.o") as obj:
        rodata = obj.maps[".rodata"]
        assert rodata.frozen
        before = {entry.key: entry.value for entry in obj.map_entries(".bss")}
        obj.programs["global_filter"].test_run(ipv4_frame("1.1.1.1", "2.2.2.2"))
        after = {entry.key: entry.value for entry in obj.map_entries(".bss")}
        assert before != after  # the program wrote its .bss


def test_prog_type_override_and_unsupported_test_runs() -> None:
    with pybpf.load(PROGS / "socket_filter.o", prog_types={"udp_only": BpfProgType.SCHED_CLS}) as obj:
        program = obj.programs["udp_only"]
        assert program.prog_type is BpfProgType.SCHED_CLS
        # As a tc program the frame starts at the MAC header: load_half(12) is the ethertype.
        frame = ipv4_frame("1.1.1.1", "2.2.2.2")
        assert program.test_run(frame).retval == len(frame)
    with pybpf.load(PROGS / "xdp_firewall.o") as obj, pytest.raises(TestRunError, match="repeat"):
        obj.programs["xdp_firewall"].test_run(b"", repeat=-1)


def test_kprobe_runs_on_a_register_context() -> None:
    with pybpf.load(PROGS / "kprobe_count.o") as obj:
        program = next(iter(obj.programs.values()))
        assert program.prog_type is BpfProgType.KPROBE
        with pytest.raises(TestRunError, match="no data_in"):
            program.test_run(b"\x01")
        result = program.test_run(ctx_in=bytes(168))
        assert result.retval == 0
        assert result.data_out == b""
        counts = {entry.key: entry.value for entry in obj.map_entries("calls")}
        mine = counts[struct.pack("<I", os.getpid())]
        assert per_cpu_u64_sum(mine) == 1
        # The ring buffer event the program submitted reaches a user-space consumer.
        events: list[bytes] = []
        consumer = RingBufferConsumer()
        consumer.add(obj.maps["events"], lambda data: events.append(bytes(data)))
        assert consumer.poll() == 1
        pid, tgid, _ts = struct.unpack_from("<IIQ", events[0])
        assert (pid, tgid) == (threading.get_native_id(), os.getpid())
        assert events[0][16:32].rstrip(b"\0").decode() == Path("/proc/self/comm").read_text().strip()[:15]


def test_context_errors_surface_at_load() -> None:
    # tail_ipv4 loaded as XDP stores skb->mark at offset 8, which in xdp_md is the read-only data_meta.
    # Verified, the verifier refuses it as the kernel does; unverified, the context conversion names the field.
    with pytest.raises(ProgramRejectedError, match=r"invalid bpf_context access off=8 size=4") as rejected:
        pybpf.load(PROGS / "tail_calls.o", prog_types={"tail_ipv4": BpfProgType.XDP})
    assert rejected.value.pc == 1
    with pytest.raises(ContextAccessError, match=r"xdp_md\.data_meta") as raised:
        pybpf.load(PROGS / "tail_calls.o", prog_types={"tail_ipv4": BpfProgType.XDP}, verify=False)
    for error in (rejected.value, raised.value):
        assert error.pc == 1
        assert error.source is not None
        assert "tail_calls.c" in error.source
        assert "skb->mark = 4" in error.source


def test_skb_run_needs_an_ethernet_header() -> None:
    with pybpf.load(PROGS / "tc_mark.o") as obj, pytest.raises(TestRunError, match="Ethernet"):
        obj.programs["tc_mark"].test_run(b"\x00" * 13)


def test_unsupported_program_type_test_run() -> None:
    with (
        pybpf.load(PROGS / "socket_filter.o", prog_types={"udp_only": BpfProgType.SK_SKB}) as obj,
        pytest.raises(NotSupportedError),
    ):
        obj.programs["udp_only"].test_run(ipv4_frame("1.1.1.1", "2.2.2.2"))
