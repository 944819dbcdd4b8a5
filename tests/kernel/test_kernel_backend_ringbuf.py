"""A kernel ring buffer read through mmap/epoll, record for record as the runtime's ring buffer.

The program is built at test time (skipped without clang): a socket filter that writes one record
``{len, mark}`` per run with bpf_ringbuf_output and a second, discarded one by reserve/discard.
"""

from __future__ import annotations

import platform
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

import pybpf
from pybpf.kernel import available
from pybpf.kernel.object import KernelObject
from pybpf.runtime.object import Object

PROGS = Path(__file__).resolve().parents[1] / "progs"
ETH_HLEN = 14  # a socket filter's skb->len starts after the Ethernet header the test run pulls
CLANG = shutil.which("clang-19") or shutil.which("clang")
SOURCE = r"""
#include "bpf_helpers.h"

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} records SEC(".maps");

static void *(*reserve)(void *ringbuf, __u64 size, __u64 flags) = (void *)131;
static void (*discard)(void *data, __u64 flags) = (void *)133;

SEC("socket")
int emit(struct __sk_buff *skb)
{
	__u32 record[2] = { skb->len, 0x5a5a };
	__u32 *dropped;

	bpf_ringbuf_output(&records, record, sizeof(record), 0);
	dropped = reserve(&records, 16, 0);
	if (dropped)
		discard(dropped, 0);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
"""


@pytest.fixture(scope="module")
def ringbuf_object(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ok, reason = available()
    if not ok:
        pytest.skip(f"bpf() unavailable: {reason}")
    if CLANG is None:
        pytest.skip("clang is not installed")
    directory = tmp_path_factory.mktemp("ringbuf")
    (directory / "emit.c").write_text(SOURCE)
    arch_include = f"/usr/include/{platform.machine()}-linux-gnu"  # Debian keeps <asm/types.h> there
    subprocess.run(
        [CLANG, "-O2", "-g", "-target", "bpf", "-I", str(PROGS), "-I", arch_include, "-c", "emit.c", "-o", "emit.o"],
        cwd=directory,
        check=True,
        capture_output=True,
    )
    return directory / "emit.o"


def _records(obj: Object | KernelObject, runs: list[int]) -> list[tuple[int, int]]:
    program = obj.program("emit")
    for size in runs:
        program.test_run(bytes(size))
    seen: list[bytes] = []
    count = obj.maps["records"].consume(seen.append)
    assert count == len(seen)
    return [struct.unpack("<II", record) for record in seen]


def test_kernel_ring_buffer_matches_the_runtime(ringbuf_object: Path) -> None:
    runs = [60, 61, 200]
    with pybpf.load(ringbuf_object) as user, pybpf.load(ringbuf_object, backend="kernel") as kernel:
        expected = [(size - ETH_HLEN, 0x5A5A) for size in runs]
        assert _records(kernel, runs) == expected
        assert _records(user, runs) == expected
        # Everything was consumed: nothing is handed over twice.
        assert kernel.maps["records"].consume(lambda record: None) == 0


def test_wait_and_wrap_around(ringbuf_object: Path) -> None:
    with pybpf.load(ringbuf_object, backend="kernel") as kernel:
        ring = kernel.maps["records"]
        assert not ring.wait(0)
        total = 0
        # 16-byte records plus discarded 24-byte ones: many laps of the 4 KiB ring.
        for lap in range(30):
            for _ in range(20):
                kernel.program("emit").test_run(bytes(64 + lap))
            assert ring.wait(0)
            records: list[bytes] = []
            total += ring.consume(records.append)
            assert [struct.unpack_from("<I", record)[0] for record in records] == [64 + lap - ETH_HLEN] * 20
        assert total == 600
        assert ring.ring_reader().available() == 0
