"""Native bpf_ringbuf_reserve/submit/discard/output against the interpreter, and across processes.

A raw tracepoint program reserves a record (with the reserve flags of ``args[3]``), fills it and
submits or discards it (``args[0]`` bit 0) with the commit flags of ``args[1]``, then outputs a
second record with the flags of ``args[2]``; it stores what output returned. On a small ring that
fills up, every step's verdicts, the ring's bytes, positions and wake-up count must be the
interpreter's, with no Python call on the native path; a consumer in another process reading a
pinned ring must receive every record native code produced.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any, Literal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jit_build import build_object, trampoline_calls

import pybpf
from pybpf.hooks.pinning import pin_map
from pybpf.platform.uapi_generated import HelperId
from pybpf.runtime.helpers.services import RunState
from pybpf.runtime.loader import load
from pybpf.runtime.maps.ringbuf import RingBufferConsumer, RingBufMap
from pybpf.runtime.object import Object
from pybpf.runtime.program import Engine
from pybpf.vm import Region, RegionKind
from pybpf.vm.jit import JitProgram

SOURCE = r"""
#include "bpf_helpers.h"

static void (*bpf_ringbuf_discard)(void *data, __u64 flags) = (void *)BPF_FUNC_ringbuf_discard;

struct record {
	__u64 mode;
	__u64 value;
	__u8 fill[24];
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} ring SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, long);
} output_rc SEC(".maps");

SEC("raw_tracepoint/sys_enter")
int produce(struct bpf_raw_tracepoint_args *ctx)
{
	__u64 mode = ctx->args[0], commit_flags = ctx->args[1], output_flags = ctx->args[2];
	__u64 data[3] = { mode ^ 0xabcdef, mode * 3, ~mode };
	__u32 zero = 0;
	long *rc = bpf_map_lookup_elem(&output_rc, &zero);
	struct record *record = bpf_ringbuf_reserve(&ring, sizeof(*record), ctx->args[3]);
	int reserved = record != 0;

	if (record) {
		record->mode = mode;
		record->value = mode << 8;
		__builtin_memset(record->fill, mode & 0xff, sizeof(record->fill));
		if (mode & 1)
			bpf_ringbuf_discard(record, commit_flags);
		else
			bpf_ringbuf_submit(record, commit_flags);
	}
	if (rc)
		*rc = bpf_ringbuf_output(&ring, data, sizeof(data), output_flags);
	return reserved;
}
"""
RING_HELPERS = (HelperId.RINGBUF_RESERVE, HelperId.RINGBUF_SUBMIT, HelperId.RINGBUF_DISCARD, HelperId.RINGBUF_OUTPUT)
FLAGS = st.sampled_from([0, 1, 2, 3, 4])  # NO_WAKEUP, FORCE_WAKEUP, both, and an unknown bit
STEP = st.tuples(st.integers(0, 255), FLAGS, FLAGS, st.sampled_from([0, 0, 0, 1]), st.booleans())


@pytest.fixture(scope="module")
def ring_object(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_object(SOURCE, tmp_path_factory.mktemp("native_ringbuf"))


Step = tuple[int, int, int, int, bool]


def _observe(obj: Object, engine: Engine, step: Step, records: list[bytes]) -> tuple[object, ...]:
    mode, commit_flags, output_flags, reserve_flags, consume = step
    ctx = struct.pack("<4Q", mode, commit_flags, output_flags, reserve_flags)
    retval = obj.program("produce").test_run(ctx_in=ctx, engine=engine).retval
    ring = obj.maps["ring"]
    assert isinstance(ring, RingBufMap)
    output = struct.unpack("<q", obj.maps["output_rc"].lookup_raw(bytes(4)))[0]
    if consume:
        ring.consume(records.append)
    return retval, output, ring.producer_pos, ring.consumer_pos, ring.wakeups, bytes(ring.region.view)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(STEP, min_size=1, max_size=80))
def test_ring_helpers_match_the_interpreter_without_python(ring_object: Path, steps: list[Step]) -> None:
    with load(ring_object) as reference, load(ring_object) as native:
        expected_records: list[bytes] = []
        got_records: list[bytes] = []
        for step in steps:
            expected = _observe(reference, "interp", step, expected_records)
            with trampoline_calls(HelperId.RINGBUF_RESERVE) as reserve, trampoline_calls(
                HelperId.RINGBUF_SUBMIT
            ) as submit, trampoline_calls(HelperId.RINGBUF_DISCARD) as discard, trampoline_calls(
                HelperId.RINGBUF_OUTPUT
            ) as output:
                got = _observe(native, "jit", step, got_records)
            assert got[:5] == expected[:5], step
            assert got[5] == expected[5]  # the ring's bytes: headers, records, discarded ones
            assert reserve == submit == discard == output == []
        assert got_records == expected_records


def test_a_full_ring_refuses_and_frees_room_like_the_interpreter(ring_object: Path) -> None:
    """Fill the 4 KiB ring without consuming: reserve returns NULL and output -EAGAIN at the same run."""
    with load(ring_object) as reference, load(ring_object) as native:
        outcomes = {}
        engines: tuple[tuple[Literal["interp", "jit"], Any], ...] = (("interp", reference), ("jit", native))
        for engine, obj in engines:
            ctx = struct.pack("<4Q", 2, 0, 0, 0)
            outcomes[engine] = [
                (obj.program("produce").test_run(ctx_in=ctx, engine=engine).retval, obj.maps["ring"].producer_pos)
                for _ in range(60)
            ]
            records: list[bytes] = []
            consumer = RingBufferConsumer()
            consumer.add(obj.maps["ring"], records.append)
            outcomes[engine].append((consumer.poll(), len(records)))
    assert outcomes["jit"] == outcomes["interp"]
    assert (0, outcomes["jit"][-2][1]) in outcomes["jit"]  # it did fill: some reservation failed


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
            seen.extend(struct.unpack_from("<Q", record)[0] for record in records)
    print(json.dumps(seen), flush=True)
"""


def test_a_consumer_in_another_process_receives_native_records(ring_object: Path, tmp_path: Path) -> None:
    src = Path(pybpf.__file__).resolve().parents[1]
    wanted = 600  # 2 records a run (the output's 24 bytes and a 40-byte submitted record): more than the ring holds
    with load(ring_object) as obj:
        ring: RingBufMap = obj.maps["ring"]
        path = pin_map(ring, "ring", tmp_path)
        consumer = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(CONSUMER), str(path), str(wanted)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(src)},
        )
        assert consumer.stdout is not None
        assert consumer.stdout.readline().strip() == "ready"
        program = obj.program("produce")
        deadline = time.monotonic() + 60
        with trampoline_calls(HelperId.RINGBUF_RESERVE) as reserve, trampoline_calls(HelperId.RINGBUF_OUTPUT) as out:
            for n in range(0, wanted, 2):
                while ring.producer_pos + 72 - ring.consumer_pos > ring.size - 1:  # room for both records
                    if time.monotonic() > deadline:
                        pytest.fail(f"the consumer stopped freeing room at run {n}")
                    time.sleep(0.0002)
                ctx = struct.pack("<4Q", 2 * n, 0, 0, 0)
                assert program.test_run(ctx_in=ctx, engine="jit").retval == 1
        output, errors = consumer.communicate(timeout=60)
    assert consumer.returncode == 0 and output.strip(), f"consumer failed: {errors}"
    seen = json.loads(output.strip().splitlines()[-1])
    # Each run: the submitted record (mode = 2n), then the output's first word (mode ^ 0xabcdef).
    expected = [value for n in range(0, wanted, 2) for value in (2 * n, (2 * n) ^ 0xABCDEF)]
    assert seen == expected
    assert reserve == out == []


# The program writes every byte of its reserved record: a reservation holds what an earlier lap
# left there, and a wrapped record's tail lands in the kernel's second mapping of the first page
# but in our region's second half, so stale bytes would differ.
KERNEL_SOURCE = r"""
#include "bpf_helpers.h"

static void (*bpf_ringbuf_discard)(void *data, __u64 flags) = (void *)BPF_FUNC_ringbuf_discard;

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} records SEC(".maps");

SEC("socket")
int emit(struct __sk_buff *skb)
{
	__u32 len = skb->len;
	__u32 record[2] = { len, 0x5a5a };
	long rc = bpf_ringbuf_output(&records, record, sizeof(record), len & 7);
	__u32 *extra = bpf_ringbuf_reserve(&records, 24, 0);

	if (extra) {
		__builtin_memset(extra, 0x77, 24);
		extra[0] = len;
		extra[1] = (__u32)rc;
		if (len & 16)
			bpf_ringbuf_discard(extra, len & 3);
		else
			bpf_ringbuf_submit(extra, len & 3);
	}
	return (rc == 0) | (extra ? 2 : 0);
}

char LICENSE[] SEC("license") = "GPL";
"""


@pytest.mark.kernel
def test_native_ring_records_match_a_kernel_ring(tmp_path: Path) -> None:
    """The same runs against a kernel ring (BPF_PROG_TEST_RUN, mmap reader) and native code: same verdicts, records."""
    from pybpf.kernel import available

    ok, reason = available()
    if not ok:
        pytest.skip(f"bpf() unavailable: {reason}")
    path = build_object(KERNEL_SOURCE, tmp_path)
    sizes = [60 + (n * 7) % 40 for n in range(300)]  # every flag mix; the ring fills between drains
    outcomes = {}
    with pybpf.load(path, backend="kernel") as kernel, load(path, engine="jit") as native:
        for name, obj in (("kernel", kernel), ("jit", native)):
            runs: list[object] = []
            with trampoline_calls(HelperId.RINGBUF_RESERVE) as reserve, trampoline_calls(
                HelperId.RINGBUF_OUTPUT
            ) as out, trampoline_calls(HelperId.RINGBUF_SUBMIT) as submit:
                for index, size in enumerate(sizes):
                    runs.append(obj.program("emit").test_run(bytes(size)).retval)
                    if index % 150 == 149:
                        records: list[bytes] = []
                        obj.maps["records"].consume(records.append)
                        runs.append(records)
            outcomes[name] = runs
            if name == "jit":
                assert reserve == out == submit == []
    assert outcomes["jit"] == outcomes["kernel"]
    retvals = [outcome for outcome in outcomes["jit"] if isinstance(outcome, int)]
    assert any(not retval & 2 for retval in retvals)  # the ring did fill: some reservation failed


THREADS = 3
REPEAT = 15_000  # 72 bytes a run in each thread: the threads' records fit the 4 MiB ring unread
PYTHON_RECORDS = 2000
PYTHON_MAGIC = 0x5059_5448_4F4E  # "PYTHON": the records the Python producer writes


STRESS_SOURCE = r"""
#include "bpf_helpers.h"

struct record {
	__u64 mode;
	__u64 value;
	__u8 fill[24];
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22);
} ring SEC(".maps");

SEC("raw_tracepoint/sys_enter")
int produce(struct bpf_raw_tracepoint_args *ctx)
{
	__u64 mode = ctx->args[0], work = mode;
	struct record *record;

	/* Some work per run: the native loops of the threads overlap longer. */
	for (int i = 0; i < 600; i++)
		work = work * 6364136223846793005ULL + 1442695040888963407ULL;
	record = bpf_ringbuf_reserve(&ring, sizeof(*record), 0);
	if (!record)
		return 0;
	record->mode = mode;
	record->value = mode << 8;
	__builtin_memset(record->fill, mode & 0xff, sizeof(record->fill));
	bpf_ringbuf_submit(record, 0);
	__u64 data[3] = { mode ^ 0xabcdef, mode * 3, ~mode };
	bpf_ringbuf_output(&ring, data, sizeof(data), 0);
	return 1 + (work == 42); /* uses the work: the loop stays */
}
"""


@pytest.fixture(scope="module")
def big_ring_object(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4 MiB ring (room for every record of the threads test) and some work a run."""
    return build_object(STRESS_SOURCE, tmp_path_factory.mktemp("native_ringbuf_big"))


def _record_origin(record: bytes) -> int:
    """The thread of a whole native record (its mode), or -1 for a Python one; raise if torn."""
    if len(record) == 16:
        assert struct.unpack("<Q", record[:8])[0] == PYTHON_MAGIC, record
        return -1
    if len(record) == 24:
        first, second, third = struct.unpack("<3Q", record)
        mode = ~third & (2**64 - 1)
        assert (first, second) == (mode ^ 0xABCDEF, mode * 3 % 2**64), record
        return int(mode >> 1) + 100  # output records counted apart
    assert len(record) == 40, record
    mode, value = struct.unpack_from("<2Q", record)
    assert value == mode << 8 and record[16:] == bytes([mode & 0xFF]) * 24, record
    return int(mode >> 1)


def test_native_and_python_producers_in_threads_lose_and_tear_nothing(big_ring_object: Path) -> None:
    """Native producers run without the GIL (repeat loops in parallel): the spin word must serialise
    them with each other and with Python's; a consumer thread reads meanwhile."""
    with load(big_ring_object) as obj:
        interpreter = obj.program("produce").interpreter
        ring: RingBufMap = obj.maps["ring"]
        seen: list[bytes] = []
        done = threading.Event()
        python_sent: list[int] = []

        def consume() -> None:
            deadline = time.monotonic() + 60  # a record left BUSY by a lost race would stop it forever
            while (not done.is_set() or ring.producer_pos != ring.consumer_pos) and time.monotonic() < deadline:
                ring.consume(seen.append)

        engines = [JitProgram.of(interpreter) for _ in range(THREADS)]
        start = threading.Barrier(THREADS)

        def produce_natively(thread: int) -> None:
            mode = thread << 1  # even: submit
            context = Region.from_bytes(RegionKind.CONTEXT, "ctx", struct.pack("<4Q", mode, 0, 0, 0))
            state = RunState(obj.services, ctx=context.address)
            start.wait()  # the native loops overlap (each takes milliseconds)
            result, _ = engines[thread].run_repeated(context, repeat=REPEAT, user=state)
            assert result.r0 == 1

        def produce_in_python() -> None:
            for sequence in range(PYTHON_RECORDS):
                if ring.output(struct.pack("<QQ", PYTHON_MAGIC, sequence)) == 0:
                    python_sent.append(sequence)

        consumer = threading.Thread(target=consume)
        producers = [threading.Thread(target=produce_natively, args=(thread,)) for thread in range(THREADS)]
        producers.append(threading.Thread(target=produce_in_python))
        consumer.start()
        for thread in producers:
            thread.start()
        for thread in producers:
            thread.join(timeout=120)
        done.set()
        consumer.join(timeout=60)
        assert not any(thread.is_alive() for thread in [*producers, consumer])
    counts: dict[int, int] = {}
    for record in seen:
        origin = _record_origin(record)
        counts[origin] = counts.get(origin, 0) + 1
    expected = {thread: REPEAT for thread in range(THREADS)} | {100 + thread: REPEAT for thread in range(THREADS)}
    assert counts == expected | {-1: len(python_sent)}
    assert len(python_sent) == PYTHON_RECORDS
