/* More helper declarations for the helper-coverage test programs (kept apart from bpf_helpers.h:
 * the objects' DWARF records each header's MD5, so editing bpf_helpers.h would change every
 * committed object). */
#ifndef PYBPF_TEST_HELPERS_MORE_H
#define PYBPF_TEST_HELPERS_MORE_H

#include "bpf_helpers.h"

static long (*bpf_map_push_elem)(void *map, const void *value, __u64 flags) = (void *)BPF_FUNC_map_push_elem;
static long (*bpf_map_pop_elem)(void *map, void *value) = (void *)BPF_FUNC_map_pop_elem;
static long (*bpf_map_peek_elem)(void *map, void *value) = (void *)BPF_FUNC_map_peek_elem;
static long (*bpf_for_each_map_elem)(void *map, void *callback_fn, void *callback_ctx, __u64 flags) =
	(void *)BPF_FUNC_for_each_map_elem;
static long (*bpf_perf_event_output)(void *ctx, void *map, __u64 flags, void *data, __u64 size) =
	(void *)BPF_FUNC_perf_event_output;
static long (*bpf_redirect_map)(void *map, __u64 key, __u64 flags) = (void *)BPF_FUNC_redirect_map;
static long (*bpf_trace_printk)(const char *fmt, __u32 fmt_size, ...) = (void *)BPF_FUNC_trace_printk;
static long (*bpf_spin_lock)(struct bpf_spin_lock *lock) = (void *)BPF_FUNC_spin_lock;
static long (*bpf_spin_unlock)(struct bpf_spin_lock *lock) = (void *)BPF_FUNC_spin_unlock;

#endif
