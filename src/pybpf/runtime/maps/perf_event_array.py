"""BPF_MAP_TYPE_PERF_EVENT_ARRAY and a reader like libbpf's ``perf_buffer``.

Each slot holds a perf event ring (in the kernel, an fd of a ``PERF_COUNT_SW_BPF_OUTPUT`` event
opened on one CPU). ``bpf_perf_event_output`` appends a sample to the slot of the current CPU
(or the one the flags name); the sample is the data padded with zeros so that a u32 size plus
the data is a multiple of 8, as perf stores raw samples. A full ring loses the sample and counts
it, and the reader reports the count, as perf's ``PERF_RECORD_LOST`` does.

A buffer can move into memory shared with a reader in another process
(:meth:`PerfEventBuffer.move_storage`, used by pinning): then it is a byte ring like perf's
mmap'ed one, a :data:`SHARED_HEADER` (``u64 data_head`` written by the producer, ``u64
data_tail`` by the reader, ``u64 lost`` counted by the producer, ``u64 lost_seen`` by the
reader) followed by ``capacity`` bytes of samples, each a 16-byte header (``u32`` record size,
``u32`` data size, 8 reserved bytes) and the padded data, wrapping at the end. Every position
is one aligned 8-byte load or store (never ``struct`` with ``<``, which stores byte by byte and
lets the other process read a torn value); the producer publishes ``data_head`` after the
sample's bytes and the reader publishes ``data_tail`` after copying them out, perf's protocol.
"""

from __future__ import annotations

import errno as errno_codes
import struct
import threading
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
SHARED_HEADER_SIZE = 32
"""Bytes before a shared buffer's samples: data_head, data_tail, lost, lost_seen (u64 each)."""
_DATA_HEAD, _DATA_TAIL, _LOST, _LOST_SEEN = range(4)  # u64 word indexes in the shared header
_SAMPLE_HEADER = struct.Struct("<II8x")


def shared_buffer_size(capacity: int) -> int:
    """Bytes of shared memory a buffer of ``capacity`` sample bytes needs."""
    return SHARED_HEADER_SIZE + capacity


class PerfEventBuffer:
    """One CPU's perf ring: samples waiting to be read, and a count of lost ones."""

    def __init__(self, cpu: int, page_count: int = 8) -> None:
        self.cpu = cpu
        self.capacity = page_count * PAGE_SIZE
        self.used = 0
        self.samples: deque[bytes] = deque()
        self.lost = 0
        # Shared storage (move_storage): the header words and the sample bytes.
        self._words: memoryview | None = None
        self._ring: memoryview | None = None
        self._lock = threading.Lock()  # producers of one buffer (hooks may fire from threads)

    def move_storage(self, buffer: memoryview, *, copy: bool = True) -> None:
        """Keep the samples in ``buffer`` (:func:`shared_buffer_size` bytes, 8-byte aligned) from
        now on, e.g. a file shared with a reader process. With ``copy`` the pending samples and the
        lost count move there; without it the buffer is adopted as it is (a reader's side)."""
        if len(buffer) < shared_buffer_size(self.capacity):
            raise MapInvalidArgumentError(f"perf buffer of CPU {self.cpu}: shared storage too small")
        words = buffer[:SHARED_HEADER_SIZE].cast("Q")
        ring = buffer[SHARED_HEADER_SIZE : SHARED_HEADER_SIZE + self.capacity]
        with self._lock:
            pending, lost = list(self.samples), self.lost
            self.samples.clear()
            self.used = self.lost = 0
            self._words, self._ring = words, ring
            if copy:
                for index in range(4):
                    words[index] = 0
                for data in pending:
                    self._write_shared(data)
                words[_LOST] = lost

    def _copy_in(self, position: int, data: bytes) -> None:
        ring = self._ring
        if ring is None:
            return
        start = position % self.capacity
        first = min(len(data), self.capacity - start)
        ring[start : start + first] = data[:first]
        ring[: len(data) - first] = data[first:]

    def _copy_out(self, position: int, size: int) -> bytes:
        ring = self._ring
        if ring is None:
            return b""
        start = position % self.capacity
        first = min(size, self.capacity - start)
        return bytes(ring[start : start + first]) + bytes(ring[: size - first])

    def _write_shared(self, data: bytes) -> int:
        words = self._words
        if words is None:
            return -errno_codes.EINVAL
        padded_size = (len(data) + _RAW_HEADER + 7) // 8 * 8 - _RAW_HEADER
        cost = padded_size + _SAMPLE_OVERHEAD
        head = words[_DATA_HEAD]
        if head + cost - words[_DATA_TAIL] > self.capacity:
            words[_LOST] = words[_LOST] + 1
            return -errno_codes.ENOSPC
        self._copy_in(head, _SAMPLE_HEADER.pack(cost, padded_size) + data.ljust(padded_size, b"\0"))
        words[_DATA_HEAD] = head + cost  # after the sample's bytes: the reader never sees half of one
        return 0

    def write(self, data: bytes) -> int:
        if self._words is not None:
            with self._lock:
                return self._write_shared(data)
        padded_size = (len(data) + _RAW_HEADER + 7) // 8 * 8 - _RAW_HEADER
        cost = padded_size + _SAMPLE_OVERHEAD
        if self.used + cost > self.capacity:
            self.lost += 1
            return -errno_codes.ENOSPC
        self.samples.append(data.ljust(padded_size, b"\0"))
        self.used += cost
        return 0

    def drain(self) -> tuple[list[bytes], int]:
        words = self._words
        if words is not None:
            # The one reader: data_head first, then the samples it covers, then data_tail.
            head, tail = words[_DATA_HEAD], words[_DATA_TAIL]
            samples = []
            while tail < head:
                cost, size = _SAMPLE_HEADER.unpack(self._copy_out(tail, _SAMPLE_HEADER.size))
                samples.append(self._copy_out(tail + _SAMPLE_HEADER.size, size))
                tail += cost
            words[_DATA_TAIL] = tail
            lost_total = words[_LOST]
            lost = lost_total - words[_LOST_SEEN]
            words[_LOST_SEEN] = lost_total
            return samples, lost
        samples = list(self.samples)
        self.samples.clear()
        self.used = 0
        lost, self.lost = self.lost, 0
        return samples, lost

    def release(self) -> None:
        """Stop using shared storage (its views are released, so its mapping can close)."""
        for view in (self._words, self._ring):
            if view is not None:
                view.release()
        self._words = self._ring = None


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
