/* Queue and stack maps through bpf_map_push_elem/pop_elem/peek_elem.
 * Every run pushes the packet length onto both (the stack with BPF_EXIST, so a full stack drops
 * its oldest element, while the full queue refuses with -E2BIG), peeks both, and pops both when
 * the packet is longer than 60 bytes. Each helper's result and value lands in qs_log. */
#include "bpf_helpers_more.h"

struct {
	__uint(type, BPF_MAP_TYPE_QUEUE);
	__uint(max_entries, 4);
	__type(value, __u32);
} fifo SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_STACK);
	__uint(max_entries, 4);
	__type(value, __u32);
} lifo SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 12);
	__type(key, __u32);
	__type(value, __s64);
} qs_log SEC(".maps");

static __always_inline void log_at(__u32 slot, __s64 value)
{
	__s64 *entry = bpf_map_lookup_elem(&qs_log, &slot);

	if (entry)
		*entry = value;
}

SEC("xdp")
int queue_stack(struct xdp_md *ctx)
{
	__u32 len = ctx->data_end - ctx->data;
	__u32 head = 0, top = 0, popped_head = 0, popped_top = 0;

	log_at(0, bpf_map_push_elem(&fifo, &len, 0));
	log_at(1, bpf_map_push_elem(&lifo, &len, BPF_EXIST));
	log_at(2, bpf_map_peek_elem(&fifo, &head));
	log_at(3, head);
	log_at(4, bpf_map_peek_elem(&lifo, &top));
	log_at(5, top);
	if (len > 60) {
		log_at(6, bpf_map_pop_elem(&fifo, &popped_head));
		log_at(7, popped_head);
		log_at(8, bpf_map_pop_elem(&lifo, &popped_top));
		log_at(9, popped_top);
	}
	/* An invalid flag: push refuses it with -EINVAL. */
	log_at(10, bpf_map_push_elem(&fifo, &len, BPF_NOEXIST));
	return head == top ? XDP_PASS : XDP_DROP;
}

char LICENSE[] SEC("license") = "GPL";
