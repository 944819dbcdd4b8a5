/* Map-in-map with declarative slots: an array of maps and a hash of maps whose inner maps are
 * the object's own maps (`values = { [i] = &inner }`). The program looks up an inner map, then
 * a value in it. */
#include "bpf_helpers_more.h"

struct inner_counts {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
} inner_a SEC(".maps"), inner_b SEC(".maps"), inner_c SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 2);
	__type(key, __u32);
	__array(values, struct inner_counts);
} by_family SEC(".maps") = {
	.values = {
		[0] = &inner_a,
		[1] = &inner_b,
	},
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH_OF_MAPS);
	__uint(max_entries, 4);
	__type(key, __u32);
	__array(values, struct inner_counts);
} by_class SEC(".maps") = {
	.values = {
		[2] = &inner_c,
	},
};

SEC("xdp")
int mim_count(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u8 *eth = data;
	__u32 family, class, slot;
	__u64 *value;
	void *inner;
	int misses = 0;

	if (data + 34 > data_end)
		return XDP_ABORTED;
	family = eth[13] == 0xdd;     /* 0 for IPv4 (and ARP), 1 for IPv6 */
	class = eth[23] & 3;          /* IPv4 protocol's low bits: UDP 1, TCP 2, ICMP 1 */
	slot = eth[26] & 3;           /* first byte of the IPv4 source address */
	inner = bpf_map_lookup_elem(&by_family, &family);
	if (inner) {
		value = bpf_map_lookup_elem(inner, &slot);
		if (value)
			*value += data_end - data;
	} else {
		misses++;
	}
	inner = bpf_map_lookup_elem(&by_class, &class);
	if (inner) {
		value = bpf_map_lookup_elem(inner, &slot);
		if (value)
			*value += 1;
	} else {
		misses++;
	}
	return misses ? XDP_DROP : XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
