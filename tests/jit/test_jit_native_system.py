"""Native ``bpf_get_smp_processor_id`` and ``bpf_ktime_get_ns`` against the interpreter and the host clock.

The program stores the CPU and the time in an array and returns the CPU. Native code must give the
interpreter's CPU without calling Python, read CLOCK_MONOTONIC itself when the runtime's clock is
the host's, and still ask Python when a manual clock stands in (the answer is then the manual time).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from jit_build import build_object, trampoline_calls

from pybpf.platform.uapi_generated import HelperId
from pybpf.runtime.helpers.services import ManualClock
from pybpf.runtime.loader import load

SOURCE = r"""
#include "bpf_helpers.h"

static __u32 (*bpf_get_smp_processor_id)(void) = (void *)BPF_FUNC_get_smp_processor_id;

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} out SEC(".maps");

SEC("xdp")
int system(struct xdp_md *ctx)
{
	__u32 cpu_key = 0, time_key = 1;
	__u32 cpu = bpf_get_smp_processor_id();
	__u64 now = bpf_ktime_get_ns();
	__u64 *slot = bpf_map_lookup_elem(&out, &cpu_key);
	if (slot)
		*slot = cpu;
	slot = bpf_map_lookup_elem(&out, &time_key);
	if (slot)
		*slot = now;
	return cpu;
}
"""
PACKET = bytes(64)


@pytest.fixture(scope="module")
def system_object(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_object(SOURCE, tmp_path_factory.mktemp("native_system"))


@pytest.mark.parametrize("cpu", [0, 1])
def test_processor_id_is_the_runs_cpu_without_python(system_object: Path, cpu: int) -> None:
    with load(system_object, engine="interp") as reference, load(system_object, engine="jit") as native:
        for obj in (reference, native):
            obj.services.cpu = cpu
        expected = reference.program("system").test_run(PACKET).retval
        with trampoline_calls(HelperId.GET_SMP_PROCESSOR_ID) as calls:
            got = native.program("system").test_run(PACKET).retval
        stored = native.maps["out"].lookup(0)
    assert got == expected == cpu
    assert stored == cpu
    assert calls == []


def test_ktime_reads_the_host_monotonic_clock_natively(system_object: Path) -> None:
    with load(system_object, engine="jit") as native:
        program = native.program("system")
        with trampoline_calls(HelperId.KTIME_GET_NS) as calls:
            before = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
            program.test_run(PACKET)
            after = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        now = native.maps["out"].lookup(1)
    assert before <= now <= after
    assert calls == []


def test_a_manual_clock_is_still_read_in_python(system_object: Path) -> None:
    with load(system_object, engine="interp") as reference, load(system_object, engine="jit") as native:
        for obj in (reference, native):
            obj.services.clock = ManualClock(123_456_789_012)
        reference.program("system").test_run(PACKET)
        with trampoline_calls(HelperId.KTIME_GET_NS) as calls:
            native.program("system").test_run(PACKET)
        expected, got = reference.maps["out"].lookup(1), native.maps["out"].lookup(1)
    assert got == expected == 123_456_789_012
    assert len(calls) == 1
