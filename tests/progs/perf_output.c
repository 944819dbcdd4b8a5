/* bpf_perf_event_output from XDP: a small sample plus the first 16 packet bytes (the flags'
 * BPF_F_CTXLEN_MASK bits), on the current CPU's ring. The helper's result goes to out_ret. */
#include "bpf_helpers_more.h"

struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(max_entries, 128);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __s64);
} out_ret SEC(".maps");

struct sample {
	__u32 magic;
	__u32 len;
};

SEC("xdp")
int perf_out(struct xdp_md *ctx)
{
	struct sample sample = { .magic = 0xfeedbeef, .len = ctx->data_end - ctx->data };
	__u64 flags = BPF_F_CURRENT_CPU | ((__u64)16 << 32);
	__u32 zero = 0;
	__s64 *ret = bpf_map_lookup_elem(&out_ret, &zero);
	long result = bpf_perf_event_output(ctx, &events, flags, &sample, sizeof(sample));

	if (ret)
		*ret = result;
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
