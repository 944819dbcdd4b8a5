/* Dynptr helper declarations for the dynptr test programs (a header of their own: the objects'
 * DWARF records each header's MD5, so editing bpf_helpers.h would change every committed object). */
#ifndef PYBPF_TEST_DYNPTR_H
#define PYBPF_TEST_DYNPTR_H

#include "bpf_helpers.h"

static long (*bpf_dynptr_from_mem)(void *data, __u32 size, __u64 flags, struct bpf_dynptr *ptr) =
	(void *)BPF_FUNC_dynptr_from_mem;
static long (*bpf_ringbuf_reserve_dynptr)(void *ringbuf, __u32 size, __u64 flags, struct bpf_dynptr *ptr) =
	(void *)BPF_FUNC_ringbuf_reserve_dynptr;
static void (*bpf_ringbuf_submit_dynptr)(struct bpf_dynptr *ptr, __u64 flags) =
	(void *)BPF_FUNC_ringbuf_submit_dynptr;
static void (*bpf_ringbuf_discard_dynptr)(struct bpf_dynptr *ptr, __u64 flags) =
	(void *)BPF_FUNC_ringbuf_discard_dynptr;
static long (*bpf_dynptr_read)(void *dst, __u32 len, const struct bpf_dynptr *src, __u32 offset, __u64 flags) =
	(void *)BPF_FUNC_dynptr_read;
static long (*bpf_dynptr_write)(const struct bpf_dynptr *dst, __u32 offset, void *src, __u32 len, __u64 flags) =
	(void *)BPF_FUNC_dynptr_write;
static void *(*bpf_dynptr_data)(const struct bpf_dynptr *ptr, __u32 offset, __u32 len) =
	(void *)BPF_FUNC_dynptr_data;
static long (*bpf_user_ringbuf_drain)(void *map, void *callback_fn, void *ctx, __u64 flags) =
	(void *)BPF_FUNC_user_ringbuf_drain;

#endif
