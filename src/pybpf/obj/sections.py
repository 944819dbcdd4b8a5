"""Section name -> program type, libbpf's SEC() conventions.

INTERIM: pybpf.platform is writing the authoritative table (``parse_section(name) -> SectionInfo``,
raising ``UnknownSectionError``). Until it lands the loader uses this short table of the common
libbpf section names; replace :func:`section_type` with a call to ``platform.parse_section`` then.
Matching follows libbpf's ``sec_def``: an exact name, or a prefix followed by ``/`` and the attach
target (``kprobe/do_sys_openat2``).
"""

from __future__ import annotations

from dataclasses import dataclass

from pybpf.errors import LoadError
from pybpf.platform.uapi_generated import BpfAttachType, BpfProgType


@dataclass(frozen=True, slots=True)
class SectionType:
    """What a program section name says about the program."""

    prog_type: BpfProgType
    attach_type: BpfAttachType | None
    attach_to: str  # the part after "prefix/", e.g. the kprobe's function
    sleepable: bool = False


P = BpfProgType
A = BpfAttachType
# (prefix, program type, expected attach type, sleepable). A prefix ending in "+" requires an
# attach target after "/"; others match exactly or with an optional "/target".
_TABLE: tuple[tuple[str, BpfProgType, BpfAttachType | None, bool], ...] = (
    ("socket", P.SOCKET_FILTER, None, False),
    ("sk_reuseport", P.SK_REUSEPORT, None, False),
    ("kprobe+", P.KPROBE, None, False),
    ("kretprobe+", P.KPROBE, None, False),
    ("uprobe", P.KPROBE, None, False),
    ("uretprobe", P.KPROBE, None, False),
    ("ksyscall+", P.KPROBE, None, False),
    ("tracepoint+", P.TRACEPOINT, None, False),
    ("tp+", P.TRACEPOINT, None, False),
    ("raw_tracepoint+", P.RAW_TRACEPOINT, None, False),
    ("raw_tp+", P.RAW_TRACEPOINT, None, False),
    ("tp_btf+", P.TRACING, A.TRACE_RAW_TP, False),
    ("fentry+", P.TRACING, A.TRACE_FENTRY, False),
    ("fexit+", P.TRACING, A.TRACE_FEXIT, False),
    ("fentry.s+", P.TRACING, A.TRACE_FENTRY, True),
    ("fexit.s+", P.TRACING, A.TRACE_FEXIT, True),
    ("lsm+", P.LSM, A.LSM_MAC, False),
    ("tc", P.SCHED_CLS, None, False),
    ("classifier", P.SCHED_CLS, None, False),
    ("action", P.SCHED_ACT, None, False),
    ("xdp", P.XDP, A.XDP, False),
    ("xdp.frags", P.XDP, A.XDP, False),
    ("perf_event", P.PERF_EVENT, None, False),
    ("cgroup_skb/ingress", P.CGROUP_SKB, A.CGROUP_INET_INGRESS, False),
    ("cgroup_skb/egress", P.CGROUP_SKB, A.CGROUP_INET_EGRESS, False),
    ("cgroup/skb", P.CGROUP_SKB, None, False),
    ("cgroup/sock", P.CGROUP_SOCK, A.CGROUP_INET_SOCK_CREATE, False),
    ("sockops", P.SOCK_OPS, A.CGROUP_SOCK_OPS, False),
    ("sk_skb/stream_parser", P.SK_SKB, A.SK_SKB_STREAM_PARSER, False),
    ("sk_skb/stream_verdict", P.SK_SKB, A.SK_SKB_STREAM_VERDICT, False),
    ("sk_skb", P.SK_SKB, None, False),
    ("sk_msg", P.SK_MSG, A.SK_MSG_VERDICT, False),
    ("flow_dissector", P.FLOW_DISSECTOR, A.FLOW_DISSECTOR, False),
    ("syscall", P.SYSCALL, None, True),
)


def section_type(section: str, *, file: str | None = None) -> SectionType:
    """The program type a libbpf-style section name declares (LoadError when unknown)."""
    for prefix, prog_type, attach_type, sleepable in _TABLE:
        needs_target = prefix.endswith("+")
        stem = prefix.rstrip("+")
        if section == stem and not needs_target:
            return SectionType(prog_type, attach_type, "", sleepable)
        if section.startswith(stem + "/"):
            return SectionType(prog_type, attach_type, section[len(stem) + 1 :], sleepable)
    raise LoadError(
        "unknown program section: the name does not match any libbpf SEC() convention "
        "(xdp, tc, socket, kprobe/<fn>, tracepoint/<cat>/<name>...)",
        file=file,
        section=section,
    )
