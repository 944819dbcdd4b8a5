/* Hooks fired by several threads at once (tests/hooks/test_hooks_concurrency.py): counters that
 * must not lose an update. Every program only looks maps up (no update or delete), so its runs
 * may overlap: the shared counters use atomic adds and a compare-and-swap loop, the per-CPU one a plain add, which is
 * enough because one virtual CPU runs one program at a time. */
#include "hooks_helpers.h"

#define HOT_ADDS 64
#define CAS_ATTEMPTS 16

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
} shared_hash SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 3);
	__type(key, __u32);
	__type(value, __u64);
} shared_array SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} percpu_counter SEC(".maps");

static __always_inline void count(__u64 amount)
{
	__u32 zero = 0, one = 1, two = 2;
	__u64 *value;

	value = bpf_map_lookup_elem(&shared_hash, &zero);
	if (value)
		__sync_fetch_and_add(value, amount);
	value = bpf_map_lookup_elem(&shared_array, &zero);
	if (value)
		__sync_fetch_and_add(value, amount);
	/* Compare-and-swap, retried while another run changed the value in between; a run that
	 * gives up (the verifier wants a bound) counts itself in slot 2 instead. */
	value = bpf_map_lookup_elem(&shared_array, &one);
	if (value) {
		int attempt;

		for (attempt = 0; attempt < CAS_ATTEMPTS; attempt++) {
			__u64 seen = *(volatile __u64 *)value;

			if (__sync_val_compare_and_swap(value, seen, seen + 1) == seen)
				break;
		}
		if (attempt == CAS_ATTEMPTS) {
			value = bpf_map_lookup_elem(&shared_array, &two);
			if (value)
				__sync_fetch_and_add(value, 1);
		}
	}
	value = bpf_map_lookup_elem(&percpu_counter, &zero);
	if (value)
		*value += amount;
}

SEC("uprobe")
int probe_count(struct hooks_pt_regs *ctx)
{
	count(PARM1(ctx));
	return 0;
}

SEC("raw_tracepoint/app/work")
int tracepoint_count(__u64 *ctx)
{
	count(ctx[0]);
	return 0;
}

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} hot SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} hot_percpu SEC(".maps");

/* Many atomic adds per run on one word, and as many plain (volatile: each one a load and a
 * store) adds on this CPU's word: runs meet often in the middle of either. */
SEC("uprobe")
int hot_adds(struct hooks_pt_regs *ctx)
{
	__u32 zero = 0;
	__u64 *value = bpf_map_lookup_elem(&hot, &zero);
	__u64 *mine = bpf_map_lookup_elem(&hot_percpu, &zero);

	if (!value || !mine)
		return 0;
	for (int i = 0; i < HOT_ADDS; i++) {
		__sync_fetch_and_add(value, 1);
		*(volatile __u64 *)mine += 1;
	}
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
