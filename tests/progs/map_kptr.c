/* kptrs in map values (after the kernel selftests' map_kptr.c and cpumask_success.c): a cpumask
 * created by a syscall program is moved into an array's and a hash's referenced kptr with
 * bpf_kptr_xchg, read back inside an RCU section, taken out again and released; current's task
 * is acquired into a kptr by a tc program. Every result goes to `results`, so user-space runs
 * (interpreter, JIT) can be compared with the kernel's. */
#include "bpf_kptr.h"

struct mask_value {
	__u64 stamp;
	struct bpf_cpumask __kptr *mask;
	struct task_struct __kptr *task;
	struct task_struct __kptr_untrusted *seen;
	/* Zero-length: no bytes and no field, but clang then describes both structs in full (a
	 * struct only reached through a member pointer gets a forward declaration, and a kptr must
	 * point to a struct). */
	struct bpf_cpumask btf_mask[0];
	struct task_struct btf_task[0];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, int);
	__type(value, struct mask_value);
} masks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4);
	__type(key, int);
	__type(value, struct mask_value);
} hashed SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 8);
	__type(key, int);
	__type(value, __s64);
} results SEC(".maps");

char LICENSE[] SEC("license") = "GPL";

static __always_inline void record(int slot, __s64 value)
{
	__s64 *at = bpf_map_lookup_elem(&results, &slot);

	if (at)
		*at = value;
}

/* A cpumask with CPUs 0 and 1 (and one past nr_cpu_ids, ignored) into masks[0].mask and
 * hashed[7].mask; the old ones (if any) released. */
SEC("syscall")
int stash(void *ctx)
{
	int zero = 0, seven = 7;
	struct mask_value fresh = {.stamp = 7}, *v, *h;
	struct bpf_cpumask *m, *old;

	v = bpf_map_lookup_elem(&masks, &zero);
	if (!v)
		return -1;
	if (bpf_map_update_elem(&hashed, &seven, &fresh, BPF_NOEXIST) == 0)
		record(7, 1);
	h = bpf_map_lookup_elem(&hashed, &seven);
	if (!h)
		return -2;
	m = bpf_cpumask_create();
	if (!m)
		return -3;
	bpf_cpumask_set_cpu(0, m);
	bpf_cpumask_set_cpu(1, m);
	bpf_cpumask_set_cpu(100000, m);
	record(0, bpf_cpumask_weight(&m->cpumask));
	record(1, bpf_cpumask_first(&m->cpumask));
	old = bpf_kptr_xchg(&h->mask, bpf_cpumask_acquire(m));
	if (old)
		bpf_cpumask_release(old);
	old = bpf_kptr_xchg(&v->mask, m);
	record(2, old != NULL);
	if (old)
		bpf_cpumask_release(old);
	return 0;
}

/* Reads masks[0].mask under RCU: results[3..5] = test_cpu(0), test_cpu(2), weight (or -1). */
SEC("syscall")
int inspect(void *ctx)
{
	int zero = 0;
	struct mask_value *v = bpf_map_lookup_elem(&masks, &zero);
	struct bpf_cpumask *m;

	if (!v)
		return -1;
	bpf_rcu_read_lock();
	m = v->mask;
	if (m) {
		bpf_cpumask_clear_cpu(1, m);
		record(3, bpf_cpumask_test_cpu(0, &m->cpumask));
		record(4, bpf_cpumask_test_cpu(2, &m->cpumask));
		record(5, bpf_cpumask_weight(&m->cpumask));
	} else {
		record(3, -1);
		record(4, -1);
		record(5, -1);
	}
	bpf_rcu_read_unlock();
	return m != NULL;
}

/* Takes masks[0].mask out (releasing it): its weight, or -1 when the slot was empty. */
SEC("syscall")
int take(void *ctx)
{
	int zero = 0;
	struct mask_value *v = bpf_map_lookup_elem(&masks, &zero);
	struct bpf_cpumask *m;
	int weight;

	if (!v)
		return -2;
	m = bpf_kptr_xchg(&v->mask, NULL);
	if (!m)
		return -1;
	weight = bpf_cpumask_weight(&m->cpumask);
	bpf_cpumask_release(m);
	return weight;
}

/* current's task, acquired into masks[1].task (and remembered, untrusted, in .seen): 1 when
 * the slot held one already. */
SEC("tc")
int keep_task(struct __sk_buff *skb)
{
	int one = 1;
	struct mask_value *v = bpf_map_lookup_elem(&masks, &one);
	struct task_struct *t, *old;

	if (!v)
		return -2;
	t = bpf_task_acquire(bpf_get_current_task_btf());
	if (!t)
		return -1;
	v->seen = t;
	old = bpf_kptr_xchg(&v->task, t);
	if (!old)
		return 0;
	bpf_task_release(old);
	return 1;
}
