"""Reading a kernel BPF_MAP_TYPE_PERF_EVENT_ARRAY: per-CPU perf rings, as libbpf's ``perf_buffer``.

For each CPU a ``PERF_COUNT_SW_BPF_OUTPUT`` software event is opened (perf_event_open(2), pid -1,
that CPU: no program is attached to anything), its ring is mmap'ed (one metadata page, then a
power-of-two number of data pages) and its fd is stored in the map at the CPU's index, where
``bpf_perf_event_output`` finds it. Records are ``perf_event_header`` + body: a
``PERF_RECORD_SAMPLE`` carries ``u32 size`` and the raw data (padded so that size + data is a
multiple of 8), a ``PERF_RECORD_LOST`` the number of samples dropped on a full ring. The reader
copies records out (they may wrap around the ring's end) and advances ``data_tail``.

:class:`KernelPerfBuffer` takes the same callbacks as the runtime's ``PerfBuffer``.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno as errno_codes
import mmap
import os
import platform
import select
import struct
from collections.abc import Callable
from typing import Any

from pybpf.errors import BpfCommandError, MapInvalidArgumentError, NotSupportedError
from pybpf.kernel.fd import Fd
from pybpf.kernel.map_api import KernelMap, map_errno_error, possible_cpus
from pybpf.kernel.maps import map_delete, map_update
from pybpf.kernel.uapi import BpfMapType

PERF_TYPE_SOFTWARE = 1
PERF_COUNT_SW_BPF_OUTPUT = 10
PERF_SAMPLE_RAW = 1 << 10
PERF_FLAG_FD_CLOEXEC = 1 << 3
PERF_RECORD_LOST = 2
PERF_RECORD_SAMPLE = 9
PERF_ATTR_SIZE = 128  # PERF_ATTR_SIZE_VER7: every field we set is in the first 64 bytes

# perf_event_open(2) per architecture (arch/*/include/uapi/asm/unistd*.h).
_PERF_EVENT_OPEN = {"x86_64": 298, "amd64": 298, "aarch64": 241, "arm64": 241}

# struct perf_event_attr, up to bp_type: type, size, config, sample_period, sample_type,
# read_format, the flag bits (all 0: enabled, counting everyone), wakeup_events, bp_type.
_ATTR = struct.Struct("<IIQQQQQII")
# struct perf_event_mmap_page: data_head, data_tail, data_offset, data_size.
_DATA_HEAD_OFFSET = 1024
_U64 = struct.Struct("<Q")
_RECORD_HEADER = struct.Struct("<IHH")

SampleCallback = Callable[[int, bytes], Any]
"""``sample(cpu, data)`` for each sample."""
LostCallback = Callable[[int, int], Any]
"""``lost(cpu, count)`` when a CPU's ring dropped samples."""


def perf_event_open_output(cpu: int) -> Fd:
    """A BPF_OUTPUT software perf event on ``cpu``, owned by the returned Fd."""
    number = _PERF_EVENT_OPEN.get(platform.machine().lower())
    if number is None:
        raise NotSupportedError(f"perf_event_open(2) syscall number unknown for {platform.machine()!r}")
    attr = ctypes.create_string_buffer(PERF_ATTR_SIZE)
    _ATTR.pack_into(
        attr, 0, PERF_TYPE_SOFTWARE, PERF_ATTR_SIZE, PERF_COUNT_SW_BPF_OUTPUT, 1, PERF_SAMPLE_RAW, 0, 0, 1, 0
    )
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    result = int(libc.syscall(number, attr, -1, cpu, -1, PERF_FLAG_FD_CLOEXEC))
    if result < 0:
        code = ctypes.get_errno()
        raise BpfCommandError(
            f"perf_event_open(BPF_OUTPUT, cpu {cpu}) failed: {os.strerror(code)}", code, command="perf_event_open"
        )
    return Fd(result)


class PerfRing:
    """One CPU's mmap'ed perf ring."""

    def __init__(self, cpu: int, page_count: int) -> None:
        self.cpu = cpu
        self.fd = perf_event_open_output(cpu)
        page = mmap.PAGESIZE
        try:
            self._map = mmap.mmap(self.fd.fileno(), page * (1 + page_count), mmap.MAP_SHARED)
        except OSError:
            self.fd.close()
            raise
        offset, size = struct.unpack_from("<QQ", self._map, _DATA_HEAD_OFFSET + 16)
        # Kernels before 4.1 leave data_offset/data_size zero: the data starts at the next page.
        self._data_offset = offset or page
        self._data_size = size or page * page_count

    def _copy(self, position: int, length: int) -> bytes:
        start = position % self._data_size
        first = min(length, self._data_size - start)
        base = self._data_offset
        head = self._map[base + start : base + start + first]
        return head + self._map[base : base + length - first]

    def read(self, sample: SampleCallback, lost: LostCallback | None) -> int:
        """Hand every record to the callbacks; the number of samples."""
        head = _U64.unpack_from(self._map, _DATA_HEAD_OFFSET)[0]
        tail = _U64.unpack_from(self._map, _DATA_HEAD_OFFSET + 8)[0]
        count = 0
        while tail < head:
            record_type, _, size = _RECORD_HEADER.unpack(self._copy(tail, _RECORD_HEADER.size))
            if size < _RECORD_HEADER.size:
                break  # a torn header: never advance past what we cannot parse
            body = self._copy(tail + _RECORD_HEADER.size, size - _RECORD_HEADER.size)
            tail += size
            if record_type == PERF_RECORD_SAMPLE:
                raw_size = struct.unpack_from("<I", body)[0]
                sample(self.cpu, body[4 : 4 + raw_size])
                count += 1
            elif record_type == PERF_RECORD_LOST and lost is not None:
                lost(self.cpu, struct.unpack_from("<QQ", body)[1])
        _U64.pack_into(self._map, _DATA_HEAD_OFFSET + 8, tail)
        return count

    def close(self) -> None:
        self._map.close()
        self.fd.close()


class KernelPerfBuffer:
    """libbpf's ``perf_buffer`` on a kernel perf event array: a ring per CPU, read by callbacks."""

    def __init__(
        self,
        events: KernelMap,
        sample: SampleCallback,
        lost: LostCallback | None = None,
        page_count: int = 8,
    ) -> None:
        if events.type is not BpfMapType.PERF_EVENT_ARRAY:
            raise MapInvalidArgumentError(f"{events.label} is not a perf event array", errno_codes.EINVAL)
        if page_count <= 0 or page_count & (page_count - 1):
            raise MapInvalidArgumentError(f"page_count must be a power of two, not {page_count}", errno_codes.EINVAL)
        self.events = events
        self.sample = sample
        self.lost = lost
        self.rings: list[PerfRing] = []
        self._epoll = select.epoll()
        cpus = min(possible_cpus(), events.max_entries)
        try:
            for cpu in range(cpus):
                try:
                    ring = PerfRing(cpu, page_count)
                except BpfCommandError as error:
                    if error.errno == errno_codes.ENODEV:
                        continue  # a possible but offline CPU: libbpf skips it too
                    raise
                self.rings.append(ring)
                key = cpu.to_bytes(4, "little")
                try:
                    map_update(events.fd, key, ring.fd.fileno().to_bytes(4, "little"))
                except BpfCommandError as error:
                    raise map_errno_error(error, events.label) from error
                self._epoll.register(ring.fd.fileno(), select.EPOLLIN)
        except BaseException:
            self.close()
            raise

    def poll(self, timeout: float | None = 0) -> int:
        """Wait up to ``timeout`` seconds (None: forever) for samples, then deliver them all."""
        self._epoll.poll(-1 if timeout is None else timeout)
        return sum(ring.read(self.sample, self.lost) for ring in self.rings)

    def close(self) -> None:
        """Empty the map's slots and release the rings."""
        for ring in self.rings:
            # The map may be gone already; the slot dies with it then.
            with contextlib.suppress(BpfCommandError):
                map_delete(self.events.fd, ring.cpu.to_bytes(4, "little"))
            ring.close()
        self.rings = []
        self._epoll.close()
