/* Python probes (pybpf.hooks.probes): count calls and sum the first argument on entry, keep the
 * start time per thread, and on return add the latency to a log2 histogram and sum the results.
 * The second argument is a string, read with bpf_probe_read_user_str. */
#include "hooks_helpers.h"

#define HIST_SLOTS 64

enum { STAT_CALLS = 0, STAT_ARG_SUM = 1, STAT_RET_SUM = 2, STAT_RETURNS = 3, STAT_SLOTS = 4 };

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, STAT_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, HIST_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} latency_hist SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u64);
	__type(value, __u64);
} start SEC(".maps");

struct name {
	char text[32];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct name);
} last_name SEC(".maps");

static __always_inline void add_stat(__u32 slot, __u64 amount)
{
	__u64 *value = bpf_map_lookup_elem(&stats, &slot);

	if (value)
		__sync_fetch_and_add(value, amount);
}

static __always_inline __u32 log2_u64(__u64 v)
{
	__u32 r = 0;

	/* Unrolled binary search: no loop for the verifier to bound. */
	if (v >> 32) { v >>= 32; r += 32; }
	if (v >> 16) { v >>= 16; r += 16; }
	if (v >> 8) { v >>= 8; r += 8; }
	if (v >> 4) { v >>= 4; r += 4; }
	if (v >> 2) { v >>= 2; r += 2; }
	if (v >> 1) { r += 1; }
	return r;
}

SEC("uprobe")
int on_entry(struct hooks_pt_regs *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u64 now = bpf_ktime_get_ns();
	__u32 zero = 0;
	struct name *name;

	add_stat(STAT_CALLS, 1);
	add_stat(STAT_ARG_SUM, PARM1(ctx));
	bpf_map_update_elem(&start, &id, &now, BPF_ANY);
	name = bpf_map_lookup_elem(&last_name, &zero);
	if (name && PARM2(ctx))
		bpf_probe_read_user_str(name->text, sizeof(name->text), (const void *)PARM2(ctx));
	return 0;
}

SEC("uretprobe")
int on_return(struct hooks_pt_regs *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u64 *started = bpf_map_lookup_elem(&start, &id);
	__u64 *bucket;
	__u32 slot;

	add_stat(STAT_RETURNS, 1);
	add_stat(STAT_RET_SUM, RC(ctx));
	if (!started)
		return 0;
	slot = log2_u64(bpf_ktime_get_ns() - *started);
	bpf_map_delete_elem(&start, &id);
	if (slot >= HIST_SLOTS)
		return 0;
	bucket = bpf_map_lookup_elem(&latency_hist, &slot);
	if (bucket)
		__sync_fetch_and_add(bucket, 1);
	return 0;
}

/* Concurrency: an atomic counter in an array, a per-CPU counter and a hash counter. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} percpu_calls SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16);
	__type(key, __u32);
	__type(value, __u64);
} hash_calls SEC(".maps");

SEC("uprobe")
int count_threads(struct hooks_pt_regs *ctx)
{
	__u32 zero = 0;
	__u64 one = 1, *value;

	add_stat(STAT_CALLS, 1);
	value = bpf_map_lookup_elem(&percpu_calls, &zero);
	if (value)
		*value += 1;
	value = bpf_map_lookup_elem(&hash_calls, &zero);
	if (value)
		__sync_fetch_and_add(value, 1);
	else if (bpf_map_update_elem(&hash_calls, &zero, &one, BPF_NOEXIST))
		/* Another CPU created it first: add to that one. */
		if ((value = bpf_map_lookup_elem(&hash_calls, &zero)))
			__sync_fetch_and_add(value, 1);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
