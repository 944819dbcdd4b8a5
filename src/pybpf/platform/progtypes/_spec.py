"""ProgTypeSpec and the helper sets every program-type family builds on."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, IntEnum, auto

from pybpf.platform.capabilities import Capability
from pybpf.platform.context import ContextLayout
from pybpf.platform.uapi_generated import BpfAttachType, BpfProgType, HelperId

H = HelperId


class PacketAccess(Enum):
    """Direct packet access through data/data_end (the verifier's may_access_direct_pkt_data)."""

    NONE = auto()
    READ = auto()
    READ_WRITE = auto()


@dataclass(frozen=True, slots=True)
class ProgTypeSpec:
    """Everything the loader, verifier and runtime need to know about one program type."""

    prog_type: BpfProgType
    name: str
    context: ContextLayout
    helpers: frozenset[HelperId]  # what the kernel's <type>_func_proto returns non-NULL for
    description: str
    packet_access: PacketAccess = PacketAccess.NONE
    # Allowed r0 at exit when the kernel's check_return_code() restricts it, inclusive.
    return_range: tuple[int, int] | None = None
    attach_return_ranges: tuple[tuple[BpfAttachType, tuple[int, int]], ...] = ()
    # Named return codes, for documentation and pretty-printing (XdpAction, TcAct, SkAction...).
    return_codes: type[IntEnum] | None = None
    # Attach types a program of this type may be loaded with (expected_attach_type).
    attach_types: tuple[BpfAttachType, ...] = ()
    # Whether a JIT that has private stacks (x86-64, Linux 6.14+) may give this type's
    # functions one (the kernel's bpf_enable_priv_stack), except for these attach types.
    private_stack: bool = False
    private_stack_excluded: tuple[BpfAttachType, ...] = ()

    def allows_helper(self, helper_id: int, *, privileged: bool = True) -> bool:
        """Whether the type's ``get_func_proto`` hands out ``helper_id``; for a loader without
        CAP_BPF/CAP_PERFMON, not the helpers ``bpf_base_func_proto`` (and the socket types'
        ``bpf_sk_base_func_proto``) keep for those capabilities."""
        return helper_id in self.helpers and (privileged or helper_id not in CAPABLE_BASE_HELPERS)

    @property
    def load_capabilities(self) -> tuple[Capability, ...]:
        """What ``bpf_prog_load`` requires of the loader for this type, in the order it checks
        (``EPERM`` otherwise): CAP_BPF for all but socket filters and cgroup skb programs, then
        CAP_NET_ADMIN for network types (``is_net_admin_prog_type``) and CAP_PERFMON for tracing
        types (``is_perfmon_prog_type``); ``ext`` programs, which may extend any, need both."""
        needed = [] if self.prog_type in UNPRIVILEGED_PROG_TYPES else [Capability.BPF]
        if self.prog_type in NET_ADMIN_PROG_TYPES:
            needed.append(Capability.NET_ADMIN)
        if self.prog_type in PERFMON_PROG_TYPES:
            needed.append(Capability.PERFMON)
        return tuple(needed)

    @property
    def btf_ctx_struct(self) -> str | None:
        """The struct the kernel's BTF names as this type's context (``include/linux/bpf_types.h``),
        by which it recognises a global function's context argument; None when the context is
        ``void *`` or ``__u64`` there (the argument must then be tagged ``arg:ctx``)."""
        return None if self.prog_type in _UNNAMED_BTF_CTX else self.context.name

    def uses_private_stack(self, attach_type: BpfAttachType | int | None) -> bool:
        """``bpf_enable_priv_stack``: kprobe, tracepoint, perf_event and raw_tracepoint programs
        always run where recursion is prevented, BTF tracing programs too (iterators excepted)."""
        return self.private_stack and attach_type not in self.private_stack_excluded

    def return_range_for(self, attach_type: BpfAttachType | None) -> tuple[int, int] | None:
        """The r0 range check_return_code() enforces for a program with this attach type."""
        for candidate, value_range in self.attach_return_ranges:
            if candidate == attach_type:
                return value_range
        return self.return_range


P = BpfProgType
UNPRIVILEGED_PROG_TYPES = frozenset({P.SOCKET_FILTER, P.CGROUP_SKB})
"""The program types ``bpf_prog_load`` (6.18) loads for a loader without CAP_BPF."""
NET_ADMIN_PROG_TYPES = frozenset({
    P.SCHED_CLS, P.SCHED_ACT, P.XDP, P.LWT_IN, P.LWT_OUT, P.LWT_XMIT, P.LWT_SEG6LOCAL, P.SK_SKB, P.SK_MSG,
    P.FLOW_DISSECTOR, P.CGROUP_DEVICE, P.CGROUP_SOCK, P.CGROUP_SOCK_ADDR, P.CGROUP_SOCKOPT, P.CGROUP_SYSCTL,
    P.SOCK_OPS, P.EXT,
})
"""``is_net_admin_prog_type``: CAP_NET_ADMIN too (sk_reuseport, like a socket filter, needs CAP_BPF only;
netfilter, also listed there, is newer than the uapi header pybpf's enums come from)."""
PERFMON_PROG_TYPES = frozenset({
    P.KPROBE, P.TRACEPOINT, P.PERF_EVENT, P.RAW_TRACEPOINT, P.RAW_TRACEPOINT_WRITABLE, P.TRACING, P.LSM,
    P.STRUCT_OPS, P.EXT,
})
"""``is_perfmon_prog_type``: CAP_PERFMON too (these read kernel memory; struct_ops reach struct sock)."""

# What bpf_base_func_proto() (6.18) returns only to a loader with CAP_BPF, then CAP_PERFMON, and
# bpf_sk_base_func_proto() only with CAP_PERFMON. Only socket filters and cgroup skb programs load
# without those capabilities, and neither offers any of these through its own proto.
CAPABLE_BASE_HELPERS = frozenset(
    {
        # CAP_BPF
        H.SPIN_LOCK, H.SPIN_UNLOCK, H.JIFFIES64, H.PER_CPU_PTR, H.THIS_CPU_PTR, H.TIMER_INIT,
        H.TIMER_SET_CALLBACK, H.TIMER_START, H.TIMER_CANCEL, H.KPTR_XCHG, H.FOR_EACH_MAP_ELEM, H.LOOP,
        H.USER_RINGBUF_DRAIN, H.RINGBUF_RESERVE_DYNPTR, H.RINGBUF_SUBMIT_DYNPTR, H.RINGBUF_DISCARD_DYNPTR,
        H.DYNPTR_FROM_MEM, H.DYNPTR_READ, H.DYNPTR_WRITE, H.DYNPTR_DATA, H.GET_CURRENT_CGROUP_ID,
        H.GET_CURRENT_ANCESTOR_CGROUP_ID,
        # CAP_PERFMON
        H.TRACE_PRINTK, H.GET_CURRENT_TASK, H.GET_CURRENT_TASK_BTF, H.PROBE_READ_USER, H.PROBE_READ_KERNEL,
        H.PROBE_READ_USER_STR, H.PROBE_READ_KERNEL_STR, H.SNPRINTF_BTF, H.SNPRINTF, H.TASK_PT_REGS,
        H.TRACE_VPRINTK,
        # CAP_PERFMON, bpf_sk_base_func_proto
        H.SKC_TO_TCP6_SOCK, H.SKC_TO_TCP_SOCK, H.SKC_TO_TCP_TIMEWAIT_SOCK, H.SKC_TO_TCP_REQUEST_SOCK,
        H.SKC_TO_UDP6_SOCK, H.SKC_TO_UNIX_SOCK, H.SKC_TO_MPTCP_SOCK,
    }
)

# Program types whose context bpf_types.h gives as ``void *`` or ``__u64``: no named struct.
_UNNAMED_BTF_CTX = frozenset({
    BpfProgType.TRACEPOINT, BpfProgType.TRACING, BpfProgType.LSM, BpfProgType.STRUCT_OPS, BpfProgType.EXT,
    BpfProgType.SYSCALL, BpfProgType.LIRC_MODE2,
})


# bpf_base_func_proto(): available to every program type (as root: CAP_BPF and CAP_PERFMON).
BASE_HELPERS = frozenset(
    {
        H.MAP_LOOKUP_ELEM, H.MAP_UPDATE_ELEM, H.MAP_DELETE_ELEM, H.MAP_PUSH_ELEM, H.MAP_POP_ELEM,
        H.MAP_PEEK_ELEM, H.MAP_LOOKUP_PERCPU_ELEM, H.GET_PRANDOM_U32, H.GET_SMP_PROCESSOR_ID,
        H.GET_NUMA_NODE_ID, H.TAIL_CALL, H.KTIME_GET_NS, H.KTIME_GET_BOOT_NS, H.KTIME_GET_TAI_NS,
        H.RINGBUF_OUTPUT, H.RINGBUF_RESERVE, H.RINGBUF_SUBMIT, H.RINGBUF_DISCARD, H.RINGBUF_QUERY,
        H.FOR_EACH_MAP_ELEM, H.LOOP, H.STRNCMP, H.STRTOL, H.STRTOUL,
        # CAP_BPF
        H.SPIN_LOCK, H.SPIN_UNLOCK, H.JIFFIES64, H.PER_CPU_PTR, H.THIS_CPU_PTR, H.TIMER_INIT,
        H.TIMER_SET_CALLBACK, H.TIMER_START, H.TIMER_CANCEL, H.KPTR_XCHG, H.KTIME_GET_COARSE_NS,
        H.DYNPTR_FROM_MEM, H.DYNPTR_READ, H.DYNPTR_WRITE, H.DYNPTR_DATA, H.USER_RINGBUF_DRAIN,
        H.RINGBUF_RESERVE_DYNPTR, H.RINGBUF_SUBMIT_DYNPTR, H.RINGBUF_DISCARD_DYNPTR,
        H.GET_CURRENT_CGROUP_ID, H.GET_CURRENT_ANCESTOR_CGROUP_ID,
        # CAP_PERFMON
        H.TRACE_PRINTK, H.TRACE_VPRINTK, H.SNPRINTF, H.SNPRINTF_BTF, H.GET_CURRENT_TASK,
        H.GET_CURRENT_TASK_BTF, H.TASK_PT_REGS, H.PROBE_READ_USER, H.PROBE_READ_KERNEL,
        H.PROBE_READ_USER_STR, H.PROBE_READ_KERNEL_STR,
    }
)
