/* XDP firewall: drop IPv4 packets whose source address matches a prefix in an LPM trie. */
#include "bpf_helpers.h"
#include <linux/if_ether.h>
#include <linux/ip.h>

struct lpm_v4_key {
	__u32 prefixlen;
	__u32 addr;
};

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1024);
	__type(key, struct lpm_v4_key);
	__type(value, __u32);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} deny_v4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} verdict_count SEC(".maps");

static __always_inline void count(__u32 verdict)
{
	__u64 *slot = bpf_map_lookup_elem(&verdict_count, &verdict);
	if (slot)
		*slot += 1;
}

SEC("xdp")
int xdp_firewall(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip;
	struct lpm_v4_key key;

	if ((void *)(eth + 1) > data_end)
		return XDP_PASS;
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end)
		return XDP_DROP;
	key.prefixlen = 32;
	key.addr = ip->saddr;
	if (bpf_map_lookup_elem(&deny_v4, &key)) {
		count(0);
		return XDP_DROP;
	}
	count(1);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
