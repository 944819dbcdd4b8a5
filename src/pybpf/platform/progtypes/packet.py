"""Networking program types whose context is a packet: xdp, tc, socket filters, cgroup_skb,
sk_skb, sk_msg, flow dissector, lwt, sk_lookup.

Helper sets follow net/core/filter.c's ``*_func_proto``; context restrictions follow the
matching ``*_is_valid_access`` (which __sk_buff fields each type may read and write).
"""

from __future__ import annotations

from pybpf.platform import contexts
from pybpf.platform.progtypes._spec import BASE_HELPERS, H, PacketAccess, ProgTypeSpec
from pybpf.platform.uapi_generated import BpfAttachType, BpfProgType, SkAction, TcAct, XdpAction

A = BpfAttachType

# Fields of __sk_buff that only make sense with a full socket (bpf_ctx_range_till(family, local_port)).
_SOCK_FIELDS = (
    "family", "remote_ip4", "local_ip4", "remote_ip6", "local_ip6", "remote_port", "local_port",
)
_CB = "cb"

_SK_BASE = BASE_HELPERS | {H.SKB_LOAD_BYTES, H.PERF_EVENT_OUTPUT, H.GET_SOCKET_COOKIE, H.GET_SOCKET_UID}

XDP = ProgTypeSpec(
    BpfProgType.XDP,
    "xdp",
    contexts.XDP_MD,
    BASE_HELPERS
    | {
        H.PERF_EVENT_OUTPUT, H.CSUM_DIFF, H.XDP_ADJUST_HEAD, H.XDP_ADJUST_META, H.XDP_ADJUST_TAIL,
        H.REDIRECT, H.REDIRECT_MAP, H.FIB_LOOKUP, H.CHECK_MTU, H.XDP_GET_BUFF_LEN, H.XDP_LOAD_BYTES,
        H.XDP_STORE_BYTES, H.SK_LOOKUP_UDP, H.SK_LOOKUP_TCP, H.SK_RELEASE, H.SKC_LOOKUP_TCP,
        H.TCP_CHECK_SYNCOOKIE, H.TCP_GEN_SYNCOOKIE, H.TCP_RAW_GEN_SYNCOOKIE_IPV4,
        H.TCP_RAW_GEN_SYNCOOKIE_IPV6, H.TCP_RAW_CHECK_SYNCOOKIE_IPV4, H.TCP_RAW_CHECK_SYNCOOKIE_IPV6,
    },
    "XDP: runs on the driver's receive path; returns an XdpAction (unchecked by the verifier).",
    packet_access=PacketAccess.READ_WRITE,
    return_codes=XdpAction,
    attach_types=(A.XDP, A.XDP_DEVMAP, A.XDP_CPUMAP),
)

_TC_HELPERS = BASE_HELPERS | {
    H.SKB_STORE_BYTES, H.SKB_LOAD_BYTES, H.SKB_LOAD_BYTES_RELATIVE, H.SKB_PULL_DATA, H.CSUM_DIFF,
    H.CSUM_UPDATE, H.CSUM_LEVEL, H.L3_CSUM_REPLACE, H.L4_CSUM_REPLACE, H.CLONE_REDIRECT,
    H.GET_CGROUP_CLASSID, H.SKB_VLAN_PUSH, H.SKB_VLAN_POP, H.SKB_CHANGE_PROTO, H.SKB_CHANGE_TYPE,
    H.SKB_ADJUST_ROOM, H.SKB_CHANGE_TAIL, H.SKB_CHANGE_HEAD, H.SKB_GET_TUNNEL_KEY,
    H.SKB_SET_TUNNEL_KEY, H.SKB_GET_TUNNEL_OPT, H.SKB_SET_TUNNEL_OPT, H.REDIRECT, H.REDIRECT_NEIGH,
    H.REDIRECT_PEER, H.GET_ROUTE_REALM, H.GET_HASH_RECALC, H.SET_HASH_INVALID, H.SET_HASH,
    H.PERF_EVENT_OUTPUT, H.SKB_UNDER_CGROUP, H.GET_SOCKET_COOKIE, H.GET_SOCKET_UID, H.FIB_LOOKUP,
    H.CHECK_MTU, H.SK_FULLSOCK, H.SK_STORAGE_GET, H.SK_STORAGE_DELETE, H.SKB_GET_XFRM_STATE,
    H.SKB_CGROUP_CLASSID, H.SKB_CGROUP_ID, H.SKB_ANCESTOR_CGROUP_ID, H.SK_LOOKUP_TCP, H.SK_LOOKUP_UDP,
    H.SK_RELEASE, H.TCP_SOCK, H.GET_LISTENER_SOCK, H.SKC_LOOKUP_TCP, H.TCP_CHECK_SYNCOOKIE,
    H.SKB_ECN_SET_CE, H.TCP_GEN_SYNCOOKIE, H.SK_ASSIGN, H.SKB_SET_TSTAMP, H.TCP_RAW_GEN_SYNCOOKIE_IPV4,
    H.TCP_RAW_GEN_SYNCOOKIE_IPV6, H.TCP_RAW_CHECK_SYNCOOKIE_IPV4, H.TCP_RAW_CHECK_SYNCOOKIE_IPV6,
}
# tc_cls_act_is_valid_access: socket fields hidden; these are writable.
_TC_CONTEXT = contexts.SK_BUFF.restrict(
    unreadable=(*_SOCK_FIELDS, "flow_keys"),
    writable=("mark", "tc_index", "priority", "tc_classid", _CB, "tstamp", "queue_mapping"),
)

SCHED_CLS = ProgTypeSpec(
    BpfProgType.SCHED_CLS,
    "sched_cls",
    _TC_CONTEXT,
    _TC_HELPERS,
    "tc classifier (cls_bpf, usually direct-action): returns a TcAct.",
    packet_access=PacketAccess.READ_WRITE,
    return_codes=TcAct,
)

SCHED_ACT = ProgTypeSpec(
    BpfProgType.SCHED_ACT,
    "sched_act",
    _TC_CONTEXT,
    _TC_HELPERS,
    "tc action (act_bpf): returns a TcAct.",
    packet_access=PacketAccess.READ_WRITE,
    return_codes=TcAct,
)

SOCKET_FILTER = ProgTypeSpec(
    BpfProgType.SOCKET_FILTER,
    "socket_filter",
    # sk_filter_is_valid_access: no packet pointers, no socket fields; only cb[] is writable.
    contexts.SK_BUFF.restrict(
        unreadable=(
            "tc_classid", "data", "data_meta", "data_end", *_SOCK_FIELDS, "tstamp", "wire_len",
            "hwtstamp", "flow_keys",
        ),
        writable=(_CB,),
    ),
    _SK_BASE | {H.SKB_LOAD_BYTES_RELATIVE},
    "Socket filter (SO_ATTACH_BPF): returns how many bytes of the packet to keep (0 drops).",
)

CGROUP_SKB = ProgTypeSpec(
    BpfProgType.CGROUP_SKB,
    "cgroup_skb",
    # cg_skb_is_valid_access: data/data_end readable (CAP_BPF), mark/priority/cb/tstamp writable.
    contexts.SK_BUFF.restrict(
        unreadable=("tc_classid", "data_meta", "wire_len", "flow_keys"),
        writable=("mark", "priority", _CB, "tstamp"),
    ),
    _SK_BASE
    | {
        H.SKB_LOAD_BYTES_RELATIVE, H.GET_LOCAL_STORAGE, H.SK_FULLSOCK, H.SK_STORAGE_GET,
        H.SK_STORAGE_DELETE, H.SKB_CGROUP_ID, H.SKB_ANCESTOR_CGROUP_ID, H.SK_CGROUP_ID,
        H.SK_ANCESTOR_CGROUP_ID, H.SK_LOOKUP_TCP, H.SK_LOOKUP_UDP, H.SK_RELEASE, H.SKC_LOOKUP_TCP,
        H.TCP_SOCK, H.GET_LISTENER_SOCK, H.SKB_ECN_SET_CE, H.GET_CURRENT_UID_GID,
        H.GET_CURRENT_PID_TGID, H.GET_CURRENT_COMM,
    },
    "cgroup ingress/egress filter: 1 allows, 0 drops; on egress bit 1 asks for congestion notification.",
    packet_access=PacketAccess.READ,
    return_range=(0, 1),
    attach_return_ranges=((A.CGROUP_INET_EGRESS, (0, 3)),),
    attach_types=(A.CGROUP_INET_INGRESS, A.CGROUP_INET_EGRESS),
)

SK_SKB = ProgTypeSpec(
    BpfProgType.SK_SKB,
    "sk_skb",
    # sk_skb_is_valid_access: mark unreadable; only tc_index and priority writable.
    contexts.SK_BUFF.restrict(
        unreadable=("tc_classid", "data_meta", "tstamp", "wire_len", "hwtstamp", "mark", "flow_keys"),
        writable=("tc_index", "priority"),
    ),
    BASE_HELPERS
    | {
        H.SKB_STORE_BYTES, H.SKB_LOAD_BYTES, H.SKB_PULL_DATA, H.SKB_CHANGE_TAIL, H.SKB_CHANGE_HEAD,
        H.SKB_ADJUST_ROOM, H.GET_SOCKET_COOKIE, H.GET_SOCKET_UID, H.SK_REDIRECT_MAP,
        H.SK_REDIRECT_HASH, H.PERF_EVENT_OUTPUT, H.SK_LOOKUP_TCP, H.SK_LOOKUP_UDP, H.SK_RELEASE,
        H.SKC_LOOKUP_TCP,
    },
    "sockmap stream parser (returns a length) or verdict (returns an SkAction).",
    packet_access=PacketAccess.READ_WRITE,
    return_codes=SkAction,
    attach_types=(A.SK_SKB_STREAM_PARSER, A.SK_SKB_STREAM_VERDICT, A.SK_SKB_VERDICT),
)

SK_MSG = ProgTypeSpec(
    BpfProgType.SK_MSG,
    "sk_msg",
    contexts.SK_MSG_MD,
    BASE_HELPERS
    | {
        H.MSG_REDIRECT_MAP, H.MSG_REDIRECT_HASH, H.MSG_APPLY_BYTES, H.MSG_CORK_BYTES, H.MSG_PULL_DATA,
        H.MSG_PUSH_DATA, H.MSG_POP_DATA, H.PERF_EVENT_OUTPUT, H.GET_CURRENT_UID_GID,
        H.GET_CURRENT_PID_TGID, H.SK_STORAGE_GET, H.SK_STORAGE_DELETE, H.GET_NETNS_COOKIE,
        H.GET_CGROUP_CLASSID,
    },
    "sockmap sendmsg verdict: returns an SkAction.",
    packet_access=PacketAccess.READ_WRITE,
    return_codes=SkAction,
    attach_types=(A.SK_MSG_VERDICT,),
)

FLOW_DISSECTOR = ProgTypeSpec(
    BpfProgType.FLOW_DISSECTOR,
    "flow_dissector",
    # flow_dissector_is_valid_access: only data, data_end and flow_keys; no writes.
    contexts.SK_BUFF.restrict(
        unreadable=[
            f.name for f in contexts.SK_BUFF.fields if f.name not in ("data", "data_end", "flow_keys")
        ],
        writable=(),
    ),
    BASE_HELPERS | {H.SKB_LOAD_BYTES},
    "Flow dissector: fills bpf_flow_keys; returns a BpfRetCode (OK, DROP, FLOW_DISSECTOR_CONTINUE).",
    packet_access=PacketAccess.READ,
    attach_types=(A.FLOW_DISSECTOR,),
)

_LWT_UNREADABLE = (
    "tc_classid", *_SOCK_FIELDS, "data_meta", "tstamp", "wire_len", "hwtstamp", "flow_keys",
)
_LWT_OUT_HELPERS = BASE_HELPERS | {
    H.SKB_LOAD_BYTES, H.SKB_PULL_DATA, H.CSUM_DIFF, H.GET_CGROUP_CLASSID, H.GET_ROUTE_REALM,
    H.GET_HASH_RECALC, H.PERF_EVENT_OUTPUT, H.GET_SMP_PROCESSOR_ID, H.SKB_UNDER_CGROUP,
}
_LWT_CONTEXT = contexts.SK_BUFF.restrict(unreadable=_LWT_UNREADABLE, writable=("mark", "priority", _CB))

LWT_IN = ProgTypeSpec(
    BpfProgType.LWT_IN,
    "lwt_in",
    _LWT_CONTEXT,
    _LWT_OUT_HELPERS | {H.LWT_PUSH_ENCAP},
    "Lightweight tunnel input: returns a BpfRetCode.",
    packet_access=PacketAccess.READ,
)
LWT_OUT = ProgTypeSpec(
    BpfProgType.LWT_OUT,
    "lwt_out",
    _LWT_CONTEXT,
    _LWT_OUT_HELPERS,
    "Lightweight tunnel output: returns a BpfRetCode.",
    packet_access=PacketAccess.READ,
)
LWT_XMIT = ProgTypeSpec(
    BpfProgType.LWT_XMIT,
    "lwt_xmit",
    _LWT_CONTEXT,
    _LWT_OUT_HELPERS
    | {
        H.SKB_GET_TUNNEL_KEY, H.SKB_SET_TUNNEL_KEY, H.SKB_GET_TUNNEL_OPT, H.SKB_SET_TUNNEL_OPT,
        H.REDIRECT, H.SKB_CHANGE_TAIL, H.SKB_CHANGE_HEAD, H.SKB_STORE_BYTES, H.CSUM_UPDATE,
        H.CSUM_LEVEL, H.L3_CSUM_REPLACE, H.L4_CSUM_REPLACE, H.SET_HASH_INVALID, H.LWT_PUSH_ENCAP,
    },
    "Lightweight tunnel transmit: returns a BpfRetCode.",
    packet_access=PacketAccess.READ_WRITE,
)

SK_LOOKUP = ProgTypeSpec(
    BpfProgType.SK_LOOKUP,
    "sk_lookup",
    contexts.BPF_SK_LOOKUP,
    BASE_HELPERS | {H.PERF_EVENT_OUTPUT, H.SK_ASSIGN, H.SK_RELEASE},
    "Socket lookup: selects a socket with bpf_sk_assign; returns SK_DROP or SK_PASS.",
    return_range=(0, 1),
    return_codes=SkAction,
    attach_types=(A.SK_LOOKUP,),
)

PACKET_PROG_TYPES = (
    XDP, SCHED_CLS, SCHED_ACT, SOCKET_FILTER, CGROUP_SKB, SK_SKB, SK_MSG, FLOW_DISSECTOR, LWT_IN,
    LWT_OUT, LWT_XMIT, SK_LOOKUP,
)
