"""Global functions (BTF FUNC with global linkage): verified once from their prototype, calls
checked against it, r0 an unknown scalar after the call, as the kernel does.

Each C program is compiled here with clang-19; our verdict must be the kernel's (checked against
the kernel itself where bpf() works). Static twins of the same code show the difference: walked
inline, they see the caller's state.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pybpf.errors import PybpfError
from pybpf.obj import load_spec
from pybpf.verifier import verify, verify_program

from .c_objects import KERNEL_AVAILABLE, KERNEL_REASON, PROGS, compile_c, kernel_verdict

_AVAILABLE, _REASON = KERNEL_AVAILABLE, KERNEL_REASON

HEADER = r"""
#include "bpf_helpers.h"
#include "bpf_helpers_more.h"
struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 4); __type(key, __u32); __type(value, __u64[8]); }
    table SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_RINGBUF); __uint(max_entries, 4096); } events SEC(".maps");
struct big { __u64 words[16]; };
char LICENSE[] SEC("license") = "GPL";
"""

# The row lookup every "pick" variant makes; ``i`` is only bounded by the caller.
_PICK = r"""
{QUAL} __noinline int pick(__u32 i) {
    __u32 key = 0;
    __u64 *row = bpf_map_lookup_elem(&table, &key);
    if (!row) return 0;
    return row[i];
}
SEC("xdp") int prog(struct xdp_md *ctx) {
    __u32 i = ctx->ingress_ifindex;
    if (i < 8) return pick(i) & 1;
    return XDP_PASS;
}"""

# name -> (C source after the header, the kernel's verdict: True = accepted)
PROGRAMS: dict[str, tuple[str, bool]] = {
    "global-any-args": (r"""
__noinline int clamp(int value, int lo, int hi) {
    if (value < lo) return lo;
    return value > hi ? hi : value;
}
SEC("xdp") int prog(struct xdp_md *ctx) { return clamp(ctx->ingress_ifindex, 0, 2); }""", True),
    "global-relies-on-caller-bound": (_PICK.replace("{QUAL}", ""), False),
    "static-relies-on-caller-bound": (_PICK.replace("{QUAL}", "static"), True),
    "global-return-is-unknown": (r"""
__noinline int low_bits(__u32 x) { return x & 3; }
SEC("xdp") int prog(struct xdp_md *ctx) {
    __u32 key = 0;
    __u64 *row = bpf_map_lookup_elem(&table, &key);
    if (!row) return XDP_PASS;
    return row[low_bits(ctx->ingress_ifindex)] & 1;
}""", False),
    "static-return-is-known": (r"""
static __noinline int low_bits(__u32 x) { return x & 3; }
SEC("xdp") int prog(struct xdp_md *ctx) {
    __u32 key = 0;
    __u64 *row = bpf_map_lookup_elem(&table, &key);
    if (!row) return XDP_PASS;
    return row[low_bits(ctx->ingress_ifindex)] & 1;
}""", True),
    "global-pointer-unchecked": (r"""
__noinline int load(__u64 *p) { return *p & 1; }
SEC("xdp") int prog(struct xdp_md *ctx) {
    __u64 value = ctx->ingress_ifindex;
    return load(&value);
}""", False),
    "global-pointer-null-checked": (r"""
__noinline int load(__u64 *p) { if (!p) return 0; return *p & 1; }
SEC("xdp") int prog(struct xdp_md *ctx) {
    __u64 value = ctx->ingress_ifindex;
    return load(&value) + load(0);
}""", True),
    "global-pointer-nonnull-tag": (r"""
__noinline int load(__u64 *p __attribute__((btf_decl_tag("arg:nonnull")))) { return *p & 1; }
SEC("xdp") int prog(struct xdp_md *ctx) {
    __u64 value = ctx->ingress_ifindex;
    return load(&value);
}""", True),
    "global-pointer-too-small": (r"""
__noinline int first(struct big *b) { if (!b) return 0; return b->words[15] & 1; }
SEC("xdp") int prog(struct xdp_md *ctx) {
    __u32 key = 0;
    __u64 *row = bpf_map_lookup_elem(&table, &key);
    if (!row) return XDP_PASS;
    return first((struct big *)row);
}""", False),
    "global-pointer-map-value": (r"""
__noinline int first(__u64 *p) { if (!p) return 0; *p += 1; return 0; }
SEC("xdp") int prog(struct xdp_md *ctx) {
    __u32 key = 0;
    return first(bpf_map_lookup_elem(&table, &key));
}""", True),
    "global-ctx-arg": (r"""
__noinline int classify(struct xdp_md *ctx) { return ctx->ingress_ifindex > 4 ? XDP_DROP : XDP_PASS; }
SEC("xdp") int prog(struct xdp_md *ctx) { return classify(ctx); }""", True),
    "global-moves-packet-data": (r"""
static long (*adjust_head)(void *ctx, int delta) = (void *)44;  /* bpf_xdp_adjust_head */
__noinline int shrink(struct xdp_md *ctx) { return adjust_head(ctx, 4); }
SEC("xdp") int prog(struct xdp_md *ctx) {
    unsigned char *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
    if (data + 1 > end) return XDP_PASS;
    shrink(ctx);
    return data[0] ? XDP_DROP : XDP_PASS;
}""", False),
    "global-keeps-packet-data": (r"""
__noinline int mark(struct xdp_md *ctx) { return ctx->rx_queue_index & 1; }
SEC("xdp") int prog(struct xdp_md *ctx) {
    unsigned char *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
    if (data + 1 > end) return XDP_PASS;
    mark(ctx);
    return data[0] ? XDP_DROP : XDP_PASS;
}""", True),
    "global-clobbers-spilled-pointer": (r"""
struct holder { __u64 *p; __u64 v; };
__noinline int touch(struct holder *h) { if (!h) return 0; h->v = 1; return 0; }
SEC("xdp") int prog(struct xdp_md *ctx) {
    __u32 key = 0;
    volatile struct holder h = {};
    h.p = bpf_map_lookup_elem(&table, &key);
    if (!h.p) return XDP_PASS;
    touch((struct holder *)&h);
    return *h.p & 1;
}""", False),  # the callee may have written anything over the spilled pointer
    "global-fills-ringbuf-record": (r"""
__noinline int fill(__u64 *p) { if (!p) return 0; *p = 7; return 1; }
SEC("xdp") int prog(struct xdp_md *ctx) {
    __u64 *slot = bpf_ringbuf_reserve(&events, 8, 0);
    if (!slot) return XDP_PASS;
    fill(slot);
    bpf_ringbuf_submit(slot, 0);
    return XDP_PASS;
}""", True),
    "global-memory-given-ctx": (r"""
__noinline int last(struct big *b) { if (!b) return 0; return b->words[15] & 1; }
SEC("xdp") int prog(struct xdp_md *ctx) { return last((struct big *)ctx); }""", False),
    "global-scalar-given-pointer": (r"""
__noinline int low_bit(long x) { return x & 1; }
SEC("xdp") int prog(struct xdp_md *ctx) {
    __u64 value = ctx->ingress_ifindex;
    return low_bit((long)&value);
}""", False),
    "global-void-pointer": (r"""
__noinline int peek(void *p) { return p != 0; }
SEC("xdp") int prog(struct xdp_md *ctx) {
    __u64 value = 0;
    return peek(&value);
}""", False),
    "global-void-return": (r"""
__noinline void bump(__u64 *p) { if (p) *p += 1; }
SEC("xdp") int prog(struct xdp_md *ctx) {
    __u32 key = 0;
    bump(bpf_map_lookup_elem(&table, &key));
    return XDP_PASS;
}""", False),  # "Global function bump() doesn't return scalar"
}


def _compile(tmp_path: Path, name: str, body: str) -> Path:
    return compile_c(tmp_path, name, HEADER + body)


@pytest.mark.clang
@pytest.mark.parametrize("name", list(PROGRAMS))
def test_global_function_verdict(tmp_path: Path, name: str) -> None:
    body, kernel_accepts = PROGRAMS[name]
    spec = load_spec(_compile(tmp_path, name, body))
    report = verify_program(spec.programs["prog"], spec)
    assert report.accepted == kernel_accepts, report.summary()


@pytest.mark.clang
@pytest.mark.kernel
@pytest.mark.skipif(not _AVAILABLE, reason=_REASON or "bpf() unavailable")
@pytest.mark.parametrize("name", list(PROGRAMS))
def test_global_function_expectation_matches_kernel(tmp_path: Path, name: str) -> None:
    body, kernel_accepts = PROGRAMS[name]
    obj = _compile(tmp_path, name, body)
    accepted, _ = kernel_verdict(obj)
    assert accepted == kernel_accepts


@pytest.mark.clang
def test_global_function_verified_once_on_its_own(tmp_path: Path) -> None:
    """Called twice, the global function is checked once (its log line once); the rejection
    inside it names its own C line, not the caller's."""
    body = r"""
__noinline int clamp(int value, int lo, int hi) { return value < lo ? lo : value > hi ? hi : value; }
SEC("xdp") int prog(struct xdp_md *ctx) { return clamp(ctx->ingress_ifindex, 0, 2) + clamp(0, 1, 1); }"""
    spec = load_spec(_compile(tmp_path, "twice", body))
    report = verify_program(spec.programs["prog"], spec, log_level=1)
    assert report.accepted, report.summary()
    assert sum("('clamp') is safe for any args" in line for line in report.log) == 1
    body, _ = PROGRAMS["global-relies-on-caller-bound"]
    spec = load_spec(_compile(tmp_path, "bound", body))
    report = verify_program(spec.programs["prog"], spec)
    assert not report.accepted and report.error is not None
    assert report.error.source is not None and "row[i]" in report.error.source


@pytest.mark.clang
def test_without_btf_every_function_is_static(tmp_path: Path) -> None:
    """Raw instructions carry no linkage: the global function is walked inline and sees the
    caller's bound, as the kernel does for a load without BTF."""
    body, _ = PROGRAMS["global-relies-on-caller-bound"]
    spec = load_spec(_compile(tmp_path, "raw", body))
    program = spec.programs["prog"]
    with_btf = verify_program(program, spec)
    assert not with_btf.accepted
    from pybpf.verifier import maps_of

    known = maps_of(spec)
    by_pc = {ref.pc: known[ref.map_name] for ref in program.map_references}
    raw = verify(program.instructions, prog_type=program.section_info.spec, maps=lambda pc, _insn: by_pc.get(pc))
    assert raw.accepted, raw.summary()


@pytest.mark.kernel
@pytest.mark.skipif(not _AVAILABLE, reason=_REASON or "bpf() unavailable")
@pytest.mark.parametrize("object_name", ["bpf2bpf.o", "bpf2bpf.v4.o"])
def test_bpf2bpf_processed_counts_near_the_kernel(object_name: str) -> None:
    """With clamp() verified on its own, each program's count is the kernel's or below it (we
    keep a checkpoint at every prune point, the kernel only every few jumps)."""
    from pybpf.kernel.loader import load

    path = PROGS / object_name
    spec = load_spec(path)
    try:
        with load(path) as obj:
            kernel = {name: program.info().verified_insns for name, program in obj.programs.items()}
    except PybpfError as error:
        pytest.skip(f"the kernel loader could not load the object: {error}")
    for name, program in spec.programs.items():
        ours = verify_program(program, spec, log_level=1)
        assert ours.accepted, ours.summary()
        assert 0.8 * kernel[name] <= ours.processed_insns <= kernel[name], (name, ours.processed_insns, kernel[name])
        if name == "count_len":
            assert any("Func#2 ('clamp') is safe for any args" in line for line in ours.log)


def test_null_passed_for_a_pointer_is_not_pruned_against_a_non_null_scalar() -> None:
    """A scalar passed for a pointer argument is accepted only as NULL: the state stored at the
    call with r1 = 0 must not cover a later path with r1 an unknown non-zero scalar."""
    from pybpf.isa.insn import Bin, BinOp, Call, CallLocal, Cond, Exit, Goto, Imm, Instruction, Jump, LabeledInsn, Reg
    from pybpf.verifier.global_funcs import GlobalArg, GlobalArgKind, GlobalFunc

    insns: tuple[Instruction, ...] = (
        Call(7),  # 0: r0 = bpf_get_prandom_u32()
        Bin(BinOp.MOV, Reg.R1, Imm(0), True),  # 1: r1 = NULL
        Jump(Cond.JGT, Reg.R0, Imm(5), 3, False),  # 2: the path with r1 = NULL goes first
        CallLocal(4),  # 3: call f(r1) -> 8
        Bin(BinOp.MOV, Reg.R0, Imm(0), True),  # 4
        Exit(),  # 5
        Bin(BinOp.MOV, Reg.R1, Reg.R0, True),  # 6: r1 = a number > 5, not a pointer
        Goto(-5),  # 7: -> 3
        Bin(BinOp.MOV, Reg.R0, Imm(0), True),  # 8: f
        Exit(),  # 9
    )
    labeled = [LabeledInsn(pc, insn) for pc, insn in enumerate(insns)]
    func = GlobalFunc("f", 8, (GlobalArg(GlobalArgKind.ARG_PTR_TO_MEM, 8, maybe_null=True),))
    report = verify(labeled, func_info=True, global_funcs={8: func})
    assert not report.accepted
    assert report.error is not None and report.error.pc == 3, report.summary()
    # Walked inline (no global linkage), f never reads r1: accepted.
    static = verify(labeled, func_info=True)
    assert static.accepted, static.summary()
