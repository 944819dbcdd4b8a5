"""Program-type table, section names and map types."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from pybpf.errors import LoadError, MapError, NotSupportedError, UnknownSectionError
from pybpf.platform import (
    HELPER_PROTOS,
    MAP_TYPES,
    PROG_TYPES,
    BpfAttachType,
    BpfMapFlag,
    BpfMapType,
    BpfProgType,
    Conversion,
    HelperId,
    MapOp,
    PacketAccess,
    check_map_spec,
    map_type_spec,
    parse_section,
    prog_type_spec,
)
from pybpf.platform.progtypes import BASE_HELPERS

A = BpfAttachType
P = BpfProgType


def test_every_spec_is_indexed_by_its_type() -> None:
    for prog_type, spec in PROG_TYPES.items():
        assert spec.prog_type is prog_type
        assert spec.name == prog_type.name.lower()
        assert spec.helpers >= BASE_HELPERS
        for field in spec.context.fields:
            if field.conversion in (Conversion.PACKET_DATA, Conversion.PACKET_END) and field.readable:
                # Packet pointers in the context only make sense where packet access is allowed
                # (sockopt's optval is the kernel's one packet-like exception).
                assert spec.packet_access is not PacketAccess.NONE or spec.prog_type is P.CGROUP_SOCKOPT


def test_packet_programs() -> None:
    xdp = PROG_TYPES[P.XDP]
    assert xdp.packet_access is PacketAccess.READ_WRITE
    assert xdp.allows_helper(HelperId.XDP_ADJUST_HEAD)
    assert not xdp.allows_helper(HelperId.SKB_LOAD_BYTES)
    assert xdp.return_range is None
    tc = PROG_TYPES[P.SCHED_CLS]
    assert tc.allows_helper(HelperId.SKB_STORE_BYTES)
    assert not tc.allows_helper(HelperId.XDP_ADJUST_HEAD)
    assert tc.context.field("mark").writable
    assert tc.context.field("tc_classid").writable
    assert not tc.context.field("len").writable
    assert not tc.context.field("family").readable
    socket = PROG_TYPES[P.SOCKET_FILTER]
    assert not socket.context.field("data").readable
    assert socket.context.field("cb").writable
    assert not socket.context.field("mark").writable
    assert socket.packet_access is PacketAccess.NONE
    cg = PROG_TYPES[P.CGROUP_SKB]
    assert cg.return_range_for(A.CGROUP_INET_INGRESS) == (0, 1)
    assert cg.return_range_for(A.CGROUP_INET_EGRESS) == (0, 3)
    assert not cg.context.field("tc_classid").readable
    flow = PROG_TYPES[P.FLOW_DISSECTOR]
    assert flow.context.field("flow_keys").conversion is Conversion.FLOW_KEYS
    assert flow.context.field("flow_keys").readable
    assert not flow.context.field("len").readable


def test_tracing_programs() -> None:
    kprobe = PROG_TYPES[P.KPROBE]
    assert kprobe.allows_helper(HelperId.PROBE_READ_KERNEL)
    assert kprobe.allows_helper(HelperId.OVERRIDE_RETURN)
    assert not kprobe.allows_helper(HelperId.SKB_LOAD_BYTES)
    assert not any(f.writable for f in kprobe.context.fields)
    assert prog_type_spec(P.KPROBE, "arm64").context.name == "user_pt_regs"
    assert prog_type_spec(P.PERF_EVENT, "arm64").context.field("sample_period").offset == 272
    with pytest.raises(NotSupportedError):
        prog_type_spec(P.KPROBE, "sparc")
    tracing = PROG_TYPES[P.TRACING]
    assert tracing.return_range_for(A.TRACE_FENTRY) == (0, 0)
    assert tracing.return_range_for(A.MODIFY_RETURN) is None


def test_cgroup_return_ranges() -> None:
    addr = PROG_TYPES[P.CGROUP_SOCK_ADDR]
    assert addr.return_range_for(A.CGROUP_INET4_CONNECT) == (0, 1)
    assert addr.return_range_for(A.CGROUP_UDP4_RECVMSG) == (1, 1)
    assert addr.return_range_for(A.CGROUP_INET4_BIND) == (0, 3)
    for prog_type in (P.CGROUP_SOCK, P.CGROUP_SYSCTL, P.CGROUP_SOCKOPT, P.CGROUP_DEVICE):
        assert PROG_TYPES[prog_type].return_range == (0, 1)


def test_unsupported_prog_type() -> None:
    with pytest.raises(NotSupportedError):
        prog_type_spec(P.LIRC_MODE2)
    with pytest.raises(NotSupportedError):
        prog_type_spec(9999)


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc to size struct bpf_sock_ops")
def test_sock_ops_context_size(tmp_path: Path) -> None:
    source = tmp_path / "s.c"
    source.write_text(
        '#include <stdio.h>\n#include <linux/bpf.h>\n'
        'int main(void){printf("%zu", sizeof(struct bpf_sock_ops));return 0;}\n'
    )
    subprocess.run(["gcc", "-o", str(tmp_path / "s"), str(source)], check=True)
    size = int(subprocess.run([str(tmp_path / "s")], check=True, capture_output=True, text=True).stdout)
    assert PROG_TYPES[P.SOCK_OPS].context.size == size


SECTIONS = [
    # name, prog type, expected attach type, target, sleepable, frags
    ("socket", P.SOCKET_FILTER, None, None, False, False),
    ("xdp", P.XDP, A.XDP, None, False, False),
    ("xdp.frags", P.XDP, A.XDP, None, False, True),
    ("xdp/devmap", P.XDP, A.XDP_DEVMAP, None, False, False),
    ("xdp.frags/cpumap", P.XDP, A.XDP_CPUMAP, None, False, True),
    ("tc", P.SCHED_CLS, None, None, False, False),
    ("classifier", P.SCHED_CLS, None, None, False, False),
    ("tc/ingress", P.SCHED_CLS, None, None, False, False),
    ("tcx/egress", P.SCHED_CLS, None, None, False, False),
    ("action", P.SCHED_ACT, None, None, False, False),
    ("kprobe/do_sys_openat2", P.KPROBE, None, "do_sys_openat2", False, False),
    ("kprobe", P.KPROBE, None, None, False, False),
    ("kretprobe/vfs_read", P.KPROBE, None, "vfs_read", False, False),
    ("kprobe.multi/vfs_*", P.KPROBE, A.TRACE_KPROBE_MULTI, "vfs_*", False, False),
    ("uprobe//bin/bash:readline", P.KPROBE, None, "/bin/bash:readline", False, False),
    ("uretprobe/libc.so.6:malloc", P.KPROBE, None, "libc.so.6:malloc", False, False),
    ("uprobe.s/libc.so.6:free", P.KPROBE, None, "libc.so.6:free", True, False),
    ("usdt/libc.so.6:libc:setjmp", P.KPROBE, None, "libc.so.6:libc:setjmp", False, False),
    ("tracepoint/syscalls/sys_enter_openat", P.TRACEPOINT, None, "syscalls/sys_enter_openat", False, False),
    ("tp/sched/sched_switch", P.TRACEPOINT, None, "sched/sched_switch", False, False),
    ("raw_tp/sched_switch", P.RAW_TRACEPOINT, None, "sched_switch", False, False),
    ("raw_tracepoint/sys_enter", P.RAW_TRACEPOINT, None, "sys_enter", False, False),
    ("tp_btf/sched_switch", P.TRACING, A.TRACE_RAW_TP, "sched_switch", False, False),
    ("fentry/do_unlinkat", P.TRACING, A.TRACE_FENTRY, "do_unlinkat", False, False),
    ("fexit/do_unlinkat", P.TRACING, A.TRACE_FEXIT, "do_unlinkat", False, False),
    ("fmod_ret/security_file_open", P.TRACING, A.MODIFY_RETURN, "security_file_open", False, False),
    ("fentry.s/do_unlinkat", P.TRACING, A.TRACE_FENTRY, "do_unlinkat", True, False),
    ("perf_event", P.PERF_EVENT, None, None, False, False),
    ("cgroup_skb/ingress", P.CGROUP_SKB, A.CGROUP_INET_INGRESS, None, False, False),
    ("cgroup_skb/egress", P.CGROUP_SKB, A.CGROUP_INET_EGRESS, None, False, False),
    ("cgroup/skb", P.CGROUP_SKB, None, None, False, False),
    ("cgroup/sock", P.CGROUP_SOCK, A.CGROUP_INET_SOCK_CREATE, None, False, False),
    ("cgroup/connect4", P.CGROUP_SOCK_ADDR, A.CGROUP_INET4_CONNECT, None, False, False),
    ("cgroup/sendmsg6", P.CGROUP_SOCK_ADDR, A.CGROUP_UDP6_SENDMSG, None, False, False),
    ("cgroup/getsockopt", P.CGROUP_SOCKOPT, A.CGROUP_GETSOCKOPT, None, False, False),
    ("cgroup/sysctl", P.CGROUP_SYSCTL, A.CGROUP_SYSCTL, None, False, False),
    ("cgroup/dev", P.CGROUP_DEVICE, A.CGROUP_DEVICE, None, False, False),
    ("lsm/file_open", P.LSM, A.LSM_MAC, "file_open", False, False),
    ("lsm.s/bprm_committed_creds", P.LSM, A.LSM_MAC, "bprm_committed_creds", True, False),
    ("sk_msg", P.SK_MSG, A.SK_MSG_VERDICT, None, False, False),
    ("sk_skb/stream_parser", P.SK_SKB, A.SK_SKB_STREAM_PARSER, None, False, False),
    ("sk_skb/stream_verdict", P.SK_SKB, A.SK_SKB_STREAM_VERDICT, None, False, False),
    ("sk_skb", P.SK_SKB, None, None, False, False),
    ("flow_dissector", P.FLOW_DISSECTOR, A.FLOW_DISSECTOR, None, False, False),
    ("syscall", P.SYSCALL, None, None, True, False),
    ("sk_lookup", P.SK_LOOKUP, A.SK_LOOKUP, None, False, False),
    ("struct_ops/bpf_cubic_init", P.STRUCT_OPS, None, "bpf_cubic_init", False, False),
    ("struct_ops", P.STRUCT_OPS, None, None, False, False),
]


@pytest.mark.parametrize("case", SECTIONS, ids=[s[0] for s in SECTIONS])
def test_parse_section(
    case: tuple[str, BpfProgType, BpfAttachType | None, str | None, bool, bool],
) -> None:
    name, prog_type, attach, target, sleepable, frags = case
    info = parse_section(name)
    assert info.prog_type is prog_type
    assert info.spec.prog_type is prog_type
    assert info.expected_attach_type == attach
    assert info.target == target
    assert info.sleepable is sleepable
    assert info.xdp_frags is frags


def test_return_probes_are_marked() -> None:
    assert parse_section("kretprobe/x").is_return_probe
    assert not parse_section("kprobe/x").is_return_probe


@pytest.mark.parametrize(
    "name", ["", "xdpfoo", "xdp/foo", "kprobex/foo", "fentry_foo", "cgroup/nonsense", "maps", ".text"]
)
def test_unknown_section(name: str) -> None:
    with pytest.raises(UnknownSectionError) as caught:
        parse_section(name)
    assert isinstance(caught.value, LoadError)
    assert caught.value.section == name


def test_unknown_section_message_names_it() -> None:
    with pytest.raises(UnknownSectionError, match="section bogus"):
        parse_section("bogus")


def test_known_but_unsupported_section() -> None:
    with pytest.raises(NotSupportedError, match="lirc_mode2"):
        parse_section("lirc_mode2")


# --- map types ------------------------------------------------------------------------------


def test_map_table_covers_every_map_type() -> None:
    missing = {t for t in BpfMapType if t is not BpfMapType.UNSPEC} - set(MAP_TYPES)
    assert not missing
    for map_type, spec in MAP_TYPES.items():
        assert spec.map_type is map_type
        assert spec.name == map_type.name.lower()
        for helper in spec.special_helpers:
            assert helper in HelperId.__members__.values()


def test_map_rules() -> None:
    array = map_type_spec(BpfMapType.ARRAY)
    assert array.key_size == 4
    assert array.mmapable
    assert not map_type_spec(BpfMapType.HASH).mmapable
    assert map_type_spec(BpfMapType.PERCPU_ARRAY).per_cpu
    assert not array.allows_op(MapOp.DELETE)
    assert map_type_spec(BpfMapType.QUEUE).allows_op(MapOp.POP)
    assert not map_type_spec(BpfMapType.QUEUE).allows_op(MapOp.LOOKUP)
    assert map_type_spec(BpfMapType.HASH).helper_allowed(HelperId.MAP_DELETE_ELEM)
    assert not map_type_spec(BpfMapType.HASH).helper_allowed(HelperId.TAIL_CALL)
    assert map_type_spec(BpfMapType.PROG_ARRAY).helper_allowed(HelperId.TAIL_CALL)
    assert not map_type_spec(BpfMapType.PROG_ARRAY).helper_allowed(HelperId.MAP_LOOKUP_ELEM)
    assert map_type_spec(BpfMapType.RINGBUF).helper_allowed(HelperId.RINGBUF_RESERVE)
    assert map_type_spec(BpfMapType.PERCPU_HASH).helper_allowed(HelperId.MAP_LOOKUP_PERCPU_ELEM)
    assert not map_type_spec(BpfMapType.HASH).helper_allowed(HelperId.MAP_LOOKUP_PERCPU_ELEM)


@pytest.mark.parametrize(
    ("map_type", "key", "value", "entries", "flags"),
    [
        (BpfMapType.HASH, 8, 16, 128, 0),
        (BpfMapType.HASH, 4, 4, 1, int(BpfMapFlag.NO_PREALLOC)),
        (BpfMapType.ARRAY, 4, 64, 1, int(BpfMapFlag.MMAPABLE)),
        (BpfMapType.RINGBUF, 0, 0, 4096 * 4, 0),
        (BpfMapType.QUEUE, 0, 8, 16, 0),
        (BpfMapType.LPM_TRIE, 8, 4, 16, int(BpfMapFlag.NO_PREALLOC)),
        (BpfMapType.PROG_ARRAY, 4, 4, 8, 0),
    ],
)
def test_valid_map_specs(map_type: BpfMapType, key: int, value: int, entries: int, flags: int) -> None:
    check_map_spec(map_type, key, value, entries, flags)


@pytest.mark.parametrize(
    "case",
    [
        (BpfMapType.ARRAY, 8, 4, 1, 0, "key_size 8"),
        (BpfMapType.HASH, 0, 4, 1, 0, "key_size 0"),
        (BpfMapType.HASH, 4, 4, 1, int(BpfMapFlag.MMAPABLE), "map_flags"),
        (BpfMapType.HASH, 4, 4, 0, 0, "max_entries"),
        (BpfMapType.RINGBUF, 0, 0, 4096 * 3, 0, "power of 2"),
        (BpfMapType.QUEUE, 4, 8, 16, 0, "key_size 4"),
        (BpfMapType.LPM_TRIE, 8, 4, 16, 0, "requires"),
        (BpfMapType.PROG_ARRAY, 4, 8, 8, 0, "value_size 8"),
    ],
)
def test_invalid_map_specs(case: tuple[BpfMapType, int, int, int, int, str]) -> None:
    map_type, key, value, entries, flags, fragment = case
    with pytest.raises(MapError, match=fragment) as caught:
        check_map_spec(map_type, key, value, entries, flags)
    assert caught.value.errno_name == "EINVAL"


def test_tables_are_read_only() -> None:
    with pytest.raises(TypeError):
        PROG_TYPES[P.XDP] = PROG_TYPES[P.SCHED_CLS]  # type: ignore[index]
    with pytest.raises(TypeError):
        MAP_TYPES[BpfMapType.HASH] = MAP_TYPES[BpfMapType.ARRAY]  # type: ignore[index]
    with pytest.raises(TypeError):
        del HELPER_PROTOS[1]  # type: ignore[attr-defined]
    with pytest.raises(AttributeError):
        PROG_TYPES[P.XDP].return_range = (0, 1)  # type: ignore[misc]
