/* A program that tail-calls itself: the kernel allows 33 tail calls (MAX_TAIL_CALL_CNT), so one
 * run executes chain 34 times and the 34th bpf_tail_call falls through to the return. */
#include "bpf_helpers.h"

int chain(struct __sk_buff *skb);

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 1);
	__uint(key_size, sizeof(__u32));
	__array(values, int(struct __sk_buff *));
} chain_table SEC(".maps") = {
	.values = {
		[0] = (void *)&chain,
	},
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} chain_depth SEC(".maps");

SEC("tc")
int chain(struct __sk_buff *skb)
{
	__u32 zero = 0;
	__u32 *depth = bpf_map_lookup_elem(&chain_depth, &zero);

	if (!depth)
		return 0;
	*depth += 1;
	bpf_tail_call(skb, &chain_table, 0);
	return *depth;
}

char LICENSE[] SEC("license") = "GPL";
