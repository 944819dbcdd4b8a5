/* bpf_get_prandom_u32: four draws per run written over the packet's first 16 bytes. */
#include "bpf_helpers_more.h"

SEC("xdp")
int random_fill(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 *words = data;

	if (data + 16 > data_end)
		return XDP_ABORTED;
	words[0] = bpf_get_prandom_u32();
	words[1] = bpf_get_prandom_u32();
	words[2] = bpf_get_prandom_u32();
	words[3] = bpf_get_prandom_u32();
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
