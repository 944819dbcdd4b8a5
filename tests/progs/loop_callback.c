/* bpf_loop with a callback: the callback's address is an lddw with the pseudo FUNC source. */
#include "bpf_helpers.h"

struct loop_ctx {
	__u64 sum;
	__u32 limit;
};

static long add_index(__u32 index, void *data)
{
	struct loop_ctx *lc = data;

	if (index >= lc->limit)
		return 1; /* stop */
	lc->sum += index;
	return 0;
}

SEC("xdp")
int xdp_loop(struct xdp_md *ctx)
{
	struct loop_ctx lc = { .sum = 0, .limit = ctx->ingress_ifindex & 63 };

	bpf_loop(64, add_index, &lc, 0);
	return lc.sum > 100 ? XDP_DROP : XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
