"""Tracing program types: kprobe, tracepoint, raw_tracepoint, perf_event, BTF tracing
(fentry/fexit/fmod_ret/tp_btf/iter), lsm, syscall.

Helper sets follow kernel/trace/bpf_trace.c (``bpf_tracing_func_proto`` and the per-type
``*_prog_func_proto`` that extend it), kernel/bpf/bpf_lsm.c and kernel/bpf/syscall.c.
"""

from __future__ import annotations

from pybpf.platform import contexts
from pybpf.platform.context import ContextLayout, CtxField
from pybpf.platform.progtypes._spec import BASE_HELPERS, H, ProgTypeSpec
from pybpf.platform.uapi_generated import BpfAttachType, BpfProgType

A = BpfAttachType

# bpf_tracing_func_proto(): shared by every tracing type.
TRACING_COMMON_HELPERS = BASE_HELPERS | {
    H.GET_CURRENT_PID_TGID, H.GET_CURRENT_UID_GID, H.GET_CURRENT_COMM, H.PERF_EVENT_READ,
    H.CURRENT_TASK_UNDER_CGROUP, H.PROBE_WRITE_USER, H.PROBE_READ, H.PROBE_READ_STR,
    H.SEND_SIGNAL, H.SEND_SIGNAL_THREAD, H.PERF_EVENT_READ_VALUE, H.GET_NS_CURRENT_PID_TGID,
    H.GET_TASK_STACK, H.COPY_FROM_USER, H.COPY_FROM_USER_TASK, H.TASK_STORAGE_GET,
    H.TASK_STORAGE_DELETE, H.GET_BRANCH_SNAPSHOT, H.FIND_VMA, H.D_PATH, H.GET_CURRENT_CGROUP_ID,
}
_STACK_HELPERS = frozenset({H.PERF_EVENT_OUTPUT, H.GET_STACKID, H.GET_STACK})

KPROBE = ProgTypeSpec(
    BpfProgType.KPROBE,
    "kprobe",
    contexts.PT_REGS_X86_64.layout,
    TRACING_COMMON_HELPERS
    | _STACK_HELPERS
    | {H.OVERRIDE_RETURN, H.GET_FUNC_IP, H.GET_ATTACH_COOKIE},
    "kprobe/kretprobe/uprobe: context is the probed task's registers (read-only).",
    attach_types=(A.TRACE_KPROBE_MULTI,),
    private_stack=True,
)

TRACEPOINT = ProgTypeSpec(
    BpfProgType.TRACEPOINT,
    "tracepoint",
    contexts.TRACEPOINT_GENERIC,
    TRACING_COMMON_HELPERS | _STACK_HELPERS | {H.GET_ATTACH_COOKIE},
    "Tracepoint: context is the event record (common header, then the event's fields).",
    private_stack=True,
)

RAW_TRACEPOINT = ProgTypeSpec(
    BpfProgType.RAW_TRACEPOINT,
    "raw_tracepoint",
    contexts.RAW_TRACEPOINT_ARGS,
    TRACING_COMMON_HELPERS | _STACK_HELPERS,
    "Raw tracepoint: context is the tracepoint's raw u64 arguments.",
    private_stack=True,
)

RAW_TRACEPOINT_WRITABLE = ProgTypeSpec(
    BpfProgType.RAW_TRACEPOINT_WRITABLE,
    "raw_tracepoint_writable",
    contexts.RAW_TRACEPOINT_ARGS,
    TRACING_COMMON_HELPERS | _STACK_HELPERS,
    "Raw tracepoint that may write its first argument's buffer.",
)

PERF_EVENT = ProgTypeSpec(
    BpfProgType.PERF_EVENT,
    "perf_event",
    contexts.perf_event_data(contexts.PT_REGS_X86_64),
    TRACING_COMMON_HELPERS
    | _STACK_HELPERS
    | {H.PERF_PROG_READ_VALUE, H.READ_BRANCH_RECORDS, H.GET_ATTACH_COOKIE},
    "perf event sampling: context is bpf_perf_event_data (registers, period, address).",
    attach_types=(A.PERF_EVENT,),
    private_stack=True,
)

_BTF_TRACING_HELPERS = (
    TRACING_COMMON_HELPERS
    | _STACK_HELPERS
    | {
        H.SKB_OUTPUT, H.XDP_OUTPUT, H.SKC_TO_TCP6_SOCK, H.SKC_TO_TCP_SOCK, H.SKC_TO_TCP_TIMEWAIT_SOCK,
        H.SKC_TO_TCP_REQUEST_SOCK, H.SKC_TO_UDP6_SOCK, H.SKC_TO_UNIX_SOCK, H.SK_STORAGE_GET,
        H.SK_STORAGE_DELETE, H.SOCK_FROM_FILE, H.GET_SOCKET_COOKIE, H.SEQ_PRINTF, H.SEQ_WRITE,
        H.SEQ_PRINTF_BTF, H.GET_FUNC_IP, H.GET_FUNC_ARG, H.GET_FUNC_RET, H.GET_FUNC_ARG_CNT,
        H.GET_ATTACH_COOKIE,
    }
)

TRACING = ProgTypeSpec(
    BpfProgType.TRACING,
    "tracing",
    contexts.RAW_TRACEPOINT_ARGS,
    _BTF_TRACING_HELPERS,
    "BTF tracing (fentry/fexit/fmod_ret/tp_btf/iter): context is the target's u64 arguments.",
    attach_types=(A.TRACE_FENTRY, A.TRACE_FEXIT, A.MODIFY_RETURN, A.TRACE_RAW_TP, A.TRACE_ITER),
    # check_return_code(): fentry/fexit must return 0, iterators 0 or 1; fmod_ret is unchecked.
    attach_return_ranges=((A.TRACE_FENTRY, (0, 0)), (A.TRACE_FEXIT, (0, 0)), (A.TRACE_ITER, (0, 1))),
    # bpf_prog_check_recur(): iterators may recurse, so they keep the normal stack.
    private_stack=True,
    private_stack_excluded=(A.TRACE_ITER,),
)

LSM = ProgTypeSpec(
    BpfProgType.LSM,
    "lsm",
    contexts.RAW_TRACEPOINT_ARGS,
    _BTF_TRACING_HELPERS
    | {
        H.INODE_STORAGE_GET, H.INODE_STORAGE_DELETE, H.BPRM_OPTS_SET, H.IMA_INODE_HASH,
        H.IMA_FILE_HASH, H.GET_RETVAL, H.SET_RETVAL, H.GET_LOCAL_STORAGE,
    },
    "BPF LSM hook: returns 0 or a negative errno (-4095..0); cgroup LSM hooks return 0 or 1.",
    return_range=(-4095, 0),
    attach_return_ranges=((A.LSM_CGROUP, (0, 1)),),
    attach_types=(A.LSM_MAC, A.LSM_CGROUP),
)

SYSCALL = ProgTypeSpec(
    BpfProgType.SYSCALL,
    "syscall",
    # The context is a user-supplied buffer of ctx_size_in bytes; any aligned access inside it.
    ContextLayout(
        "syscall_ctx",
        contexts.PERF_MAX_TRACE_SIZE,
        (CtxField("data", 0, contexts.PERF_MAX_TRACE_SIZE, frozenset({1, 2, 4, 8}),
                           frozenset({1, 2, 4, 8})),),
    ),
    TRACING_COMMON_HELPERS | {H.SYS_BPF, H.BTF_FIND_BY_NAME_KIND, H.SYS_CLOSE, H.KALLSYMS_LOOKUP_NAME},
    "Syscall program (run with BPF_PROG_RUN): may call bpf() itself; always sleepable.",
)

STRUCT_OPS = ProgTypeSpec(
    BpfProgType.STRUCT_OPS,
    "struct_ops",
    contexts.RAW_TRACEPOINT_ARGS,
    # bpf_struct_ops get_func_proto callbacks vary per ops table; tracing helpers are the common core.
    TRACING_COMMON_HELPERS,
    "Implementation of one member of a kernel ops table (tcp_congestion_ops...): u64 arguments.",
)

EXT = ProgTypeSpec(
    BpfProgType.EXT,
    "ext",
    # freplace programs take the replaced function's context and helper set; arguments stand in.
    contexts.RAW_TRACEPOINT_ARGS,
    TRACING_COMMON_HELPERS,
    "freplace: replaces a global function of another BPF program.",
)

TRACING_PROG_TYPES = (
    KPROBE, TRACEPOINT, RAW_TRACEPOINT, RAW_TRACEPOINT_WRITABLE, PERF_EVENT, TRACING, LSM, SYSCALL,
    STRUCT_OPS, EXT,
)
