"""Differential on real clang output: small C programs, each compiled here, verified by us and
loaded into the kernel; the verdicts must agree (and the rejections name a C line).

These complement the hand-written corpus: clang's code shapes (spills, 32-bit sub-registers,
linked copies, callbacks with BTF func_info) are what real programs look like.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pybpf.obj import load_spec
from pybpf.verifier import verify_program

from .c_objects import KERNEL_AVAILABLE, KERNEL_REASON, compile_c, kernel_verdict

_AVAILABLE, _REASON = KERNEL_AVAILABLE, KERNEL_REASON

HEADER = r"""
#include "bpf_helpers.h"
#include "bpf_helpers_more.h"
struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 4); __type(key, __u32); __type(value, __u64[8]); }
    table SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(max_entries, 16); __type(key, __u32); __type(value, __u64); }
    counts SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_RINGBUF); __uint(max_entries, 4096); } events SEC(".maps");
char LICENSE[] SEC("license") = "GPL";
"""

# name -> (C source after the header, the kernel's expected verdict: True = accepted)
PROGRAMS: dict[str, tuple[str, bool]] = {
    "array-index-checked": (r"""
SEC("xdp") int prog(struct xdp_md *ctx) {
    __u32 key = 0, i = ctx->ingress_ifindex;
    __u64 *row = bpf_map_lookup_elem(&table, &key);
    if (!row) return XDP_PASS;
    if (i < 8) row[i] += 1;
    return XDP_PASS;
}""", True),
    "array-index-unchecked": (r"""
SEC("xdp") int prog(struct xdp_md *ctx) {
    __u32 key = 0, i = ctx->ingress_ifindex;
    __u64 *row = bpf_map_lookup_elem(&table, &key);
    if (!row) return XDP_PASS;
    row[i & 15] += 1;
    return XDP_PASS;
}""", False),
    "lookup-missing-null-check": (r"""
SEC("xdp") int prog(struct xdp_md *ctx) {
    __u32 key = 1;
    __u64 *v = bpf_map_lookup_elem(&counts, &key);
    return *v ? XDP_DROP : XDP_PASS;
}""", False),
    "packet-parse": (r"""
SEC("xdp") int prog(struct xdp_md *ctx) {
    unsigned char *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
    if (data + 14 > end) return XDP_PASS;
    return data[12] == 0x08 && data[13] == 0 ? XDP_DROP : XDP_PASS;
}""", True),
    "packet-off-by-one": (r"""
SEC("xdp") int prog(struct xdp_md *ctx) {
    unsigned char *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
    if (data + 13 > end) return XDP_PASS;
    return data[13] == 0 ? XDP_DROP : XDP_PASS;
}""", False),
    "packet-loop": (r"""
SEC("xdp") int prog(struct xdp_md *ctx) {
    unsigned char *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
    __u32 sum = 0;
    for (int i = 0; i < 16; i++) {
        if (data + i + 1 > end) break;
        sum += data[i];
    }
    return sum & 1 ? XDP_DROP : XDP_PASS;
}""", True),
    "ringbuf-submit": (r"""
SEC("xdp") int prog(struct xdp_md *ctx) {
    __u64 *slot = bpf_ringbuf_reserve(&events, 8, 0);
    if (!slot) return XDP_PASS;
    *slot = ctx->ingress_ifindex;
    bpf_ringbuf_submit(slot, 0);
    return XDP_PASS;
}""", True),
    "ringbuf-leak-on-one-path": (r"""
SEC("xdp") int prog(struct xdp_md *ctx) {
    __u64 *slot = bpf_ringbuf_reserve(&events, 8, 0);
    if (!slot) return XDP_PASS;
    if (ctx->ingress_ifindex == 3) return XDP_DROP;
    *slot = 1;
    bpf_ringbuf_submit(slot, 0);
    return XDP_PASS;
}""", False),
    "bounded-loop-sum": (r"""
SEC("xdp") int prog(struct xdp_md *ctx) {
    __u64 sum = 0;
    for (__u32 i = 0; i < 50; i++) sum += i * ctx->ingress_ifindex;
    return sum > 1000 ? XDP_DROP : XDP_PASS;
}""", True),
    "loop-callback": (r"""
static long step(__u32 index, void *data) { *(__u64 *)data += index; return 0; }
SEC("xdp") int prog(struct xdp_md *ctx) {
    __u64 total = 0;
    bpf_loop(10, step, &total, 0);
    return total > 40 ? XDP_DROP : XDP_PASS;
}""", True),
    "stack-buffer-helper": (r"""
SEC("kprobe/do_nanosleep") int prog(void *ctx) {
    char comm[16];
    bpf_get_current_comm(comm, sizeof(comm));
    __u32 key = comm[0];
    __u64 one = 1;
    bpf_map_update_elem(&counts, &key, &one, BPF_ANY);
    return 0;
}""", True),
    "subprogram-call": (r"""
static __attribute__((noinline)) int classify(struct xdp_md *ctx) {
    return ctx->ingress_ifindex > 4 ? XDP_DROP : XDP_PASS;
}
SEC("xdp") int prog(struct xdp_md *ctx) { return classify(ctx); }""", True),
}


def _compile(tmp_path: Path, name: str, body: str) -> Path:
    return compile_c(tmp_path, name, HEADER + body)


@pytest.mark.clang
@pytest.mark.parametrize("name", list(PROGRAMS))
def test_c_program_verdict(tmp_path: Path, name: str) -> None:
    body, kernel_accepts = PROGRAMS[name]
    obj = _compile(tmp_path, name, body)
    spec = load_spec(obj)
    report = verify_program(spec.programs["prog"], spec)
    assert report.accepted == kernel_accepts, report.summary()
    if not report.accepted:
        assert report.error is not None and report.error.source is not None, "a rejection names its C line"


@pytest.mark.clang
@pytest.mark.kernel
@pytest.mark.skipif(not _AVAILABLE, reason=_REASON or "bpf() unavailable")
@pytest.mark.parametrize("name", list(PROGRAMS))
def test_c_program_expectation_matches_kernel(tmp_path: Path, name: str) -> None:
    """The expected verdicts above are the kernel's own (so the test above is a differential)."""
    body, kernel_accepts = PROGRAMS[name]
    obj = _compile(tmp_path, name, body)
    accepted, _ = kernel_verdict(obj)
    assert accepted == kernel_accepts
