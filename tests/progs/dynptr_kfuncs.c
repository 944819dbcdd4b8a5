/* Dynptr kfuncs: packet dynptrs (bpf_dynptr_from_xdp/_skb) read and written through slices and
 * the dynptr helpers, views narrowed with bpf_dynptr_adjust, clones, and the queries. Every
 * result goes to `results`, so a user-space run and BPF_PROG_TEST_RUN compare value by value. */
#include "bpf_dynptr.h"

extern int bpf_dynptr_from_xdp(struct xdp_md *x, __u64 flags, struct bpf_dynptr *ptr__uninit) __ksym __weak;
extern int bpf_dynptr_from_skb(struct __sk_buff *s, __u64 flags, struct bpf_dynptr *ptr__uninit) __ksym __weak;
extern void *bpf_dynptr_slice(const struct bpf_dynptr *p, __u32 offset, void *buffer__opt,
			      __u32 buffer__szk) __ksym __weak;
extern void *bpf_dynptr_slice_rdwr(const struct bpf_dynptr *p, __u32 offset, void *buffer__opt,
				   __u32 buffer__szk) __ksym __weak;
extern int bpf_dynptr_adjust(const struct bpf_dynptr *p, __u32 start, __u32 end) __ksym __weak;
extern int bpf_dynptr_is_null(const struct bpf_dynptr *p) __ksym __weak;
extern int bpf_dynptr_is_rdonly(const struct bpf_dynptr *p) __ksym __weak;
extern __u32 bpf_dynptr_size(const struct bpf_dynptr *p) __ksym __weak;
extern int bpf_dynptr_clone(const struct bpf_dynptr *p, struct bpf_dynptr *clone__uninit) __ksym __weak;

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

char LICENSE[] SEC("license") = "GPL";

static __always_inline void record(__u32 slot, __s64 value)
{
	bpf_map_update_elem(&results, &slot, &value, BPF_ANY);
}

SEC("xdp")
int xdp_dynptr(struct xdp_md *ctx)
{
	struct bpf_dynptr ptr, copy, bad;
	__u8 buffer[14];
	__u64 word = 0;

	record(0, bpf_dynptr_from_xdp(ctx, 0, &ptr));
	record(1, bpf_dynptr_from_xdp(ctx, 1, &bad));
	record(2, bpf_dynptr_is_null(&bad));
	record(3, bpf_dynptr_size(&ptr));
	__u8 *eth = bpf_dynptr_slice(&ptr, 0, buffer, sizeof(buffer));
	if (!eth)
		return XDP_PASS;
	record(4, eth[12] << 8 | eth[13]);
	__u8 *first = bpf_dynptr_slice_rdwr(&ptr, 0, 0, 1);
	if (first)
		*first ^= 0xff;
	record(5, bpf_dynptr_clone(&ptr, &copy));
	record(6, bpf_dynptr_adjust(&copy, 14, bpf_dynptr_size(&copy)));
	record(7, bpf_dynptr_size(&copy));
	record(8, bpf_dynptr_read(&word, sizeof(word), &copy, 0, 0));
	record(9, word);
	record(10, bpf_dynptr_adjust(&copy, 4, 2));
	record(11, bpf_dynptr_is_rdonly(&ptr));
	record(12, bpf_dynptr_write(&copy, 0, &word, 2, 0));
	record(13, bpf_dynptr_slice(&ptr, 4096, 0, 8) != 0);
	return XDP_PASS;
}

SEC("tc")
int tc_dynptr(struct __sk_buff *skb)
{
	struct bpf_dynptr ptr;
	__u64 head[2] = {};

	record(0, bpf_dynptr_from_skb(skb, 0, &ptr));
	record(1, bpf_dynptr_size(&ptr));
	record(2, bpf_dynptr_read(head, sizeof(head), &ptr, 0, 0));
	record(3, head[0] & 0xffffffffffff);
	__u16 proto = 0x1234;
	record(4, bpf_dynptr_write(&ptr, 12, &proto, sizeof(proto), 0));
	__u8 buffer[4];
	__u8 *ip = bpf_dynptr_slice(&ptr, 14, buffer, sizeof(buffer));
	record(5, ip ? ip[0] : -1);
	return 0;
}

SEC("xdp")
int local_dynptr(struct xdp_md *ctx)
{
	struct bpf_dynptr ptr, copy;
	__u32 key = 0;
	__u64 *value = bpf_map_lookup_elem(&scratch, &key);

	if (!value)
		return XDP_PASS;
	bpf_dynptr_from_mem(value, 64, 0, &ptr);
	record(0, bpf_dynptr_clone(&ptr, &copy));
	record(1, bpf_dynptr_adjust(&copy, 8, 24));
	__u64 *middle = bpf_dynptr_slice_rdwr(&copy, 8, 0, 8);
	if (middle)
		*middle = 0x1122334455667788;
	record(2, middle != 0);
	record(3, bpf_dynptr_slice_rdwr(&copy, 12, 0, 8) != 0);
	record(4, bpf_dynptr_size(&copy));
	return XDP_PASS;
}

SEC("xdp")
int ringbuf_clone(struct xdp_md *ctx)
{
	struct bpf_dynptr ptr, copy;
	__u32 len = ctx->data_end - ctx->data;

	bpf_ringbuf_reserve_dynptr(&events, 8, 0, &ptr);
	bpf_dynptr_clone(&ptr, &copy);
	bpf_dynptr_write(&copy, 0, &len, sizeof(len), 0);
	bpf_ringbuf_submit_dynptr(&ptr, 0);
	return XDP_PASS;
}
