"""The helper table agrees with the shared prototype table, and covers the helpers we must provide."""

from __future__ import annotations

import pytest
from helper_harness import make_harness

from pybpf.errors import HelperError
from pybpf.platform import HELPER_PROTOS, HelperId
from pybpf.runtime.helpers import HelperTable, default_helpers

REQUIRED = [
    "MAP_LOOKUP_ELEM", "MAP_UPDATE_ELEM", "MAP_DELETE_ELEM", "MAP_PUSH_ELEM", "MAP_POP_ELEM", "MAP_PEEK_ELEM",
    "FOR_EACH_MAP_ELEM", "LOOP", "TAIL_CALL", "KTIME_GET_NS", "KTIME_GET_BOOT_NS", "KTIME_GET_COARSE_NS",
    "JIFFIES64", "GET_PRANDOM_U32", "GET_SMP_PROCESSOR_ID", "GET_NUMA_NODE_ID", "GET_CURRENT_PID_TGID",
    "GET_CURRENT_UID_GID", "GET_CURRENT_COMM", "GET_CURRENT_TASK", "TRACE_PRINTK", "TRACE_VPRINTK", "SNPRINTF",
    "STRNCMP", "STRTOL", "STRTOUL", "PROBE_READ", "PROBE_READ_KERNEL", "PROBE_READ_USER", "PROBE_READ_STR",
    "PROBE_READ_KERNEL_STR", "PROBE_READ_USER_STR", "PERF_EVENT_OUTPUT", "RINGBUF_OUTPUT", "RINGBUF_RESERVE",
    "RINGBUF_SUBMIT", "RINGBUF_DISCARD", "RINGBUF_QUERY", "XDP_ADJUST_HEAD", "XDP_ADJUST_TAIL", "XDP_ADJUST_META",
    "REDIRECT", "REDIRECT_MAP", "SKB_LOAD_BYTES", "SKB_STORE_BYTES", "SKB_ADJUST_ROOM", "SKB_CHANGE_HEAD",
    "SKB_CHANGE_TAIL", "L3_CSUM_REPLACE", "L4_CSUM_REPLACE", "CSUM_DIFF", "GET_HASH_RECALC", "SKB_VLAN_PUSH",
    "SKB_VLAN_POP", "SPIN_LOCK", "SPIN_UNLOCK", "GET_FUNC_IP", "GET_ATTACH_COOKIE", "OVERRIDE_RETURN",
]  # fmt: skip


def test_every_implemented_helper_has_a_prototype() -> None:
    table = default_helpers()
    assert len(table) >= len(REQUIRED)
    for helper_id in table:
        assert helper_id in HELPER_PROTOS, HelperId(helper_id).name


@pytest.mark.parametrize("name", REQUIRED)
def test_required_helper_is_implemented_and_has_a_prototype(name: str) -> None:
    helper_id = int(HelperId[name])
    assert helper_id in default_helpers()
    assert helper_id in HELPER_PROTOS


def test_table_rejects_helpers_without_prototype() -> None:
    with pytest.raises(HelperError, match="without a prototype"):
        HelperTable({99999: default_helpers()[int(HelperId.LOOP)]})


def test_restricted_table_keeps_only_allowed_ids() -> None:
    table = default_helpers().restricted({int(HelperId.LOOP), int(HelperId.KTIME_GET_NS)})
    assert sorted(table) == sorted([int(HelperId.LOOP), int(HelperId.KTIME_GET_NS)])


def test_helpers_without_run_state_fail_clearly() -> None:
    harness = make_harness()
    harness.env.user = None
    with pytest.raises(HelperError, match="RunState"):
        default_helpers()[int(HelperId.KTIME_GET_NS)](harness.env, 0, 0, 0, 0, 0)
