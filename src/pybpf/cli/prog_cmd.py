"""``pybpf prog run`` and ``pybpf map dump``: test-run an object's program in user space.

``pybpf prog run OBJ --prog NAME --data-in HEX|@FILE [--data-in ...]`` loads OBJ once and runs
the program on each ``--data-in`` in order, so maps keep their contents from one run to the
next (BPF_PROG_TEST_RUN semantics for each run). bpf_trace_printk output of each run is shown
after the runs (text) or as the run's ``"trace"`` lines (JSON). ``pybpf map dump OBJ MAP`` prints
a map of the freshly loaded object (its initial contents). ``--json`` output never goes through rich.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, TextIO

from pybpf.errors import PybpfError
from pybpf.platform.uapi_generated import BpfProgType
from pybpf.platform.verdicts import verdict_name
from pybpf.runtime.loader import load
from pybpf.runtime.maps import QueueMap
from pybpf.runtime.object import Object
from pybpf.runtime.program import ENGINES, Program, RuntimeTestRunResult, TestRunResult


class CliUsageError(PybpfError):
    """A command-line value that cannot be used (bad hex, unknown program type)."""


def read_bytes_arg(value: str, what: str) -> bytes:
    """``HEX`` (spaces allowed) or ``@FILE`` (raw bytes)."""
    if value.startswith("@"):
        return Path(value[1:]).read_bytes()
    try:
        return bytes.fromhex("".join(value.split()))
    except ValueError:
        raise CliUsageError(f"{what}: {value!r} is neither hex bytes nor @FILE") from None


def parse_prog_type(name: str) -> BpfProgType:
    key = name.strip().upper().replace("-", "_")
    aliases = {"TC": "SCHED_CLS", "SOCKET": "SOCKET_FILTER", "RAW_TP": "RAW_TRACEPOINT"}
    try:
        return BpfProgType[aliases.get(key, key)]
    except KeyError:
        raise CliUsageError(f"unknown program type {name!r}") from None


def map_dump(obj: Object, name: str) -> dict[str, Any]:
    """``{"type": str, "entries": [[keyhex, valuehex | [hex per CPU]], ...]}``.

    Maps without keys (queue, stack, bloom filter, ring buffer) list no entries; for queues and
    stacks ``"held"`` says how many values they hold.
    """
    found = obj.maps.get(name)
    entries: list[list[Any]] = []
    for entry in obj.map_entries(name):
        value = [part.hex() for part in entry.value] if isinstance(entry.value, tuple) else entry.value.hex()
        entries.append([entry.key.hex(), value])
    map_type = getattr(found, "type", None)
    dumped: dict[str, Any] = {
        "type": map_type.name.lower() if map_type is not None else "unknown",
        "entries": entries,
    }
    if isinstance(found, QueueMap):  # StackMap too
        dumped["held"] = len(found)
    return dumped


def _run_record(
    obj: Object, program: Program, result: TestRunResult, dump_maps: bool, *, counted: bool = False
) -> dict[str, Any]:
    record: dict[str, Any] = {
        "retval": result.retval,
        "data_out": result.data_out.hex(),
        "duration_ns": result.duration_ns,
        # What the run wrote to the trace pipe, taken out so the next run's lines are its own.
        "trace": [event.format() for event in obj.trace_pipe.drain()],
    }
    verdict = verdict_name(program.prog_type, result.retval)
    if verdict is not None:
        record["verdict"] = verdict
    redirect = result.redirect if isinstance(result, RuntimeTestRunResult) else None
    if redirect is not None:
        # bpf_redirect names an ifindex; bpf_redirect_map a map (by its name in the object) and key.
        target = {"map": str(getattr(redirect.map, "name", "")), "key": redirect.key} if redirect.map else {}
        record["redirect"] = target or {"ifindex": redirect.ifindex}
    if counted:  # asked for: the last run's instructions, counted under either engine
        record["instructions"] = result.instructions
    if dump_maps:
        record["maps"] = {name: map_dump(obj, name) for name in sorted(obj.maps)}
    return record


def _write_map_text(out: TextIO, name: str, dumped: dict[str, Any]) -> None:
    """Entries of one map; all-zero values of arrays (which always hold every key) are counted, not listed."""
    entries = dumped["entries"]
    is_array = "array" in dumped["type"]

    def is_zero(value: str | list[str]) -> bool:
        parts = value if isinstance(value, list) else [value]
        return all(set(part) <= {"0"} for part in parts)

    shown = [entry for entry in entries if not (is_array and is_zero(entry[1]))]
    hidden = len(entries) - len(shown)
    note = f", {hidden} all-zero not shown" if hidden else ""
    if "held" in dumped:
        out.write(f"map {name} ({dumped['type']}): {dumped['held']} values held (no keys to list)\n")
        return
    out.write(f"map {name} ({dumped['type']}): {len(entries)} entries{note}\n")
    for key, value in shown:
        out.write(f"  {key}: {' '.join(value) if isinstance(value, list) else value}\n")


def _redirect_text(target: dict[str, Any]) -> str:
    if "map" in target:
        return f"map {target['map']} key {target['key']}"
    return f"ifindex {target['ifindex']}"


def _write_text(out: TextIO, records: list[dict[str, Any]], program: str) -> None:
    def retval_text(record: dict[str, Any]) -> str:
        verdict = record.get("verdict")
        return f"{record['retval']} ({verdict})" if verdict else str(record["retval"])

    if out.isatty():
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"{program}: test runs")
        for column in ("run", "retval", "duration (ns)", "data_out"):
            table.add_column(column)
        for number, record in enumerate(records, start=1):
            table.add_row(str(number), retval_text(record), f"{record['duration_ns']:.0f}", record["data_out"])
        Console(file=out).print(table)
    else:
        for number, record in enumerate(records, start=1):
            out.write(f"run {number}: retval {retval_text(record)}  duration {record['duration_ns']:.0f} ns\n")
            out.write(f"  data_out: {record['data_out']}\n")
            if "instructions" in record:
                out.write(f"  instructions: {record['instructions']}\n")
            if "redirect" in record:
                out.write(f"  redirect: {_redirect_text(record['redirect'])}\n")
    traced = [(number, line) for number, record in enumerate(records, start=1) for line in record["trace"]]
    if traced:
        out.write("trace_pipe:\n")
        for number, line in traced:
            out.write(f"  run {number}: {line}\n")
    # Text shows the maps once, after the last run (--json keeps them per run).
    if records and "maps" in records[-1]:
        out.write(f"maps after run {len(records)}:\n")
        for name, dumped in records[-1]["maps"].items():
            _write_map_text(out, name, dumped)


def add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    """``--engine`` and ``--jit-bounds-checks``, as ``pybpf prog run`` and ``pybpf run`` take them."""
    parser.add_argument(
        "--engine",
        choices=ENGINES,
        default=None,
        help="user-space engine: interpreter or LLVM JIT (default: the JIT for verified programs, "
        "the interpreter for unverified code)",
    )
    parser.add_argument(
        "--jit-bounds-checks",
        action="store_true",
        help="keep the runtime bounds checks in native code of verified programs (defence in depth)",
    )


def _load(args: argparse.Namespace, **options: Any) -> Any:
    """The object of ``args.object`` on the chosen ``--backend`` (both have the same API)."""
    if args.backend == "kernel":
        import pybpf

        return pybpf.load(args.object, backend="kernel", **options)
    engine = getattr(args, "engine", None)  # None: the JIT for verified programs (load's rule)
    return load(args.object, engine=engine, jit_bounds_checks=getattr(args, "jit_bounds_checks", False), **options)


def _prog_run(args: argparse.Namespace, out: TextIO) -> int:
    types = {args.prog: parse_prog_type(args.type)} if args.type else None
    runs = [read_bytes_arg(value, "--data-in") for value in args.data_in] or [b""]
    ctx_in = read_bytes_arg(args.ctx_in, "--ctx-in") if args.ctx_in is not None else None
    with _load(args, prog_types=types) as obj:
        program = obj.program(args.prog)
        records = []
        counted = bool(getattr(args, "count_instructions", False))
        if counted and args.backend == "kernel":
            raise CliUsageError("--count-instructions counts in user space only (--backend vm)")
        options = {"count_instructions": True} if counted else {}
        for data in runs:
            result = program.test_run(data, ctx_in, repeat=args.repeat, **options)
            records.append(_run_record(obj, program, result, args.dump_maps, counted=counted))
    if args.json:
        out.write(json.dumps({"runs": records}) + "\n")
    else:
        _write_text(out, records, args.prog)
    return 0


def pinned_map_dump(path: str) -> tuple[str, dict[str, Any]]:
    """A pinned map's name and live contents, in :func:`map_dump`'s shape."""
    from pybpf.hooks.pinning import open_pinned_map

    with open_pinned_map(path) as pinned:
        entries = [
            [key.hex(), [part.hex() for part in value] if isinstance(value, tuple) else value.hex()]
            for key, value in pinned.entries()
        ]
        return pinned.name, {"type": pinned.type.name.lower(), "entries": entries}


def _map_dump(args: argparse.Namespace, out: TextIO) -> int:
    if args.pinned is not None:
        name, dumped = pinned_map_dump(args.pinned)
    elif args.object is None or args.map is None:
        raise CliUsageError("map dump needs OBJ and MAP, or --pinned PATH")
    else:
        name = args.map
        with _load(args) as obj:
            dumped = map_dump(obj, args.map)
    if args.json:
        out.write(json.dumps(dumped) + "\n")
    else:
        _write_map_text(out, name, dumped)
    return 0


def register(subparsers: Any) -> None:
    prog = subparsers.add_parser("prog", help="programs of an object file, run in user space")
    prog_commands = prog.add_subparsers(dest="prog_command", metavar="PROG_COMMAND", required=True)
    run = prog_commands.add_parser("run", help="test-run a program (BPF_PROG_TEST_RUN semantics)")
    run.add_argument("object", metavar="OBJ", help="BPF ELF object file")
    run.add_argument("--prog", required=True, metavar="NAME", help="program (function) name")
    run.add_argument("--type", metavar="PROGTYPE", help="override the program type (xdp, sched_cls, socket_filter...)")
    run.add_argument(
        "--data-in", action="append", default=[], metavar="HEX|@FILE", help="packet for one run (repeatable)"
    )
    run.add_argument("--ctx-in", metavar="HEX|@FILE", help="context for every run (xdp_md, __sk_buff, args...)")
    run.add_argument("--repeat", type=int, default=1, metavar="N", help="run each packet N times (mean duration)")
    add_engine_arguments(run)
    run.add_argument("--backend", choices=("vm", "kernel"), default="vm", help="run in user space or in the kernel")
    run.add_argument("--dump-maps", action="store_true", help="print every map after each run")
    run.add_argument(
        "--count-instructions",
        action="store_true",
        help="report the instructions each run executed (the JIT then runs code compiled to count them)",
    )
    run.add_argument(
        "--json", action="store_true", help='print {"runs": [{"retval", "data_out", "duration_ns", "trace"}]}'
    )
    run.set_defaults(func=_prog_run)

    map_parser = subparsers.add_parser("map", help="maps of an object file, in user space")
    map_commands = map_parser.add_subparsers(dest="map_command", metavar="MAP_COMMAND", required=True)
    dump = map_commands.add_parser("dump", help="print a map's contents after loading the object")
    dump.add_argument("object", metavar="OBJ", nargs="?", help="BPF ELF object file")
    dump.add_argument("map", metavar="MAP", nargs="?", help="map name (.data, .rodata and .bss for global data)")
    dump.add_argument(
        "--pinned", metavar="PATH", help="dump the live map pinned at PATH (relative to the pin root) instead"
    )
    dump.add_argument("--json", action="store_true", help='print {"type": str, "entries": [[key, value]...]}')
    dump.add_argument("--backend", choices=("vm", "kernel"), default="vm", help="load in user space or in the kernel")
    dump.set_defaults(func=_map_dump)
    from pybpf.cli.pinned_map_cmd import register_pinned_map_commands  # it imports this module

    register_pinned_map_commands(map_commands)
