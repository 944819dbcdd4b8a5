/* XDP load balancer: pick a backend by source address, rewrite MACs and destination IP,
 * fix the IPv4 header checksum incrementally, and bounce the packet out (XDP_TX). */
#include "bpf_helpers.h"
#include <linux/if_ether.h>
#include <linux/ip.h>

struct backend {
	__u32 addr;
	unsigned char mac[ETH_ALEN];
	__u16 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 8);
	__type(key, __u32);
	__type(value, struct backend);
} backends SEC(".maps");

static __always_inline __u16 csum_fold(__u32 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

SEC("xdp")
int xdp_lb(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip;
	struct backend *be;
	__u32 idx, old_daddr;
	__s64 sum;
	unsigned char tmp[ETH_ALEN];

	if ((void *)(eth + 1) > data_end)
		return XDP_ABORTED;
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end)
		return XDP_DROP;
	if (ip->ihl != 5)
		return XDP_PASS;

	idx = bpf_ntohl(ip->saddr) & 7;
	be = bpf_map_lookup_elem(&backends, &idx);
	if (!be || !be->addr)
		return XDP_PASS;

	old_daddr = ip->daddr;
	ip->daddr = be->addr;
	/* RFC 1624 incremental update: HC' = ~(~HC + ~m + m'). */
	sum = bpf_csum_diff(&old_daddr, 4, &ip->daddr, 4, ~((__u32)ip->check) & 0xffff);
	if (sum < 0)
		return XDP_ABORTED;
	ip->check = csum_fold((__u32)sum);

	__builtin_memcpy(tmp, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, be->mac, ETH_ALEN);
	(void)tmp;
	return XDP_TX;
}

char LICENSE[] SEC("license") = "GPL";
