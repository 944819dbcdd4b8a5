"""The helper-coverage programs (tests/progs/*.c) run by the kernel and by pybpf on the same frames.

Each case loads one object both ways (bpftool into a private bpffs; pybpf.load), applies the
same map updates, runs :data:`PACKETS` through both in order and compares retval, data_out and
the maps: every element of the keyed maps, and queue/stack contents popped to empty.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from kernel_oracle import PACKETS, PROGS, KernelObject, KernelPerfRing, user_drain, user_entries

import pybpf
from pybpf.errors import InvalidArgumentError, TestRunError
from pybpf.kernel import map_update
from pybpf.runtime.maps import PerfBuffer

pytestmark = pytest.mark.kernel

LOOPBACK_IFINDEX = 1  # a devmap slot needs an existing device; nothing is attached to it


@dataclass(frozen=True, slots=True)
class Case:
    object: str
    program: str
    compare: tuple[str, ...] = ()  # keyed maps compared element by element
    drain: tuple[str, ...] = ()  # queue/stack maps compared in pop order
    updates: dict[str, list[tuple[bytes, bytes]]] = field(default_factory=dict)
    compare_data: bool = True

    @property
    def id(self) -> str:
        return f"{self.object}-{self.program}"


CASES = [
    Case("queue_stack", "queue_stack", compare=("qs_log",), drain=("fifo", "lifo")),
    Case("map_foreach", "count_lengths", compare=("lengths", "totals")),
    Case("perf_output", "perf_out", compare=("out_ret",)),  # no reader: -ENOENT both sides
    Case("redirect_devmap", "redirect_dev"),
    Case(
        "redirect_devmap",
        "redirect_dev",
        compare=("tx_ports",),
        updates={"tx_ports": [(struct.pack("<I", 1), struct.pack("<I", LOOPBACK_IFINDEX))]},
    ),
    Case("trace_printk", "trace_len", compare=("printed",)),
    Case("spin_lock", "locked_count", compare=("locked_stats",)),
    Case("map_in_map", "mim_count", compare=("inner_a", "inner_b", "inner_c")),
    # Random words differ by design; the frame past them and the verdicts must not.
    Case("prandom", "random_fill", compare_data=False),
]


@pytest.mark.parametrize("case", CASES, ids=[f"{c.id}-{index}" for index, c in enumerate(CASES)])
def test_helper_programs_match_the_kernel(bpffs: Path, case: Case) -> None:
    kernel = KernelObject(bpffs, case.object, f"{case.id}-{CASES.index(case)}")
    with pybpf.load(PROGS / f"{case.object}.o") as user:
        for map_name, items in case.updates.items():
            with kernel.map_fd(map_name) as fd:
                for key, value in items:
                    map_update(fd, key, value)
            for key, value in items:
                user.maps[map_name].update_raw(key, value)
        program = user.programs[case.program]
        for number, packet in enumerate(PACKETS):
            try:
                k_retval, k_data, _ = kernel.run(case.program, packet, None)
            except InvalidArgumentError:
                with pytest.raises(TestRunError):
                    program.test_run(packet)
                continue
            result = program.test_run(packet)
            assert result.retval == k_retval, f"packet {number}: retval"
            if case.compare_data:
                assert result.data_out == k_data, f"packet {number}: data_out"
            else:
                assert result.data_out[16:] == k_data[16:], f"packet {number}: data_out past the random words"
        for map_name in case.compare:
            value_size = user.maps[map_name].value_size
            assert user_entries(user, map_name) == kernel.entries(map_name, value_size), map_name
        for map_name in case.drain:
            value_size = user.maps[map_name].value_size
            assert user_drain(user, map_name) == kernel.drain(map_name, value_size), map_name


def test_perf_event_output_samples_match_the_kernels(bpffs: Path) -> None:
    # Pin this thread to CPU 0 so the kernel's BPF_F_CURRENT_CPU picks the ring opened there.
    cpu = 0
    kernel = KernelObject(bpffs, "perf_output", "perf-ring")
    ring = KernelPerfRing(cpu)
    affinity = os.sched_getaffinity(0)
    # The slot lives only as long as the map fd that filled it (perf_event_fd_array_release).
    events = kernel.map_fd("events")
    try:
        map_update(events, struct.pack("<I", cpu), struct.pack("<I", ring.fd))
        os.sched_setaffinity(0, {cpu})
        with pybpf.load(PROGS / "perf_output.o") as user:
            samples: list[bytes] = []
            delivered = 0
            reader = PerfBuffer(user.maps["events"], lambda _cpu, data: samples.append(bytes(data)))
            for number, packet in enumerate([*PACKETS, bytes(15)]):
                k_retval, _, _ = kernel.run("perf_out", packet, None)
                result = user.programs["perf_out"].test_run(packet, cpu=cpu)
                assert result.retval == k_retval, f"packet {number}: retval"
                assert user_entries(user, "out_ret") == kernel.entries("out_ret", 8), f"packet {number}: result"
                reader.poll()
                assert samples == ring.samples(), f"packet {number}: samples"
                delivered += len(samples)
                samples.clear()
            assert delivered == len(PACKETS)  # one sample per frame; the 15-byte one is -EFAULT
    finally:
        os.sched_setaffinity(0, affinity)
        events.close()
        ring.close()
