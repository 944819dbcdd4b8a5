"""The real perf_event_open(2) and ioctl(2) through ctypes, without attaching anything.

A software task-clock counter on this test's own thread exercises the syscall, the attr
layout and the ENABLE/DISABLE ioctls; no probe, tracepoint, cgroup or BPF program is involved
(the house rules forbid attaching to those on this machine).
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Iterator

import pytest

from pybpf import errors
from pybpf.kernel.perf_event import (
    PerfEventAttr,
    PerfEventAttrFlag,
    PerfEventIoc,
    PerfType,
    perf_event_ioctl,
    perf_event_open,
    perf_event_syscall_number,
)

PERF_COUNT_SW_TASK_CLOCK = 1


def _counter_fd() -> int:
    try:
        perf_event_syscall_number()
    except errors.NotSupportedError as error:
        pytest.skip(str(error))
    attr = PerfEventAttr(type=PerfType.PERF_TYPE_SOFTWARE, config=PERF_COUNT_SW_TASK_CLOCK)
    attr.flags = int(PerfEventAttrFlag.disabled | PerfEventAttrFlag.exclude_kernel | PerfEventAttrFlag.exclude_hv)
    try:
        return perf_event_open(attr, pid=0, cpu=-1)
    except errors.BpfCommandError as error:
        if error.errno in {errno.EACCES, errno.EPERM, errno.ENOSYS, errno.ENOENT, errno.EOPNOTSUPP}:
            pytest.skip(f"perf_event_open not available here: {error}")
        raise


@pytest.fixture
def counter() -> Iterator[int]:
    fd = _counter_fd()
    yield fd
    os.close(fd)


def _read(fd: int) -> int:
    return int.from_bytes(os.read(fd, 8), sys.byteorder)


def _work() -> int:
    return sum(index * index for index in range(200_000))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="perf_event_open(2) is Linux-only")
def test_task_clock_counts_only_while_enabled(counter: int) -> None:
    _work()
    assert _read(counter) == 0, "created disabled"
    perf_event_ioctl(counter, PerfEventIoc.PERF_EVENT_IOC_ENABLE)
    _work()
    perf_event_ioctl(counter, PerfEventIoc.PERF_EVENT_IOC_DISABLE)
    counted = _read(counter)
    assert counted > 0
    _work()
    assert _read(counter) == counted, "no counting after DISABLE"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ioctl on /dev/null is a Linux check here")
def test_ioctl_errno_is_mapped() -> None:
    fd = os.open(os.devnull, os.O_RDONLY)
    try:
        with pytest.raises(errors.BpfCommandError) as caught:
            perf_event_ioctl(fd, PerfEventIoc.PERF_EVENT_IOC_ENABLE)
    finally:
        os.close(fd)
    assert caught.value.errno == errno.ENOTTY
    assert caught.value.command == "PERF_EVENT_IOC_ENABLE"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="perf_event_open(2) is Linux-only")
def test_bad_attr_size_is_e2big() -> None:
    os.close(_counter_fd())  # skips where perf events are unavailable
    attr = PerfEventAttr(type=PerfType.PERF_TYPE_SOFTWARE, config=PERF_COUNT_SW_TASK_CLOCK)
    attr.size = 3  # smaller than PERF_ATTR_SIZE_VER0: the kernel answers E2BIG
    with pytest.raises(errors.ArgumentTooBigError) as caught:
        perf_event_open(attr, pid=0, cpu=-1)
    assert caught.value.command == "perf_event_open"
