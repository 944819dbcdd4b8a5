from __future__ import annotations

from pybpf.platform.uapi_generated import BpfProgType
from pybpf.platform.verdicts import verdict_name


def test_xdp_and_tc_verdicts_are_named() -> None:
    assert verdict_name(BpfProgType.XDP, 1) == "XDP_DROP"
    assert verdict_name(BpfProgType.XDP, 3) == "XDP_TX"
    assert verdict_name(BpfProgType.SCHED_CLS, 2) == "TC_ACT_SHOT"
    assert verdict_name(BpfProgType.SCHED_CLS, 0xFFFFFFFF) == "TC_ACT_UNSPEC"


def test_values_that_are_not_verdicts_have_no_name() -> None:
    assert verdict_name(BpfProgType.XDP, 99) is None
    assert verdict_name(BpfProgType.SOCKET_FILTER, 1) is None
    assert verdict_name(12345, 0) is None
