"""Callbacks verified as the kernel verifies them: a synchronous callback (bpf_loop,
bpf_for_each_map_elem) may run 0..n times, so the state after the helper call must cover any
number of iterations; a timer callback is verified as an entry point of its own.

Each C program is compiled here, verified by us, and (where bpf() works) loaded into the kernel:
the expected verdict in the table is the kernel's, so the first test is a differential. Callbacks
need BTF func_info in the kernel, which is why these are C programs rather than corpus asm.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pybpf.asm import Syntax, assemble
from pybpf.obj import load_spec
from pybpf.platform import BpfMapType, BpfProgType
from pybpf.verifier import MapInfo, verify, verify_program

from .c_objects import KERNEL_AVAILABLE, KERNEL_REASON, compile_c, kernel_processed, kernel_verdict

_AVAILABLE, _REASON = KERNEL_AVAILABLE, KERNEL_REASON

HEADER = r"""
#include "bpf_helpers.h"
#include "bpf_helpers_more.h"
struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 4); __type(key, __u32); __type(value, __u64[8]); }
    table SEC(".maps");
struct elem { struct bpf_timer timer; __u64 data; };
struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 1); __type(key, __u32); __type(value, struct elem); }
    timers SEC(".maps");
static long (*timer_init)(struct bpf_timer *timer, void *map, __u64 flags) = (void *)BPF_FUNC_timer_init;
static long (*timer_set_callback)(struct bpf_timer *timer, void *cb) = (void *)BPF_FUNC_timer_set_callback;
static long (*timer_start)(struct bpf_timer *timer, __u64 nsecs, __u64 flags) = (void *)BPF_FUNC_timer_start;
struct walk { __u64 *row; __u64 i; };
struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 4); __type(key, __u32); __type(value, __u64[16]); }
    wide SEC(".maps");
struct tally { __u64 *row; __u64 i; __u64 sum; };
char LICENSE[] SEC("license") = "GPL";
"""

_ROW = r"""
    __u32 key = 0;
    __u64 *row = bpf_map_lookup_elem(&table, &key);
    if (!row) return XDP_PASS;
"""

# name -> (C source after the header, the kernel's verdict: True = accepted)
PROGRAMS: dict[str, tuple[str, bool]] = {
    # The index cycles 0, 4, 0, ...: safe however many times the callback runs.
    "loop-counter-cycles": (r"""
static long step(__u32 index, struct walk *w) {
    w->row[w->i] += 1;
    w->i += 4;
    if (w->i >= 8) w->i = 0;
    return 0;
}
SEC("xdp") int prog(struct xdp_md *ctx) {""" + _ROW + r"""
    struct walk w = { row, 0 };
    bpf_loop(ctx->ingress_ifindex, step, &w, 0);
    return XDP_PASS;
}""", True),
    # Safe on the first and second iteration (index 0, 4), out of bounds on the third (8).
    "loop-counter-grows": (r"""
static long step(__u32 index, struct walk *w) {
    w->row[w->i] += 1;
    w->i += 4;
    return 0;
}
SEC("xdp") int prog(struct xdp_md *ctx) {""" + _ROW + r"""
    struct walk w = { row, 0 };
    bpf_loop(ctx->ingress_ifindex, step, &w, 0);
    return XDP_PASS;
}""", False),
    # The same callback, but bpf_loop runs it at most twice: the kernel unrolls both iterations.
    "loop-counter-two-iterations": (r"""
static long step(__u32 index, struct walk *w) {
    w->row[w->i] += 1;
    w->i += 4;
    return 0;
}
SEC("xdp") int prog(struct xdp_md *ctx) {""" + _ROW + r"""
    struct walk w = { row, 0 };
    bpf_loop(2, step, &w, 0);
    return XDP_PASS;
}""", True),
    # The callback makes the index safe, but it may run zero times: the caller's 100 is used.
    "loop-zero-iterations-matter": (r"""
static long step(__u32 index, struct walk *w) { w->i = 1; return 0; }
SEC("xdp") int prog(struct xdp_md *ctx) {""" + _ROW + r"""
    struct walk w = { row, 100 };
    bpf_loop(ctx->ingress_ifindex, step, &w, 0);
    return row[w.i] ? XDP_DROP : XDP_PASS;
}""", False),
    "loop-zero-iterations-safe": (r"""
static long step(__u32 index, struct walk *w) { w->i = 3; return 0; }
SEC("xdp") int prog(struct xdp_md *ctx) {""" + _ROW + r"""
    struct walk w = { row, 0 };
    bpf_loop(ctx->ingress_ifindex, step, &w, 0);
    return row[w.i] ? XDP_DROP : XDP_PASS;
}""", True),
    "foreach-bad-return": (r"""
static long visit(void *map, __u32 *key, __u64 *value, void *data) { return 2; }
SEC("xdp") int prog(struct xdp_md *ctx) {
    bpf_for_each_map_elem(&table, visit, NULL, 0);
    return XDP_PASS;
}""", False),
    "timer-callback": (r"""
static int fire(void *map, __u32 *key, struct elem *value) { value->data += 1; return 0; }
SEC("tc") int prog(struct __sk_buff *skb) {
    __u32 key = 0;
    struct elem *e = bpf_map_lookup_elem(&timers, &key);
    if (!e) return 0;
    timer_init(&e->timer, &timers, 1);
    timer_set_callback(&e->timer, fire);
    timer_start(&e->timer, 1000, 0);
    return 0;
}""", True),
    # A timer callback must return 0, whatever the program type allows.
    "timer-callback-returns-one": (r"""
static int fire(void *map, __u32 *key, struct elem *value) { return 1; }
SEC("tc") int prog(struct __sk_buff *skb) {
    __u32 key = 0;
    struct elem *e = bpf_map_lookup_elem(&timers, &key);
    if (!e) return 0;
    timer_init(&e->timer, &timers, 1);
    timer_set_callback(&e->timer, fire);
    return 0;
}""", False),
    # The timer callback's body is verified too: its value is 24 bytes.
    "timer-callback-value-overrun": (r"""
static int fire(void *map, __u32 *key, struct elem *value) { (&value->data)[1] = 1; return 0; }
SEC("tc") int prog(struct __sk_buff *skb) {
    __u32 key = 0;
    struct elem *e = bpf_map_lookup_elem(&timers, &key);
    if (!e) return 0;
    timer_init(&e->timer, &timers, 1);
    timer_set_callback(&e->timer, fire);
    return 0;
}""", False),
    # A timer callback runs on a stack of its own: its frame does not add to the program's.
    "timer-callback-own-stack": (r"""
static int fire(void *map, __u32 *key, struct elem *value) {
    asm volatile("r1 = 42; *(u64 *)(r10 - 400) = r1" ::: "r1");
    return 0;
}
SEC("tc") int prog(struct __sk_buff *skb) {
    __u32 key = 0;
    asm volatile("r1 = 42; *(u64 *)(r10 - 400) = r1" ::: "r1");
    struct elem *e = bpf_map_lookup_elem(&timers, &key);
    if (!e) return 0;
    timer_init(&e->timer, &timers, 1);
    timer_set_callback(&e->timer, fire);
    return 0;
}""", True),
    # A bpf_loop callback runs on top of its caller's frame: 400 + 400 bytes is too much.
    "loop-callback-stack-adds-up": (r"""
static long step(__u32 index, void *data) {
    asm volatile("r1 = 42; *(u64 *)(r10 - 400) = r1" ::: "r1");
    return 0;
}
SEC("xdp") int prog(struct xdp_md *ctx) {
    asm volatile("r1 = 42; *(u64 *)(r10 - 400) = r1" ::: "r1");
    bpf_loop(4, step, NULL, 0);
    return XDP_PASS;
}""", False),
}

_WIDE = r"""
    __u32 key = 0;
    __u64 *row = bpf_map_lookup_elem(&wide, &key);
    if (!row) return XDP_PASS;
    struct tally t = { row, 0, 0 };
"""


def _tally_loop(nr_loops: str, body: str) -> str:
    return (r"static long step(__u32 index, struct tally *t) { " + body + r" return 0; }"
            + '\nSEC("xdp") int prog(struct xdp_md *ctx) {' + _WIDE
            + f"    bpf_loop({nr_loops}, step, &t, 0);\n    return XDP_PASS;\n}}")


# Callbacks that need a counter's exact value on every iteration: the counter is precise, so it
# is never widened, and bpf_loop unrolls up to nr_loops iterations (the kernel's precision-driven
# widen_imprecise_scalars); an imprecise counter beside it is widened and converges.
EXACT: dict[str, tuple[str, bool]] = {
    "exact-index-16-runs": (_tally_loop("16", "t->row[t->i] += 1; t->i += 1;"), True),
    "exact-index-17-runs": (_tally_loop("17", "t->row[t->i] += 1; t->i += 1;"), False),
    "exact-after-loop-16-runs": (r"""
static long step(__u32 index, struct tally *t) { t->i += 1; return 0; }
SEC("xdp") int prog(struct xdp_md *ctx) {""" + _WIDE + r"""
    bpf_loop(16, step, &t, 0);
    return row[t.i] ? XDP_DROP : XDP_PASS;
}""", False),
    "exact-after-loop-15-runs": (r"""
static long step(__u32 index, struct tally *t) { t->i += 1; return 0; }
SEC("xdp") int prog(struct xdp_md *ctx) {""" + _WIDE + r"""
    bpf_loop(15, step, &t, 0);
    return row[t.i] ? XDP_DROP : XDP_PASS;
}""", True),
    # Capped at 15: the exact counter converges however many runs; the sum is imprecise.
    "capped-index-unknown-runs": (_tally_loop("ctx->ingress_ifindex",
                                              "if (t->i < 15) t->i++; t->row[t->i] = 1; t->sum += 1;"), True),
    "capped-index-1000-runs": (_tally_loop("1000", "if (t->i < 15) t->i++; t->row[t->i] = 1; t->sum += t->i;"), True),
    "foreach-capped-index": (r"""
static long visit(void *map, __u32 *key, __u64 *value, struct tally *t) {
    if (t->i < 15) t->i++;
    t->row[t->i] = 1;
    t->sum += *value;
    return 0;
}
SEC("xdp") int prog(struct xdp_md *ctx) {""" + _WIDE + r"""
    bpf_for_each_map_elem(&table, visit, &t, 0);
    return XDP_PASS;
}""", True),
    "foreach-index-overruns": (r"""
static long visit(void *map, __u32 *key, __u64 *value, struct tally *t) { t->i++; t->row[t->i] = 1; return 0; }
SEC("xdp") int prog(struct xdp_md *ctx) {""" + _WIDE + r"""
    bpf_for_each_map_elem(&table, visit, &t, 0);
    return XDP_PASS;
}""", False),
    "count-only-100-runs": (_tally_loop("100", "t->sum += index; t->i += 1;"), True),
}
PROGRAMS.update(EXACT)

# The rejection we expect for each rejected program (the last line of our reason).
REASONS = {
    "loop-zero-iterations-matter": "invalid access to map value, value_size=64 off=800 size=8",
    "foreach-bad-return": "At callback return the register R0 has smin=2 smax=2 should have been in [0, 1]",
    "timer-callback-returns-one":
        "At async callback return the register R0 has smin=1 smax=1 should have been in [0, 0]",
    "timer-callback-value-overrun": "invalid access to map value, value_size=24 off=24 size=8",
    "loop-callback-stack-adds-up": "combined stack size of 2 calls is 800. Too large",
    "exact-index-17-runs": "invalid access to map value, value_size=128 off=128 size=8",
    "exact-after-loop-16-runs": "invalid access to map value, value_size=128 off=128 size=8",
    "foreach-index-overruns": "invalid access to map value, value_size=128 off=128 size=8",
}


def _compile(tmp_path: Path, name: str, body: str) -> Path:
    return compile_c(tmp_path, name, HEADER + body)


@pytest.mark.clang
@pytest.mark.parametrize("name", list(PROGRAMS))
def test_callback_program_verdict(tmp_path: Path, name: str) -> None:
    body, kernel_accepts = PROGRAMS[name]
    spec = load_spec(_compile(tmp_path, name, body))
    report = verify_program(spec.programs["prog"], spec)
    assert report.accepted == kernel_accepts, report.summary()
    if name in REASONS:
        assert report.reason == REASONS[name]


@pytest.mark.clang
@pytest.mark.kernel
@pytest.mark.skipif(not _AVAILABLE, reason=_REASON or "bpf() unavailable")
@pytest.mark.parametrize("name", list(PROGRAMS))
def test_callback_expectation_matches_kernel(tmp_path: Path, name: str) -> None:
    """The verdicts above are the kernel's own (and its log names the same reason)."""
    body, kernel_accepts = PROGRAMS[name]
    obj = _compile(tmp_path, name, body)
    accepted, log = kernel_verdict(obj)
    assert accepted == kernel_accepts, log[-2000:]
    if name in REASONS and log:
        assert REASONS[name] in log, log[-2000:]


@pytest.mark.clang
@pytest.mark.kernel
@pytest.mark.skipif(not _AVAILABLE, reason=_REASON or "bpf() unavailable")
@pytest.mark.parametrize("name", list(EXACT))
def test_exact_callback_effort_near_kernel(tmp_path: Path, name: str) -> None:
    """Iterations are explored as the kernel explores them: our processed-instruction count is
    within a factor of two of the kernel's (unrolling exact counters, widening the others)."""
    body, _ = EXACT[name]
    obj = _compile(tmp_path, name, body)
    spec = load_spec(obj)
    ours = verify_program(spec.programs["prog"], spec).processed_insns
    _, kernel = kernel_processed(obj)
    assert kernel is not None
    assert kernel / 2 <= ours <= kernel * 2, (ours, kernel)


# -- asm-level checks of the mechanism (ours only: raw instructions carry no BTF) ---------------

_ARRAY = MapInfo(BpfMapType.ARRAY, 4, 8, 1)


def _verify(text: str) -> tuple[bool, str | None, int]:
    report = verify(assemble(text, Syntax.LLVM), prog_type=BpfProgType.XDP, maps=[_ARRAY])
    return report.accepted, report.reason, report.processed_insns


_COUNTED = """
    r1 = 0
    *(u64 *)(r10 - 8) = r1
    r1 = {count}
    r2 = func pc+11
    r3 = r10
    r3 += -8
    r4 = 0
    call 181
    r1 = *(u64 *)(r10 - 8)
    if r1 > 3 goto +2
    r0 = 0
    exit
    r0 = *(u64 *)(r1 + 0)
    exit
    r1 = *(u64 *)(r2 + 0)
    r1 += 1
    *(u64 *)(r2 + 0) = r1
    r0 = 0
    exit
"""


@pytest.mark.parametrize(("count", "safe"), [(3, True), (4, False)])
def test_loop_iterations_bounded_by_nr_loops(count: int, safe: bool) -> None:
    """The callback counts its runs in the caller's stack; after bpf_loop(count) the counter is
    at most ``count``: the scalar dereference behind ``> 3`` is reachable only when count > 3."""
    accepted, reason, _ = _verify(_COUNTED.format(count=count))
    assert accepted == safe, reason


def test_unknown_count_converges() -> None:
    """An unknown nr_loops with a counter in the caller's stack still terminates (widening)."""
    program = """
        r1 = 0
        *(u64 *)(r10 - 8) = r1
        call 7
        r1 = r0
        r2 = func pc+7
        r3 = r10
        r3 += -8
        r4 = 0
        call 181
        r0 = 0
        exit
        r1 = *(u64 *)(r2 + 0)
        r1 += 1
        *(u64 *)(r2 + 0) = r1
        r0 = 0
        exit
    """
    accepted, reason, processed = _verify(program)
    assert accepted, reason
    assert processed < 200


_INDEXED = """
    r1 = 0
    *(u32 *)(r10 - 4) = r1
    r2 = r10
    r2 += -4
    r1 = map[fd:0]
    call 1
    if r0 == 0 goto +15
    *(u64 *)(r10 - 16) = r0
    r1 = {before}
    *(u64 *)(r10 - 8) = r1
    call 7
    r1 = r0
    r2 = func pc+11
    r3 = r10
    r3 += -8
    r4 = 0
    call 181
    r1 = *(u64 *)(r10 - 8)
    r0 = *(u64 *)(r10 - 16)
    r0 += r1
    r0 = *(u64 *)(r0 + 0)
    r0 = 0
    exit
    r1 = {callback}
    *(u64 *)(r2 + 0) = r1
    r0 = 0
    exit
"""


@pytest.mark.parametrize(("before", "callback", "safe"), [(1000, 0, False), (0, 0, True), (0, 1000, False)])
def test_state_after_call_covers_zero_and_more_iterations(before: int, callback: int, safe: bool) -> None:
    """After bpf_loop the index in fp-8 is the caller's value (zero runs) or the callback's."""
    accepted, reason, _ = _verify(_INDEXED.format(before=before, callback=callback))
    assert accepted == safe, reason


_POINTER_WALK = """
    r1 = 0
    *(u64 *)(r10 - 8) = r1
    *(u64 *)(r10 - 16) = r1
    *(u64 *)(r10 - 24) = r1
    r1 = r10
    r1 += -24
    *(u64 *)(r10 - 32) = r1
    r1 = {count}
    r2 = func pc+7
    r3 = r10
    r3 += -32
    r4 = 0
    call 181
    r0 = 0
    exit
    r1 = *(u64 *)(r2 + 0)
    r3 = 1
    *(u64 *)(r1 + 0) = r3
    r1 += 8
    *(u64 *)(r2 + 0) = r1
    r0 = 0
    exit
"""


@pytest.mark.parametrize(("count", "safe"), [(3, True), (4, False)])
def test_pointer_moved_through_ctx(count: int, safe: bool) -> None:
    """The callback writes through a stack pointer kept in its ctx and advances it by 8: three
    runs write fp-24, fp-16 and fp-8; a fourth would write at fp+0, outside the stack."""
    accepted, reason, _ = _verify(_POINTER_WALK.format(count=count))
    assert accepted == safe, reason


def test_pointer_moved_through_ctx_unknown_count() -> None:
    """With an unknown count the walk goes on: only scalars are widened (the kernel's
    ``widen_imprecise_scalars``), so the pointer keeps its exact offset and the fourth run's
    write at fp+0 is refused."""
    program = _POINTER_WALK.format(count=0).replace("r1 = 0\n    r2 = func", "call 7\n    r1 = r0\n    r2 = func")
    assert "call 7" in program
    accepted, reason, _ = _verify(program)
    assert not accepted
    assert reason == "invalid write to stack R1 off=0 size=8"
