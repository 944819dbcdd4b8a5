"""Private stacks of tracing programs (Linux 6.14+, x86-64 JIT): kernel-differential.

A chain of functions whose frames add up past 512 bytes is refused for most program types
("combined stack size of N calls is M. Too large"), but kprobe, tracepoint, perf_event,
raw_tracepoint and BTF tracing (tp_btf) programs give every frame of 64 bytes or more a private
stack, so only each frame alone must fit; a tail call anywhere, or the writable raw tracepoint
type, keeps the old limit. Each program is compiled here, verified by us, and loaded (never
attached) into this machine's kernel, whose verdict must match ours and the expectation.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pybpf.obj import load_spec
from pybpf.platform import BpfAttachType, BpfProgType, prog_type_spec
from pybpf.verifier import verify_program

from .c_objects import KERNEL_AVAILABLE, KERNEL_REASON, compile_c, kernel_verdict


def _chain(section: str, sizes: tuple[int, ...], *, tail_call: bool) -> str:
    """``main -> f1 -> f2 ...``: each function fills a ``sizes[i]``-byte stack buffer and hands
    it to a helper (so the whole buffer is on its frame)."""
    ctx = {"socket": "struct __sk_buff *ctx", "xdp": "struct xdp_md *ctx"}.get(section, "void *ctx")
    lines = ['#include "bpf_helpers.h"', 'char LICENSE[] SEC("license") = "GPL";',
             "struct { __uint(type, BPF_MAP_TYPE_PROG_ARRAY); __uint(max_entries, 1); __type(key, __u32);"
             ' __type(value, __u32); } jumps SEC(".maps");']
    lines += [f"struct {{ __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 1); __type(key, __u32);"
              f' __type(value, char[{size}]); }} m{i} SEC(".maps");' for i, size in enumerate(sizes)]

    def body(i: int) -> str:
        callee = f" + f{i + 1}(x + 1)" if i + 1 < len(sizes) else ""
        return (f"    char buf[{sizes[i]}];\n    __u32 k = 0;\n    __builtin_memset(buf, x, sizeof(buf));\n"
                f"    return bpf_map_update_elem(&m{i}, &k, buf, 0){callee};")

    for i in range(len(sizes) - 1, 0, -1):
        lines.append(f"static __attribute__((noinline)) int f{i}(int x) {{\n{body(i)}\n}}")
    jump = "    bpf_tail_call(ctx, &jumps, 0);\n" if tail_call else ""
    lines.append(f'SEC("{section}") int prog({ctx}) {{\n    int x = 1;\n{jump}{body(0)}\n}}')
    return "\n".join(lines)


DEEP = (256, 256, 256)  # 272 + 272 + 272 bytes of frames: past 512 together, fine one by one
MIXED = (48, 480, 48)  # one big frame between two small ones (64 each once rounded)
# (section, frame sizes, tail call, the kernel's verdict on this machine)
CASES = (
    ("kprobe/do_sys_openat2", DEEP, False, True),
    ("kprobe/do_sys_openat2", MIXED, False, True),
    ("kprobe/do_sys_openat2", (32, 32, 480, 480), False, True),
    ("kprobe/do_sys_openat2", DEEP, True, False),
    ("raw_tp/sys_enter", DEEP, False, True),
    ("raw_tp/sys_enter", MIXED, True, False),
    ("tracepoint/syscalls/sys_enter_openat", DEEP, False, True),
    ("perf_event", (496, 8, 8), False, True),
    ("tp_btf/sys_enter", DEEP, False, True),
    ("raw_tp.w/sys_enter", DEEP, False, False),
    ("socket", DEEP, False, False),
    ("xdp", MIXED, False, False),
    ("xdp", (48,) * 8, False, True),
)
IDS = [f"{section.split('/')[0]}-{'-'.join(map(str, sizes))}{'-tailcall' if tail else ''}"
       for section, sizes, tail, _ in CASES]


def _ours(tmp_path: Path, section: str, sizes: tuple[int, ...], tail_call: bool) -> tuple[Path, bool, str | None]:
    obj = compile_c(tmp_path, "chain", _chain(section, sizes, tail_call=tail_call))
    spec = load_spec(obj)
    program = next(iter(spec.programs.values()))
    report = verify_program(program, spec)
    return obj, report.accepted, report.reason


@pytest.mark.parametrize(("section", "sizes", "tail_call", "expected"), CASES, ids=IDS)
def test_combined_stack_with_private_stacks(tmp_path: Path, section: str, sizes: tuple[int, ...],
                                            tail_call: bool, expected: bool) -> None:
    _, accepted, reason = _ours(tmp_path, section, sizes, tail_call)
    assert accepted == expected, reason
    if not expected:
        assert reason is not None and reason.startswith("combined stack size of")


@pytest.mark.kernel
@pytest.mark.skipif(not KERNEL_AVAILABLE, reason=KERNEL_REASON)
@pytest.mark.parametrize(("section", "sizes", "tail_call", "expected"), CASES, ids=IDS)
def test_kernel_agrees(tmp_path: Path, section: str, sizes: tuple[int, ...], tail_call: bool,
                       expected: bool) -> None:
    obj, accepted, reason = _ours(tmp_path, section, sizes, tail_call)
    kernel_accepted, log = kernel_verdict(obj)
    assert kernel_accepted == accepted, f"ours: {reason}; kernel: {log}"
    if not accepted:
        assert reason is not None and reason in log


def test_program_type_table() -> None:
    # bpf_enable_priv_stack: the types that never recurse; iterators (bpf_prog_check_recur) and
    # the others keep the normal stack.
    for prog_type in (BpfProgType.KPROBE, BpfProgType.TRACEPOINT, BpfProgType.PERF_EVENT,
                      BpfProgType.RAW_TRACEPOINT):
        assert prog_type_spec(prog_type).uses_private_stack(None)
    tracing = prog_type_spec(BpfProgType.TRACING)
    assert tracing.uses_private_stack(BpfAttachType.TRACE_FENTRY)
    assert not tracing.uses_private_stack(BpfAttachType.TRACE_ITER)
    for prog_type in (BpfProgType.RAW_TRACEPOINT_WRITABLE, BpfProgType.XDP, BpfProgType.SOCKET_FILTER,
                      BpfProgType.LSM):
        assert not prog_type_spec(prog_type).uses_private_stack(None)
