"""Dynptrs in the verifier: C programs using every dynptr helper, each verified by us and loaded
into the kernel, whose verdicts must agree (the expected verdict is the kernel's; the kernel test
checks that it still is).

The rules exercised: a dynptr is built only in 16 bytes of stack at a constant aligned offset,
used only once initialised and only as its kind allows; a ring buffer dynptr is a reference
that must be submitted or discarded on every path (even when the reservation failed), and is
gone afterwards; writing over a dynptr destroys it (refused for a ring buffer one); its bytes
cannot be read; ``bpf_dynptr_data``'s slice is bounded by the constant length, must be
NULL-checked and dies with its dynptr; ``bpf_dynptr_from_mem`` takes map values only; a
``bpf_user_ringbuf_drain`` callback receives a read-only-to-the-dynptr ``const struct bpf_dynptr *``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pybpf.obj import load_spec
from pybpf.verifier import verify_program

from .c_objects import KERNEL_AVAILABLE, KERNEL_REASON, compile_c, kernel_verdict

HEADER = r"""
#include "bpf_dynptr.h"
struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 1); __type(key, __u32); __type(value, __u64[8]); }
    table SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_RINGBUF); __uint(max_entries, 4096); } events SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_USER_RINGBUF); __uint(max_entries, 4096); } requests SEC(".maps");
char LICENSE[] SEC("license") = "GPL";
static __always_inline __u64 *row(void) { __u32 key = 0; return bpf_map_lookup_elem(&table, &key); }
"""

# name -> (C source after the header, the kernel's verdict: True = accepted)
PROGRAMS: dict[str, tuple[str, bool]] = {
    "from-mem-read-write": (r"""
SEC("xdp") int prog(struct xdp_md *ctx) {
    struct bpf_dynptr ptr; __u64 buf[2] = {};
    __u64 *value = row();
    if (!value) return XDP_PASS;
    bpf_dynptr_from_mem(value, 64, 0, &ptr);
    bpf_dynptr_write(&ptr, 8, buf, sizeof(buf), 0);
    return bpf_dynptr_read(buf, sizeof(buf), &ptr, 0, 0) ? XDP_DROP : XDP_PASS;
}""", True),
    "from-mem-of-stack": (r"""
SEC("xdp") int prog(struct xdp_md *ctx) {
    struct bpf_dynptr ptr; __u64 buf[4] = {};
    bpf_dynptr_from_mem(buf, sizeof(buf), 0, &ptr);
    return bpf_dynptr_read(buf, 8, &ptr, 0, 0) ? XDP_DROP : XDP_PASS;
}""", False),
    "read-uninitialised": (r"""
SEC("xdp") int prog(struct xdp_md *ctx) {
    struct bpf_dynptr ptr; __u64 buf = 0;
    return bpf_dynptr_read(&buf, 8, &ptr, 0, 0) ? XDP_DROP : XDP_PASS;
}""", False),
    "data-slice-in-bounds": (r"""
SEC("xdp") int prog(struct xdp_md *ctx) {
    struct bpf_dynptr ptr;
    __u64 *value = row();
    if (!value) return XDP_PASS;
    bpf_dynptr_from_mem(value, 64, 0, &ptr);
    __u64 *slice = bpf_dynptr_data(&ptr, 0, 16);
    if (!slice) return XDP_PASS;
    slice[1] = slice[0] + 1;
    return XDP_PASS;
}""", True),
    "data-slice-beyond-len": (r"""
SEC("xdp") int prog(struct xdp_md *ctx) {
    struct bpf_dynptr ptr;
    __u64 *value = row();
    if (!value) return XDP_PASS;
    bpf_dynptr_from_mem(value, 64, 0, &ptr);
    __u64 *slice = bpf_dynptr_data(&ptr, 0, 16);
    if (!slice) return XDP_PASS;
    return slice[2] ? XDP_DROP : XDP_PASS;
}""", False),
    "data-slice-unchecked": (r"""
SEC("xdp") int prog(struct xdp_md *ctx) {
    struct bpf_dynptr ptr;
    __u64 *value = row();
    if (!value) return XDP_PASS;
    bpf_dynptr_from_mem(value, 64, 0, &ptr);
    __u64 *slice = bpf_dynptr_data(&ptr, 0, 16);
    return *slice ? XDP_DROP : XDP_PASS;
}""", False),
    "ringbuf-submit": (r"""
SEC("xdp") int prog(struct xdp_md *ctx) {
    struct bpf_dynptr ptr; __u32 ifindex = ctx->ingress_ifindex;
    bpf_ringbuf_reserve_dynptr(&events, 16, 0, &ptr);
    bpf_dynptr_write(&ptr, 0, &ifindex, sizeof(ifindex), 0);
    bpf_ringbuf_submit_dynptr(&ptr, 0);
    return XDP_PASS;
}""", True),
    "ringbuf-failed-reserve-discarded": (r"""
SEC("xdp") int prog(struct xdp_md *ctx) {
    struct bpf_dynptr ptr;
    if (bpf_ringbuf_reserve_dynptr(&events, 16, 0, &ptr)) {
        bpf_ringbuf_discard_dynptr(&ptr, 0);
        return XDP_DROP;
    }
    __u32 *slot = bpf_dynptr_data(&ptr, 0, 4);
    if (slot) *slot = ctx->ingress_ifindex;
    bpf_ringbuf_submit_dynptr(&ptr, 0);
    return XDP_PASS;
}""", True),
    "ringbuf-leak-on-failure": (r"""
SEC("xdp") int prog(struct xdp_md *ctx) {
    struct bpf_dynptr ptr;
    if (bpf_ringbuf_reserve_dynptr(&events, 16, 0, &ptr))
        return XDP_DROP;
    bpf_ringbuf_submit_dynptr(&ptr, 0);
    return XDP_PASS;
}""", False),
    "ringbuf-leak-on-branch": (r"""
SEC("xdp") int prog(struct xdp_md *ctx) {
    struct bpf_dynptr ptr;
    bpf_ringbuf_reserve_dynptr(&events, 16, 0, &ptr);
    if (ctx->ingress_ifindex == 3) return XDP_DROP;
    bpf_ringbuf_discard_dynptr(&ptr, 0);
    return XDP_PASS;
}""", False),
    "ringbuf-use-after-submit": (r"""
SEC("xdp") int prog(struct xdp_md *ctx) {
    struct bpf_dynptr ptr; __u32 v = 1;
    bpf_ringbuf_reserve_dynptr(&events, 16, 0, &ptr);
    bpf_ringbuf_submit_dynptr(&ptr, 0);
    bpf_dynptr_write(&ptr, 0, &v, sizeof(v), 0);
    return XDP_PASS;
}""", False),
    "ringbuf-slice-after-submit": (r"""
SEC("xdp") int prog(struct xdp_md *ctx) {
    struct bpf_dynptr ptr;
    bpf_ringbuf_reserve_dynptr(&events, 16, 0, &ptr);
    __u32 *slot = bpf_dynptr_data(&ptr, 0, 4);
    bpf_ringbuf_submit_dynptr(&ptr, 0);
    if (slot) *slot = 1;
    return XDP_PASS;
}""", False),
    "ringbuf-overwritten": (r"""
SEC("xdp") int prog(struct xdp_md *ctx) {
    struct bpf_dynptr ptr;
    bpf_ringbuf_reserve_dynptr(&events, 16, 0, &ptr);
    *(volatile __u64 *)&ptr = 0;
    bpf_ringbuf_submit_dynptr(&ptr, 0);
    return XDP_PASS;
}""", False),
    "local-overwritten-then-used": (r"""
SEC("xdp") int prog(struct xdp_md *ctx) {
    struct bpf_dynptr ptr; __u64 buf = 0;
    __u64 *value = row();
    if (!value) return XDP_PASS;
    bpf_dynptr_from_mem(value, 64, 0, &ptr);
    *((volatile __u64 *)&ptr + 1) = 0;
    return bpf_dynptr_read(&buf, 8, &ptr, 0, 0) ? XDP_DROP : XDP_PASS;
}""", False),
    "local-overwritten-then-rebuilt": (r"""
SEC("xdp") int prog(struct xdp_md *ctx) {
    struct bpf_dynptr ptr; __u64 buf = 0;
    __u64 *value = row();
    if (!value) return XDP_PASS;
    bpf_dynptr_from_mem(value, 64, 0, &ptr);
    *(volatile __u64 *)&ptr = 0;
    bpf_dynptr_from_mem(value, 32, 0, &ptr);
    return bpf_dynptr_read(&buf, 8, &ptr, 0, 0) ? XDP_DROP : XDP_PASS;
}""", True),
    "slice-dies-with-local-dynptr": (r"""
SEC("xdp") int prog(struct xdp_md *ctx) {
    struct bpf_dynptr ptr;
    __u64 *value = row();
    if (!value) return XDP_PASS;
    bpf_dynptr_from_mem(value, 64, 0, &ptr);
    __u64 *slice = bpf_dynptr_data(&ptr, 0, 8);
    if (!slice) return XDP_PASS;
    *(volatile __u64 *)&ptr = 0;
    return *slice ? XDP_DROP : XDP_PASS;
}""", False),
    "dynptr-bytes-read": (r"""
SEC("xdp") int prog(struct xdp_md *ctx) {
    struct bpf_dynptr ptr;
    __u64 *value = row();
    if (!value) return XDP_PASS;
    bpf_dynptr_from_mem(value, 64, 0, &ptr);
    return *(volatile __u64 *)&ptr ? XDP_DROP : XDP_PASS;
}""", False),
    "local-passed-to-submit": (r"""
SEC("xdp") int prog(struct xdp_md *ctx) {
    struct bpf_dynptr ptr;
    __u64 *value = row();
    if (!value) return XDP_PASS;
    bpf_dynptr_from_mem(value, 64, 0, &ptr);
    bpf_ringbuf_submit_dynptr(&ptr, 0);
    return XDP_PASS;
}""", False),
    "write-from-packet": (r"""
SEC("xdp") int prog(struct xdp_md *ctx) {
    struct bpf_dynptr ptr;
    void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
    __u64 *value = row();
    if (!value || data + 8 > end) return XDP_PASS;
    bpf_dynptr_from_mem(value, 64, 0, &ptr);
    return bpf_dynptr_write(&ptr, 0, data, 8, 0) ? XDP_DROP : XDP_PASS;
}""", False),
    "from-mem-misaligned": (r"""
SEC("xdp") int prog(struct xdp_md *ctx) {
    __u64 raw[3] = {};
    __u64 *value = row();
    if (!value) return XDP_PASS;
    bpf_dynptr_from_mem(value, 64, 0, (struct bpf_dynptr *)((char *)raw + 4));
    return raw[0] ? XDP_DROP : XDP_PASS;
}""", False),
    "helper-fills-dynptr": (r"""
SEC("xdp") int prog(struct xdp_md *ctx) {
    struct bpf_dynptr ptr;
    __u64 *value = row();
    if (!value) return XDP_PASS;
    bpf_dynptr_from_mem(value, 64, 0, &ptr);
    bpf_dynptr_read(&ptr, 8, &ptr, 0, 0);
    return XDP_PASS;
}""", False),
    "two-dynptrs-one-map-value": (r"""
SEC("xdp") int prog(struct xdp_md *ctx) {
    struct bpf_dynptr a, b; __u64 buf[2];
    __u64 *value = row();
    if (!value) return XDP_PASS;
    bpf_dynptr_from_mem(value, 32, 0, &a);
    bpf_dynptr_from_mem(value + 2, 32, 0, &b);
    bpf_dynptr_read(buf, 16, &a, 8, 0);
    bpf_dynptr_write(&b, 0, buf, 16, 0);
    return XDP_PASS;
}""", True),
    "global-func-reads-dynptr": (r"""
__attribute__((noinline)) int first_byte(struct bpf_dynptr *ptr) {
    __u8 b = 0;
    bpf_dynptr_read(&b, 1, ptr, 0, 0);
    return b;
}
SEC("xdp") int prog(struct xdp_md *ctx) {
    struct bpf_dynptr ptr;
    bpf_ringbuf_reserve_dynptr(&events, 16, 0, &ptr);
    int b = first_byte(&ptr);
    bpf_ringbuf_discard_dynptr(&ptr, 0);
    return b ? XDP_DROP : XDP_PASS;
}""", True),
    "global-func-uninit-dynptr": (r"""
__attribute__((noinline)) int first_byte(struct bpf_dynptr *ptr) {
    __u8 b = 0;
    bpf_dynptr_read(&b, 1, ptr, 0, 0);
    return b;
}
SEC("xdp") int prog(struct xdp_md *ctx) {
    struct bpf_dynptr ptr;
    return first_byte(&ptr) ? XDP_DROP : XDP_PASS;
}""", False),
    "global-func-releases-dynptr": (r"""
__attribute__((noinline)) int drop(struct bpf_dynptr *ptr) {
    bpf_ringbuf_discard_dynptr(ptr, 0);
    return 0;
}
SEC("xdp") int prog(struct xdp_md *ctx) {
    struct bpf_dynptr ptr;
    bpf_ringbuf_reserve_dynptr(&events, 16, 0, &ptr);
    drop(&ptr);
    return XDP_PASS;
}""", False),
    "user-ringbuf-drain": (r"""
static long handle(const struct bpf_dynptr *sample, void *data) {
    __u64 v = 0;
    if (bpf_dynptr_read(&v, sizeof(v), sample, 0, 0)) return 1;
    *(__u64 *)data += v;
    return 0;
}
SEC("xdp") int prog(struct xdp_md *ctx) {
    __u64 total = 0;
    bpf_user_ringbuf_drain(&requests, handle, &total, 0);
    return total > 10 ? XDP_DROP : XDP_PASS;
}""", True),
    "user-ringbuf-slice": (r"""
static long handle(const struct bpf_dynptr *sample, void *data) {
    __u64 *v = bpf_dynptr_data(sample, 0, 8);
    if (!v) return 0;
    *(__u64 *)data += *v;
    return 0;
}
SEC("xdp") int prog(struct xdp_md *ctx) {
    __u64 total = 0;
    bpf_user_ringbuf_drain(&requests, handle, &total, 0);
    return total > 10 ? XDP_DROP : XDP_PASS;
}""", True),
    "user-ringbuf-callback-releases": (r"""
static long handle(struct bpf_dynptr *sample, void *data) {
    bpf_ringbuf_discard_dynptr(sample, 0);
    return 0;
}
SEC("xdp") int prog(struct xdp_md *ctx) {
    bpf_user_ringbuf_drain(&requests, handle, 0, 0);
    return XDP_PASS;
}""", False),
    "user-ringbuf-wrong-map": (r"""
static long handle(const struct bpf_dynptr *sample, void *data) { return 0; }
SEC("xdp") int prog(struct xdp_md *ctx) {
    bpf_user_ringbuf_drain(&events, handle, 0, 0);
    return XDP_PASS;
}""", False),
}


KFUNCS = r"""
extern int bpf_dynptr_from_xdp(struct xdp_md *x, __u64 flags, struct bpf_dynptr *ptr__uninit) __ksym __weak;
extern int bpf_dynptr_from_skb(struct __sk_buff *s, __u64 flags, struct bpf_dynptr *ptr__uninit) __ksym __weak;
extern void *bpf_dynptr_slice(const struct bpf_dynptr *p, __u32 offset, void *buffer__opt,
                              __u32 buffer__szk) __ksym __weak;
extern void *bpf_dynptr_slice_rdwr(const struct bpf_dynptr *p, __u32 offset, void *buffer__opt,
                                   __u32 buffer__szk) __ksym __weak;
extern int bpf_dynptr_clone(const struct bpf_dynptr *p, struct bpf_dynptr *clone__uninit) __ksym __weak;
extern __u32 bpf_dynptr_size(const struct bpf_dynptr *p) __ksym __weak;
static long (*bpf_xdp_adjust_head)(struct xdp_md *xdp, int delta) = (void *)BPF_FUNC_xdp_adjust_head;
"""

# Dynptr kfuncs (the kfunc table's entries), same rules: name -> (C source, the kernel's verdict).
KFUNC_PROGRAMS: dict[str, tuple[str, bool]] = {
    "kfunc-slice-read-only": (r"""
SEC("xdp") int prog(struct xdp_md *ctx) {
    struct bpf_dynptr ptr; __u8 buf[4];
    bpf_dynptr_from_xdp(ctx, 0, &ptr);
    __u8 *p = bpf_dynptr_slice(&ptr, 0, buf, sizeof(buf));
    if (!p) return XDP_PASS;
    p[0] = 1;
    return XDP_PASS;
}""", False),
    "kfunc-slice-rdwr-write": (r"""
SEC("xdp") int prog(struct xdp_md *ctx) {
    struct bpf_dynptr ptr;
    bpf_dynptr_from_xdp(ctx, 0, &ptr);
    __u8 *p = bpf_dynptr_slice_rdwr(&ptr, 0, 0, 4);
    if (!p) return XDP_PASS;
    p[3] = p[0];
    return XDP_PASS;
}""", True),
    "kfunc-slice-beyond-size": (r"""
SEC("xdp") int prog(struct xdp_md *ctx) {
    struct bpf_dynptr ptr;
    bpf_dynptr_from_xdp(ctx, 0, &ptr);
    __u8 *p = bpf_dynptr_slice_rdwr(&ptr, 0, 0, 4);
    if (!p) return XDP_PASS;
    return p[4];
}""", False),
    "kfunc-slice-after-adjust-head": (r"""
SEC("xdp") int prog(struct xdp_md *ctx) {
    struct bpf_dynptr ptr; __u8 buf[4];
    bpf_dynptr_from_xdp(ctx, 0, &ptr);
    __u8 *p = bpf_dynptr_slice(&ptr, 0, buf, sizeof(buf));
    if (!p) return XDP_PASS;
    bpf_xdp_adjust_head(ctx, 0);
    return p[0];
}""", False),
    "kfunc-slice-rdwr-no-packet-writes": (r"""
SEC("syscall") int prog(void *ctx) {
    struct bpf_dynptr ptr;
    __u64 *value = row();
    if (!value) return 0;
    bpf_dynptr_from_mem(value, 64, 0, &ptr);
    __u64 *p = bpf_dynptr_slice_rdwr(&ptr, 0, 0, 8);
    return p ? *p : 0;
}""", False),
    "kfunc-from-skb-in-xdp": (r"""
SEC("xdp") int prog(struct xdp_md *ctx) {
    struct bpf_dynptr ptr;
    bpf_dynptr_from_skb((struct __sk_buff *)ctx, 0, &ptr);
    return XDP_PASS;
}""", False),
    "kfunc-skb-write-then-slice": (r"""
SEC("tc") int prog(struct __sk_buff *skb) {
    struct bpf_dynptr ptr; __u8 buf[2], v = 1;
    bpf_dynptr_from_skb(skb, 0, &ptr);
    __u8 *p = bpf_dynptr_slice(&ptr, 0, buf, sizeof(buf));
    if (!p) return 0;
    bpf_dynptr_write(&ptr, 0, &v, 1, 0);
    return p[0];
}""", False),
    "kfunc-ringbuf-clone-used-after-submit": (r"""
SEC("xdp") int prog(struct xdp_md *ctx) {
    struct bpf_dynptr ptr, copy; __u32 v = 1;
    bpf_ringbuf_reserve_dynptr(&events, 8, 0, &ptr);
    bpf_dynptr_clone(&ptr, &copy);
    bpf_ringbuf_submit_dynptr(&ptr, 0);
    bpf_dynptr_write(&copy, 0, &v, sizeof(v), 0);
    return XDP_PASS;
}""", False),
    "kfunc-ringbuf-clone-released": (r"""
SEC("xdp") int prog(struct xdp_md *ctx) {
    struct bpf_dynptr ptr, copy;
    bpf_ringbuf_reserve_dynptr(&events, 8, 0, &ptr);
    bpf_dynptr_clone(&ptr, &copy);
    bpf_ringbuf_discard_dynptr(&copy, 0);
    return XDP_PASS;
}""", True),
    "kfunc-clone-of-uninit": (r"""
SEC("xdp") int prog(struct xdp_md *ctx) {
    struct bpf_dynptr ptr, copy;
    bpf_dynptr_clone(&ptr, &copy);
    return bpf_dynptr_size(&copy);
}""", False),
}


def _verdict(tmp_path: Path, name: str) -> tuple[Path, bool, str]:
    body, _ = PROGRAMS[name]
    obj = compile_c(tmp_path, name, HEADER + body)
    spec = load_spec(obj)
    report = verify_program(spec.programs["prog"], spec)
    return obj, report.accepted, report.summary()


@pytest.mark.clang
@pytest.mark.parametrize("name", list(PROGRAMS))
def test_dynptr_verdict(tmp_path: Path, name: str) -> None:
    _, accepted, summary = _verdict(tmp_path, name)
    assert accepted == PROGRAMS[name][1], summary


@pytest.mark.clang
@pytest.mark.kernel
@pytest.mark.skipif(not KERNEL_AVAILABLE, reason=KERNEL_REASON or "bpf() unavailable")
@pytest.mark.parametrize("name", list(PROGRAMS))
def test_dynptr_expectation_matches_kernel(tmp_path: Path, name: str) -> None:
    body, kernel_accepts = PROGRAMS[name]
    obj = compile_c(tmp_path, name, HEADER + body)
    accepted, log = kernel_verdict(obj)
    assert accepted == kernel_accepts, log[-400:]


@pytest.mark.clang
@pytest.mark.kernel
@pytest.mark.skipif(not KERNEL_AVAILABLE, reason=KERNEL_REASON or "bpf() unavailable")
@pytest.mark.parametrize("name", [name for name, (_, accepted) in {**PROGRAMS, **KFUNC_PROGRAMS}.items()
                                  if not accepted])
def test_dynptr_rejection_reason_is_in_the_kernel_log(tmp_path: Path, name: str) -> None:
    body = PROGRAMS[name][0] if name in PROGRAMS else KFUNCS + KFUNC_PROGRAMS[name][0]
    obj = compile_c(tmp_path, name, HEADER + body)
    spec = load_spec(obj)
    report = verify_program(spec.programs["prog"], spec)
    accepted, log = kernel_verdict(obj)
    assert not accepted and report.error is not None
    assert report.error.reason in log, f"ours: {report.error.reason}\nkernel: {log[-600:]}"


@pytest.mark.clang
@pytest.mark.parametrize("name", list(KFUNC_PROGRAMS))
def test_dynptr_kfunc_verdict(tmp_path: Path, name: str) -> None:
    body, kernel_accepts = KFUNC_PROGRAMS[name]
    obj = compile_c(tmp_path, name, HEADER + KFUNCS + body)
    spec = load_spec(obj)
    report = verify_program(spec.programs["prog"], spec)
    assert report.accepted == kernel_accepts, report.summary()


@pytest.mark.clang
@pytest.mark.kernel
@pytest.mark.skipif(not KERNEL_AVAILABLE, reason=KERNEL_REASON or "bpf() unavailable")
@pytest.mark.parametrize("name", list(KFUNC_PROGRAMS))
def test_dynptr_kfunc_expectation_matches_kernel(tmp_path: Path, name: str) -> None:
    body, kernel_accepts = KFUNC_PROGRAMS[name]
    obj = compile_c(tmp_path, name, HEADER + KFUNCS + body)
    accepted, log = kernel_verdict(obj)
    assert accepted == kernel_accepts, log[-400:]
