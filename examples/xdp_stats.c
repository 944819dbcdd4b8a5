// SPDX-License-Identifier: GPL-2.0
/* xdp_stats: count IPv4 packets per protocol and bytes per source address, and drop the
 * protocol named by the .rodata setting `blocked_proto` (ICMP unless changed at load time).
 *
 * Build (from examples/): clang-19 -O2 -g -target bpf -I../tests/progs -I/usr/include/$(uname -m)-linux-gnu \
 *                        -c xdp_stats.c   (bpf_helpers.h is the test programs' minimal header)
 */
#include "bpf_helpers.h"
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, __u64);
} packets_by_proto SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u64);
} bytes_by_source SEC(".maps");

const volatile __u8 blocked_proto = IPPROTO_ICMP;

SEC("xdp")
int xdp_stats(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip;
	__u64 len = data_end - data;
	__u64 *count, *bytes;
	__u32 proto, source;

	if ((void *)(eth + 1) > data_end)
		return XDP_ABORTED;
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end)
		return XDP_DROP;

	proto = ip->protocol;
	count = bpf_map_lookup_elem(&packets_by_proto, &proto);
	if (count)
		__sync_fetch_and_add(count, 1);

	source = ip->saddr;
	bytes = bpf_map_lookup_elem(&bytes_by_source, &source);
	if (bytes)
		__sync_fetch_and_add(bytes, len);
	else
		bpf_map_update_elem(&bytes_by_source, &source, &len, BPF_ANY);

	return proto == blocked_proto ? XDP_DROP : XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
