"""Native socket-buffer batches (tc, socket filters): equal to one test run per packet.

The batch precomputes one ``__sk_buff`` image per packet (len, protocol, pkt_type, the test
socket's family and addresses, the data pointers) and copies it in before each run, so fields a
program writes start afresh for every packet. The images must equal what ``SkbKind.prepare``
builds, and the batch's retvals, packets and maps what per-packet test runs give.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jit_build import build_object
from native_calls import python_calls

from pybpf.errors import TestRunError
from pybpf.platform.context import Conversion
from pybpf.runtime.batch import PacketBatchResult, native_batch_blocker, skb_context_images
from pybpf.runtime.loader import load
from pybpf.runtime.progtypes import run_kind
from pybpf.runtime.progtypes.skb import SkbRun

PROGS = Path(__file__).resolve().parents[1] / "progs"
ETH_IPV4 = bytes.fromhex("00112233445566778899aabb0800")
ETH_IPV6 = bytes.fromhex("ffffffffffff8899aabbccdd86dd")
ETH_ARP = bytes.fromhex("01005e0000018899aabbccdd0806")


def ipv4(protocol: int, payload: bytes = bytes(26), source: bytes = bytes([10, 0, 0, 1])) -> bytes:
    header = bytes.fromhex("4500002e1234400040") + bytes([protocol]) + bytes(2) + source + bytes([10, 0, 0, 2])
    return ETH_IPV4 + header + payload


PACKETS = [
    ipv4(6),
    ipv4(17, bytes(range(40))),
    ipv4(1, source=bytes([192, 168, 1, 9])),
    ETH_IPV6 + bytes(range(40)) + bytes(8),
    ETH_ARP + bytes(28),
    bytes.fromhex("aabbccddeeff0011223344550010") + b"\xff\xff" + bytes(30),  # 802.3 length field
] * 3

SOURCE = r"""
#include "bpf_helpers.h"

static long (*bpf_l4_csum_replace)(void *skb, __u32 offset, __u64 from, __u64 to, __u64 flags) =
	(void *)BPF_FUNC_l4_csum_replace;
static long (*bpf_skb_store_bytes)(void *skb, __u32 offset, const void *from, __u32 len, __u64 flags) =
	(void *)BPF_FUNC_skb_store_bytes;

/* Overwrite the IPv4 destination through the helper (with BPF_F_INVALIDATE_HASH, which a batch
 * serves natively too). */
SEC("tc")
int rewrite(struct __sk_buff *skb)
{
	__u32 addr = 0x0d0c0b0a;

	return bpf_skb_store_bytes(skb, 30, &addr, sizeof(addr), 2) + 200;
}

/* Every field the batch sets per packet goes into the result; mark and cb are read, then
 * written: a context that was not reset between packets would show the previous packet's. */
SEC("tc")
int fields(struct __sk_buff *skb)
{
	__u32 seen = skb->mark ^ skb->cb[0] ^ skb->priority;

	skb->mark = skb->len * 3 + 1;
	skb->cb[0] = skb->protocol;
	skb->priority = 77;
	return seen * 1000003 + skb->len + (skb->protocol << 8) + (skb->pkt_type << 24) + skb->ifindex * 7
		+ (skb->data_end - skb->data) * 29 + skb->hash + skb->vlan_present;
}

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} seen SEC(".maps");

/* The test socket's fields (cgroup_skb may read them): folded into a map value, run after run. */
SEC("cgroup_skb/ingress")
int sockets(struct __sk_buff *skb)
{
	__u32 key = 0;
	__u64 *slot = bpf_map_lookup_elem(&seen, &key);
	__u64 fields = skb->len + skb->family * 11 + skb->remote_ip4 * 13 + skb->local_ip4 * 17
		+ skb->local_ip6[1] * 19 + skb->remote_ip6[3] * 23 + skb->protocol * 5;

	if (slot)
		*slot = *slot * 31 + fields;
	return skb->len & 1;
}

/* Rewrite the IPv4 destination and fix the UDP/TCP checksum natively, as a NAT would. */
SEC("tc")
int nat(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	__u32 *daddr = data + 30, old, new;

	if (data + 14 + 20 + 8 > data_end)
		return 0;
	old = *daddr;
	new = old ^ 0x01020304;
	*daddr = new;
	return bpf_l4_csum_replace(skb, 14 + 20 + 6, old, new, BPF_F_PSEUDO_HDR | 4 | BPF_F_MARK_MANGLED_0) + 100;
}
"""


@pytest.fixture(scope="module")
def skb_object(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = SOURCE.replace("BPF_F_PSEUDO_HDR", "16").replace("BPF_F_MARK_MANGLED_0", "32")
    return build_object(source, tmp_path_factory.mktemp("batch_skb"))


@pytest.fixture(scope="module")
def engines(skb_object: Path) -> Iterator[tuple[Any, Any]]:
    with load(skb_object) as reference, load(skb_object, engine="jit") as native:
        yield reference, native


def per_packet(obj: Any, name: str, packets: list[bytes]) -> tuple[list[int], tuple[bytes, ...]]:
    runs = [obj.program(name).test_run(packet) for packet in packets]
    return [run.retval for run in runs], tuple(run.data_out for run in runs)


@pytest.mark.parametrize("name", ["fields", "nat", "rewrite"])
def test_tc_batch_runs_natively_and_equals_per_packet_test_runs(engines: tuple[Any, Any], name: str) -> None:
    reference, native = engines
    program = native.program(name)
    assert native_batch_blocker(program) is None
    with python_calls(program.jit) as calls:
        got = program.run_batch(PACKETS, data_out=True)
    assert got.native
    assert calls == []
    assert (list(got.retvals), got.data_out) == per_packet(reference, name, PACKETS)
    if name == "fields":
        assert len(set(got.retvals)) > 3  # the packets really differ in what the program sees
    else:
        assert got.data_out is not None
        assert sum(out != packet for out, packet in zip(got.data_out, PACKETS, strict=True)) >= 6  # rewritten


def test_cgroup_skb_batch_sees_each_packets_socket_fields(skb_object: Path) -> None:
    # A fresh load per engine: the map starts empty under both.
    with load(skb_object) as reference, load(skb_object, engine="jit") as native:
        program = native.program("sockets")
        assert native_batch_blocker(program) is None
        got = program.run_batch(PACKETS, data_out=True)
        assert isinstance(got, PacketBatchResult)
        expected = per_packet(reference, "sockets", PACKETS)
        folded = native.maps["seen"].lookup(0), reference.maps["seen"].lookup(0)
    assert (list(got.retvals), got.data_out) == expected
    assert folded[0] == folded[1] != 0


def test_tc_mark_and_the_socket_filter_batch_natively() -> None:
    for file, name in (("tc_mark", "tc_mark"), ("socket_filter", "udp_only")):
        with load(PROGS / f"{file}.o") as reference, load(PROGS / f"{file}.o", engine="jit") as native:
            program = native.program(name)
            assert native_batch_blocker(program) is None, name
            got = program.run_batch(PACKETS, data_out=True)
            assert isinstance(got, PacketBatchResult)
            assert (list(got.retvals), got.data_out) == per_packet(reference, name, PACKETS), name


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    packets=st.lists(
        st.one_of(
            st.builds(ipv4, st.sampled_from([1, 6, 17]), st.binary(min_size=8, max_size=40)),
            st.builds(lambda tail: ETH_IPV6 + tail, st.binary(min_size=40, max_size=60)),
            st.builds(lambda head, tail: head + tail, st.binary(min_size=14, max_size=14), st.binary(max_size=30)),
        ),
        min_size=1,
        max_size=8,
    )
)
def test_skb_batches_equal_the_interpreter_on_any_packets(engines: tuple[Any, Any], packets: list[bytes]) -> None:
    reference, native = engines
    for name in ("fields", "nat", "rewrite"):
        got = native.program(name).run_batch(packets, data_out=True)
        assert (list(got.retvals), got.data_out) == per_packet(reference, name, packets)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(frame=st.one_of(st.sampled_from(PACKETS), st.binary(min_size=54, max_size=90)))
def test_context_images_equal_the_test_runs(engines: tuple[Any, Any], frame: bytes) -> None:
    _, native = engines
    program = native.program("fields")
    prepared = run_kind(program.prog_type).prepare(program.interpreter.memory, program.layout, frame, None)
    try:
        assert isinstance(prepared, SkbRun)
        image = prepared.image
        data = image.pointer(Conversion.PACKET_DATA)
        meta = image.pointer(Conversion.PACKET_META)
        assert data is not None and meta is not None  # __sk_buff has both pointer slots
        length = image.get("len")
        built = skb_context_images(program.layout, [(frame, length)], data, meta)
        assert bytes(built) == bytes(image.region.view)
    finally:
        prepared.close()


def test_a_frame_test_run_refuses_fails_the_batch_before_any_run(engines: tuple[Any, Any]) -> None:
    _, native = engines
    with pytest.raises(TestRunError, match="Ethernet header"):
        native.program("fields").run_batch([PACKETS[0], bytes(10)])
    with pytest.raises(TestRunError, match="too short for its IP header"):
        native.program("fields").run_batch([ETH_IPV4 + bytes(10)])


def test_ld_abs_in_a_batch_reads_each_packet() -> None:
    # The socket filter sees the packet from the network header: LD_ABS 12 reads the IPv4 source's
    # first half (0x0800 here) and LD_ABS 23 the fourth payload byte; the result is min(len, 128).
    def frame(size: int, fourth: int) -> bytes:
        return ipv4(17, bytes([0, 0, 0, fourth]) + bytes(size), source=bytes([8, 0, 0, 1]))

    frames = [frame(4, 17), frame(30, 17), frame(200, 17), frame(30, 6), ipv4(17)]
    with load(PROGS / "socket_filter.o", engine="jit") as native:
        got = native.program("udp_only").run_batch(frames)
        expected = [native.program("udp_only").test_run(frame).retval for frame in frames]
    assert isinstance(got, PacketBatchResult)
    assert got.native
    assert list(got.retvals) == expected == [28, 54, 128, 0, 0]
