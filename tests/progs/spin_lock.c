/* bpf_spin_lock in a map value: packets and bytes per ethertype class, updated under the lock. */
#include "bpf_helpers_more.h"

struct stats {
	struct bpf_spin_lock lock;
	__u32 packets;
	__u64 bytes;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, struct stats);
} locked_stats SEC(".maps");

SEC("xdp")
int locked_count(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u8 *eth = data;
	struct stats fresh = {};
	struct stats *stats;
	__u32 key;

	if (data + 14 > data_end)
		return XDP_ABORTED;
	key = eth[13] & 3;
	stats = bpf_map_lookup_elem(&locked_stats, &key);
	if (!stats) {
		bpf_map_update_elem(&locked_stats, &key, &fresh, BPF_NOEXIST);
		stats = bpf_map_lookup_elem(&locked_stats, &key);
		if (!stats)
			return XDP_ABORTED;
	}
	bpf_spin_lock(&stats->lock);
	stats->packets += 1;
	stats->bytes += data_end - data;
	bpf_spin_unlock(&stats->lock);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
