"""The helper-prototype table: completeness, shape rules and a few exact prototypes."""

from __future__ import annotations

import pytest

from pybpf.errors import HelperError
from pybpf.platform import HELPER_PROTOS, ArgFlag, ArgType, HelperId, RetType, helper_proto

_REQUIRED_TEXT = """
map_lookup_elem map_update_elem map_delete_elem map_push_elem map_pop_elem map_peek_elem
for_each_map_elem loop tail_call ktime_get_ns ktime_get_boot_ns ktime_get_coarse_ns jiffies64
get_prandom_u32 get_smp_processor_id get_numa_node_id trace_printk trace_vprintk snprintf strncmp
strtol strtoul probe_read probe_read_kernel probe_read_user probe_read_str probe_read_kernel_str
probe_read_user_str get_current_pid_tgid get_current_uid_gid get_current_comm get_current_task
perf_event_output ringbuf_output ringbuf_reserve ringbuf_submit ringbuf_discard ringbuf_query
xdp_adjust_head xdp_adjust_tail xdp_adjust_meta redirect redirect_map skb_load_bytes skb_store_bytes
skb_adjust_room skb_change_head skb_change_tail l3_csum_replace l4_csum_replace csum_diff
get_hash_recalc skb_vlan_push skb_vlan_pop spin_lock spin_unlock get_func_ip get_attach_cookie
override_return sk_lookup_tcp sk_lookup_udp sk_release get_socket_cookie fib_lookup csum_update
set_hash get_cgroup_classid get_route_realm skb_under_cgroup get_stackid send_signal
"""
REQUIRED = tuple(_REQUIRED_TEXT.split())


@pytest.mark.parametrize("name", REQUIRED)
def test_required_helper_present(name: str) -> None:
    helper_id = HelperId[name.upper()]
    proto = helper_proto(helper_id)
    assert proto.id == helper_id
    assert proto.name == name
    assert proto.description


def test_table_keys_match_ids() -> None:
    for key, proto in HELPER_PROTOS.items():
        assert key == int(proto.id)
        assert proto.name == proto.id.name.lower()


def test_shape_rules_hold_for_every_proto() -> None:
    sizes = {ArgType.CONST_SIZE, ArgType.CONST_SIZE_OR_ZERO}
    for proto in HELPER_PROTOS.values():
        assert len(proto.args) <= 5, proto.name
        for index, arg in enumerate(proto.args):
            # The kernel pairs every sized memory argument with the size argument after it.
            if arg.type is ArgType.PTR_TO_MEM:
                assert index + 1 < len(proto.args), proto.name
                assert proto.args[index + 1].type in sizes, proto.name
            if arg.type in sizes:
                assert index > 0 and proto.args[index - 1].type is ArgType.PTR_TO_MEM, proto.name
            if arg.type is ArgType.PTR_TO_FIXED_SIZE_MEM:
                assert arg.size, proto.name
        if proto.ret_size_arg is not None:
            assert proto.args[proto.ret_size_arg].type is ArgType.CONST_ALLOC_SIZE_OR_ZERO
        # A reference the program must release only comes with a nullable pointer.
        if proto.acquires_ref:
            assert proto.ret.maybe_null, proto.name


def test_reference_tracking_pairs() -> None:
    assert helper_proto(HelperId.RINGBUF_RESERVE).acquires_ref
    assert helper_proto(HelperId.RINGBUF_RESERVE).ret is RetType.PTR_TO_MEM_OR_NULL
    assert helper_proto(HelperId.RINGBUF_RESERVE).ret_size_arg == 1
    for name in ("RINGBUF_SUBMIT", "RINGBUF_DISCARD", "SK_RELEASE"):
        proto = helper_proto(HelperId[name])
        assert proto.releases_ref
        assert proto.release_arg == 0
    assert helper_proto(HelperId.SK_LOOKUP_TCP).acquires_ref
    assert helper_proto(HelperId.SK_LOOKUP_TCP).ret is RetType.PTR_TO_SOCKET_OR_NULL
    assert not helper_proto(HelperId.MAP_LOOKUP_ELEM).acquires_ref


def test_exact_prototypes() -> None:
    lookup = helper_proto(HelperId.MAP_LOOKUP_ELEM)
    assert [a.type for a in lookup.args] == [ArgType.CONST_MAP_PTR, ArgType.PTR_TO_MAP_KEY]
    assert lookup.ret is RetType.PTR_TO_MAP_VALUE_OR_NULL
    assert not lookup.gpl_only
    pop = helper_proto(HelperId.MAP_POP_ELEM)
    assert pop.args[1].type is ArgType.PTR_TO_MAP_VALUE
    assert pop.args[1].uninit
    strtol = helper_proto(HelperId.STRTOL)
    assert strtol.args[3].size == 8
    assert strtol.args[3].flags & ArgFlag.ALIGNED
    printk = helper_proto(HelperId.TRACE_PRINTK)
    assert printk.gpl_only
    assert printk.arg_count == 2  # r3..r5 are not checked
    assert helper_proto(HelperId.TAIL_CALL).ret is RetType.VOID
    assert helper_proto(HelperId.PROBE_READ_KERNEL).gpl_only
    assert helper_proto(HelperId.COPY_FROM_USER).might_sleep


def test_packet_changing_helpers() -> None:
    changing = {p.name for p in HELPER_PROTOS.values() if p.changes_pkt_data}
    assert {"xdp_adjust_head", "xdp_adjust_tail", "xdp_adjust_meta", "skb_store_bytes",
            "skb_change_head", "skb_change_tail", "skb_vlan_push", "skb_vlan_pop",
            "l3_csum_replace", "l4_csum_replace", "skb_adjust_room"} <= changing
    assert "skb_load_bytes" not in changing
    assert "map_lookup_elem" not in changing


def test_unknown_helper_errors() -> None:
    with pytest.raises(HelperError, match="unknown helper id 100000"):
        helper_proto(100000)
    unsupported = next(h for h in HelperId if h not in HELPER_PROTOS)
    with pytest.raises(HelperError, match=unsupported.name.lower()):
        helper_proto(unsupported)


def test_table_is_read_only() -> None:
    with pytest.raises(TypeError):
        HELPER_PROTOS[1] = HELPER_PROTOS[2]  # type: ignore[index]
    proto = helper_proto(HelperId.MAP_LOOKUP_ELEM)
    with pytest.raises(AttributeError):
        proto.gpl_only = True  # type: ignore[misc]
