"""``pybpf conformance-plugin``: the bpf_conformance suite's plugin protocol.

Reads the program's bytecode as hex on standard input, takes the input memory as hex in the
first argument (omitted when there is none), prints r0 in hex and exits 0; on any error it exits
non-zero with the message on standard error. Also runnable as ``python -m pybpf.cli.conformance_cmd``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from pybpf.errors import PybpfError
from pybpf.vm.conformance import ENGINES, format_result, parse_hex, run_program


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("memory", nargs="?", default="", metavar="MEM_HEX", help="input memory as hex bytes")
    parser.add_argument("--engine", choices=sorted(ENGINES), default="interp", help="execution engine")
    parser.set_defaults(func=run_command, stdin=None)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "conformance-plugin",
        help="run a program as a bpf_conformance plugin (bytecode hex on stdin)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)


def run_command(args: argparse.Namespace, out: TextIO) -> int:
    stdin: TextIO = args.stdin if args.stdin is not None else sys.stdin
    bytecode = parse_hex(stdin.read())
    r0 = run_program(bytecode, parse_hex(args.memory), args.engine)
    out.write(format_result(r0) + "\n")
    return 0


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Stand-alone entry point (the same command without the rest of the CLI)."""
    parser = argparse.ArgumentParser(prog="pybpf conformance-plugin", description=__doc__)
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        result: int = args.func(args, out if out is not None else sys.stdout)
    except (PybpfError, ValueError) as error:  # ValueError: malformed hex
        sys.stderr.write(f"pybpf: error: {error}\n")
        return 1
    return result


if __name__ == "__main__":
    sys.exit(main())
