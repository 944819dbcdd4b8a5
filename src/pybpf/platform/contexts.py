"""The uapi context structs, as ContextLayouts.

Layouts follow ``include/uapi/linux/bpf.h`` (and ``bpf_perf_event.h``, the arch ``ptrace.h``)
field by field; tests compare every offset with what a C compiler computes from the installed
headers.  Access widths follow the kernel's ``*_is_valid_access()``: u32 fields allow narrow
(1/2/4-byte) loads and only full 4-byte stores, pointer fields allow only full-width loads.
The write sizes given here are the widest any program type allows; program types narrow them
with :meth:`ContextLayout.restrict`.
"""

from __future__ import annotations

from dataclasses import dataclass

from pybpf.platform.context import (
    NARROW_READ,
    NARROW_READ64,
    NONE,
    ONLY4,
    ONLY8,
    ContextLayout,
    Conversion,
    CtxField,
    sequential,
)

_Spec = tuple[str, int, frozenset[int], frozenset[int], Conversion, str]
_PLAIN = Conversion.PLAIN


def _u32(name: str, source: str = "", *, write: bool = False, count: int = 1) -> _Spec:
    return (name, 4 * count, NARROW_READ, ONLY4 if write else NONE, _PLAIN, source)


def _ptr(name: str, conversion: Conversion, source: str = "", *, width: int = 8) -> _Spec:
    reads = ONLY8 if width == 8 else ONLY4
    return (name, width, reads, NONE, conversion, source)


def _pad(size: int) -> _Spec:
    return ("_pad", size, NONE, NONE, _PLAIN, "")


# --- struct xdp_md ----------------------------------------------------------------------------
XDP_MD = sequential(
    "xdp_md",
    [
        _ptr("data", Conversion.PACKET_DATA, "xdp->data", width=4),
        _ptr("data_end", Conversion.PACKET_END, "xdp->data_end", width=4),
        _ptr("data_meta", Conversion.PACKET_META, "xdp->data_meta", width=4),
        # __is_valid_xdp_access(): every xdp_md access is a full aligned u32, read only.
        ("ingress_ifindex", 4, ONLY4, NONE, _PLAIN, "xdp->rxq->dev->ifindex"),
        ("rx_queue_index", 4, ONLY4, NONE, _PLAIN, "xdp->rxq->queue_index"),
        ("egress_ifindex", 4, ONLY4, NONE, _PLAIN, "xdp->txq->dev->ifindex (devmap programs only)"),
    ],
)

# --- struct __sk_buff -------------------------------------------------------------------------
# Writes listed here are the union over program types (tc allows the most); see progtypes.
SK_BUFF = sequential(
    "__sk_buff",
    [
        _u32("len", "skb->len"),
        _u32("pkt_type", "skb->pkt_type"),
        _u32("mark", "skb->mark", write=True),
        _u32("queue_mapping", "skb->queue_mapping", write=True),
        _u32("protocol", "skb->protocol"),
        _u32("vlan_present", "skb_vlan_tag_present(skb)"),
        _u32("vlan_tci", "skb->vlan_tci"),
        _u32("vlan_proto", "skb->vlan_proto"),
        _u32("priority", "skb->priority", write=True),
        _u32("ingress_ifindex", "skb->skb_iif"),
        _u32("ifindex", "skb->dev->ifindex"),
        _u32("tc_index", "skb->tc_index", write=True),
        # cb is five u32, but the kernel accepts 8-byte (aligned) loads and stores inside it.
        ("cb", 20, NARROW_READ64, NARROW_READ64, _PLAIN, "qdisc_skb_cb(skb)->data"),
        _u32("hash", "skb->hash"),
        _u32("tc_classid", "qdisc_skb_cb(skb)->tc_classid", write=True),
        _ptr("data", Conversion.PACKET_DATA, "skb->data", width=4),
        _ptr("data_end", Conversion.PACKET_END, "skb_end_pointer via cb", width=4),
        _u32("napi_id", "skb->napi_id"),
        _u32("family", "skb->sk->sk_family"),
        _u32("remote_ip4", "skb->sk->sk_daddr"),
        _u32("local_ip4", "skb->sk->sk_rcv_saddr"),
        _u32("remote_ip6", "skb->sk->sk_v6_daddr", count=4),
        _u32("local_ip6", "skb->sk->sk_v6_rcv_saddr", count=4),
        _u32("remote_port", "skb->sk->sk_dport"),
        _u32("local_port", "skb->sk->sk_num"),
        _ptr("data_meta", Conversion.PACKET_META, "skb->data - metadata length", width=4),
        _ptr("flow_keys", Conversion.FLOW_KEYS, "flow dissector keys"),
        # bpf_skb_is_valid_access(): tstamp and hwtstamp only as whole u64s.
        ("tstamp", 8, ONLY8, ONLY8, _PLAIN, "skb->tstamp"),
        _u32("wire_len", "qdisc_skb_cb(skb)->pkt_len"),
        _u32("gso_segs", "skb_shinfo(skb)->gso_segs"),
        _ptr("sk", Conversion.SOCK_COMMON_OR_NULL, "skb->sk"),
        _u32("gso_size", "skb_shinfo(skb)->gso_size"),
        ("tstamp_type", 1, frozenset({1}), NONE, _PLAIN, "skb->tstamp_type"),
        _pad(3),
        ("hwtstamp", 8, ONLY8, NONE, _PLAIN, "skb_hwtstamps(skb)->hwtstamp"),
    ],
)

# --- struct bpf_sock --------------------------------------------------------------------------
BPF_SOCK = sequential(
    "bpf_sock",
    [
        _u32("bound_dev_if", "sk->sk_bound_dev_if", write=True),
        _u32("family", "sk->sk_family"),
        _u32("type", "sk->sk_type"),
        _u32("protocol", "sk->sk_protocol"),
        _u32("mark", "sk->sk_mark", write=True),
        _u32("priority", "sk->sk_priority", write=True),
        _u32("src_ip4", "sk->sk_rcv_saddr"),
        _u32("src_ip6", "sk->sk_v6_rcv_saddr", count=4),
        _u32("src_port", "sk->sk_num (host order)"),
        ("dst_port", 2, frozenset({1, 2}), NONE, _PLAIN, "sk->sk_dport (network order)"),
        _pad(2),
        _u32("dst_ip4", "sk->sk_daddr"),
        _u32("dst_ip6", "sk->sk_v6_daddr", count=4),
        _u32("state", "sk->sk_state"),
        ("rx_queue_mapping", 4, ONLY4, NONE, _PLAIN, "sk->sk_rx_queue_mapping (-1 if unset)"),
    ],
)

# --- struct bpf_sock_addr ---------------------------------------------------------------------
# user_* and msg_src_* are writable only for the attach types that rewrite addresses
# (bind, connect, sendmsg, recvmsg, getpeername, getsockname); family/type/protocol are 4-byte
# reads only.  The ip6 arrays also accept 8-byte accesses.
BPF_SOCK_ADDR = sequential(
    "bpf_sock_addr",
    [
        ("user_family", 4, ONLY4, NONE, _PLAIN, "uaddr->sa_family"),
        _u32("user_ip4", "sin_addr", write=True),
        ("user_ip6", 16, NARROW_READ64, frozenset({4, 8}), _PLAIN, "sin6_addr"),
        _u32("user_port", "sin_port", write=True),
        ("family", 4, ONLY4, NONE, _PLAIN, "sk->sk_family"),
        ("type", 4, ONLY4, NONE, _PLAIN, "sk->sk_type"),
        ("protocol", 4, ONLY4, NONE, _PLAIN, "sk->sk_protocol"),
        _u32("msg_src_ip4", "sendmsg source address", write=True),
        ("msg_src_ip6", 16, NARROW_READ64, frozenset({4, 8}), _PLAIN, "sendmsg source address"),
        _ptr("sk", Conversion.SOCKET, "ctx->sk"),
    ],
)

# --- struct bpf_sockopt -----------------------------------------------------------------------
# level/optname are writable for setsockopt, retval for getsockopt, optlen for both; optval and
# optval_end are packet-style pointers bounding the option buffer.
BPF_SOCKOPT = sequential(
    "bpf_sockopt",
    [
        _ptr("sk", Conversion.SOCKET, "ctx->sk"),
        _ptr("optval", Conversion.PACKET_DATA, "ctx->optval"),
        _ptr("optval_end", Conversion.PACKET_END, "ctx->optval_end"),
        ("level", 4, ONLY4, ONLY4, _PLAIN, "ctx->level"),
        ("optname", 4, ONLY4, ONLY4, _PLAIN, "ctx->optname"),
        ("optlen", 4, ONLY4, ONLY4, _PLAIN, "ctx->optlen"),
        ("retval", 4, ONLY4, ONLY4, _PLAIN, "ctx->current_task->bpf_ctx->retval"),
    ],
)

# --- struct bpf_sysctl ------------------------------------------------------------------------
BPF_SYSCTL = sequential(
    "bpf_sysctl",
    [
        _u32("write", "ctx->write"),
        _u32("file_pos", "*ctx->ppos", write=True),
    ],
)

# --- struct bpf_cgroup_dev_ctx ----------------------------------------------------------------
BPF_CGROUP_DEV_CTX = sequential(
    "bpf_cgroup_dev_ctx",
    [
        _u32("access_type", "(access << 16) | type"),
        _u32("major", "major"),
        _u32("minor", "minor"),
    ],
)

# --- struct sk_msg_md -------------------------------------------------------------------------
SK_MSG_MD = sequential(
    "sk_msg_md",
    [
        _ptr("data", Conversion.PACKET_DATA, "msg->data"),
        _ptr("data_end", Conversion.PACKET_END, "msg->data_end"),
        _u32("family", "sk->sk_family"),
        _u32("remote_ip4", "sk->sk_daddr"),
        _u32("local_ip4", "sk->sk_rcv_saddr"),
        _u32("remote_ip6", "sk->sk_v6_daddr", count=4),
        _u32("local_ip6", "sk->sk_v6_rcv_saddr", count=4),
        _u32("remote_port", "sk->sk_dport"),
        _u32("local_port", "sk->sk_num"),
        _u32("size", "msg->sg.size"),
        _ptr("sk", Conversion.SOCKET, "msg->sk"),
    ],
)

# --- struct bpf_sk_lookup ---------------------------------------------------------------------
BPF_SK_LOOKUP = sequential(
    "bpf_sk_lookup",
    [
        _ptr("sk", Conversion.SOCKET_OR_NULL, "ctx->selected_sk (union with u64 cookie)"),
        _u32("family", "ctx->family"),
        _u32("protocol", "ctx->protocol"),
        _u32("remote_ip4", "ctx->v4.saddr"),
        _u32("remote_ip6", "ctx->v6.saddr", count=4),
        ("remote_port", 2, frozenset({1, 2}), NONE, _PLAIN, "ctx->sport (network order)"),
        _pad(2),
        _u32("local_ip4", "ctx->v4.daddr"),
        _u32("local_ip6", "ctx->v6.daddr", count=4),
        _u32("local_port", "ctx->dport (host order)"),
        _u32("ingress_ifindex", "ctx->ingress_ifindex"),
    ],
)

# --- struct bpf_flow_keys (what PTR_TO_FLOW_KEYS points at; any access inside it is allowed) --
_FK = frozenset({1, 2, 4, 8})
BPF_FLOW_KEYS = sequential(
    "bpf_flow_keys",
    [
        ("nhoff", 2, _FK, _FK, _PLAIN, ""),
        ("thoff", 2, _FK, _FK, _PLAIN, ""),
        ("addr_proto", 2, _FK, _FK, _PLAIN, "ETH_P_* of the addresses"),
        ("is_frag", 1, _FK, _FK, _PLAIN, ""),
        ("is_first_frag", 1, _FK, _FK, _PLAIN, ""),
        ("is_encap", 1, _FK, _FK, _PLAIN, ""),
        ("ip_proto", 1, _FK, _FK, _PLAIN, ""),
        ("n_proto", 2, _FK, _FK, _PLAIN, ""),
        ("sport", 2, _FK, _FK, _PLAIN, ""),
        ("dport", 2, _FK, _FK, _PLAIN, ""),
        # union { struct { ipv4_src, ipv4_dst }; struct { ipv6_src[4], ipv6_dst[4] }; }
        ("ipv4_src", 4, _FK, _FK, _PLAIN, "union arm: ipv6_src[0]"),
        ("ipv4_dst", 4, _FK, _FK, _PLAIN, "union arm: ipv6_src[1]"),
        ("_union_rest", 24, NONE, NONE, _PLAIN, ""),
        ("flags", 4, _FK, _FK, _PLAIN, "BPF_FLOW_DISSECTOR_F_*"),
        ("flow_label", 4, _FK, _FK, _PLAIN, ""),
    ],
)
# The ipv6 arm of the union, for readers who address it by name.
FLOW_KEYS_IPV6_SRC = CtxField("ipv6_src", 16, 16, _FK, _FK)
FLOW_KEYS_IPV6_DST = CtxField("ipv6_dst", 32, 16, _FK, _FK)


# --- pt_regs ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class RegsLayout:
    """An architecture's register context and where libbpf's PT_REGS_* macros find things."""

    arch: str
    layout: ContextLayout
    params: tuple[str, ...]  # PT_REGS_PARM1..5 field names
    rc: str
    sp: str
    ip: str
    fp: str
    syscall_param4: str  # the syscall ABI puts arg 4 in a different register on x86-64


_REG_READ = frozenset({1, 2, 4, 8})


def _regs(name: str, names: list[tuple[str, int]]) -> ContextLayout:
    return sequential(name, [(n, size, _REG_READ, NONE, _PLAIN, "") for n, size in names])


# arch/x86/include/uapi/asm/ptrace.h (64-bit): the kprobe context on x86-64.
PT_REGS_X86_64 = RegsLayout(
    "x86_64",
    _regs(
        "pt_regs",
        [
            (n, 8)
            for n in (
                *("r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8", "rax", "rcx"),
                *("rdx", "rsi", "rdi", "orig_rax", "rip", "cs", "eflags", "rsp", "ss"),
            )
        ],
    ),
    params=("rdi", "rsi", "rdx", "rcx", "r8"),
    rc="rax",
    sp="rsp",
    ip="rip",
    fp="rbp",
    syscall_param4="r10",
)

# arch/arm64/include/uapi/asm/ptrace.h: struct user_pt_regs { u64 regs[31]; sp; pc; pstate; }.
PT_REGS_ARM64 = RegsLayout(
    "arm64",
    _regs("user_pt_regs", [*[(f"x{i}", 8) for i in range(31)], ("sp", 8), ("pc", 8), ("pstate", 8)]),
    params=("x0", "x1", "x2", "x3", "x4"),
    rc="x0",
    sp="sp",
    ip="pc",
    fp="x29",
    syscall_param4="x3",
)

PT_REGS: dict[str, RegsLayout] = {"x86_64": PT_REGS_X86_64, "arm64": PT_REGS_ARM64}


def perf_event_data(regs: RegsLayout) -> ContextLayout:
    """struct bpf_perf_event_data { bpf_user_pt_regs_t regs; u64 sample_period; u64 addr; }."""
    only8 = frozenset({8})
    fields = [CtxField(f.name, f.offset, f.size, only8) for f in regs.layout.fields]
    base = regs.layout.size
    fields.append(CtxField("sample_period", base, 8, NARROW_READ64, source="ctx->data->period"))
    fields.append(CtxField("addr", base + 8, 8, NARROW_READ64, source="ctx->data->addr"))
    return ContextLayout("bpf_perf_event_data", base + 16, tuple(fields))


# --- tracepoints, raw tracepoints and BTF tracing ---------------------------------------------
PERF_MAX_TRACE_SIZE = 2048
MAX_BPF_FUNC_ARGS = 12
_TP_READ = frozenset({1, 2, 4, 8})


def tracepoint_layout(name: str = "trace_entry", fields: tuple[CtxField, ...] = ()) -> ContextLayout:
    """A tracepoint's record: the 8-byte common header, then the event's own fields.

    tp_prog_is_valid_access() (kernel/trace/bpf_trace.c) allows aligned reads in
    ``[sizeof(void *), PERF_MAX_TRACE_SIZE)``: the record's real size is known from tracefs
    ``format``, and the common header (offsets 0-7) is not readable through the context at all
    ("invalid bpf_context access"), so its fields are listed for the offsets but unreadable.
    With no ``fields`` the rest is one opaque, read-only ``data`` field.
    """
    header = (
        CtxField("common_type", 0, 2, NONE),
        CtxField("common_flags", 2, 1, NONE),
        CtxField("common_preempt_count", 3, 1, NONE),
        CtxField("common_pid", 4, 4, NONE),
    )
    body = fields or (CtxField("data", 8, PERF_MAX_TRACE_SIZE - 8, _TP_READ),)
    for extra in fields:
        if extra.offset < 8:
            raise ValueError(f"tracepoint field {extra.name} overlaps the common header")
    size = max(f.end for f in body) if fields else PERF_MAX_TRACE_SIZE
    return ContextLayout(name, size, header + body)


TRACEPOINT_GENERIC = tracepoint_layout()

# raw_tp and fentry/fexit/tp_btf/lsm programs see ``u64 args[]``; the BTF prototype of the target
# decides how many are real, so the layout offers the kernel's maximum.
RAW_TRACEPOINT_ARGS = ContextLayout(
    "bpf_raw_tracepoint_args",
    8 * MAX_BPF_FUNC_ARGS,
    tuple(CtxField(f"args{i}", 8 * i, 8, _TP_READ) for i in range(MAX_BPF_FUNC_ARGS)),
)
