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

import pybpf
from pybpf.errors import PybpfError
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
    with load(PROGS / "xdp_lb.o", engine="interp") as reference, load(PROGS / "xdp_lb.o", engine="jit") as native:
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


PROGRAMS = r"""
#include "bpf_helpers.h"

static long (*bpf_xdp_adjust_head)(struct xdp_md *ctx, int delta) = (void *)BPF_FUNC_xdp_adjust_head;
static long (*bpf_xdp_adjust_meta)(struct xdp_md *ctx, int delta) = (void *)BPF_FUNC_xdp_adjust_meta;
static long (*bpf_xdp_adjust_tail)(struct xdp_md *ctx, int delta) = (void *)BPF_FUNC_xdp_adjust_tail;
static long (*bpf_redirect)(__u32 ifindex, __u64 flags) = (void *)BPF_FUNC_redirect;

/* The first three bytes are the deltas for adjust_meta, adjust_head and adjust_tail; then the
 * program writes at the new data and data_meta and reports every return code and the length. */
SEC("xdp")
int adjust(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	void *meta;
	signed char *ops = data;
	long meta_ret, head_ret, tail_ret;
	int meta_delta, head_delta, tail_delta;

	if ((void *)(ops + 4) > data_end)
		return 100;
	meta_delta = ops[0];
	head_delta = ops[1] * 4;
	tail_delta = ops[2] * 8;
	meta_ret = bpf_xdp_adjust_meta(ctx, meta_delta);
	head_ret = bpf_xdp_adjust_head(ctx, head_delta);
	tail_ret = bpf_xdp_adjust_tail(ctx, tail_delta);
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	meta = (void *)(long)ctx->data_meta;
	if (data + 2 <= data_end)
		*(__u16 *)data ^= 0x5aa5;
	if (meta + 4 <= data)
		*(__u32 *)meta += 0x01020304;
	return (meta_ret & 0xff) | ((head_ret & 0xff) << 8) | ((tail_ret & 0xff) << 16)
		| (((data_end - data) & 0xff) << 24);
}

SEC("xdp")
int bounce(struct xdp_md *ctx)
{
	return bpf_redirect(3, 0);
}
"""


@pytest.fixture(scope="module")
def programs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Any]]:
    path = build_object(PROGRAMS, tmp_path_factory.mktemp("batch_xdp"))
    with load(path, engine="interp") as reference, load(path, engine="jit") as native:
        yield reference, native


def adjust_packet(meta: int, head: int, tail: int, rest: bytes) -> bytes:
    return bytes([meta & 0xFF, head & 0xFF, tail & 0xFF, 0]) + rest


ADJUSTS = [
    adjust_packet(meta, head, tail, bytes(range(60)))
    for meta in (0, -4, -8, -6, -36, -100, 4)
    for head in (0, -4, 3, -60, 20)
    for tail in (0, 2, -3, -8, 100)
] + [adjust_packet(-32, -54, 0, bytes(10)), adjust_packet(0, 0, 0, b""), bytes(3)]


def test_xdp_adjust_helpers_run_natively_in_a_batch(programs: tuple[Any, Any]) -> None:
    reference, native = programs
    program = native.program("adjust")
    assert native_batch_blocker(program) is None
    expected = [reference.program("adjust").test_run(packet) for packet in ADJUSTS]
    with python_calls(program.jit) as calls:
        got = program.run_batch(ADJUSTS, data_out=True)
    assert got.native
    assert calls == []
    assert list(got.retvals) == [run.retval for run in expected]
    assert got.data_out == tuple(run.data_out for run in expected)
    assert len({len(out) for out in got.data_out}) > 5  # the packets really changed size


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    packets=st.lists(
        st.builds(
            adjust_packet,
            st.integers(-40, 8),
            st.integers(-70, 30),
            st.integers(-20, 60),
            st.binary(max_size=120),
        ),
        max_size=8,
    )
)
def test_xdp_adjust_batches_equal_the_interpreter(programs: tuple[Any, Any], packets: list[bytes]) -> None:
    reference, native = programs
    expected = [reference.program("adjust").test_run(packet) for packet in packets]
    got = native.program("adjust").run_batch(packets, data_out=True)
    assert list(got.retvals) == [run.retval for run in expected]
    assert got.data_out == tuple(run.data_out for run in expected)


def test_a_python_packet_helper_makes_the_batch_fall_back(programs: tuple[Any, Any]) -> None:
    reference, native = programs
    packets = [bytes(20), bytes(64)]
    program = native.program("bounce")
    why = native_batch_blocker(program)
    got = program.run_batch(packets, data_out=True)
    expected = [reference.program("bounce").test_run(packet) for packet in packets]
    assert why is not None
    assert "redirect" in why
    assert not got.native
    assert list(got.retvals) == [run.retval for run in expected] == [4, 4]  # XDP_REDIRECT
    assert got.data_out == tuple(run.data_out for run in expected)


def test_interpreter_batches_run_packet_by_packet(lb: tuple[Any, Any]) -> None:
    reference, _ = lb
    got = reference.program("xdp_lb").run_batch(PACKETS[:3])
    assert not got.native
    assert list(got.retvals) == [reference.program("xdp_lb").test_run(packet).retval for packet in PACKETS[:3]]


def test_xdp_adjust_batches_equal_the_kernels_test_runs(programs: tuple[Any, Any], tmp_path: Path) -> None:
    # Left out: the kernel refuses XDP test runs shorter than an Ethernet header.
    try:
        kernel = pybpf.load(build_object(PROGRAMS, tmp_path), backend="kernel")
    except (PybpfError, OSError) as error:
        pytest.skip(f"the kernel cannot load the test programs here: {type(error).__name__}: {error}")
    packets = [packet for packet in ADJUSTS if len(packet) >= 14]
    with kernel:
        expected = [kernel.program("adjust").test_run(packet) for packet in packets]
    got = programs[1].program("adjust").run_batch(packets, data_out=True)
    assert list(got.retvals) == [run.retval for run in expected]
    assert got.data_out == tuple(run.data_out for run in expected)


def test_single_runs_serve_xdp_adjust_natively(programs: tuple[Any, Any]) -> None:
    # Program.test_run passes its XDP run's frame to native code, so bpf_xdp_adjust_* stay native;
    # the Python packet must then end up as the interpreter's, also after repeats.
    reference, native = programs
    program = native.program("adjust")
    for packet in ADJUSTS[::3]:
        for repeat in (1, 3):
            expected = reference.program("adjust").test_run(packet, repeat=repeat)
            with python_calls(program.jit) as calls:
                got = program.test_run(packet, repeat=repeat)
            assert (got.retval, got.data_out, got.ctx_out) == (expected.retval, expected.data_out, expected.ctx_out)
            assert calls == []
