"""cgroup program types other than cgroup_skb: sock, sock_addr, sockopt, sysctl, device, sock_ops.

Helper sets follow net/core/filter.c (sock_filter_func_proto, sock_addr_func_proto,
sock_ops_func_proto) and kernel/bpf/cgroup.c (cgroup_dev, sysctl, sockopt); return ranges follow
the verifier's check_return_code().
"""

from __future__ import annotations

from pybpf.platform import contexts
from pybpf.platform.context import ContextLayout, CtxField
from pybpf.platform.progtypes._spec import BASE_HELPERS, H, ProgTypeSpec
from pybpf.platform.uapi_generated import BpfAttachType, BpfProgType

A = BpfAttachType

# cgroup_common_func_proto() plus bpf_base_func_proto().
CGROUP_COMMON_HELPERS = BASE_HELPERS | {
    H.GET_LOCAL_STORAGE, H.GET_RETVAL, H.SET_RETVAL, H.GET_CURRENT_UID_GID, H.GET_CURRENT_PID_TGID,
    H.GET_CURRENT_COMM, H.GET_CGROUP_CLASSID, H.PERF_EVENT_OUTPUT,
}

CGROUP_SOCK = ProgTypeSpec(
    BpfProgType.CGROUP_SOCK,
    "cgroup_sock",
    # sock_filter_is_valid_access: bound_dev_if, mark and priority are writable on create.
    contexts.BPF_SOCK.restrict(writable=("bound_dev_if", "mark", "priority")),
    CGROUP_COMMON_HELPERS | {H.GET_SOCKET_COOKIE, H.GET_NETNS_COOKIE, H.SK_STORAGE_GET},
    "Socket create/release/post_bind hook: 1 allows, 0 rejects.",
    return_range=(0, 1),
    attach_types=(A.CGROUP_INET_SOCK_CREATE, A.CGROUP_INET_SOCK_RELEASE, A.CGROUP_INET4_POST_BIND,
                  A.CGROUP_INET6_POST_BIND),
)

_SOCK_ADDR_ATTACH = (
    A.CGROUP_INET4_BIND, A.CGROUP_INET6_BIND, A.CGROUP_INET4_CONNECT, A.CGROUP_INET6_CONNECT,
    A.CGROUP_UDP4_SENDMSG, A.CGROUP_UDP6_SENDMSG, A.CGROUP_UDP4_RECVMSG, A.CGROUP_UDP6_RECVMSG,
    A.CGROUP_INET4_GETPEERNAME, A.CGROUP_INET6_GETPEERNAME, A.CGROUP_INET4_GETSOCKNAME,
    A.CGROUP_INET6_GETSOCKNAME,
)

CGROUP_SOCK_ADDR = ProgTypeSpec(
    BpfProgType.CGROUP_SOCK_ADDR,
    "cgroup_sock_addr",
    contexts.BPF_SOCK_ADDR,
    CGROUP_COMMON_HELPERS
    | {
        H.GET_NETNS_COOKIE, H.GET_SOCKET_COOKIE, H.BIND, H.SK_LOOKUP_TCP, H.SK_LOOKUP_UDP,
        H.SK_RELEASE, H.SKC_LOOKUP_TCP, H.SK_STORAGE_GET, H.SK_STORAGE_DELETE, H.SETSOCKOPT,
        H.GETSOCKOPT,
    },
    "bind/connect/sendmsg/recvmsg/getpeername/getsockname hook: may rewrite the address.",
    return_range=(0, 1),
    attach_return_ranges=(
        # recvmsg and get{peer,sock}name cannot reject; bind may also ask to skip the port check.
        (A.CGROUP_UDP4_RECVMSG, (1, 1)), (A.CGROUP_UDP6_RECVMSG, (1, 1)),
        (A.CGROUP_INET4_GETPEERNAME, (1, 1)), (A.CGROUP_INET6_GETPEERNAME, (1, 1)),
        (A.CGROUP_INET4_GETSOCKNAME, (1, 1)), (A.CGROUP_INET6_GETSOCKNAME, (1, 1)),
        (A.CGROUP_INET4_BIND, (0, 3)), (A.CGROUP_INET6_BIND, (0, 3)),
    ),
    attach_types=_SOCK_ADDR_ATTACH,
)

CGROUP_SOCKOPT = ProgTypeSpec(
    BpfProgType.CGROUP_SOCKOPT,
    "cgroup_sockopt",
    contexts.BPF_SOCKOPT,
    CGROUP_COMMON_HELPERS
    | {H.GET_NETNS_COOKIE, H.SK_STORAGE_GET, H.SK_STORAGE_DELETE, H.SETSOCKOPT, H.GETSOCKOPT,
       H.TCP_SOCK},
    "getsockopt/setsockopt hook: 1 continues, 0 rejects with EPERM; optval is packet-like.",
    return_range=(0, 1),
    attach_types=(A.CGROUP_GETSOCKOPT, A.CGROUP_SETSOCKOPT),
)

CGROUP_SYSCTL = ProgTypeSpec(
    BpfProgType.CGROUP_SYSCTL,
    "cgroup_sysctl",
    contexts.BPF_SYSCTL,
    CGROUP_COMMON_HELPERS
    | {H.SYSCTL_GET_NAME, H.SYSCTL_GET_CURRENT_VALUE, H.SYSCTL_GET_NEW_VALUE, H.SYSCTL_SET_NEW_VALUE},
    "sysctl read/write hook: 1 allows, 0 rejects.",
    return_range=(0, 1),
    attach_types=(A.CGROUP_SYSCTL,),
)

CGROUP_DEVICE = ProgTypeSpec(
    BpfProgType.CGROUP_DEVICE,
    "cgroup_device",
    contexts.BPF_CGROUP_DEV_CTX,
    CGROUP_COMMON_HELPERS,
    "Device access hook: 1 allows, 0 rejects.",
    return_range=(0, 1),
    attach_types=(A.CGROUP_DEVICE,),
)

# struct bpf_sock_ops is large and mostly read-only; we expose the whole struct as one read-only
# region plus the fields programs commonly write (reply, sk_txhash) until it needs field detail.
_SOCK_OPS_SIZE = 216  # sizeof(struct bpf_sock_ops) in Linux 6.1 uapi (checked by a test)
SOCK_OPS = ProgTypeSpec(
    BpfProgType.SOCK_OPS,
    "sock_ops",
    ContextLayout(
        "bpf_sock_ops",
        _SOCK_OPS_SIZE,
        (
            CtxField("op", 0, 4, frozenset({1, 2, 4})),
            CtxField("reply", 4, 16, frozenset({1, 2, 4}), frozenset({4})),
            CtxField("rest", 20, _SOCK_OPS_SIZE - 20, frozenset({1, 2, 4, 8})),
        ),
    ),
    CGROUP_COMMON_HELPERS
    | {
        H.SETSOCKOPT, H.GETSOCKOPT, H.SOCK_OPS_CB_FLAGS_SET, H.SOCK_MAP_UPDATE, H.SOCK_HASH_UPDATE,
        H.GET_SOCKET_COOKIE, H.GET_NETNS_COOKIE, H.SK_STORAGE_GET, H.SK_STORAGE_DELETE, H.TCP_SOCK,
        H.LOAD_HDR_OPT, H.STORE_HDR_OPT, H.RESERVE_HDR_OPT,
    },
    "TCP socket operations callback.",
    return_range=(0, 1),
    attach_types=(A.CGROUP_SOCK_OPS,),
)

CGROUP_PROG_TYPES = (
    CGROUP_SOCK, CGROUP_SOCK_ADDR, CGROUP_SOCKOPT, CGROUP_SYSCTL, CGROUP_DEVICE, SOCK_OPS,
)
