"""Global-function arguments by type and by tag, as the kernel's ``btf_prepare_func_args`` reads them.

Each C program here is compiled with clang-19 and verified by us; where bpf() works, the kernel's
verdict must be ours, and a rejection reason we name must appear in the kernel's log. The cases
cover the context recognised by type per program type (``btf_is_prog_ctx_type``: projections such
as ``struct sk_buff``, ``bpf_user_pt_regs_t`` for kprobes, none for tracepoints), ``arg:ctx`` and
its validation, ``arg:nonnull``/``arg:nullable``, ``arg:trusted``/``arg:untrusted`` kernel
objects, ``arg:arena``, and the tags we refuse.
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
#define __arg_ctx __attribute__((btf_decl_tag("arg:ctx")))
#define __arg_nonnull __attribute__((btf_decl_tag("arg:nonnull")))
#define __arg_nullable __attribute__((btf_decl_tag("arg:nullable")))
#define __arg_trusted __attribute__((btf_decl_tag("arg:trusted")))
#define __arg_untrusted __attribute__((btf_decl_tag("arg:untrusted")))
#define __arg_arena __attribute__((btf_decl_tag("arg:arena")))
struct pt_regs { unsigned long r15; };
typedef struct pt_regs bpf_user_pt_regs_t;
struct sk_buff { int len; };
struct xdp_buff { int frame_sz; };
struct trace_entry { unsigned short type; };
struct task_struct { int pid; };
struct vm_area_struct { unsigned long vm_start; };
struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(max_entries, 1); __type(key, __u32); __type(value, __u64); }
    table SEC(".maps");
static struct task_struct *(*bpf_get_current_task_btf)(void) = (void *)BPF_FUNC_get_current_task_btf;
char LICENSE[] SEC("license") = "GPL";
"""


_VMLINUX_MATCH = ("the kernel also requires a trusted/untrusted argument's struct to match vmlinux's exactly "
                  "(programs declare it from vmlinux.h); pybpf has no vmlinux and takes any named struct")


@dataclass(frozen=True, slots=True)
class Case:
    source: str
    accepted: bool  # our verdict, which is the kernel's unless ``kernel_differs`` says why not
    reason: str | None = None  # our rejection's reason (also in the kernel's log)
    kernel_differs: str | None = None  # the kernel's verdict differs, and why
    kernel_message: str | None = None  # the same verdict, but the kernel names another reason, and why


CASES: dict[str, Case] = {
    # -- the context recognised by type ---------------------------------------------------------
    "kprobe-pt-regs": Case(r"""
__noinline int f(struct pt_regs *regs) { return regs->r15 != 0; }
SEC("kprobe/do_exit") int prog(struct pt_regs *ctx) { return f(ctx); }""", True),
    "kprobe-user-pt-regs-typedef": Case(r"""
__noinline int f(bpf_user_pt_regs_t *regs) { return regs->r15 != 0; }
SEC("kprobe/do_exit") int prog(struct pt_regs *ctx) { return f(ctx); }""", True),
    "xdp-projection-xdp-buff": Case(r"""
__noinline int f(struct xdp_buff *x) { return x != 0; }
SEC("xdp") int prog(struct xdp_md *ctx) { return f((struct xdp_buff *)ctx); }""", True),
    "tc-projection-sk-buff": Case(r"""
__noinline int f(struct sk_buff *skb) { return skb != 0; }
SEC("tc") int prog(struct __sk_buff *ctx) { return f((struct sk_buff *)ctx); }""", True),
    "xdp-ctx-arg-given-stack": Case(r"""
__noinline int f(struct xdp_md *x) { return x->ingress_ifindex; }
SEC("xdp") int prog(struct xdp_md *ctx) { struct xdp_md copy = {}; return f(&copy); }""", False,
                                    "arg#0 expects pointer to ctx"),
    "tracepoint-struct-is-memory": Case(r"""
__noinline int f(struct trace_entry *e) { return e ? e->type : 0; }
SEC("tracepoint/syscalls/sys_enter_openat") int prog(void *ctx) { return f(ctx); }""", False,
                                        "R1 type=ctx expected=fp",
                                        kernel_message="the kernel checks a context passed for memory against the "
                                                       "context's access rules; pybpf refuses it outright"),
    "raw-tp-args-struct": Case(r"""
__noinline int f(struct bpf_raw_tracepoint_args *a) { return a->args[0] & 1; }
SEC("raw_tp/sys_enter") int prog(struct bpf_raw_tracepoint_args *ctx) { return f(ctx); }""", True),
    "void-pointer-untagged": Case(r"""
__noinline int f(void *ctx) { return ctx != 0; }
SEC("kprobe/do_exit") int prog(struct pt_regs *ctx) { return f(ctx); }""", False,
                                  "arg#0 reference type('UNKNOWN ') size cannot be determined: -22"),
    # -- arg:ctx -----------------------------------------------------------------------------
    "ctx-tag-void": Case(r"""
__noinline int f(void *ctx __arg_ctx) { return ctx != 0; }
SEC("kprobe/do_exit") int prog(struct pt_regs *ctx) { return f(ctx); }""", True),
    "ctx-tag-raw-tp-u64": Case(r"""
__noinline int f(__u64 *args __arg_ctx) { return args[0] & 1; }
SEC("raw_tp/sys_enter") int prog(struct bpf_raw_tracepoint_args *ctx) { return f((__u64 *)ctx); }""", True),
    "ctx-tag-tracepoint-anything": Case(r"""
__noinline int f(struct trace_entry *e __arg_ctx) { return e != 0; }
SEC("tracepoint/syscalls/sys_enter_openat") int prog(void *ctx) { return f(ctx); }""", True),
    "ctx-tag-wrong-struct": Case(r"""
__noinline int f(struct __sk_buff *skb __arg_ctx) { return skb != 0; }
SEC("xdp") int prog(struct xdp_md *ctx) { return f((struct __sk_buff *)ctx); }""", False,
                                 "arg#0 should be `struct xdp_md *`"),
    "ctx-tag-projection-refused": Case(r"""
__noinline int f(struct xdp_buff *x __arg_ctx) { return x != 0; }
SEC("xdp") int prog(struct xdp_md *ctx) { return f((struct xdp_buff *)ctx); }""", False,
                                       "arg#0 should be `struct xdp_md *`"),
    "ctx-tag-with-nonnull": Case(r"""
__noinline int f(void *ctx __arg_ctx __arg_nonnull) { return ctx != 0; }
SEC("xdp") int prog(struct xdp_md *ctx) { return f(ctx); }""", False, "arg#0 has invalid combination of tags"),
    # -- memory ------------------------------------------------------------------------------
    "nonnull-memory-given-maybe-null": Case(r"""
__noinline int f(__u64 *p __arg_nonnull) { return *p & 1; }
SEC("xdp") int prog(struct xdp_md *ctx) { __u32 key = 0; return f(bpf_map_lookup_elem(&table, &key)); }""", False,
                                            "arg#0 is expected to be non-NULL"),
    "nullable-memory-refused": Case(r"""
__noinline int f(__u64 *p __arg_nullable) { return p ? *p & 1 : 0; }
SEC("xdp") int prog(struct xdp_md *ctx) { __u64 v = 0; return f(&v); }""", False,
                                    "arg#0 has invalid combination of tags"),
    "unknown-tag": Case(r"""
__noinline int f(__u64 *p __attribute__((btf_decl_tag("arg:shiny")))) { return p != 0; }
SEC("xdp") int prog(struct xdp_md *ctx) { __u64 v = 0; return f(&v); }""", False,
                        "arg#0 has unsupported set of tags"),
    # -- kernel objects ----------------------------------------------------------------------
    "trusted-task": Case(r"""
__noinline int f(struct task_struct *task __arg_trusted) { return task != 0; }
SEC("raw_tp/sys_enter") int prog(void *ctx) { return f(bpf_get_current_task_btf()); }""", True,
                         kernel_differs=_VMLINUX_MATCH),
    "trusted-given-stack": Case(r"""
__noinline int f(struct task_struct *task __arg_trusted) { return task != 0; }
SEC("raw_tp/sys_enter") int prog(void *ctx) { __u64 v = 0; return f((struct task_struct *)&v); }""", False,
                                "R1 type=fp expected=ptr_, trusted_ptr_, rcu_ptr_", kernel_message=_VMLINUX_MATCH),
    "trusted-given-null": Case(r"""
__noinline int f(struct task_struct *task __arg_trusted) { return task != 0; }
SEC("raw_tp/sys_enter") int prog(void *ctx) { volatile long null = 0; return f((void *)null); }""", False,
                               "R1 type=scalar expected=ptr_, trusted_ptr_, rcu_ptr_", kernel_message=_VMLINUX_MATCH),
    "trusted-nullable-given-null": Case(r"""
__noinline int f(struct task_struct *task __arg_trusted __arg_nullable) { return task != 0; }
SEC("raw_tp/sys_enter") int prog(void *ctx) {
    volatile long null = 0;
    return f((void *)null) + f(bpf_get_current_task_btf());
}""", True, kernel_differs=_VMLINUX_MATCH),
    "trusted-nonnull": Case(r"""
__noinline int f(struct task_struct *task __arg_trusted __arg_nonnull) { return task != 0; }
SEC("raw_tp/sys_enter") int prog(void *ctx) { return f(bpf_get_current_task_btf()); }""", False,
                            "arg#0 has invalid combination of tags"),
    "trusted-wrong-struct": Case(r"""
__noinline int f(struct vm_area_struct *vma __arg_trusted) { return vma != 0; }
SEC("raw_tp/sys_enter") int prog(void *ctx) {
    return f((struct vm_area_struct *)bpf_get_current_task_btf());
}""", False, "R1 is of type task_struct but vm_area_struct is expected", kernel_message=_VMLINUX_MATCH),
    "untrusted-task": Case(r"""
__noinline int f(struct task_struct *task __arg_untrusted) { return task != 0; }
SEC("raw_tp/sys_enter") int prog(void *ctx) { return f(bpf_get_current_task_btf()); }""", True,
                           kernel_differs=_VMLINUX_MATCH),
    "untrusted-with-other-tag": Case(r"""
__noinline int f(struct task_struct *task __arg_untrusted __arg_nullable) { return task != 0; }
SEC("raw_tp/sys_enter") int prog(void *ctx) { return f(bpf_get_current_task_btf()); }""", False,
                                     "arg#0 untrusted cannot be combined with any other tags"),
    # arg:arena: the callee gets an arena pointer; a caller may pass one or any scalar.
    "arena-scalar": Case(r"""
__noinline int f(void *p __arg_arena) { return p != 0; }
SEC("xdp") int prog(struct xdp_md *ctx) { return f((void *)(long)ctx->ingress_ifindex); }""", True),
    "arena-stack-pointer": Case(r"""
__noinline int f(void *p __arg_arena) { return p != 0; }
SEC("xdp") int prog(struct xdp_md *ctx) { int x = 0; return f(&x); }""", False,
                                "R1 is not a pointer to arena or scalar."),
    "arena-with-other-tag": Case(r"""
__noinline int f(void *p __arg_arena __arg_nonnull) { return p != 0; }
SEC("xdp") int prog(struct xdp_md *ctx) { return f((void *)(long)ctx->ingress_ifindex); }""", False,
                                 "arg#0 arena cannot be combined with any other tags"),
}


def _verify(tmp_path: Path, name: str) -> tuple[Path, bool, str | None]:
    obj = compile_c(tmp_path, name.replace("-", "_"), HEADER + CASES[name].source)
    spec = load_spec(obj)
    report = verify_program(spec.programs["prog"], spec)
    # The whole reason: an argument's fault comes before "Caller passes invalid args into ...".
    return obj, report.accepted, report.diagnostics[0].reason if report.diagnostics else None


@pytest.mark.clang
@pytest.mark.parametrize("name", list(CASES))
def test_global_argument_verdict(tmp_path: Path, name: str) -> None:
    case = CASES[name]
    obj, accepted, reason = _verify(tmp_path, name)
    assert accepted == case.accepted, reason
    if case.reason is not None:
        assert reason is not None and case.reason in reason, reason
    if not KERNEL_AVAILABLE:
        pytest.skip(f"no kernel comparison: {KERNEL_REASON or 'bpf() unavailable'}")
    if case.kernel_differs is not None:
        pytest.skip(f"intentional difference: {case.kernel_differs}")
    kernel_accepts, log = kernel_verdict(obj)
    assert kernel_accepts == case.accepted, log
    if case.reason is not None and case.kernel_message is None:
        assert case.reason in log, log
