"""Dynptr helpers run in user space (interpreter and JIT) and in the kernel: the same results.

tests/progs/dynptr.c records every dynptr helper's return value in its ``results`` map; each
program is test-run on the same packets by both sides, and the return values, the maps and the
ring buffer records must agree. The user ring buffer program drains samples user space pushed
(``push`` on the runtime's map and on the kernel map alike).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

import pytest
from dynptr_maps import plain_value, records_of, results_of
from kernel_oracle import PACKETS, PROGS, loaded_in_kernel

import pybpf
from pybpf.errors import MapErrnoError
from pybpf.kernel.object import KernelObject
from pybpf.kernel.probe import available
from pybpf.runtime.maps import UserRingBufMap
from pybpf.runtime.object import Object
from pybpf.runtime.program import ENGINES, Engine

OBJECT = PROGS / "dynptr.o"
_KERNEL, _REASON = available()
kernel_only = pytest.mark.skipif(not _KERNEL, reason=_REASON or "bpf() unavailable")

# Samples for the drain: u64 values (low word summed through a slice, high word through a
# read), one too short for an 8-byte read, and 99, which makes the callback stop the drain.
SAMPLES = [struct.pack("<Q", 1 | 5 << 32), struct.pack("<Q", 7), b"\x01\x02", struct.pack("<Q", 3 << 32),
           struct.pack("<Q", 99), struct.pack("<Q", 1000)]



@pytest.fixture
def kernel() -> Iterator[KernelObject]:
    yield from loaded_in_kernel(OBJECT)


def _run_all(obj: Object | KernelObject, program: str, engine: Engine | None) -> list[tuple[int, list[int]]]:
    outcomes = []
    for packet in PACKETS:
        if isinstance(obj, Object):
            retval = obj.program(program).test_run(packet, engine=engine).retval
        else:
            retval = obj.program(program).test_run(packet).retval
        outcomes.append((retval, results_of(obj)))
    return outcomes


@pytest.mark.parametrize("engine", ENGINES)
def test_local_dynptr_reads_writes_and_slices(engine: Engine) -> None:
    with pybpf.load(OBJECT) as user:
        packet = PACKETS[0]
        result = user.program("dynptr_mem").test_run(packet, engine=engine)
        results = results_of(user)
        value = plain_value(next(iter(user.map_entries("scratch"))).value)
    einval, e2big = -22, -7
    assert results[:11] == [0, einval, einval, 0, e2big, einval, 0, e2big, 1, 0, 0]
    assert value[4:20] == packet[:16]  # dynptr_write at offset 4
    first, second = struct.unpack_from("<QQ", value, 8)  # dynptr_read of 16 bytes at offset 8
    assert struct.unpack_from("<Q", value, 32)[0] == (first + second) & (1 << 64) - 1  # through the slice
    assert result.retval == (1 if first & 1 else 2)


@pytest.mark.parametrize("engine", ENGINES)
def test_ringbuf_dynptr_records_and_failed_reservations(engine: Engine) -> None:
    with pybpf.load(OBJECT) as user:
        short, long = PACKETS[0], PACKETS[-1]
        user.program("dynptr_ringbuf").test_run(short, engine=engine)
        assert results_of(user)[:4] == [0, -7, -22, -22]
        user.program("dynptr_ringbuf").test_run(long, engine=engine)  # > 100 bytes: discarded
        records = records_of(user)
    assert len(records) == 1
    length, ifindex = struct.unpack_from("<II", records[0])
    assert (length, ifindex) == (len(short), 1)
    assert records[0][8:20] == short[:12]
    assert struct.unpack_from("<I", records[0], 20)[0] == 0xFEEDBEEF


@pytest.mark.parametrize("engine", ENGINES)
def test_user_ringbuf_drain_hands_each_sample_to_the_callback(engine: Engine) -> None:
    with pybpf.load(OBJECT) as user:
        ring = user.maps["requests"]
        assert isinstance(ring, UserRingBufMap)
        for sample in SAMPLES:
            ring.push(sample)
        user.program("drain").test_run(PACKETS[0], engine=engine)
        # 5 handed over (the callback stopped at 99, the short one could not be read).
        assert results_of(user)[:4] == [5, 1 + 5 + 7 + 3 + 99, 5, 1]
        user.program("drain").test_run(PACKETS[0], engine=engine)
        assert results_of(user)[:3] == [1, 1000, 1]
        user.program("drain_bad_flags").test_run(PACKETS[0], engine=engine)
        assert results_of(user)[4] == -22


def test_user_ringbuf_push_refuses_what_cannot_fit() -> None:
    with pybpf.load(OBJECT) as user:
        ring = user.maps["requests"]
        assert isinstance(ring, UserRingBufMap)
        with pytest.raises(MapErrnoError):
            ring.push(bytes(4096))
        sample = ring.reserve(8)
        ring.discard(sample)
        ring.push(struct.pack("<Q", 2 << 32))
        user.program("drain").test_run(PACKETS[0])
        assert results_of(user)[:3] == [1, 2, 1]  # the discarded sample is skipped, not counted


@pytest.mark.kernel
@kernel_only
@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("program", ["dynptr_mem", "dynptr_ringbuf"])
def test_same_results_as_the_kernel(kernel: KernelObject, program: str, engine: Engine) -> None:
    with pybpf.load(OBJECT) as user:
        assert _run_all(user, program, engine) == _run_all(kernel, program, None)
        assert [plain_value(e.value) for e in user.map_entries("scratch")] == \
            [plain_value(e.value) for e in kernel.map_entries("scratch")]
        assert records_of(user) == records_of(kernel)


@pytest.mark.kernel
@kernel_only
@pytest.mark.parametrize("engine", ENGINES)
def test_drain_same_results_as_the_kernel(kernel: KernelObject, engine: Engine) -> None:
    with pybpf.load(OBJECT) as user:
        for sample in SAMPLES:
            user.maps["requests"].push(sample)
            kernel.maps["requests"].push(sample)
        assert _run_all(user, "drain", engine)[:2] == _run_all(kernel, "drain", None)[:2]
        assert _run_all(user, "drain_bad_flags", engine)[:1] == _run_all(kernel, "drain_bad_flags", None)[:1]
