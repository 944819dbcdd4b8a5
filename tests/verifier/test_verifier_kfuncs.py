"""Kfunc calls and open-coded iterators, verified as the kernel verifies them.

Each C program is compiled here, verified by us and, where bpf() works, loaded into the kernel
(through our kernel backend, which resolves the kfuncs against the kernel's BTF): the verdict in
the table is the kernel's, so the first test is a differential; the second checks our reason.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pybpf.errors import UnknownKfuncError
from pybpf.obj import load_spec
from pybpf.verifier import verify_program

from .c_objects import KERNEL_AVAILABLE, KERNEL_REASON, compile_c, kernel_verdict, our_verdict

HEADER = r"""
#include "bpf_helpers.h"
extern struct task_struct *bpf_task_from_pid(int pid) __ksym;
extern void bpf_task_release(struct task_struct *p) __ksym;
extern int bpf_strlen(const char *s__ign) __ksym;
extern int bpf_copy_from_user_str(void *dst, __u32 dst__sz, const void *unsafe_ptr__ign, __u64 flags) __ksym;
struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 64); __type(key, __u32); __type(value, __u64); }
    arr SEC(".maps");
char LICENSE[] SEC("license") = "GPL";
"""

# name -> (C source after the header, the kernel's verdict, a fragment of our reason when rejected)
PROGRAMS: dict[str, tuple[str, bool, str]] = {
    "for-sum": (r"""
SEC("socket") int p(struct __sk_buff *s) { int i, sum = 0; bpf_for(i, 0, 10) sum += i; return sum; }""",
                True, ""),
    "for-unknown-bound": (r"""
SEC("socket") int p(struct __sk_buff *s) { int i; __u32 sum = 0; bpf_for(i, 0, s->len) sum += i * 3; return sum; }""",
                          True, ""),
    "repeat": (r"""
SEC("socket") int p(struct __sk_buff *s) { int n = 0; bpf_repeat(1000000) n++; return n; }""", True, ""),
    "nested-for": (r"""
SEC("socket") int p(struct __sk_buff *s) {
    int i, j, sum = 0;
    bpf_for(i, 0, 4) { bpf_for(j, 0, i) sum += i * j; }
    return sum;
}""", True, ""),
    # The loop index bounds a stack access: the range check after next() is what makes it safe.
    "for-indexes-stack": (r"""
SEC("socket") int p(struct __sk_buff *s) {
    __u8 buf[16] = {};
    int i;
    bpf_for(i, 0, 16) buf[i] = i;
    return buf[s->len & 15];
}""", True, ""),
    # Without the range check the index is unbounded.
    "raw-iter-unbounded-index": (r"""
SEC("socket") int p(struct __sk_buff *s) {
    __u8 buf[16] = {};
    struct bpf_iter_num it;
    int *v;
    bpf_iter_num_new(&it, 0, 16);
    while ((v = bpf_iter_num_next(&it))) buf[*v & 0xff] = 1;
    bpf_iter_num_destroy(&it);
    return buf[0];
}""", False, "invalid variable-offset write to stack"),
    "next-result-unchecked": (r"""
SEC("socket") int p(struct __sk_buff *s) {
    struct bpf_iter_num it;
    int r;
    bpf_iter_num_new(&it, 0, 3);
    r = *bpf_iter_num_next(&it);
    bpf_iter_num_destroy(&it);
    return r;
}""", False, "R0 invalid mem access 'scalar'"),  # the drained path: r0 = NULL
    "not-destroyed": (r"""
SEC("socket") int p(struct __sk_buff *s) { struct bpf_iter_num it; bpf_iter_num_new(&it, 0, 5); return 0; }""",
                      False, "Unreleased reference"),
    "next-uninitialised": (r"""
SEC("socket") int p(struct __sk_buff *s) {
    struct bpf_iter_num it;
    int *v = bpf_iter_num_next(&it);
    return v ? *v : 0;
}""", False, "expected an initialized iter_num as arg #0"),
    "use-after-destroy": (r"""
SEC("socket") int p(struct __sk_buff *s) {
    struct bpf_iter_num it;
    bpf_iter_num_new(&it, 0, 5);
    bpf_iter_num_destroy(&it);
    int *v = bpf_iter_num_next(&it);
    return v ? *v : 0;
}""", False, "expected an initialized iter_num as arg #0"),
    "new-twice": (r"""
SEC("socket") int p(struct __sk_buff *s) {
    struct bpf_iter_num it;
    bpf_iter_num_new(&it, 0, 5);
    bpf_iter_num_new(&it, 0, 5);
    bpf_iter_num_destroy(&it);
    return 0;
}""", False, "expected uninitialized iter_num as arg #0"),
    "read-iterator-bytes": (r"""
SEC("socket") int p(struct __sk_buff *s) {
    struct bpf_iter_num it;
    bpf_iter_num_new(&it, 0, 5);
    long x = *(volatile long *)&it;
    bpf_iter_num_destroy(&it);
    return x;
}""", False, "invalid read from stack off -8+0 size 8"),
    "overwritten-iterator": (r"""
SEC("socket") int p(struct __sk_buff *s) {
    struct bpf_iter_num it;
    bpf_iter_num_new(&it, 0, 5);
    *(volatile long *)&it = 0;
    bpf_iter_num_destroy(&it);
    return 0;
}""", False, "expected an initialized iter_num as arg #0"),
    "for-break": (r"""
SEC("socket") int p(struct __sk_buff *s) {
    int i, sum = 0;
    bpf_for(i, 0, 100) { if (sum > s->len) break; sum += i; }
    return sum;
}""", True, ""),
    "for-map-lookups": (r"""
SEC("xdp") int p(struct xdp_md *ctx) {
    int i; __u64 total = 0;
    bpf_for(i, 0, 64) {
        __u32 k = i; __u64 *v = bpf_map_lookup_elem(&arr, &k);
        if (!v) continue;
        total += *v;
        if (*v > 100) break;
    }
    return total & 3;
}""", True, ""),
    "for-in-subprogram": (r"""
static __noinline int sum_to(int n) { int i, s = 0; bpf_for(i, 0, n) s += i; return s; }
SEC("socket") int p(struct __sk_buff *s) { return sum_to(s->len & 31) + sum_to(5); }""", True, ""),
    "for-over-packet": (r"""
SEC("xdp") int p(struct xdp_md *ctx) {
    void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
    int i; __u32 sum = 0;
    bpf_for(i, 0, 64) { __u8 *b = data + i; if ((void *)(b + 1) > end) break; sum += *b; }
    return sum & 3;
}""", True, ""),
    "for-in-loop-callback": (r"""
static long cb(__u32 idx, int *acc) { int j; bpf_for(j, 0, 3) *acc += j; return 0; }
SEC("socket") int p(struct __sk_buff *s) { int acc = 0; bpf_loop(4, cb, &acc, 0); return acc; }""", True, ""),
    "for-stack-array": (r"""
SEC("socket") int p(struct __sk_buff *s) {
    __u64 a[8] = {}; int i;
    bpf_for(i, 0, 8) a[i] = i * 2;
    bpf_for(i, 0, 8) a[0] += a[i];
    return a[0];
}""", True, ""),
    "for-one-past-the-array": (r"""
SEC("socket") int p(struct __sk_buff *s) { __u64 a[8] = {}; int i; bpf_for(i, 0, 9) a[i] = i; return a[0]; }""",
                               False, "invalid variable-offset write to stack"),
    "two-iterators": (r"""
SEC("socket") int p(struct __sk_buff *s) {
    struct bpf_iter_num a, b; int *x, *y, n = 0;
    bpf_iter_num_new(&a, 0, 3); bpf_iter_num_new(&b, 0, 5);
    while ((x = bpf_iter_num_next(&a)) && (y = bpf_iter_num_next(&b))) n += *x + *y;
    bpf_iter_num_destroy(&a); bpf_iter_num_destroy(&b);
    return n;
}""", True, ""),
    "destroy-the-other-iterator": (r"""
SEC("socket") int p(struct __sk_buff *s) {
    struct bpf_iter_num a, b;
    bpf_iter_num_new(&a, 0, 3); bpf_iter_num_destroy(&b); bpf_iter_num_destroy(&a);
    return 0;
}""", False, "expected an initialized iter_num as arg #0"),
    "misaligned-iterator": (r"""
SEC("socket") int p(struct __sk_buff *s) {
    char buf[24]; struct bpf_iter_num *it = (void *)(buf + 4);
    bpf_iter_num_new(it, 0, 3); bpf_iter_num_destroy(it);
    return 0;
}""", False, "expected uninitialized iter_num as arg #0"),
    "sleepable-kfunc-in-sleepable-program": (r"""
SEC("syscall") int p(void *ctx) { char buf[16]; return bpf_copy_from_user_str(buf, sizeof(buf), ctx, 0); }""",
                                             True, ""),
    "sleepable-kfunc-in-socket-filter": (r"""
SEC("socket") int p(struct __sk_buff *s) { char buf[16]; return bpf_copy_from_user_str(buf, sizeof(buf), s, 0); }""",
                                         False, "program must be sleepable to call sleepable kfunc"),
    "sleepable-kfunc-in-rcu-section": (r"""
SEC("syscall") int p(void *ctx) {
    char buf[16]; int r;
    bpf_rcu_read_lock(); r = bpf_copy_from_user_str(buf, sizeof(buf), ctx, 0); bpf_rcu_read_unlock();
    return r;
}""", False, "is sleepable within rcu_read_lock region"),
    "kfunc-memory-too-small": (r"""
SEC("syscall") int p(void *ctx) { char buf[16]; return bpf_copy_from_user_str(buf, 17, ctx, 0); }""",
                               False, "invalid"),
    "rcu-pair": (r"""
SEC("socket") int p(struct __sk_buff *s) {
    int r; bpf_rcu_read_lock(); r = bpf_get_prandom_u32(); bpf_rcu_read_unlock(); return r & 1;
}""", True, ""),
    "rcu-unlock-without-lock": (r"""
SEC("socket") int p(struct __sk_buff *s) { bpf_rcu_read_unlock(); return 0; }""",
                                False, "unmatched rcu read unlock"),
    "rcu-nested": (r"""
SEC("socket") int p(struct __sk_buff *s) {
    bpf_rcu_read_lock(); bpf_rcu_read_lock(); bpf_rcu_read_unlock(); bpf_rcu_read_unlock(); return 0;
}""", False, "nested rcu read lock"),
    "rcu-held-at-exit": (r"""
SEC("socket") int p(struct __sk_buff *s) { bpf_rcu_read_lock(); return 0; }""",
                         False, "inside bpf_rcu_read_lock-ed region"),
    "preempt-nested": (r"""
SEC("socket") int p(struct __sk_buff *s) {
    bpf_preempt_disable(); bpf_preempt_disable(); bpf_preempt_enable(); bpf_preempt_enable(); return 0;
}""", True, ""),
    "preempt-unmatched": (r"""
SEC("socket") int p(struct __sk_buff *s) { bpf_preempt_enable(); return 0; }""",
                          False, "unmatched attempt to enable preemption"),
    "preempt-held-at-exit": (r"""
SEC("socket") int p(struct __sk_buff *s) { bpf_preempt_disable(); return 0; }""",
                             False, "inside bpf_preempt_disable-ed region"),
    "string-kfunc-in-socket-filter": (r"""
const char text[] = "hello";
SEC("socket") int p(struct __sk_buff *s) { return bpf_strlen(text); }""", True, ""),
    "generic-kfunc-in-socket-filter": (r"""
SEC("socket") int p(struct __sk_buff *s) {
    struct task_struct *t = bpf_task_from_pid(1);
    if (t) bpf_task_release(t);
    return 0;
}""", False, "calling kernel function bpf_task_from_pid is not allowed"),
    "task-acquire-release": (r"""
SEC("tc") int p(struct __sk_buff *s) {
    struct task_struct *t = bpf_task_from_pid(1);
    if (t) bpf_task_release(t);
    return 0;
}""", True, ""),
    "task-not-released": (r"""
SEC("tc") int p(struct __sk_buff *s) { struct task_struct *t = bpf_task_from_pid(1); return t != 0; }""",
                          False, "Unreleased reference"),
    "task-release-null": (r"""
SEC("tc") int p(struct __sk_buff *s) {
    struct task_struct *t = bpf_task_from_pid(1);
    bpf_task_release(t);
    return 0;
}""", False, "Possibly NULL pointer passed to trusted arg0"),
}

NON_GPL = r"""
#include "bpf_helpers.h"
char LICENSE[] SEC("license") = "Proprietary";
SEC("socket") int p(struct __sk_buff *s) { int i, sum = 0; bpf_for(i, 0, 3) sum += i; return sum; }
"""


@pytest.fixture(scope="module")
def objects(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("kfuncs")
    return {name: compile_c(root, name.replace("-", "_"), HEADER + source) for name, (source, _, _) in PROGRAMS.items()}


@pytest.mark.kernel
@pytest.mark.parametrize("name", PROGRAMS)
def test_the_table_holds_the_kernels_verdict(name: str, objects: dict[str, Path]) -> None:
    if not KERNEL_AVAILABLE:
        pytest.skip(f"bpf() unavailable: {KERNEL_REASON}")
    accepted, log = kernel_verdict(objects[name])
    assert accepted == PROGRAMS[name][1], log


@pytest.mark.parametrize("name", PROGRAMS)
def test_our_verdict_and_reason(name: str, objects: dict[str, Path]) -> None:
    _, expected, fragment = PROGRAMS[name]
    accepted, reason = our_verdict(objects[name])
    assert accepted == expected, reason
    assert fragment in reason


def test_a_non_gpl_program_cannot_call_kfuncs(tmp_path: Path) -> None:
    path = compile_c(tmp_path, "non_gpl", NON_GPL)
    accepted, reason = our_verdict(path)
    assert not accepted
    assert reason == "cannot call kernel function from non-GPL compatible program"
    if KERNEL_AVAILABLE:
        assert kernel_verdict(path)[0] is False


def test_an_unknown_kfunc_is_refused_naming_it(tmp_path: Path) -> None:
    path = compile_c(tmp_path, "unknown", r"""
#include "bpf_helpers.h"
extern int bpf_pybpf_no_such_kfunc(int x) __ksym;
char LICENSE[] SEC("license") = "GPL";
SEC("socket") int p(struct __sk_buff *s) { return bpf_pybpf_no_such_kfunc(1); }
""")
    spec = load_spec(path)
    with pytest.raises(UnknownKfuncError) as info:
        verify_program(spec.programs["p"], spec)
    assert info.value.symbol == "bpf_pybpf_no_such_kfunc"


BITS = {
    # Two stack slots: both must be free at new(), both intact at next()/destroy().
    "bits-for-each": (r"""
SEC("socket") int p(struct __sk_buff *s) {
    __u64 words[2] = {s->len, 7}; int *bit, n = 0;
    bpf_for_each(bits, bit, words, 2) n += *bit;
    return n;
}""", True, ""),
    "bits-second-slot-overwritten": (r"""
SEC("socket") int p(struct __sk_buff *s) {
    struct bpf_iter_bits it; __u64 word = 5; int *bit;
    bpf_iter_bits_new(&it, &word, 1);
    ((volatile __u64 *)&it)[1] = 0;
    bit = bpf_iter_bits_next(&it);
    bpf_iter_bits_destroy(&it);
    return bit ? *bit : 0;
}""", False, "expected an initialized iter_bits as arg #0"),
    "bits-not-destroyed": (r"""
SEC("socket") int p(struct __sk_buff *s) {
    struct bpf_iter_bits it; __u64 w = 1;
    bpf_iter_bits_new(&it, &w, 1);
    return 0;
}""",
                           False, "Unreleased reference"),
    "num-iterator-passed-as-bits": (r"""
SEC("socket") int p(struct __sk_buff *s) {
    struct bpf_iter_num it; int *bit;
    bpf_iter_num_new(&it, 0, 3);
    bit = bpf_iter_bits_next((struct bpf_iter_bits *)&it);
    bpf_iter_num_destroy(&it);
    return bit ? *bit : 0;
}""", False, "expected an initialized iter_bits as arg #0"),
}


@pytest.fixture(scope="module")
def bits_objects(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bits")
    return {name: compile_c(root, name.replace("-", "_"), HEADER + source) for name, (source, _, _) in BITS.items()}


@pytest.mark.parametrize("name", BITS)
def test_two_slot_iterators_against_the_kernel(name: str, bits_objects: dict[str, Path]) -> None:
    _, expected, fragment = BITS[name]
    accepted, reason = our_verdict(bits_objects[name])
    assert accepted == expected, reason
    assert fragment in reason
    if KERNEL_AVAILABLE:
        assert kernel_verdict(bits_objects[name])[0] == expected
