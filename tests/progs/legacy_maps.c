/* A legacy SEC("maps") definition (struct bpf_map_def), as iproute2 and old samples used. */
#include "bpf_helpers.h"

struct bpf_map_def SEC("maps") legacy_counts = {
	.type = BPF_MAP_TYPE_HASH,
	.key_size = sizeof(__u32),
	.value_size = sizeof(__u64),
	.max_entries = 256,
	.map_flags = 0,
};

struct bpf_map_def SEC("maps") legacy_flags = {
	.type = BPF_MAP_TYPE_ARRAY,
	.key_size = sizeof(__u32),
	.value_size = sizeof(__u32),
	.max_entries = 1,
};

SEC("socket")
int legacy_filter(struct __sk_buff *skb)
{
	__u32 key = skb->protocol, zero = 0;
	__u64 one = 1, *val;
	__u32 *flag;

	flag = bpf_map_lookup_elem(&legacy_flags, &zero);
	if (flag && *flag)
		return 0;
	val = bpf_map_lookup_elem(&legacy_counts, &key);
	if (val)
		__sync_fetch_and_add(val, 1);
	else
		bpf_map_update_elem(&legacy_counts, &key, &one, BPF_ANY);
	return -1;
}

char LICENSE[] SEC("license") = "GPL";
__u32 _version SEC("version") = 0x060c00;
