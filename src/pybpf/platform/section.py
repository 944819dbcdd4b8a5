"""libbpf's ELF section-name conventions: ``SEC("xdp")``, ``SEC("kprobe/do_sys_open")``...

The table restates libbpf's ``section_defs`` (tools/lib/bpf/libbpf.c): each entry names a
program type, the expected attach type given to BPF_PROG_LOAD, and flags.  Matching follows
libbpf: a pattern ending in ``+`` matches the bare name or the name followed by ``/target``;
one ending in ``/`` matches any name with that prefix (legacy); anything else matches exactly.
The first matching entry wins, so more specific patterns come first.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Flag, auto

from pybpf.errors import NotSupportedError, UnknownSectionError
from pybpf.platform.progtypes import ProgTypeSpec, prog_type_spec
from pybpf.platform.uapi_generated import BpfAttachType, BpfProgType

__all__ = ["SECTION_DEFS", "SectionDef", "SectionFlag", "SectionInfo", "parse_section"]


class SectionFlag(Flag):
    """libbpf's SEC_* flags that matter to loading and attaching."""

    NONE = 0
    SLEEPABLE = auto()  # load with BPF_F_SLEEPABLE
    XDP_FRAGS = auto()  # load with BPF_F_XDP_HAS_FRAGS
    ATTACH_BTF = auto()  # the target names a BTF function/tracepoint (attach_btf_id)
    ATTACHABLE = auto()  # BPF_PROG_ATTACH-style: expected_attach_type is sent at load
    ATTACHABLE_OPT = auto()  # as ATTACHABLE, but only if the kernel needs it
    USDT = auto()  # user statically-defined tracepoint (needs the usdt runtime)
    RETURN = auto()  # kretprobe/uretprobe/kretsyscall: attach to the function's return
    MULTI = auto()  # kprobe.multi/uprobe.multi: the target is a glob or list


@dataclass(frozen=True, slots=True)
class SectionDef:
    pattern: str
    prog_type: BpfProgType
    attach_type: BpfAttachType | None
    flags: SectionFlag = SectionFlag.NONE
    # Attach point implied by the name when the uapi header we generate from has no attach type
    # for it (tcx/netkit came after Linux 6.1): "ingress", "egress"...
    attach_point: str | None = None

    def match(self, name: str) -> str | None:
        """The attach target (possibly "") when ``name`` matches this pattern, else None."""
        if self.pattern.endswith("+"):
            stem = self.pattern[:-1]
            if name == stem:
                return ""
            if name.startswith(stem + "/"):
                return name[len(stem) + 1 :]
            return None
        if self.pattern.endswith("/"):
            return name[len(self.pattern) :] if name.startswith(self.pattern) else None
        return "" if name == self.pattern else None


@dataclass(frozen=True, slots=True)
class SectionInfo:
    """What a section name tells the loader."""

    section: str
    definition: SectionDef
    spec: ProgTypeSpec
    target: str | None  # text after "kind/": function, tracepoint "category/name", binary path...

    @property
    def prog_type(self) -> BpfProgType:
        return self.definition.prog_type

    @property
    def expected_attach_type(self) -> BpfAttachType | None:
        return self.definition.attach_type

    @property
    def sleepable(self) -> bool:
        return bool(self.definition.flags & SectionFlag.SLEEPABLE)

    @property
    def xdp_frags(self) -> bool:
        return bool(self.definition.flags & SectionFlag.XDP_FRAGS)

    @property
    def is_return_probe(self) -> bool:
        return bool(self.definition.flags & SectionFlag.RETURN)

    @property
    def flags(self) -> SectionFlag:
        return self.definition.flags


P = BpfProgType
A = BpfAttachType
F = SectionFlag
_D = SectionDef

SECTION_DEFS: tuple[SectionDef, ...] = (
    _D("socket", P.SOCKET_FILTER, None),
    _D("sk_reuseport/migrate", P.SK_REUSEPORT, A.SK_REUSEPORT_SELECT_OR_MIGRATE, F.ATTACHABLE),
    _D("sk_reuseport", P.SK_REUSEPORT, A.SK_REUSEPORT_SELECT, F.ATTACHABLE),
    _D("kprobe.multi+", P.KPROBE, A.TRACE_KPROBE_MULTI, F.MULTI),
    _D("kretprobe.multi+", P.KPROBE, A.TRACE_KPROBE_MULTI, F.MULTI | F.RETURN),
    _D("kprobe+", P.KPROBE, None),
    _D("kretprobe+", P.KPROBE, None, F.RETURN),
    _D("uprobe.s+", P.KPROBE, None, F.SLEEPABLE),
    _D("uretprobe.s+", P.KPROBE, None, F.SLEEPABLE | F.RETURN),
    _D("uprobe+", P.KPROBE, None),
    _D("uretprobe+", P.KPROBE, None, F.RETURN),
    _D("ksyscall+", P.KPROBE, None),
    _D("kretsyscall+", P.KPROBE, None, F.RETURN),
    _D("usdt.s+", P.KPROBE, None, F.USDT | F.SLEEPABLE),
    _D("usdt+", P.KPROBE, None, F.USDT),
    # tc/ingress and tc/egress are libbpf's aliases of tcx/*, whose attach types (BPF_TCX_*) are
    # newer than the header we generate from.
    _D("tc/ingress", P.SCHED_CLS, None, attach_point="ingress"),
    _D("tc/egress", P.SCHED_CLS, None, attach_point="egress"),
    _D("tcx/ingress", P.SCHED_CLS, None, attach_point="ingress"),
    _D("tcx/egress", P.SCHED_CLS, None, attach_point="egress"),
    _D("tc", P.SCHED_CLS, None),
    _D("classifier", P.SCHED_CLS, None),
    _D("action", P.SCHED_ACT, None),
    _D("tracepoint+", P.TRACEPOINT, None),
    _D("tp+", P.TRACEPOINT, None),
    _D("raw_tracepoint.w+", P.RAW_TRACEPOINT_WRITABLE, None),
    _D("raw_tp.w+", P.RAW_TRACEPOINT_WRITABLE, None),
    _D("raw_tracepoint+", P.RAW_TRACEPOINT, None),
    _D("raw_tp+", P.RAW_TRACEPOINT, None),
    _D("tp_btf+", P.TRACING, A.TRACE_RAW_TP, F.ATTACH_BTF),
    _D("fentry.s+", P.TRACING, A.TRACE_FENTRY, F.ATTACH_BTF | F.SLEEPABLE),
    _D("fmod_ret.s+", P.TRACING, A.MODIFY_RETURN, F.ATTACH_BTF | F.SLEEPABLE),
    _D("fexit.s+", P.TRACING, A.TRACE_FEXIT, F.ATTACH_BTF | F.SLEEPABLE),
    _D("fentry+", P.TRACING, A.TRACE_FENTRY, F.ATTACH_BTF),
    _D("fmod_ret+", P.TRACING, A.MODIFY_RETURN, F.ATTACH_BTF),
    _D("fexit+", P.TRACING, A.TRACE_FEXIT, F.ATTACH_BTF),
    _D("freplace+", P.EXT, None, F.ATTACH_BTF),
    _D("lsm.s+", P.LSM, A.LSM_MAC, F.ATTACH_BTF | F.SLEEPABLE),
    _D("lsm_cgroup+", P.LSM, A.LSM_CGROUP, F.ATTACH_BTF),
    _D("lsm+", P.LSM, A.LSM_MAC, F.ATTACH_BTF),
    _D("iter.s+", P.TRACING, A.TRACE_ITER, F.ATTACH_BTF | F.SLEEPABLE),
    _D("iter+", P.TRACING, A.TRACE_ITER, F.ATTACH_BTF),
    _D("syscall", P.SYSCALL, None, F.SLEEPABLE),
    _D("xdp.frags/devmap", P.XDP, A.XDP_DEVMAP, F.XDP_FRAGS),
    _D("xdp/devmap", P.XDP, A.XDP_DEVMAP, F.ATTACHABLE),
    _D("xdp.frags/cpumap", P.XDP, A.XDP_CPUMAP, F.XDP_FRAGS),
    _D("xdp/cpumap", P.XDP, A.XDP_CPUMAP, F.ATTACHABLE),
    _D("xdp.frags", P.XDP, A.XDP, F.XDP_FRAGS),
    _D("xdp", P.XDP, A.XDP, F.ATTACHABLE_OPT),
    _D("perf_event", P.PERF_EVENT, None),
    _D("lwt_in", P.LWT_IN, None),
    _D("lwt_out", P.LWT_OUT, None),
    _D("lwt_xmit", P.LWT_XMIT, None),
    _D("lwt_seg6local", P.LWT_SEG6LOCAL, None),
    _D("sockops", P.SOCK_OPS, A.CGROUP_SOCK_OPS, F.ATTACHABLE_OPT),
    _D("sk_skb/stream_parser", P.SK_SKB, A.SK_SKB_STREAM_PARSER, F.ATTACHABLE_OPT),
    _D("sk_skb/stream_verdict", P.SK_SKB, A.SK_SKB_STREAM_VERDICT, F.ATTACHABLE_OPT),
    _D("sk_skb/verdict", P.SK_SKB, A.SK_SKB_VERDICT, F.ATTACHABLE_OPT),
    _D("sk_skb", P.SK_SKB, None),
    _D("sk_msg", P.SK_MSG, A.SK_MSG_VERDICT, F.ATTACHABLE_OPT),
    _D("lirc_mode2", P.LIRC_MODE2, A.LIRC_MODE2, F.ATTACHABLE_OPT),
    _D("flow_dissector", P.FLOW_DISSECTOR, A.FLOW_DISSECTOR, F.ATTACHABLE_OPT),
    _D("cgroup_skb/ingress", P.CGROUP_SKB, A.CGROUP_INET_INGRESS, F.ATTACHABLE_OPT),
    _D("cgroup_skb/egress", P.CGROUP_SKB, A.CGROUP_INET_EGRESS, F.ATTACHABLE_OPT),
    _D("cgroup/skb", P.CGROUP_SKB, None),
    _D("cgroup/sock_create", P.CGROUP_SOCK, A.CGROUP_INET_SOCK_CREATE, F.ATTACHABLE),
    _D("cgroup/sock_release", P.CGROUP_SOCK, A.CGROUP_INET_SOCK_RELEASE, F.ATTACHABLE),
    _D("cgroup/sock", P.CGROUP_SOCK, A.CGROUP_INET_SOCK_CREATE, F.ATTACHABLE_OPT),
    _D("cgroup/post_bind4", P.CGROUP_SOCK, A.CGROUP_INET4_POST_BIND, F.ATTACHABLE),
    _D("cgroup/post_bind6", P.CGROUP_SOCK, A.CGROUP_INET6_POST_BIND, F.ATTACHABLE),
    _D("cgroup/bind4", P.CGROUP_SOCK_ADDR, A.CGROUP_INET4_BIND, F.ATTACHABLE),
    _D("cgroup/bind6", P.CGROUP_SOCK_ADDR, A.CGROUP_INET6_BIND, F.ATTACHABLE),
    _D("cgroup/connect4", P.CGROUP_SOCK_ADDR, A.CGROUP_INET4_CONNECT, F.ATTACHABLE),
    _D("cgroup/connect6", P.CGROUP_SOCK_ADDR, A.CGROUP_INET6_CONNECT, F.ATTACHABLE),
    _D("cgroup/sendmsg4", P.CGROUP_SOCK_ADDR, A.CGROUP_UDP4_SENDMSG, F.ATTACHABLE),
    _D("cgroup/sendmsg6", P.CGROUP_SOCK_ADDR, A.CGROUP_UDP6_SENDMSG, F.ATTACHABLE),
    _D("cgroup/recvmsg4", P.CGROUP_SOCK_ADDR, A.CGROUP_UDP4_RECVMSG, F.ATTACHABLE),
    _D("cgroup/recvmsg6", P.CGROUP_SOCK_ADDR, A.CGROUP_UDP6_RECVMSG, F.ATTACHABLE),
    _D("cgroup/getpeername4", P.CGROUP_SOCK_ADDR, A.CGROUP_INET4_GETPEERNAME, F.ATTACHABLE),
    _D("cgroup/getpeername6", P.CGROUP_SOCK_ADDR, A.CGROUP_INET6_GETPEERNAME, F.ATTACHABLE),
    _D("cgroup/getsockname4", P.CGROUP_SOCK_ADDR, A.CGROUP_INET4_GETSOCKNAME, F.ATTACHABLE),
    _D("cgroup/getsockname6", P.CGROUP_SOCK_ADDR, A.CGROUP_INET6_GETSOCKNAME, F.ATTACHABLE),
    _D("cgroup/sysctl", P.CGROUP_SYSCTL, A.CGROUP_SYSCTL, F.ATTACHABLE),
    _D("cgroup/getsockopt", P.CGROUP_SOCKOPT, A.CGROUP_GETSOCKOPT, F.ATTACHABLE),
    _D("cgroup/setsockopt", P.CGROUP_SOCKOPT, A.CGROUP_SETSOCKOPT, F.ATTACHABLE),
    _D("cgroup/dev", P.CGROUP_DEVICE, A.CGROUP_DEVICE, F.ATTACHABLE_OPT),
    _D("struct_ops.s+", P.STRUCT_OPS, None, F.SLEEPABLE),
    _D("struct_ops+", P.STRUCT_OPS, None),
    _D("sk_lookup", P.SK_LOOKUP, A.SK_LOOKUP, F.ATTACHABLE),
)


def find_section_def(name: str) -> tuple[SectionDef, str] | None:
    """The first definition matching ``name`` and the attach target it implies."""
    for definition in SECTION_DEFS:
        target = definition.match(name)
        if target is not None:
            return definition, target
    return None


def parse_section(name: str) -> SectionInfo:
    """Interpret an ELF program section name the way libbpf does.

    Raises UnknownSectionError when nothing matches and NotSupportedError when the name is a
    known convention for a program type pybpf does not model (lirc_mode2, sk_reuseport...).
    """
    found = find_section_def(name)
    if found is None:
        raise UnknownSectionError(name)
    definition, target = found
    try:
        spec = prog_type_spec(definition.prog_type)
    except NotSupportedError as error:
        raise NotSupportedError(f"section {name}: {error}") from None
    return SectionInfo(name, definition, spec, target or None)
