/* Open-coded iterators (bpf_for, bpf_repeat) and simple kfuncs: the verifier proves these loops
 * without unrolling them, and user space must compute what the kernel computes. */
#include "bpf_helpers.h"

extern int bpf_strlen(const char *s__ign) __ksym;
extern int bpf_strnlen(const char *s__ign, __u64 count) __ksym;
extern int bpf_strcmp(const char *s1__ign, const char *s2__ign) __ksym;
extern int bpf_strcasecmp(const char *s1__ign, const char *s2__ign) __ksym;
extern int bpf_strchr(const char *s__ign, char c) __ksym;
extern int bpf_strrchr(const char *s__ign, int c) __ksym;
extern int bpf_strnchr(const char *s__ign, __u64 count, char c) __ksym;
extern int bpf_strspn(const char *s__ign, const char *accept__ign) __ksym;
extern int bpf_strcspn(const char *s__ign, const char *reject__ign) __ksym;
extern int bpf_strstr(const char *s1__ign, const char *s2__ign) __ksym;
extern int bpf_strnstr(const char *s1__ign, const char *s2__ign, __u64 len) __ksym;
/* Not a kernel function: a __weak extern that resolves to 0 everywhere. */
extern int bpf_pybpf_no_such_kfunc(int x) __weak __ksym;

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 16);
	__type(key, __u32);
	__type(value, __u64);
} squares SEC(".maps");

const char greeting[] = "Hello, world";
const char other[] = "hello, World";
const char vowels[] = "aeiouHW";

/* The loop bound comes from the packet length: unknown to the verifier. */
SEC("socket")
int sum_to_len(struct __sk_buff *skb)
{
	__u32 sum = 0;
	int i;

	bpf_for(i, 0, skb->len)
		sum += i;
	return sum;
}

SEC("socket")
int repeat_count(struct __sk_buff *skb)
{
	int n = 0;

	bpf_repeat(7)
		n += 3;
	return n;
}

SEC("socket")
int nested_loops(struct __sk_buff *skb)
{
	int i, j, sum = 0;

	bpf_for(i, 0, 5) {
		bpf_for(j, i, 6)
			sum += i * j;
	}
	return sum;
}

/* Map accesses inside the loop, then a second loop reading them back. */
SEC("tc")
int fill_squares(struct __sk_buff *skb)
{
	__u64 total = 0;
	int i;

	bpf_for(i, 0, 16) {
		__u32 key = i;
		__u64 *value = bpf_map_lookup_elem(&squares, &key);

		if (value)
			*value = (__u64)i * i;
	}
	bpf_for(i, 3, 9) {
		__u32 key = i;
		__u64 *value = bpf_map_lookup_elem(&squares, &key);

		if (value)
			total += *value;
	}
	return total;
}

/* An empty and an invalid range: next() returns NULL at once; new() reports the error. */
SEC("socket")
int empty_ranges(struct __sk_buff *skb)
{
	struct bpf_iter_num it;
	int *v, result = 0, err;

	err = bpf_iter_num_new(&it, 5, 5);
	v = bpf_iter_num_next(&it);
	result += v ? 100 : 1;
	bpf_iter_num_destroy(&it);
	err = bpf_iter_num_new(&it, 9, 2);
	v = bpf_iter_num_next(&it);
	result += v ? 100 : 10;
	bpf_iter_num_destroy(&it);
	return result * 1000 + (err & 0xff);
}

/* The set bits of one word (copied inline) and of three (a separate copy), summed as indexes. */
SEC("socket")
int set_bits(struct __sk_buff *skb)
{
	__u64 words[3] = {0x8000000000000005ULL, 0, 0x30};
	__u64 one = skb->len;
	int *bit, sum = 0, count = 0;

	bpf_for_each(bits, bit, &one, 1)
		count++;
	bpf_for_each(bits, bit, words, 3)
		sum += *bit;
	return sum * 256 + count;
}

SEC("socket")
int sections(struct __sk_buff *skb)
{
	int i, sum = 0;

	bpf_rcu_read_lock();
	bpf_for(i, 0, 4)
		sum += i;
	bpf_rcu_read_unlock();
	bpf_preempt_disable();
	bpf_preempt_disable();
	sum += 10;
	bpf_preempt_enable();
	bpf_preempt_enable();
	if (bpf_ksym_exists(bpf_pybpf_no_such_kfunc))
		sum += bpf_pybpf_no_such_kfunc(1);
	if (bpf_ksym_exists(bpf_iter_num_new))
		sum += 1000;
	return sum;
}

SEC("socket")
int string_lengths(struct __sk_buff *skb)
{
	return bpf_strlen(greeting) | bpf_strnlen(greeting, 5) << 8 | (bpf_strlen((const char *)0) & 0xff) << 16;
}

SEC("socket")
int string_compare(struct __sk_buff *skb)
{
	return (bpf_strcmp(greeting, other) + 2) | (bpf_strcasecmp(greeting, other) + 2) << 4 |
	       (bpf_strcmp(other, greeting) + 2) << 8 | (bpf_strcmp(greeting, greeting) + 2) << 12;
}

SEC("socket")
int string_search(struct __sk_buff *skb)
{
	return (bpf_strchr(greeting, 'o') & 0xf) | (bpf_strrchr(greeting, 'o') & 0xf) << 4 |
	       (bpf_strchr(greeting, 'z') & 0xff) << 8 | (bpf_strnchr(greeting, 4, 'o') & 0xff) << 16 |
	       (bpf_strstr(greeting, "world") & 0xf) << 24 | (bpf_strnstr(greeting, "world", 8) & 0xf) << 28;
}

SEC("socket")
int string_spans(struct __sk_buff *skb)
{
	return bpf_strspn(greeting, "HeloW") | bpf_strcspn(greeting, vowels) << 8 |
	       (bpf_strspn(other, "xyz") & 0xff) << 16;
}

char LICENSE[] SEC("license") = "GPL";
