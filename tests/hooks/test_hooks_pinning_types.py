"""Pinned queues, stacks, LPM tries and perf event arrays, used live from another process."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import pybpf
from pybpf.errors import MapFullError, MapKeyNotFoundError
from pybpf.hooks.pinning import open_pinned_map, pin_map, read_pin
from pybpf.platform.uapi_generated import BpfMapFlag, BpfMapType
from pybpf.runtime.maps import LpmTrieMap, MapDef, PerfEventArrayMap, QueueMap, StackMap, create_map
from pybpf.runtime.maps.perf_event_array import BPF_F_CURRENT_CPU
from pybpf.vm.memory import AddressSpace

SRC = Path(pybpf.__file__).resolve().parents[1]  # the pybpf under test, for the child processes


def python(code: str, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True, text=True, env=env, check=False, timeout=timeout,
    )


def u64(value: int) -> bytes:
    return struct.pack("<Q", value)


def test_queue_pushed_and_popped_from_both_processes(tmp_path: Path) -> None:
    queue = create_map(MapDef(BpfMapType.QUEUE, 0, 8, 4, 0, "work"), AddressSpace())
    assert isinstance(queue, QueueMap)
    queue.push(u64(1))
    queue.push(u64(2))
    path = pin_map(queue, "work", tmp_path)
    assert read_pin(path).meta["layout"] == "queue"
    child = f"""
        import struct
        from pybpf.hooks.pinning import open_pinned_map
        with open_pinned_map({str(path)!r}) as q:
            print(struct.unpack("<Q", q.peek())[0], struct.unpack("<Q", q.pop())[0], len(list(q.entries())))
            q.push(struct.pack("<Q", 3)); q.push(struct.pack("<Q", 4)); q.push(struct.pack("<Q", 5))
            try:
                q.push(struct.pack("<Q", 6))
            except Exception as error:
                print(type(error).__name__)
            q.push(struct.pack("<Q", 7), 2)  # BPF_EXIST: the oldest goes
    """
    result = python(child)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["1", "1", "1", "MapFullError"]
    # This process sees the other's pushes, in order, through the map API and the program side.
    assert queue.pop() == u64(3)
    out = memoryview(bytearray(8))
    assert queue.prog_pop(out) == 0 and bytes(out) == u64(4)
    assert [queue.pop(), queue.pop()] == [u64(5), u64(7)]
    with pytest.raises(MapKeyNotFoundError):
        queue.pop()


def test_stack_across_processes_is_last_in_first_out(tmp_path: Path) -> None:
    stack = create_map(MapDef(BpfMapType.STACK, 0, 4, 8, 0, "stack"), AddressSpace())
    assert isinstance(stack, StackMap)
    path = pin_map(stack, "stack", tmp_path)
    stack.push(struct.pack("<I", 10))
    result = python(f"""
        import struct
        from pybpf.hooks.pinning import open_pinned_map
        with open_pinned_map({str(path)!r}) as s:
            s.push(struct.pack("<I", 20))
            s.push(struct.pack("<I", 30))
            print(struct.unpack("<I", s.pop())[0])
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["30"]
    assert [stack.pop(), stack.pop()] == [struct.pack("<I", 20), struct.pack("<I", 10)]


def test_queue_concurrent_producer_process_loses_nothing(tmp_path: Path) -> None:
    # The other process pushes as fast as it can into a small queue while this one pops: every
    # value arrives once, in order (each operation holds the file lock).
    queue = create_map(MapDef(BpfMapType.QUEUE, 0, 8, 16, 0, "fifo"), AddressSpace())
    assert isinstance(queue, QueueMap)
    path = pin_map(queue, "fifo", tmp_path)
    count = 2000
    producer = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import struct, time
            from pybpf.errors import MapFullError
            from pybpf.hooks.pinning import open_pinned_map
            with open_pinned_map({str(path)!r}) as q:
                for n in range({count}):
                    while True:
                        try:
                            q.push(struct.pack("<Q", n))
                            break
                        except MapFullError:
                            time.sleep(0)
        """)],
        env={**os.environ, "PYTHONPATH": str(SRC)}, stderr=subprocess.PIPE, text=True,
    )
    received: list[int] = []
    try:
        while len(received) < count:
            try:
                received.append(struct.unpack("<Q", queue.pop())[0])
            except MapKeyNotFoundError:
                if producer.poll() not in (None, 0):
                    break
    finally:
        _, errors = producer.communicate(timeout=30)
    assert producer.returncode == 0, errors
    assert received == list(range(count))


def lpm_key(prefixlen: int, address: str) -> bytes:
    return struct.pack("<I", prefixlen) + bytes(int(part) for part in address.split("."))


def test_lpm_trie_read_and_updated_by_another_process(tmp_path: Path) -> None:
    trie = create_map(MapDef(BpfMapType.LPM_TRIE, 8, 8, 16, int(BpfMapFlag.NO_PREALLOC), "routes"), AddressSpace())
    assert isinstance(trie, LpmTrieMap)
    trie.update_raw(lpm_key(8, "10.0.0.0"), u64(1))
    trie.update_raw(lpm_key(16, "10.1.0.0"), u64(2))
    path = pin_map(trie, "routes", tmp_path)
    trie.update_raw(lpm_key(24, "10.1.2.0"), u64(3))  # after pinning: mirrored into the file too
    child = f"""
        import struct
        from pybpf.hooks.pinning import open_pinned_map
        def key(length, address):
            return struct.pack("<I", length) + bytes(int(p) for p in address.split("."))
        with open_pinned_map({str(path)!r}) as routes:
            print(sorted((k.hex(), struct.unpack("<Q", v)[0]) for k, v in routes.entries()))
            routes.update(key(16, "192.168.0.0"), struct.pack("<Q", 4))
            routes.update(key(8, "10.0.0.0"), struct.pack("<Q", 11))
            routes.delete(key(16, "10.1.0.0"))
    """
    result = python(child)
    assert result.returncode == 0, result.stderr
    before = [(lpm_key(8, "10.0.0.0"), 1), (lpm_key(16, "10.1.0.0"), 2), (lpm_key(24, "10.1.2.0"), 3)]
    assert result.stdout.strip() == str(sorted((key.hex(), value) for key, value in before))
    # The owner's trie (what its programs search) has the other process's changes.
    assert trie.lookup_raw(lpm_key(32, "192.168.7.7")) == u64(4)
    assert trie.lookup_raw(lpm_key(32, "10.1.9.9")) == u64(11)  # 10.1/16 is gone: 10/8 matches
    assert trie.lookup_raw(lpm_key(32, "10.1.2.9")) == u64(3)
    with open_pinned_map(path) as routes:
        assert dict(routes.entries()) == {
            lpm_key(8, "10.0.0.0"): u64(11),
            lpm_key(24, "10.1.2.0"): u64(3),
            lpm_key(16, "192.168.0.0"): u64(4),
        }
    trie.close()


def test_perf_event_array_samples_read_by_another_process(tmp_path: Path) -> None:
    events = create_map(MapDef(BpfMapType.PERF_EVENT_ARRAY, 4, 4, 2, 0, "events"), AddressSpace(), ncpus=2)
    assert isinstance(events, PerfEventArrayMap)
    path = pin_map(events, "events", tmp_path)
    assert events.output(b"first", BPF_F_CURRENT_CPU, cpu=0) == 0
    assert events.output(b"on cpu 1", BPF_F_CURRENT_CPU, cpu=1) == 0
    assert events.output(b"second", BPF_F_CURRENT_CPU, cpu=0) == 0
    reader = f"""
        from pybpf.hooks.pinning import open_pinned_map
        with open_pinned_map({str(path)!r}) as events:
            samples, lost = events.poll_perf(timeout=5)
            print(repr([(cpu, data.rstrip(b"\\0")) for cpu, data in samples]), lost)
            samples, lost = events.poll_perf(timeout=5)  # the producer filled CPU 0's ring meanwhile
            print(len(samples), lost)
    """
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(reader)],
        env={**os.environ, "PYTHONPATH": str(SRC)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert child.stdout is not None
    first = child.stdout.readline()
    assert first.strip() == "[(0, b'first'), (0, b'second'), (1, b'on cpu 1')] {}", child.communicate()[1]
    sample = bytes(100)
    results = [events.output(sample, BPF_F_CURRENT_CPU, cpu=0) for _ in range(500)]
    written = results.count(0)
    output, errors = child.communicate(timeout=30)
    assert child.returncode == 0, errors
    assert 0 < written < 500
    assert output.split() == [str(written), "{0:", f"{500 - written}}}"]


def test_queue_full_in_pinned_form_reports_e2big(tmp_path: Path) -> None:
    queue = create_map(MapDef(BpfMapType.QUEUE, 0, 4, 2, 0, "small"), AddressSpace())
    assert isinstance(queue, QueueMap)
    pin_map(queue, "small", tmp_path)
    queue.push(bytes(4))
    queue.push(bytes(4))
    with pytest.raises(MapFullError):
        queue.push(bytes(4))
    assert queue.prog_push(bytes(4), 0) == -MapFullError.ERRNO
