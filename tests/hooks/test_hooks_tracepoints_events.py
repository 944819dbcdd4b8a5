"""User-space tracepoints: declared fields, tracepoint programs emitting ring buffer events, raw_tp args."""

from __future__ import annotations

import struct
import threading
from pathlib import Path

import pytest

import pybpf
from pybpf.hooks.link import HookRuntime, LinkError, LinkKind
from pybpf.hooks.tracepoints import Tracepoint, TracepointError, attach_tracepoint
from pybpf.runtime.maps import RingBufferConsumer

PROGS = Path(__file__).resolve().parents[1] / "progs"
FIELDS = [("id", "u32"), ("status", "u16"), ("path", "char[32]"), ("bytes", "u64")]
EVENT = struct.Struct("<IIQII32s")


def test_layout_follows_c_alignment_and_tracefs_format() -> None:
    tp = Tracepoint("app", "layout", FIELDS, runtime=HookRuntime())
    offsets = {field.name: field.offset for field in tp.fields}
    assert offsets == {"id": 8, "status": 12, "path": 14, "bytes": 48}
    assert tp.size == 56
    record = tp.record({"id": 5, "status": 404, "path": "/x", "bytes": 1 << 40}, pid=77)
    assert struct.unpack_from("<HBBi", record) == (tp.id, 0, 0, 77)
    assert struct.unpack_from("<IH", record, 8) == (5, 404)
    assert record[14:46] == b"/x".ljust(32, b"\0")
    assert struct.unpack_from("<Q", record, 48) == (1 << 40,)
    text = tp.format()
    assert "\tfield:char path[32];\toffset:14;\tsize:32;\tsigned:1;" in text
    assert "\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;" in text
    with pytest.raises(TracepointError):
        Tracepoint("app", "bad", [("x", "float")], runtime=HookRuntime())
    with pytest.raises(TracepointError):
        tp.record({"nope": 1})


def test_tracepoint_program_emits_ring_buffer_events() -> None:
    runtime = HookRuntime()
    tp = Tracepoint("app", "request", FIELDS, runtime=runtime)
    with pybpf.load(PROGS / "hooks_tracepoint.o") as obj:
        assert not tp.enabled
        assert tp.fire(id=1) == 0
        link = attach_tracepoint(obj.program("on_request"), runtime=runtime)  # from SEC("tracepoint/app/request")
        assert link.kind is LinkKind.TRACEPOINT and link.target == "app/request"
        assert tp.enabled
        requests = [(1, 200, "/index.html", 512), (2, 503, "/busy", 0), (3, 404, "/missing" * 8, 17)]
        for request_id, status, path, size in requests:
            assert tp.fire(id=request_id, status=status, path=path, bytes=size) == 1
        assert link.errors == 0, link.last_error
        events: list[tuple[int, ...]] = []
        consumer = RingBufferConsumer()
        consumer.add(obj.maps["requests"], lambda data: events.append(EVENT.unpack(data[: EVENT.size])) or 0)
        assert consumer.poll() == 2
        assert [(e[0], e[1], e[2]) for e in events] == [(1, 200, 512), (3, 404, 17)]
        main_thread_events = list(events)
        assert main_thread_events[0][5].rstrip(b"\0") == b"/index.html"
        assert main_thread_events[1][5] == ("/missing" * 8).encode()[:32]  # char[32]: truncated, no NUL
        assert main_thread_events[0][3] == threading.get_native_id()
        # Fired from another thread: bpf_get_current_pid_tgid reports that thread.
        fired_by: list[int] = []

        def fire_elsewhere() -> None:
            fired_by.append(threading.get_native_id())
            tp.fire(id=4, status=201, path="/thread", bytes=1)

        worker = threading.Thread(target=fire_elsewhere)
        worker.start()
        worker.join()
        events.clear()
        assert consumer.poll() == 1
        assert events[0][0] == 4
        assert events[0][3] == fired_by[0] != threading.get_native_id()
        link.detach()
        tp.fire(id=9, status=200, path="/after", bytes=1)
        assert consumer.poll() == 0


def test_raw_tracepoint_gets_u64_args_and_pointers() -> None:
    runtime = HookRuntime()
    tp = Tracepoint("app", "request", FIELDS, runtime=runtime)
    with pybpf.load(PROGS / "hooks_tracepoint.o") as obj:
        with attach_tracepoint(obj.program("on_raw_request"), runtime=runtime) as link:  # raw_tp/request
            assert link.kind is LinkKind.RAW_TRACEPOINT
            tp.fire(id=40, status=200, path="/raw", bytes=0)
            tp.fire(id=2, status=200, path="/raw/second", bytes=0)
        tp.fire(id=1000, path="/ignored")
        assert link.errors == 0, link.last_error
        totals = [struct.unpack("<Q", obj.maps["raw_totals"].lookup_raw(i.to_bytes(4, "little")))[0] for i in (0, 1)]
        assert totals == [42, 2]
        assert obj.maps["raw_path"].lookup_raw(bytes(4)).rstrip(b"\0") == b"/raw/second"


def test_attach_errors() -> None:
    runtime = HookRuntime()
    with pybpf.load(PROGS / "hooks_tracepoint.o") as obj:
        with pytest.raises(LinkError, match="app/request"):
            attach_tracepoint(obj.program("on_request"), runtime=runtime)  # not declared yet
        Tracepoint("other", "event", [("x", "u8")], runtime=runtime)
        link = attach_tracepoint(obj.program("on_request"), "other", "event", runtime=runtime)
        assert link.target == "other/event"
    with pybpf.load(PROGS / "hooks_probe.o") as probes, pytest.raises(LinkError):
        attach_tracepoint(probes.program("on_entry"), "other/event", runtime=runtime)
