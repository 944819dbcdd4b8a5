"""Arena programs in C, verified by us and by the kernel: the same verdict, and our reason for a
rejection in the kernel's log (tests/progs/bpf_arena.h declares the arena kfuncs and ``__arena``).

The differential runs of arena programs (same results under interpreter, JIT and kernel) are in
tests/runtime/test_runtime_arena.py; raw-instruction cases are in corpus/arena.txt.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from pybpf.obj import load_spec
from pybpf.verifier import verify_program

from .c_objects import KERNEL_AVAILABLE, KERNEL_REASON, compile_c, kernel_verdict

HEADER = r"""
#include "bpf_helpers.h"
#include "bpf_arena.h"
struct { __uint(type, BPF_MAP_TYPE_ARENA); __uint(map_flags, BPF_F_MMAPABLE); __uint(max_entries, 8); }
    arena SEC(".maps");
char LICENSE[] SEC("license") = "GPL";
"""


@dataclass(frozen=True, slots=True)
class Case:
    source: str
    accepted: bool  # the kernel's verdict, and ours
    reason: str | None = None  # our rejection's reason, in the kernel's log too


CASES: dict[str, Case] = {
    "globals-from-xdp": Case(r"""
__u64 __arena hits[4];
SEC("xdp") int prog(struct xdp_md *ctx) { hits[ctx->ingress_ifindex & 3]++; return XDP_PASS; }""", True),
    "alloc-needs-sleepable": Case(r"""
SEC("xdp") int prog(struct xdp_md *ctx) {
    int __arena *p = bpf_arena_alloc_pages(&arena, NULL, 1, NUMA_NO_NODE, 0);
    return p ? *p : XDP_PASS;
}""", False, "program must be sleepable to call sleepable kfunc bpf_arena_alloc_pages"),
    "alloc-free-syscall": Case(r"""
SEC("syscall") int prog(void *ctx) {
    long __arena *p = bpf_arena_alloc_pages(&arena, NULL, 2, NUMA_NO_NODE, 0);
    if (!p) return 1;
    p[600] = p[0] + 1;
    bpf_arena_free_pages(&arena, p, 2);
    return bpf_arena_reserve_pages(&arena, p, 1);
}""", True),
    "pointer-chasing-loop": Case(r"""
struct node { struct node __arena *next; int value; };
struct node __arena *__arena head;
SEC("xdp") int prog(struct xdp_md *ctx) {
    int sum = 0;
    struct node __arena *n = head;
    for (int i = 0; i < 64 && n; i++, n = n->next) sum += n->value;
    return sum;
}""", True),
    "arena-argument": Case(r"""
__noinline int deref(int __arena *p __arg_arena) { return p ? *p : -1; }
int __arena value = 3;
SEC("xdp") int prog(struct xdp_md *ctx) { return deref(&value); }""", True),
    "cast-without-arena": Case(r"""
SEC("xdp") int prog(struct xdp_md *ctx) {
    int __arena *p = (int __arena *)(long)ctx->ingress_ifindex;
    return *p;
}""", False, "addr_space_cast insn can only be used in a program that has an associated arena"),
    "map-argument-not-a-map": Case(r"""
SEC("syscall") int prog(void *ctx) {
    return bpf_arena_alloc_pages(ctx, NULL, 1, NUMA_NO_NODE, 0) != NULL;
}""", False, "pointer in R1 isn't map pointer"),
}


def _compile(tmp_path: Path, name: str) -> Path:
    source = CASES[name].source
    header = HEADER if "cast-without-arena" not in name else HEADER.replace("arena SEC(", "unused SEC(")
    return compile_c(tmp_path, name.replace("-", "_"), header + source)


@pytest.mark.clang
@pytest.mark.parametrize("name", list(CASES))
def test_arena_program_verdict(tmp_path: Path, name: str) -> None:
    case = CASES[name]
    obj = _compile(tmp_path, name)
    spec = load_spec(obj)
    report = verify_program(spec.programs["prog"], spec)
    assert report.accepted == case.accepted, report.summary()
    if case.reason is not None:
        assert report.reason is not None and case.reason in report.reason, report.reason
    if not KERNEL_AVAILABLE:
        pytest.skip(f"no kernel comparison: {KERNEL_REASON or 'bpf() unavailable'}")
    kernel_accepts, log = kernel_verdict(obj)
    assert kernel_accepts == case.accepted, log
    if not case.accepted:
        assert report.reason is not None and report.reason in log, f"we said {report.reason!r}; kernel:\n{log}"
