"""``pybpf run FILE ...``: run a raw program, or replay a capture through an object's program.

FILE holds raw bytecode (8-byte slots) or assembly text in either syntax; text is recognised
by being valid UTF-8 without NUL bytes. r1/r2 are the address and length of ``--mem``. Such a
file is not verified, so it runs on the interpreter unless ``--engine jit`` asks for the JIT (which
then keeps its bounds checks). An object's program follows :func:`pybpf.runtime.loader.load`'s
rule: the JIT for verified programs.

When FILE is a BPF ELF object, ``pybpf run OBJ --prog NAME --pcap in.pcap [--out out.pcap]
[--json] [--dump-maps]`` replays the capture through the program
(:func:`pybpf.hooks.packets.replay`): a summary of verdicts, throughput and (``--dump-maps``)
the maps at the end; the frames that leave the program go to ``--out`` (pcap, or pcapng for a
``.pcapng`` name). A progress bar is shown on a terminal for large captures, never with --json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from pybpf.asm import assemble
from pybpf.cli.prog_cmd import CliUsageError, _write_map_text, add_engine_arguments, parse_prog_type
from pybpf.isa.codec import decode_program
from pybpf.isa.insn import LabeledInsn
from pybpf.vm import Interpreter, Region, RegionKind

if TYPE_CHECKING:
    from pybpf.hooks.packets import ReplayReport

ELF_MAGIC = b"\x7fELF"
PROGRESS_THRESHOLD = 2000
"""Captures at least this long get a progress bar (on a terminal)."""


def read_program(path: str) -> list[LabeledInsn]:
    """Instructions from a file of raw bytecode or of assembly text."""
    data = Path(path).read_bytes()
    if b"\x00" not in data:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:
            return assemble(text)
    return decode_program(data)


def is_object_file(path: str) -> bool:
    with Path(path).open("rb") as stream:
        return stream.read(4) == ELF_MAGIC


def _run(args: argparse.Namespace, out: TextIO) -> int:
    if is_object_file(args.file):
        return _replay(args, out)
    if args.prog or args.pcap:
        raise CliUsageError(f"{args.file} is not an ELF object: --prog/--pcap need one")
    # Raw bytecode and assembly are not verified: they run on the interpreter unless the JIT is
    # asked for, and then with its bounds checks (JitProgram's default).
    engine: Any = Interpreter
    if args.engine == "jit":
        from pybpf.vm.jit import JitProgram

        engine = JitProgram
    interpreter = engine(read_program(args.file), name=Path(args.file).name)
    memory = bytes.fromhex("".join(args.mem.split())) if args.mem else b""
    region = Region.from_bytes(RegionKind.INPUT, "input", memory) if memory else None
    result = interpreter.run(region, instruction_limit=args.limit)
    if args.json:
        out.write(json.dumps({"r0": result.r0, "instructions": result.instructions}) + "\n")
    else:
        out.write(f"r0 = {result.r0:#x} ({result.r0})\n")
    return 0


def _replay(args: argparse.Namespace, out: TextIO) -> int:
    from pybpf.hooks.packets import read_capture, replay, write_capture
    from pybpf.runtime.loader import load

    if not args.prog or not args.pcap:
        raise CliUsageError("an object file runs with --prog NAME --pcap CAPTURE (or see `pybpf prog run`)")
    types = {args.prog: parse_prog_type(args.type)} if args.type else None
    packets = list(read_capture(args.pcap))
    with load(args.file, prog_types=types, engine=args.engine, jit_bounds_checks=args.jit_bounds_checks) as obj:
        program = obj.program(args.prog)
        show_bar = not args.json and out.isatty() and len(packets) >= PROGRESS_THRESHOLD
        with _progress_bar(out, args.prog, len(packets), show_bar) as progress:
            report = replay(
                program,
                packets,
                obj=obj if args.dump_maps else None,
                instruction_limit=args.limit,
                progress=progress,
                batch=not args.no_batch,
            )
    written = write_capture(args.out, report.output_captures()) if args.out else None
    if args.json:
        record = report.to_json()
        if not args.dump_maps:
            del record["maps"]
        record["out"] = args.out
        record["written"] = written
        out.write(json.dumps(record) + "\n")
    else:
        _write_summary(out, report, args.out, written)
    return 0


@contextlib.contextmanager
def _progress_bar(out: TextIO, label: str, total: int, show: bool) -> Iterator[Callable[[int], None] | None]:
    """A rich progress bar's update callback, or None when no bar is shown."""
    if not show:
        yield None
        return
    from rich.progress import Progress

    with Progress(console=_console(out), transient=True) as bar:
        task = bar.add_task(label, total=total)
        yield lambda done: bar.update(task, completed=done)


def _console(out: TextIO) -> Any:
    from rich.console import Console

    return Console(file=out)


def _write_summary(out: TextIO, report: ReplayReport, out_path: str | None, written: int | None) -> None:
    seconds = report.elapsed_ns / 1e9
    out.write(
        f"{report.program} ({report.prog_type}): {report.packets} packets in {seconds:.3f} s, "
        f"{report.packets_per_second:.0f} packets/s ({report.ns_per_packet:.0f} ns/packet)\n"
    )
    total = sum(report.verdicts.values()) or 1
    if out.isatty():
        from rich.table import Table

        table = Table(title="verdicts")
        for column in ("verdict", "packets", "share"):
            table.add_column(column)
        for verdict, count in report.verdicts.items():
            table.add_row(verdict, str(count), f"{100 * count / total:.1f}%")
        _console(out).print(table)
    else:
        for verdict, count in report.verdicts.items():
            out.write(f"  {verdict:<20} {count:>8}  {100 * count / total:5.1f}%\n")
    modified = sum(1 for item in report.outputs if item.modified)
    destination = f" -> {out_path} ({written} written)" if out_path else ""
    out.write(f"output: {len(report.outputs)} packets, {modified} modified{destination}\n")
    if report.refused:
        first = report.refused[0]
        out.write(f"refused: {len(report.refused)} packets (first, #{first.index}: {first.reason})\n")
    if report.maps:
        out.write("maps at the end:\n")
        for name, snapshot in report.maps.items():
            _write_map_text(out, name, snapshot.to_json())


def register(subparsers: Any) -> None:
    run = subparsers.add_parser(
        "run", help="run raw bytecode or assembly, or replay a pcap through an object's packet program"
    )
    run.add_argument("file", metavar="FILE", help="raw bytecode, assembly text, or a BPF ELF object (with --pcap)")
    run.add_argument("--mem", metavar="HEX", default="", help="input memory as hex bytes (r1 = address, r2 = length)")
    run.add_argument("--limit", type=int, default=None, help="instruction budget (default: the interpreter's)")
    run.add_argument("--json", action="store_true", help='print {"r0", "instructions"} (or the replay report) as JSON')
    add_engine_arguments(run)  # raw FILE is not verified: the interpreter unless --engine jit (bounds-checked)
    run.add_argument("--prog", metavar="NAME", help="object mode: the packet program to run")
    run.add_argument("--pcap", metavar="CAPTURE", help="object mode: pcap or pcapng capture of Ethernet frames")
    run.add_argument("--out", metavar="CAPTURE", help="object mode: write passed/transmitted/redirected frames here")
    run.add_argument("--type", metavar="PROGTYPE", help="object mode: override the program type (xdp, tc...)")
    run.add_argument("--dump-maps", action="store_true", help="object mode: print every map after the replay")
    run.add_argument(
        "--no-batch",
        action="store_true",
        help="object mode: one test run per frame even where a native batch could run them (same results)",
    )
    run.set_defaults(func=_run)
