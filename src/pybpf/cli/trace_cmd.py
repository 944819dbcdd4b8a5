"""``pybpf trace OBJ --prog NAME [--prog NAME...] HOOK -- SCRIPT.py [ARGS...]``: trace a Python script.

HOOK is one of ``--func module:qualname`` (a kprobe/uprobe/fentry-style program on a Python
function; ``__main__:name`` for a function the script itself defines), ``--tracepoint
category/name`` (a tracepoint or raw_tracepoint program on a tracepoint the application declares
with ``pybpf.Tracepoint``) or ``--audit EVENT`` (an lsm-style program on a Python audit event;
a negative return raises PermissionError in the script). The object is loaded in user space,
the programs attached (:class:`pybpf.hooks.trace_session.TraceSession`), the script run in this
process as ``python SCRIPT.py ARGS`` would run it, and then the links' counters, the trace_pipe,
the ring buffer records and the maps are printed. The script's own output comes first; with
``--json`` the report is one JSON object on the last line. The exit status is the script's
(or 1 when a program never attached because its target never appeared).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, TextIO

from pybpf.cli.prog_cmd import _write_map_text, map_dump
from pybpf.hooks.trace_session import SessionReport, TraceHook, TraceSession, TraceTarget
from pybpf.runtime.loader import load


def _target(args: argparse.Namespace) -> TraceTarget:
    if args.function is not None:
        return TraceTarget(TraceHook.FUNC, args.function)
    if args.tracepoint is not None:
        return TraceTarget(TraceHook.TRACEPOINT, args.tracepoint)
    return TraceTarget(TraceHook.AUDIT, args.audit)


def _write_text(out: TextIO, script: str, status: int, report: SessionReport, maps: dict[str, Any]) -> None:
    out.write(f"traced {script}: exit status {status}\n")
    for link in report.links:
        extra = f", {link.denials} denied" if link.denials is not None else ""
        out.write(f"link {link.id}: {link.program} -> {link.kind} {link.target}: {link.runs} runs{extra}")
        out.write(f", {link.errors} program errors\n" if link.errors else "\n")
        if link.last_error:
            out.write(f"  last error: {link.last_error}\n")
    for problem in report.unattached:
        out.write(f"not attached: {problem}\n")
    if report.trace:
        out.write("trace_pipe:\n")
        for line in report.trace:
            out.write(f"  {line}\n")
    for name, records in report.ring_buffers.items():
        out.write(f"ring buffer {name}: {len(records)} records\n")
        for record in records:
            out.write(f"  {record.hex()}\n")
    for name, dumped in maps.items():
        if name not in report.ring_buffers:
            _write_map_text(out, name, dumped)


def _ring_dump(records: list[bytes]) -> dict[str, Any]:
    return {"type": "ringbuf", "entries": [], "held": len(records)}


def _trace(args: argparse.Namespace, out: TextIO) -> int:
    script_args = list(args.args)
    if script_args and script_args[0] == "--":
        script_args.pop(0)
    with load(args.object) as obj, TraceSession(obj, args.prog, _target(args)) as session:
        outcome = session.run(args.script, script_args)
        sys.stdout.flush()  # the script's output before the report
        report = session.report()
        # Ring buffers were drained into the report (their records are listed there, not here).
        maps = {
            name: map_dump(obj, name) if name not in report.ring_buffers else _ring_dump(report.ring_buffers[name])
            for name in sorted(obj.maps)
        }
    status = outcome.status if outcome.status else (1 if report.unattached else 0)
    if args.json:
        record: dict[str, Any] = {
            "script": args.script,
            "exit_status": outcome.status,
            "links": [link.to_json() for link in report.links],
            "unattached": report.unattached,
            "trace": report.trace,
            "ring_buffers": {name: [data.hex() for data in records] for name, records in report.ring_buffers.items()},
            "maps": maps,
        }
        if outcome.error is not None:
            record["script_error"] = outcome.error
        out.write(json.dumps(record) + "\n")
    else:
        _write_text(out, args.script, outcome.status, report, maps)
    return status


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "trace",
        help="run a Python script with programs attached to its functions, tracepoints or audit events",
        description="Load OBJ in user space, attach the programs, run SCRIPT.py in this process, print the maps.",
    )
    parser.add_argument("object", metavar="OBJ", help="BPF ELF object file")
    parser.add_argument(
        "--prog", required=True, action="append", metavar="NAME", help="program to attach (repeat for several)"
    )
    hook = parser.add_mutually_exclusive_group(required=True)
    hook.add_argument(
        "--func", dest="function", metavar="MODULE:QUALNAME", help="a Python function (__main__:NAME: the script's own)"
    )
    hook.add_argument("--tracepoint", metavar="CATEGORY/NAME", help="a tracepoint the application declares")
    hook.add_argument("--audit", metavar="EVENT", help="a Python audit event (open, socket.connect, import...)")
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object (last line)")
    parser.add_argument("script", metavar="SCRIPT.py", help="the Python script to run (after --)")
    parser.add_argument("args", nargs=argparse.REMAINDER, metavar="ARGS", help="the script's arguments")
    parser.set_defaults(func=_trace)
