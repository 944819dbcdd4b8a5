"""A pinned ring buffer consumed by another process while a tracepoint program produces into it."""

from __future__ import annotations

import ctypes
import json
import os
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import pybpf
from pybpf.errors import MapInvalidArgumentError
from pybpf.hooks.link import HookRuntime
from pybpf.hooks.pinning import open_pinned_map, pin_map
from pybpf.hooks.tracepoints import Tracepoint, attach_tracepoint
from pybpf.platform.uapi_generated import BpfMapType
from pybpf.runtime.maps import MapDef, RingBufMap
from pybpf.vm.memory import AddressSpace

PROGS = Path(__file__).resolve().parents[1] / "progs"
SRC = Path(pybpf.__file__).resolve().parents[1]  # the pybpf under test, for the child processes
EVENT = struct.Struct("<IIQII32s")
FIELDS = [("id", "u32"), ("status", "u16"), ("path", "char[32]"), ("bytes", "u64")]

CONSUMER = """
    import json, struct, sys
    from pybpf.hooks.pinning import open_pinned_map
    wanted = int(sys.argv[2])
    seen = []
    with open_pinned_map(sys.argv[1]) as ring:
        print("ready", flush=True)
        while len(seen) < wanted:
            records = ring.poll(timeout=20)
            if not records:
                break
            seen.extend(struct.unpack_from("<I", record)[0] for record in records)
    print(json.dumps(seen), flush=True)
"""


def test_another_process_consumes_the_ring_live(tmp_path: Path) -> None:
    runtime = HookRuntime()
    tp = Tracepoint("app", "request", FIELDS, runtime=runtime)
    with pybpf.load(PROGS / "hooks_tracepoint.o") as obj:
        path = pin_map(obj.maps["requests"], "requests", tmp_path)
        link = attach_tracepoint(obj.program("on_request"), runtime=runtime)
        tp.fire(id=1, status=200, path="/before", bytes=1)  # produced before the consumer starts
        consumer = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(CONSUMER), str(path), "2000"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(SRC)},
        )
        assert consumer.stdout is not None
        assert consumer.stdout.readline().strip() == "ready"
        # 2000 records of 64 bytes do not fit the 64 KiB ring at once: the producer only gets
        # room back because the other process consumes (and publishes its consumer position).
        # It fires as soon as one record fits, so the ring stays full to the byte: the consumer's
        # position and the bytes it is still copying out are reused at once.
        ring = obj.maps["requests"]
        record = 8 + EVENT.size
        deadline = time.monotonic() + 60
        for n in range(2, 2001):
            while ring.producer_pos + record - ring.consumer_pos > ring.size - 1:
                if time.monotonic() > deadline:
                    pytest.fail(f"the consumer stopped freeing room at record {n}")
                time.sleep(0.0002)
            tp.fire(id=n, status=200, path="/live", bytes=n)
        output, errors = consumer.communicate(timeout=60)
        assert consumer.returncode == 0 and output.strip(), f"consumer failed: {errors}"
        ids = json.loads(output.strip().splitlines()[-1])
        assert ids == list(range(1, 2001))  # every record, in order, none lost
        assert link.errors == 0
        link.detach()


def test_records_left_in_a_pinned_ring_survive_the_producer(tmp_path: Path) -> None:
    producer = f"""
        import pybpf
        from pybpf.hooks.link import HookRuntime
        from pybpf.hooks.pinning import pin_map
        from pybpf.hooks.tracepoints import Tracepoint, attach_tracepoint
        rt = HookRuntime()
        tp = Tracepoint("app", "request", {FIELDS!r}, runtime=rt)
        obj = pybpf.load({str(PROGS / "hooks_tracepoint.o")!r})
        pin_map(obj.maps["requests"], "ring", {str(tmp_path)!r})
        attach_tracepoint(obj.program("on_request"), runtime=rt)
        for n in range(5):
            tp.fire(id=n, status=200 + n, path=f"/p{{n}}", bytes=n)
    """
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(producer)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(SRC)},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    with open_pinned_map("ring", tmp_path) as ring:
        records = [EVENT.unpack(record[: EVENT.size]) for record in ring.poll(timeout=0)]
        assert [(r[0], r[1], r[5].rstrip(b"\0")) for r in records] == [
            (n, 200 + n, f"/p{n}".encode()) for n in range(5)
        ]
        assert ring.poll(timeout=0) == []  # consumed
        assert list(ring.entries()) == []


STRESS_CONSUMER = """
    import struct, sys, time
    from pybpf.hooks.pinning import open_pinned_map
    wanted, expect, bad = int(sys.argv[2]), 0, []
    def check(record):
        global expect
        size = 8 + (expect % 5) * 24
        if len(record) != size or record != struct.pack("<Q", expect) + bytes([expect & 0xFF]) * (size - 8):
            bad.append(expect)
        expect += 1
    with open_pinned_map(sys.argv[1]) as ring:
        print("ready", flush=True)
        deadline = time.monotonic() + 30
        while expect < wanted and time.monotonic() < deadline:
            ring.ring.consume(check)
    print(expect, len(bad), bad[:5], flush=True)
"""


def test_a_full_ring_shared_with_a_spinning_consumer_loses_and_tears_nothing(tmp_path: Path) -> None:
    # Both sides spin on a small ring that is full all the time, records of varying sizes that
    # wrap: a torn position or header word, or a consumer position published before the record
    # is copied out, shows up here as a record of the wrong size or contents (it did, before).
    ring = RingBufMap(MapDef(BpfMapType.RINGBUF, 0, 0, 4096, 0, "stress"), AddressSpace())
    path = pin_map(ring, "stress", tmp_path)
    wanted = 6000
    consumer = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(STRESS_CONSUMER), str(path), str(wanted)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(SRC)},
    )
    assert consumer.stdout is not None
    assert consumer.stdout.readline().strip() == "ready"
    deadline = time.monotonic() + 30
    for n in range(wanted):
        size = 8 + (n % 5) * 24
        data = struct.pack("<Q", n) + bytes([n & 0xFF]) * (size - 8)
        while ring.output(data) != 0:
            if time.monotonic() > deadline:
                consumer.kill()
                pytest.fail(f"the consumer stopped freeing room at record {n}: {consumer.communicate()}")
    output, errors = consumer.communicate(timeout=40)
    assert consumer.returncode == 0, errors
    assert output.split(maxsplit=2)[:2] == [str(wanted), "0"], output
    assert ring.producer_pos == ring.consumer_pos  # everything consumed, seen from the producer


def test_ring_storage_must_allow_word_stores() -> None:
    # Positions and headers are single aligned word accesses; storage that cannot give that is refused.
    ring = RingBufMap(MapDef(BpfMapType.RINGBUF, 0, 0, 4096, 0, "aligned"), AddressSpace())
    backing = bytearray(2 * 4096 + 16 + 8)
    view = memoryview(backing)
    aligned = 8 - ctypes.addressof(ctypes.c_char.from_buffer(backing)) % 8
    with pytest.raises(MapInvalidArgumentError, match="aligned"):
        ring.move_storage(view[aligned + 1 : aligned + 1 + 2 * 4096], view[:16])
    ring.output(b"kept")
    ring.move_storage(view[aligned % 8 : aligned % 8 + 2 * 4096], memoryview(bytearray(16)))
    assert ring.query(0) == 16 and [bytes(record) for record in _drain(ring)] == [b"kept"]


def _drain(ring: RingBufMap) -> list[bytes]:
    records: list[bytes] = []
    ring.consume(records.append)
    return records
