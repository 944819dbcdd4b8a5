/* Extra helper declarations and contexts for the hooks tests (pybpf.hooks): kept apart from
 * bpf_helpers.h, which other test programs share. */
#ifndef PYBPF_HOOKS_HELPERS_H
#define PYBPF_HOOKS_HELPERS_H

#include "bpf_helpers.h"

static long (*bpf_probe_read_user)(void *dst, __u32 size, const void *src) = (void *)BPF_FUNC_probe_read_user;
static long (*bpf_probe_read_user_str)(void *dst, __u32 size, const void *src) =
	(void *)BPF_FUNC_probe_read_user_str;
static long (*bpf_probe_read_kernel_str)(void *dst, __u32 size, const void *src) =
	(void *)BPF_FUNC_probe_read_kernel_str;
static void (*bpf_ringbuf_discard)(void *data, __u64 flags) = (void *)BPF_FUNC_ringbuf_discard;

/* struct pt_regs of x86-64 (arch/x86/include/uapi/asm/ptrace.h), as a uprobe sees it. */
struct hooks_pt_regs {
	unsigned long r15, r14, r13, r12, bp, bx, r11, r10, r9, r8, ax, cx, dx, si, di;
	unsigned long orig_ax, ip, cs, flags, sp, ss;
};

#define PARM1(ctx) ((ctx)->di)
#define PARM2(ctx) ((ctx)->si)
#define PARM3(ctx) ((ctx)->dx)
#define RC(ctx) ((ctx)->ax)

#endif
