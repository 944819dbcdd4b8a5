/* bpf_trace_printk: one line per run naming the packet length and ethertype; the helper's
 * result (the formatted length) goes to printed. */
#include "bpf_helpers_more.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __s64);
} printed SEC(".maps");

SEC("xdp")
int trace_len(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u8 *eth = data;
	const char fmt[] = "len %u proto %x\n";
	__u32 zero = 0;
	__s64 *ret = bpf_map_lookup_elem(&printed, &zero);
	__u32 proto = 0;
	long result;

	if (data + 14 <= data_end)
		proto = (eth[12] << 8) | eth[13];
	result = bpf_trace_printk(fmt, sizeof(fmt), (__u32)(data_end - data), proto);
	if (ret)
		*ret = result;
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
