/* bpf-to-bpf calls: two programs in one section share .text subprograms; one subprogram
 * calls another, so the loader must append the transitive closure after each program. */
#include "bpf_helpers.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
} totals SEC(".maps");

__noinline static int add_total(__u32 slot, __u64 amount)
{
	__u64 *val = bpf_map_lookup_elem(&totals, &slot);

	if (!val)
		return -1;
	__sync_fetch_and_add(val, amount);
	return 0;
}

__noinline static __u64 scale(__u64 len, __u32 shift)
{
	if (shift > 8)
		shift = 8;
	add_total(3, len);
	/* Sign-extend the low 32 bits: a movsx with -mcpu=v4, a shift pair before it. */
	return (__u64)((__s64)(__s32)len << shift);
}

__noinline int clamp(int value, int lo, int hi)
{
	if (value < lo)
		return lo;
	return value > hi ? hi : value;
}

SEC("socket")
int count_len(struct __sk_buff *skb)
{
	add_total(0, skb->len);
	return clamp(skb->len, 0, 256);
}

SEC("socket")
int count_scaled(struct __sk_buff *skb)
{
	__u64 scaled = scale(skb->len, skb->mark & 0xf);

	add_total(1, scaled);
	return 0;
}

SEC("xdp")
int xdp_no_calls(struct xdp_md *ctx)
{
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
