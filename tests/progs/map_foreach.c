/* bpf_map_delete_elem and bpf_for_each_map_elem on a hash map.
 * Every run counts its packet length in `lengths` (deleting a length once it was seen 3 times,
 * and deleting an absent key to get -ENOENT), then sums the map with for_each_map_elem. */
#include "bpf_helpers_more.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16);
	__type(key, __u32);
	__type(value, __u64);
} lengths SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 5);
	__type(key, __u32);
	__type(value, __s64);
} totals SEC(".maps");

struct sum_ctx {
	__u64 sum;
	__u64 elements;
	__u64 max_key;
};

static long add_one(void *map, __u32 *key, __u64 *value, struct sum_ctx *sum)
{
	sum->sum += *value;
	sum->elements += 1;
	if (*key > sum->max_key)
		sum->max_key = *key;
	return 0;
}

static __always_inline void total_at(__u32 slot, __s64 value)
{
	__s64 *entry = bpf_map_lookup_elem(&totals, &slot);

	if (entry)
		*entry = value;
}

SEC("xdp")
int count_lengths(struct xdp_md *ctx)
{
	__u32 len = ctx->data_end - ctx->data;
	__u32 absent = 0xFFFF;
	__u64 one = 1;
	__u64 *count = bpf_map_lookup_elem(&lengths, &len);
	struct sum_ctx sum = {};
	long visited;

	if (count) {
		*count += 1;
		if (*count >= 3)
			total_at(3, bpf_map_delete_elem(&lengths, &len));
	} else {
		bpf_map_update_elem(&lengths, &len, &one, BPF_NOEXIST);
	}
	total_at(4, bpf_map_delete_elem(&lengths, &absent));
	visited = bpf_for_each_map_elem(&lengths, add_one, &sum, 0);
	total_at(0, sum.sum);
	total_at(1, sum.elements);
	total_at(2, visited);
	return sum.max_key == len ? XDP_PASS : XDP_DROP;
}

char LICENSE[] SEC("license") = "GPL";
