"""A kernel perf event array read through per-CPU perf rings, sample for sample as the runtime's.

perf_output.o's XDP program writes ``{magic, len}`` plus the first 16 packet bytes with
bpf_perf_event_output on the current CPU; both backends get the same packets and must deliver
the same samples (the kernel may run them on any CPU, so samples are compared as a multiset).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

import pybpf
from pybpf.kernel import available
from pybpf.kernel.perf_buffer import KernelPerfBuffer
from pybpf.runtime.maps import PerfBuffer

PROGS = Path(__file__).resolve().parents[1] / "progs"
PACKETS = [bytes(range(60)), bytes(range(100, 164)), bytes(range(14)) + bytes(50)]


@pytest.fixture(scope="module", autouse=True)
def kernel() -> None:
    ok, reason = available()
    if not ok:
        pytest.skip(f"bpf() unavailable: {reason}")


def test_perf_samples_match_the_runtime() -> None:
    path = PROGS / "perf_output.o"
    with pybpf.load(path) as user, pybpf.load(path, backend="kernel") as kernel:
        user_samples: list[bytes] = []
        kernel_samples: list[bytes] = []
        kernel_cpus: set[int] = set()
        user_buffer = PerfBuffer(user.maps["events"], lambda cpu, data: user_samples.append(data))

        def on_kernel_sample(cpu: int, data: bytes) -> None:
            kernel_samples.append(data)
            kernel_cpus.add(cpu)

        kernel_buffer = KernelPerfBuffer(kernel.maps["events"], on_kernel_sample)
        try:
            for packet in PACKETS * 2:
                assert kernel.program("perf_out").test_run(packet).retval == user.program("perf_out").test_run(
                    packet
                ).retval
                assert kernel.maps["out_ret"][0] == user.maps["out_ret"][0] == 0  # output succeeded
            assert user_buffer.poll() == len(PACKETS) * 2
            assert kernel_buffer.poll(1.0) == len(PACKETS) * 2
            assert Counter(kernel_samples) == Counter(user_samples)
            assert kernel_samples[0][:4] == (0xFEEDBEEF).to_bytes(4, "little")
            assert kernel_buffer.poll(0) == 0  # nothing is delivered twice
        finally:
            kernel_buffer.close()
        # Without a ring in the slot the helper fails, as in the runtime (ENOENT).
        kernel.program("perf_out").test_run(PACKETS[0])
        assert kernel.maps["out_ret"][0] != 0
