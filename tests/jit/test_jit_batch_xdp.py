"""Native XDP batches with the native checksum helpers: equal to one test run per packet, no Python calls.

xdp_lb (array lookup, bpf_csum_diff, packet rewrite) runs its batch inside one native call; the
retvals, the packets after the runs (``data_out=True``) and the maps must equal the
interpreter's per-packet test runs. A program calling a helper that needs the run's Python
packet state (bpf_xdp_adjust_head) falls back to per-packet test runs and says why.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jit_build import build_object
from native_calls import python_calls

from pybpf.runtime.batch import native_batch_blocker
from pybpf.runtime.loader import load

PROGS = Path(__file__).resolve().parents[1] / "progs"
ETH_IPV4 = bytes.fromhex("00112233445566778899aabb0800")
ETH_IPV6 = bytes.fromhex("00112233445566778899aabb86dd")
XDP_TX, XDP_PASS = 3, 2


def ipv4(source: bytes, *, ihl: int = 5, tail: bytes = bytes(26)) -> bytes:
    header = bytes([0x40 | ihl]) + bytes.fromhex("00002e1234400040110000") + source + bytes.fromhex("c0a800c7")
    return ETH_IPV4 + header + tail


def set_backends(obj: Any, count: int = 8) -> None:
    for index in range(count):
        backend = bytes([10, 0, 1, index + 1]) + bytes.fromhex("020000000a") + bytes([index]) + bytes(2)
        obj.maps["backends"].update_raw(index.to_bytes(4, "little"), backend)


PACKETS = [
    *(ipv4(bytes([10, 0, 0, n]), tail=bytes(range(n, n + 26))) for n in range(16)),
    ipv4(bytes([192, 168, 0, 1]), ihl=6),  # options: passed
    ETH_IPV4 + bytes(6),  # truncated: dropped
    ETH_IPV6 + bytes(60),  # not IPv4: passed
    bytes(10),  # shorter than an Ethernet header: aborted
]


@pytest.fixture(scope="module")
def lb() -> Iterator[tuple[Any, Any]]:
    with load(PROGS / "xdp_lb.o") as reference, load(PROGS / "xdp_lb.o", engine="jit") as native:
        for obj in (reference, native):
            set_backends(obj, 6)  # two sources find an empty backend slot
        yield reference, native


def test_xdp_lb_batch_runs_natively_and_equals_per_packet_test_runs(lb: tuple[Any, Any]) -> None:
    reference, native = lb
    program = native.program("xdp_lb")
    assert native_batch_blocker(program) is None
    expected = [reference.program("xdp_lb").test_run(packet) for packet in PACKETS]
    with python_calls(program.jit) as calls:
        got = program.run_batch(PACKETS, data_out=True)
    assert got.native
    assert calls == []  # the whole batch without one Python call
    assert list(got.retvals) == [run.retval for run in expected]
    assert got.data_out == tuple(run.data_out for run in expected)
    assert {XDP_TX, XDP_PASS} <= set(got.retvals)
    assert got.data_out[0] != PACKETS[0]  # rewritten: MACs swapped, destination and checksum changed


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    packets=st.lists(
        st.one_of(
            st.builds(
                lambda source, tail: ipv4(source, tail=tail), st.binary(min_size=4, max_size=4), st.binary(max_size=40)
            ),
            st.binary(max_size=80),
        ),
        max_size=12,
    )
)
def test_xdp_lb_batch_equals_the_interpreter_on_any_packets(lb: tuple[Any, Any], packets: list[bytes]) -> None:
    reference, native = lb
    expected = [reference.program("xdp_lb").test_run(packet) for packet in packets]
    got = native.program("xdp_lb").run_batch(packets, data_out=True)
    assert list(got.retvals) == [run.retval for run in expected]
    assert got.data_out == tuple(run.data_out for run in expected)


ADJUST_SOURCE = r"""
#include "bpf_helpers.h"

static long (*bpf_xdp_adjust_head)(struct xdp_md *ctx, int delta) = (void *)BPF_FUNC_xdp_adjust_head;

SEC("xdp")
int pop(struct xdp_md *ctx)
{
	if (bpf_xdp_adjust_head(ctx, 4) < 0)
		return 0;
	return 2;
}
"""


def test_a_python_packet_helper_makes_the_batch_fall_back(tmp_path: Path) -> None:
    path = build_object(ADJUST_SOURCE, tmp_path)
    packets = [bytes(20), bytes(17), bytes(64)]
    with load(path) as reference, load(path, engine="jit") as native:
        program = native.program("pop")
        why = native_batch_blocker(program)
        got = program.run_batch(packets, data_out=True)
        expected = [reference.program("pop").test_run(packet) for packet in packets]
    assert why is not None
    assert "xdp_adjust_head" in why
    assert not got.native
    assert list(got.retvals) == [run.retval for run in expected] == [2, 0, 2]
    assert got.data_out == tuple(run.data_out for run in expected)


def test_interpreter_batches_run_packet_by_packet(lb: tuple[Any, Any]) -> None:
    reference, _ = lb
    got = reference.program("xdp_lb").run_batch(PACKETS[:3])
    assert not got.native
    assert list(got.retvals) == [reference.program("xdp_lb").test_run(packet).retval for packet in PACKETS[:3]]
