/* Minimal BPF program header for pybpf's test programs (our own, modelled on libbpf's conventions).
 *
 * Map definitions use libbpf's BTF-defined map encoding: every integer attribute is a pointer to
 * an array whose dimension is the value, so the value lives in BTF, not in the ELF data.
 * Helpers are declared as pointers to functions whose address is the helper id, which makes
 * clang emit `call <id>` (the same trick as libbpf's generated bpf_helper_defs.h).
 */
#ifndef PYBPF_TEST_HELPERS_H
#define PYBPF_TEST_HELPERS_H

#include <linux/types.h>
#include <linux/bpf.h>

#define SEC(name) __attribute__((section(name), used))
#define __uint(name, val) int (*name)[val]
#define __type(name, val) typeof(val) *name
#define __array(name, val) typeof(val) *name[]
#undef __always_inline
#define __always_inline inline __attribute__((always_inline))
#define __noinline __attribute__((noinline))

#ifndef NULL
#define NULL ((void *)0)
#endif

/* The legacy map definition (SEC("maps")), as old samples/bpf and iproute2 used it. */
struct bpf_map_def {
	unsigned int type;
	unsigned int key_size;
	unsigned int value_size;
	unsigned int max_entries;
	unsigned int map_flags;
};

enum { PIN_NONE = 0, PIN_BY_NAME = 1 };

static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)BPF_FUNC_map_lookup_elem;
static long (*bpf_map_update_elem)(void *map, const void *key, const void *value, __u64 flags) =
	(void *)BPF_FUNC_map_update_elem;
static long (*bpf_map_delete_elem)(void *map, const void *key) = (void *)BPF_FUNC_map_delete_elem;
static long (*bpf_probe_read_kernel)(void *dst, __u32 size, const void *src) =
	(void *)BPF_FUNC_probe_read_kernel;
static __u64 (*bpf_ktime_get_ns)(void) = (void *)BPF_FUNC_ktime_get_ns;
static __u64 (*bpf_get_current_pid_tgid)(void) = (void *)BPF_FUNC_get_current_pid_tgid;
static __u64 (*bpf_get_current_task)(void) = (void *)BPF_FUNC_get_current_task;
static long (*bpf_get_current_comm)(void *buf, __u32 size) = (void *)BPF_FUNC_get_current_comm;
static long (*bpf_tail_call)(void *ctx, void *prog_array_map, __u32 index) = (void *)BPF_FUNC_tail_call;
static long (*bpf_skb_load_bytes)(const void *skb, __u32 offset, void *to, __u32 len) =
	(void *)BPF_FUNC_skb_load_bytes;
static __s64 (*bpf_csum_diff)(__be32 *from, __u32 from_size, __be32 *to, __u32 to_size, __wsum seed) =
	(void *)BPF_FUNC_csum_diff;
static long (*bpf_ringbuf_output)(void *ringbuf, void *data, __u64 size, __u64 flags) =
	(void *)BPF_FUNC_ringbuf_output;
static void *(*bpf_ringbuf_reserve)(void *ringbuf, __u64 size, __u64 flags) = (void *)BPF_FUNC_ringbuf_reserve;
static void (*bpf_ringbuf_submit)(void *data, __u64 flags) = (void *)BPF_FUNC_ringbuf_submit;
static long (*bpf_loop)(__u32 nr_loops, void *callback_fn, void *callback_ctx, __u64 flags) =
	(void *)BPF_FUNC_loop;
static __u32 (*bpf_get_prandom_u32)(void) = (void *)BPF_FUNC_get_prandom_u32;

/* Kernel symbols (libbpf's conventions): `extern ... __ksym` functions are kfuncs, resolved by
 * name at load time against the kernel's BTF (or pybpf's kfunc table in user space); a `__weak`
 * one that is missing resolves to 0, which bpf_ksym_exists() tests. */
#define __ksym __attribute__((section(".ksyms")))
#define __weak __attribute__((weak))
#define bpf_ksym_exists(sym) ({ _Static_assert(!__builtin_constant_p(!!sym), #sym " should be marked as __weak"); !!sym; })

/* The numeric open-coded iterator (include/uapi/linux/bpf.h has it from 6.4 on). */
struct bpf_iter_num {
	__u64 __opaque[1];
} __attribute__((aligned(8)));

extern int bpf_iter_num_new(struct bpf_iter_num *it, int start, int end) __weak __ksym;
extern int *bpf_iter_num_next(struct bpf_iter_num *it) __weak __ksym;
extern void bpf_iter_num_destroy(struct bpf_iter_num *it) __weak __ksym;

/* The bit iterator (6.11+): the set bits of nr_words u64 words, copied at new(). */
struct bpf_iter_bits {
	__u64 __opaque[2];
} __attribute__((aligned(8)));

extern int bpf_iter_bits_new(struct bpf_iter_bits *it, const __u64 *unsafe_ptr__ign, __u32 nr_words) __weak __ksym;
extern int *bpf_iter_bits_next(struct bpf_iter_bits *it) __weak __ksym;
extern void bpf_iter_bits_destroy(struct bpf_iter_bits *it) __weak __ksym;

/* bpf_for_each(type, cur, args...): cur takes each value bpf_iter_<type>_next() returns, with an
 * iterator made by bpf_iter_<type>_new(&it, args...) and destroyed when the loop's scope ends. */
#define bpf_for_each(type, cur, args...)                                                         \
	for (struct bpf_iter_##type ___it __attribute__((aligned(8), cleanup(bpf_iter_##type##_destroy))), \
	     *___p __attribute__((unused)) =                                                     \
		     (bpf_iter_##type##_new(&___it, ##args), (void)bpf_iter_##type##_destroy, (void *)0); \
	     (((cur) = bpf_iter_##type##_next(&___it)));)

/* bpf_for(i, start, end): i takes start, start + 1, ..., end - 1, with an open-coded iterator the
 * verifier checks once per loop shape instead of unrolling (libbpf's bpf_for). The iterator is
 * destroyed when the loop's scope ends (cleanup attribute); the bounds test after the next()
 * call tells the verifier the range of i. Taking bpf_iter_num_destroy's address makes clang
 * emit its BTF, which it forgets for cleanup functions. */
#define bpf_for(i, start, end)                                                                   \
	for (struct bpf_iter_num ___it __attribute__((aligned(8), cleanup(bpf_iter_num_destroy))), \
	     *___p __attribute__((unused)) =                                                     \
		     (bpf_iter_num_new(&___it, (start), (end)), (void)bpf_iter_num_destroy, (void *)0); \
	     ({                                                                                   \
		     int *___t = bpf_iter_num_next(&___it);                                        \
		     (___t && ((i) = *___t, (i) >= (start) && (i) < (end)));                       \
	     });)

/* bpf_repeat(n): the loop body runs n times, without a counter variable. */
#define bpf_repeat(N)                                                                            \
	for (struct bpf_iter_num ___it __attribute__((aligned(8), cleanup(bpf_iter_num_destroy))), \
	     *___p __attribute__((unused)) =                                                     \
		     (bpf_iter_num_new(&___it, 0, (N)), (void)bpf_iter_num_destroy, (void *)0);  \
	     bpf_iter_num_next(&___it);)

/* RCU read-side sections and preemption (kernel/bpf/helpers.c, common kfuncs). */
extern void bpf_rcu_read_lock(void) __ksym;
extern void bpf_rcu_read_unlock(void) __ksym;
extern void bpf_preempt_disable(void) __ksym;
extern void bpf_preempt_enable(void) __ksym;

#define bpf_htons(x) __builtin_bswap16(x)
#define bpf_ntohs(x) __builtin_bswap16(x)
#define bpf_htonl(x) __builtin_bswap32(x)
#define bpf_ntohl(x) __builtin_bswap32(x)

#endif
