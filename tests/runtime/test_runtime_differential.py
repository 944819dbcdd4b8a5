"""Differential tests: the same objects and packets through the kernel and through pybpf.

The kernel side loads each object with bpftool into a private bpffs mount (programs and maps
pinned there, nothing attached) and test-runs the pinned programs with BPF_PROG_TEST_RUN; the
user-space side is pybpf.load. Both get the same map updates and the same packets in the same
order; retval, data_out, ctx_out and the named maps' contents must agree.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from kernel_oracle import PACKETS, PROGS, SKB_CTX, KernelObject, user_entries

import pybpf
from pybpf.errors import InvalidArgumentError, TestRunError
from pybpf.kernel import map_update
from pybpf.platform.uapi_generated import BpfMapType

pytestmark = pytest.mark.kernel


DENY = {"deny_v4": [(struct.pack("<I", 24) + bytes([192, 168, 1, 0]), b"\1\0\0\0")]}
BACKENDS = {
    "backends": [
        (struct.pack("<I", 3), bytes([10, 1, 1, 5, 0xAA, 0xBB, 0xCC, 0xDD, 0xEE, 0xFF, 0, 0])),
        (struct.pack("<I", 7), bytes([10, 1, 1, 9, 1, 2, 3, 4, 5, 6, 0, 0])),
    ]
}
CASES = [
    ("socket_filter", "udp_only", None, {}),
    ("socket_filter", "udp_only", SKB_CTX, {}),
    ("tc_mark", "tc_mark", SKB_CTX, {}),
    ("xdp_firewall", "xdp_firewall", None, DENY),
    ("xdp_lb", "xdp_lb", None, BACKENDS),
    ("bpf2bpf", "count_len", SKB_CTX, {}),
    ("bpf2bpf", "count_scaled", SKB_CTX, {}),
    ("tail_calls", "dispatch", SKB_CTX, {}),
    ("tail_chain", "chain", SKB_CTX, {}),
    ("global_data", "global_filter", None, {}),
    ("loop_callback", "xdp_loop", None, {}),
]


@pytest.mark.parametrize(("name", "program", "ctx_in", "updates"), CASES,
                         ids=[f"{c[0]}-{c[1]}-{'ctx' if c[2] else 'noctx'}" for c in CASES])
def test_same_results_as_the_kernel(
    bpffs: Path, name: str, program: str, ctx_in: bytes | None, updates: dict[str, list[tuple[bytes, bytes]]]
) -> None:
    tag = f"{name}-{program}-{'ctx' if ctx_in else 'noctx'}"
    kernel = KernelObject(bpffs, name, tag)
    with pybpf.load(PROGS / f"{name}.o") as user:
        for map_name, items in updates.items():
            with kernel.map_fd(map_name) as fd:
                for key, value in items:
                    map_update(fd, key, value)
            for key, value in items:
                user.maps[map_name].update_raw(key, value)
        for number, packet in enumerate(PACKETS):
            try:
                k_retval, k_data, k_ctx = kernel.run(program, packet, ctx_in)
            except InvalidArgumentError:
                with pytest.raises(TestRunError):
                    user.programs[program].test_run(packet, ctx_in)
                continue
            result = user.programs[program].test_run(packet, ctx_in)
            assert result.retval == k_retval, f"packet {number}: retval"
            assert result.data_out == k_data, f"packet {number}: data_out"
            if ctx_in is not None:
                assert result.ctx_out == k_ctx, f"packet {number}: ctx_out"
        for map_name, found in user.maps.items():
            if map_name.startswith(".") or getattr(found, "type", None) is BpfMapType.PROG_ARRAY:
                continue  # libbpf renames global data maps; prog arrays hold fds
            assert user_entries(user, map_name) == kernel.entries(map_name, found.value_size), map_name
