"""A pinned ring buffer consumed by another process while a tracepoint program produces into it."""

from __future__ import annotations

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
from pybpf.hooks.link import HookRuntime
from pybpf.hooks.pinning import open_pinned_map, pin_map
from pybpf.hooks.tracepoints import Tracepoint, attach_tracepoint

PROGS = Path(__file__).resolve().parents[1] / "progs"
SRC = Path(__file__).resolve().parents[2] / "src"
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


@pytest.mark.skipif(
    os.environ.get("CI") == "true",
    reason="flaky under a loaded CI machine: the consumer process died once in five full-suite runs (cause not yet "
    "known; its stderr is now captured) — run locally until that race is found",
)
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
        ring = obj.maps["requests"]
        deadline = time.monotonic() + 60
        for n in range(2, 2001):
            while ring.producer_pos - ring.consumer_pos > ring.size - 256 and time.monotonic() < deadline:
                time.sleep(0.001)
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
