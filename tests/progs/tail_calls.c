/* Tail calls: a prog_array initialised with `values = {...}` (libbpf's declarative slots). */
#include "bpf_helpers.h"

int tail_ipv4(struct __sk_buff *skb);
int tail_ipv6(struct __sk_buff *skb);

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 4);
	__uint(key_size, sizeof(__u32));
	__array(values, int(struct __sk_buff *));
} jump_table SEC(".maps") = {
	.values = {
		[1] = (void *)&tail_ipv4,
		[3] = (void *)&tail_ipv6,
	},
};

SEC("tc")
int tail_ipv4(struct __sk_buff *skb)
{
	skb->mark = 4;
	return 0;
}

SEC("tc")
int tail_ipv6(struct __sk_buff *skb)
{
	skb->mark = 6;
	return 0;
}

SEC("tc")
int dispatch(struct __sk_buff *skb)
{
	__u32 slot = skb->protocol == bpf_htons(0x86DD) ? 3 : 1;

	bpf_tail_call(skb, &jump_table, slot);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
