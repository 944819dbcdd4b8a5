/* Dynptr helpers end to end: local dynptrs over a map value, ring buffer dynptrs (including the
 * failed reservations that must still be discarded), and a user ring buffer drained through a
 * callback receiving a dynptr per sample. Each helper's return value goes to `results`, so a run
 * in user space and one in the kernel (BPF_PROG_TEST_RUN) can be compared value by value. */
#include "bpf_dynptr.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64[8]);
} scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 16);
	__type(key, __u32);
	__type(value, __s64);
} results SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_USER_RINGBUF);
	__uint(max_entries, 4096);
} requests SEC(".maps");

char LICENSE[] SEC("license") = "GPL";

static __always_inline void record(__u32 slot, __s64 value)
{
	bpf_map_update_elem(&results, &slot, &value, BPF_ANY);
}

SEC("xdp")
int dynptr_mem(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *data_end = (void *)(long)ctx->data_end;
	struct bpf_dynptr ptr, bad;
	__u64 buf[2] = {};
	__u32 key = 0;
	__u64 *value = bpf_map_lookup_elem(&scratch, &key);

	if (!value)
		return XDP_ABORTED;
	record(0, bpf_dynptr_from_mem(value, 64, 0, &ptr));
	record(1, bpf_dynptr_from_mem(value, 64, 1, &bad));
	record(2, bpf_dynptr_read(buf, 8, &bad, 0, 0));
	if (data + 16 <= data_end) {
		/* Helpers without pkt_access take no packet pointer: copy to the stack first. */
		__builtin_memcpy(buf, data, 16);
		record(3, bpf_dynptr_write(&ptr, 4, buf, 16, 0));
	}
	record(4, bpf_dynptr_write(&ptr, 60, buf, 8, 0));
	record(5, bpf_dynptr_write(&ptr, 0, buf, 8, 1));
	record(6, bpf_dynptr_read(buf, 16, &ptr, 8, 0));
	record(7, bpf_dynptr_read(buf, 16, &ptr, 56, 0));
	__u64 *slice = bpf_dynptr_data(&ptr, 32, 8);
	if (slice)
		*slice = buf[0] + buf[1];
	record(8, slice != 0);
	record(9, bpf_dynptr_data(&ptr, 60, 8) != 0);
	record(10, bpf_dynptr_data(&bad, 0, 8) != 0);
	return buf[0] & 1 ? XDP_DROP : XDP_PASS;
}

SEC("xdp")
int dynptr_ringbuf(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *data_end = (void *)(long)ctx->data_end;
	struct bpf_dynptr ptr, big, flagged, huge;
	__u32 len = data_end - data, ifindex = ctx->ingress_ifindex;
	__u64 head[2] = {};
	long err;

	err = bpf_ringbuf_reserve_dynptr(&events, 24, 0, &ptr);
	record(0, err);
	if (!err) {
		bpf_dynptr_write(&ptr, 0, &len, sizeof(len), 0);
		bpf_dynptr_write(&ptr, 4, &ifindex, sizeof(ifindex), 0);
		if (data + 16 <= data_end) {
			__builtin_memcpy(head, data, 16);
			bpf_dynptr_write(&ptr, 8, head, 16, 0);
		}
		__u32 *tail = bpf_dynptr_data(&ptr, 20, 4);
		if (tail)
			*tail = 0xfeedbeef;
	}
	if (len > 100)
		bpf_ringbuf_discard_dynptr(&ptr, 0);
	else
		bpf_ringbuf_submit_dynptr(&ptr, 0);
	record(1, bpf_ringbuf_reserve_dynptr(&events, 1 << 25, 0, &huge));
	bpf_ringbuf_discard_dynptr(&huge, 0);
	record(2, bpf_ringbuf_reserve_dynptr(&events, 8, 1, &flagged));
	bpf_ringbuf_submit_dynptr(&flagged, 0);
	record(3, bpf_ringbuf_reserve_dynptr(&events, 8192, 0, &big));
	bpf_ringbuf_discard_dynptr(&big, 0);
	return XDP_PASS;
}

struct drain_state {
	__u64 sum;
	__u64 samples;
	__u64 short_reads;
};

static long on_sample(const struct bpf_dynptr *sample, void *data)
{
	struct drain_state *state = data;
	__u64 v = 0;

	state->samples++;
	if (bpf_dynptr_read(&v, sizeof(v), sample, 0, 0)) {
		state->short_reads++;
		return 0;
	}
	__u32 *low = bpf_dynptr_data(sample, 0, 4);
	if (low)
		state->sum += *low;
	state->sum += v >> 32;
	return v == 99 ? 1 : 0;
}

SEC("xdp")
int drain(struct xdp_md *ctx)
{
	struct drain_state state = {};

	record(0, bpf_user_ringbuf_drain(&requests, on_sample, &state, 0));
	record(1, state.sum);
	record(2, state.samples);
	record(3, state.short_reads);
	return XDP_PASS;
}

SEC("xdp")
int drain_bad_flags(struct xdp_md *ctx)
{
	struct drain_state state = {};

	record(4, bpf_user_ringbuf_drain(&requests, on_sample, &state, 4));
	return XDP_PASS;
}
