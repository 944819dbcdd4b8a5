"""Tail calls and the stack: a subprogram making a tail call may sit below at most 255 bytes of
its callers' frames (each rounded up to 16 bytes), and the frames of a call chain fit in 512.

C programs (with BTF func_info, which the kernel needs for a tail call in a subprogram) are
verified by us and loaded into the kernel, whose verdict is the table's; asm variants check the
arithmetic of the rule directly.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pybpf.asm import Syntax, assemble
from pybpf.obj import load_spec
from pybpf.platform import BpfMapType, BpfProgType
from pybpf.verifier import MapInfo, verify, verify_program

from .c_objects import KERNEL_AVAILABLE, KERNEL_REASON, compile_c, kernel_verdict

_AVAILABLE, _REASON = KERNEL_AVAILABLE, KERNEL_REASON

HEADER = r"""
#include "bpf_helpers.h"
struct { __uint(type, BPF_MAP_TYPE_PROG_ARRAY); __uint(max_entries, 1); __type(key, __u32); __type(value, __u32); }
    jumps SEC(".maps");
char LICENSE[] SEC("license") = "GPL";
static __noinline int leaf(struct __sk_buff *skb) { bpf_tail_call(skb, &jumps, 0); return skb->len & 1; }
"""

# A function's stack depth is its deepest access: an inline-asm store pins it exactly.
_MAIN = r"""
SEC("tc") int prog(struct __sk_buff *skb) {
    asm volatile("r1 = 42; *(u64 *)(r10 - %d) = r1" ::: "r1");
    return %s(skb);
}"""
_MIDDLE = r"""
static __noinline int middle(struct __sk_buff *skb) {
    asm volatile("r1 = 42; *(u64 *)(r10 - %d) = r1" ::: "r1");
    return leaf(skb) + 1;
}"""


def _direct(depth: int) -> str:
    return _MAIN % (depth, "leaf")


def _chain(main_depth: int, middle_depth: int) -> str:
    return _MIDDLE % middle_depth + _MAIN % (main_depth, "middle")


_TOO_LARGE = "tail_calls are not allowed when call stack of previous frames is {} bytes. Too large"

# name -> (C source, the kernel's rejection or None when it accepts)
PROGRAMS: dict[str, tuple[str, str | None]] = {
    "caller-240-bytes": (_direct(240), None),
    "caller-256-bytes": (_direct(256), _TOO_LARGE.format(256)),
    "caller-248-bytes-rounded-up": (_direct(248), _TOO_LARGE.format(256)),
    "chain-128-plus-112": (_chain(128, 112), None),
    "chain-128-plus-128": (_chain(128, 128), _TOO_LARGE.format(256)),
    "chain-8-plus-400": (_chain(8, 400), _TOO_LARGE.format(416)),
    # BTF must say a tail-calling subprogram returns an int: a void one is refused.
    "void-subprog-tail-call": (r"""
static __noinline void forward(struct __sk_buff *skb) { bpf_tail_call(skb, &jumps, 0); }
SEC("tc") int prog(struct __sk_buff *skb) { forward(skb); return leaf(skb); }""",
                               "tail_call is only allowed in functions that return 'int'."),
}


def _compile(tmp_path: Path, name: str, body: str) -> Path:
    return compile_c(tmp_path, name, HEADER + body)


@pytest.mark.clang
@pytest.mark.parametrize("name", list(PROGRAMS))
def test_tail_call_stack_verdict(tmp_path: Path, name: str) -> None:
    body, rejection = PROGRAMS[name]
    spec = load_spec(_compile(tmp_path, name, body))
    report = verify_program(spec.programs["prog"], spec)
    assert report.accepted == (rejection is None), report.summary()
    assert report.reason == rejection


@pytest.mark.clang
@pytest.mark.kernel
@pytest.mark.skipif(not _AVAILABLE, reason=_REASON or "bpf() unavailable")
@pytest.mark.parametrize("name", list(PROGRAMS))
def test_tail_call_expectation_matches_kernel(tmp_path: Path, name: str) -> None:
    body, rejection = PROGRAMS[name]
    obj = _compile(tmp_path, name, body)
    accepted, log = kernel_verdict(obj)
    assert accepted == (rejection is None), log[-2000:]
    if rejection is not None:
        assert rejection in log, log[-2000:]


_PROG_ARRAY = MapInfo(BpfMapType.PROG_ARRAY, 4, 4, 1)
_ASM = """
    r2 = 42
    *(u{width} *)(r10 - {depth}) = r2
    call pc+2
    r0 = 0
    exit
    r2 = map[fd:0]
    r3 = 0
    call 12
    r0 = 0
    exit
"""


@pytest.mark.parametrize(("width", "depth", "rejected_at"), [
    (64, 240, None), (64, 248, 256), (32, 244, 256), (64, 256, 256), (64, 16, None), (8, 241, 256),
])
def test_callers_frames_rounded_to_16(width: int, depth: int, rejected_at: int | None) -> None:
    """The callers' frames are rounded up to 16 bytes before comparing with 256."""
    insns = assemble(_ASM.format(width=width, depth=depth), Syntax.LLVM)
    report = verify(insns, prog_type=BpfProgType.SCHED_CLS, maps=[_PROG_ARRAY], func_info=True)
    expected = None if rejected_at is None else _TOO_LARGE.format(rejected_at)
    assert report.reason == expected


def test_raw_subprog_tail_call_needs_btf() -> None:
    insns = assemble(_ASM.format(width=64, depth=8), Syntax.LLVM)
    report = verify(insns, prog_type=BpfProgType.SCHED_CLS, maps=[_PROG_ARRAY])
    assert report.reason == "tail_call is not allowed in subprogs without BTF"
