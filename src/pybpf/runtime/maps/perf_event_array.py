"""BPF_MAP_TYPE_PERF_EVENT_ARRAY and a reader like libbpf's ``perf_buffer``.

Each slot holds a perf event ring (in the kernel, an fd of a ``PERF_COUNT_SW_BPF_OUTPUT`` event
opened on one CPU). ``bpf_perf_event_output`` appends a sample to the slot of the current CPU
(or the one the flags name); the sample is the data padded with zeros so that a u32 size plus
the data is a multiple of 8, as perf stores raw samples. A full ring loses the sample and counts
it, and the reader reports the count, as perf's ``PERF_RECORD_LOST`` does.
"""

from __future__ import annotations

import errno as errno_codes
from collections import deque
from collections.abc import Callable
from typing import Any, ClassVar

from pybpf.errors import MapInvalidArgumentError
from pybpf.platform.uapi_generated import BpfMapType
from pybpf.runtime.maps.fd_array import FdArrayMap

BPF_F_INDEX_MASK = 0xFFFFFFFF
BPF_F_CURRENT_CPU = BPF_F_INDEX_MASK
BPF_F_CTXLEN_MASK = 0xFFFFF << 32
PAGE_SIZE = 4096
_RAW_HEADER = 4  # u32 size before the raw data
_SAMPLE_OVERHEAD = 16  # perf_event_header + u32 size, rounded: what a sample costs in the ring


class PerfEventBuffer:
    """One CPU's perf ring: samples waiting to be read, and a count of lost ones."""

    def __init__(self, cpu: int, page_count: int = 8) -> None:
        self.cpu = cpu
        self.capacity = page_count * PAGE_SIZE
        self.used = 0
        self.samples: deque[bytes] = deque()
        self.lost = 0

    def write(self, data: bytes) -> int:
        padded_size = (len(data) + _RAW_HEADER + 7) // 8 * 8 - _RAW_HEADER
        cost = padded_size + _SAMPLE_OVERHEAD
        if self.used + cost > self.capacity:
            self.lost += 1
            return -errno_codes.ENOSPC
        self.samples.append(data.ljust(padded_size, b"\0"))
        self.used += cost
        return 0

    def drain(self) -> tuple[list[bytes], int]:
        samples = list(self.samples)
        self.samples.clear()
        self.used = 0
        lost, self.lost = self.lost, 0
        return samples, lost


class PerfEventArrayMap(FdArrayMap):
    """Slots of per-CPU perf rings, written by bpf_perf_event_output."""

    MAP_TYPES: ClassVar[tuple[BpfMapType, ...]] = (BpfMapType.PERF_EVENT_ARRAY,)

    def check_object(self, value: object) -> None:
        if not isinstance(value, PerfEventBuffer):
            raise MapInvalidArgumentError(f"{self.label}: slots hold PerfEventBuffer objects, not {value!r}")

    def open_buffers(self, page_count: int = 8) -> list[PerfEventBuffer]:
        """Install one buffer per CPU at the CPU's index (what libbpf's perf_buffer__new does)."""
        buffers = []
        for cpu in range(min(self.ncpus, self.max_entries)):
            buffer = PerfEventBuffer(cpu, page_count)
            self.update(cpu, buffer)
            buffers.append(buffer)
        return buffers

    def output(self, data: bytes, flags: int, cpu: int = 0) -> int:
        """bpf_perf_event_output: 0 or -errno (EINVAL flags, E2BIG index, ENOENT empty slot,
        EOPNOTSUPP event of another CPU, ENOSPC ring full)."""
        if flags & ~(BPF_F_INDEX_MASK | BPF_F_CTXLEN_MASK):
            return -errno_codes.EINVAL
        index = flags & BPF_F_INDEX_MASK
        if index == BPF_F_CURRENT_CPU:
            index = cpu
        if index >= self.max_entries:
            return -errno_codes.E2BIG
        buffer = self._objects[index]
        if buffer is None:
            return -errno_codes.ENOENT
        if not isinstance(buffer, PerfEventBuffer) or buffer.cpu != cpu:
            return -errno_codes.EOPNOTSUPP
        return buffer.write(data)


SampleCallback = Callable[[int, bytes], Any]
LostCallback = Callable[[int, int], Any]


class PerfBuffer:
    """libbpf's ``perf_buffer``: per-CPU rings on a perf event array, read by callbacks."""

    def __init__(
        self,
        events: PerfEventArrayMap,
        sample: SampleCallback,
        lost: LostCallback | None = None,
        page_count: int = 8,
    ) -> None:
        self.events = events
        self.sample = sample
        self.lost = lost
        self.buffers = events.open_buffers(page_count)

    def poll(self) -> int:
        """Deliver every pending sample (CPU by CPU, in order) and lost counts; the number of samples."""
        count = 0
        for buffer in self.buffers:
            samples, lost = buffer.drain()
            if lost and self.lost is not None:
                self.lost(buffer.cpu, lost)
            for data in samples:
                self.sample(buffer.cpu, data)
                count += 1
        return count
