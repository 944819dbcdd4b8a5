"""pcap replay in native batches gives the very report one test run per packet gives.

Every capture of test_hooks_packets_replay.py is replayed twice, on two fresh loads of the same
object: once as the JIT batches it (``replay(...)``, in small chunks so that chunk boundaries and
refused frames fall inside a replay) and once per packet (``replay(..., batch=False)``, the
reference path). Verdicts, actions, output frames (bytes, timestamps, actions, redirect targets),
refused frames and every map at the end must be equal.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from test_hooks_packets_replay import (
    PROGS,
    arp_frame,
    fill_deny_list,
    icmp_frame,
    ipv6_frame,
    mixed_traffic,
    tcp_frame,
    udp_frame,
)

from pybpf import load
from pybpf.hooks.packets import CapturedPacket, ReplayReport, replay
from pybpf.hooks.packets.replay import batch_blocker
from pybpf.runtime.object import Object

Setup = Callable[[Object], None]


def no_setup(obj: Object) -> None:
    del obj


def setup_lb(obj: Object) -> None:
    for index in range(8):
        backend = bytes([10, 9, 0, index + 1]) + bytes([10, 0, 0, 0, 0, index]) + bytes(2)  # address, MAC, pad
        obj.maps["backends"].update_raw(index.to_bytes(4, "little"), backend)


def capture() -> list[CapturedPacket]:
    frames = [
        *mixed_traffic(),
        b"\x01" * 8,  # refused by skb hooks (shorter than an Ethernet header); XDP runs it
        *(udp_frame(f"10.1.0.{i}", "10.0.0.100", bytes([i]) * i) for i in range(1, 12)),
        tcp_frame("10.1.0.6", "10.0.0.100"),
        icmp_frame("192.0.2.4", "10.0.0.2"),
        arp_frame(),
        ipv6_frame(),
        # The same length but for both addresses: an skb image built once per shape must patch them.
        ipv6_frame()[:22] + bytes((i * 37 + 11) & 0xFF for i in range(32)) + ipv6_frame()[54:],
    ]
    return [CapturedPacket(500.0 + index / 8, frame) for index, frame in enumerate(frames)]


def both_ways(
    path: Path, name: str, setup: Setup, packets: list[CapturedPacket], *, ifindex: int = 0, chunk: int = 7
) -> tuple[ReplayReport, ReplayReport]:
    reports = []
    for batch in (True, False):
        with load(path, engine="jit") as obj:
            setup(obj)
            program = obj.program(name)
            if batch:
                assert batch_blocker(program) is None, f"{name} should batch natively"
            reports.append(replay(program, packets, obj=obj, ifindex=ifindex, batch=batch, chunk=chunk))
    return reports[0], reports[1]


def assert_same(batched: ReplayReport, single: ReplayReport) -> None:
    assert batched.packets == single.packets
    assert batched.verdicts == single.verdicts
    assert batched.actions == single.actions
    assert batched.outputs == single.outputs
    assert batched.refused == single.refused
    assert batched.maps == single.maps
    assert batched.instructions == single.instructions


@pytest.mark.parametrize(
    ("obj_name", "prog", "setup"),
    [
        ("xdp_firewall", "xdp_firewall", fill_deny_list),
        ("xdp_lb", "xdp_lb", setup_lb),
        ("tc_mark", "tc_mark", no_setup),
        ("socket_filter", "udp_only", no_setup),
    ],
)
@pytest.mark.parametrize("ifindex", [0, 9])
def test_committed_programs_replay_the_same_in_batches(obj_name: str, prog: str, setup: Setup, ifindex: int) -> None:
    packets = capture()
    batched, single = both_ways(PROGS / f"{obj_name}.o", prog, setup, packets, ifindex=ifindex)
    assert_same(batched, single)
    assert batched.packets == len(packets)
    assert sum(batched.verdicts.values()) + len(batched.refused) == len(packets)


def test_progress_moves_once_per_chunk_and_ends_at_the_count() -> None:
    packets = capture()
    seen: list[int] = []
    with load(PROGS / "xdp_firewall.o", engine="jit") as obj:
        replay(obj.program("xdp_firewall"), packets, progress=seen.append, chunk=10)
    full, rest = divmod(len(packets), 10)
    assert seen[:full] == [10 * (i + 1) for i in range(full)]
    assert seen[-1] == len(packets)
    assert len(seen) == full + (1 if rest else 0) + 1


CONTEXT_SOURCE = r"""
#include "bpf_helpers.h"
#include <linux/pkt_cls.h>

static long (*bpf_redirect)(__u32 ifindex, __u64 flags) = (void *)BPF_FUNC_redirect;
static long (*bpf_xdp_adjust_head)(struct xdp_md *xdp_md, int delta) = (void *)BPF_FUNC_xdp_adjust_head;
static long (*bpf_xdp_adjust_tail)(struct xdp_md *xdp_md, int delta) = (void *)BPF_FUNC_xdp_adjust_tail;

/* Moves the packet's head and tail by its length: the frames that leave change size. */
SEC("xdp")
int xdp_reshape(struct xdp_md *ctx)
{
	__u32 len = ctx->data_end - ctx->data;
	__u8 *data;

	if (len & 1) {
		if (bpf_xdp_adjust_head(ctx, -8))
			return XDP_ABORTED;
	} else if (len > 40) {
		if (bpf_xdp_adjust_tail(ctx, -(int)(len & 15)))
			return XDP_ABORTED;
	} else if (bpf_xdp_adjust_tail(ctx, 6)) {
		return XDP_DROP;
	}
	data = (void *)(long)ctx->data;
	if ((void *)(data + 1) > (void *)(long)ctx->data_end)
		return XDP_DROP;
	data[0] = len;
	return XDP_TX;
}

/* Writes the context's device fields into the frame, so the output shows what each run saw. */
SEC("xdp")
int xdp_ctx(struct xdp_md *ctx)
{
	__u32 *data = (void *)(long)ctx->data;

	if ((void *)(data + 3) > (void *)(long)ctx->data_end)
		return XDP_DROP;
	data[0] = ctx->ingress_ifindex;
	data[1] = ctx->rx_queue_index;
	data[2] = ctx->data_end - ctx->data;
	return data[0] & 1 ? XDP_TX : XDP_PASS;
}

SEC("tc")
int tc_ctx(struct __sk_buff *skb)
{
	__u32 *data = (void *)(long)skb->data;

	if ((void *)(data + 5) > (void *)(long)skb->data_end)
		return TC_ACT_SHOT;
	data[0] = skb->ifindex;
	data[1] = skb->ingress_ifindex;
	data[2] = skb->wire_len;
	data[3] = skb->len;
	data[4] = skb->protocol | skb->pkt_type << 16;
	return skb->len > 60 ? TC_ACT_OK : TC_ACT_UNSPEC;
}

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u64);
} seen SEC(".maps");

/* Folds the socket fields of the test socket (addresses, family) into a map slot per length. */
SEC("cgroup_skb/ingress")
int cg_addresses(struct __sk_buff *skb)
{
	__u32 slot = skb->len & 63;
	__u64 *sum = bpf_map_lookup_elem(&seen, &slot);
	__u64 mix = skb->remote_ip4 + (__u64)skb->local_ip4 * 3 + (__u64)skb->local_ip6[0] * 5;

	mix += (__u64)skb->local_ip6[3] * 7 + (__u64)skb->remote_ip6[1] * 11 + (__u64)skb->remote_ip6[2] * 13;
	mix += skb->family * 17;
	if (sum)
		__sync_fetch_and_add(sum, mix * (skb->ifindex + 1));
	return skb->len & 1;
}

SEC("tc")
int tc_redirect(struct __sk_buff *skb)
{
	return skb->len > 60 ? bpf_redirect(4, 0) : TC_ACT_OK;
}

char LICENSE[] SEC("license") = "GPL";
"""


@pytest.fixture(scope="module")
def context_object(tmp_path_factory: pytest.TempPathFactory) -> Path:
    clang = shutil.which("clang-19") or shutil.which("clang")
    if clang is None:
        pytest.skip("clang is not installed (the context programs are built at test time)")
    directory = tmp_path_factory.mktemp("replay_batch")
    (directory / "ctx.c").write_text(CONTEXT_SOURCE)
    arch_include = f"/usr/include/{os.uname().machine}-linux-gnu"
    result = subprocess.run(
        [clang, "-O2", "-g", "-target", "bpf", "-mcpu=v3", f"-I{PROGS}", f"-I{arch_include}",
         "-c", str(directory / "ctx.c"), "-o", str(directory / "ctx.o")],
        capture_output=True, text=True, check=False, timeout=60,
    )
    if result.returncode != 0:
        pytest.skip(f"clang cannot build BPF objects here: {result.stderr[-300:]}")
    return directory / "ctx.o"


@pytest.mark.parametrize("prog", ["xdp_ctx", "tc_ctx", "cg_addresses", "xdp_reshape"])
@pytest.mark.parametrize("ifindex", [0, 6, 7])
def test_the_device_context_is_the_same_in_batches(context_object: Path, prog: str, ifindex: int) -> None:
    packets = capture()
    batched, single = both_ways(context_object, prog, no_setup, packets, ifindex=ifindex, chunk=5)
    assert_same(batched, single)
    if prog == "xdp_reshape":
        assert {len(out.data) - len(packets[out.index].data) for out in batched.outputs} >= {8, 6, -2}
        return
    if prog == "cg_addresses":
        values = [entry.value for entry in batched.maps["seen"].entries]
        assert any(isinstance(value, bytes) and int.from_bytes(value, "little") for value in values)
        return
    expected = ifindex or 1  # without a device, test runs report loopback
    emitted = [out for out in batched.outputs if len(out.data) >= 12]
    assert emitted and all(int.from_bytes(out.data[:4], "little") == expected for out in emitted)


def test_redirecting_programs_replay_per_packet_with_their_targets(context_object: Path) -> None:
    packets = capture()
    with load(context_object, engine="jit") as obj:
        program = obj.program("tc_redirect")
        assert batch_blocker(program) is not None
        report = replay(program, packets)
    redirected = [out for out in report.outputs if out.verdict == "TC_ACT_REDIRECT"]
    assert redirected and all(out.redirect_ifindex == 4 for out in redirected)
