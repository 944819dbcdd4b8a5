/* Global data: a .rodata configuration (frozen), .data counters, .bss scratch, and a custom
 * .data.stats section; every access becomes a MAP_VALUE reference with an offset. */
#include "bpf_helpers.h"

const volatile __u32 cfg_max_len = 1500;
const volatile __u32 cfg_drop_proto = 17;
const volatile char cfg_name[8] = "pybpf";

__u64 packets_seen = 7;
__u32 last_len;                           /* .bss */
__u64 bytes_by_parity[2] SEC(".data.stats") = { 1, 2 };

SEC("socket")
int global_filter(struct __sk_buff *skb)
{
	__u32 len = skb->len;

	packets_seen += 1;
	last_len = len;
	bytes_by_parity[len & 1] += len;
	if (cfg_name[0] != 'p')
		return 0;
	if (skb->protocol == cfg_drop_proto)
		return 0;
	return len > cfg_max_len ? cfg_max_len : len;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
