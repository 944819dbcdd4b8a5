"""The ``pybpf`` command line: a bpftool-style front end that holds no logic of its own.

Each command module registers its subcommands through ``register(subparsers)`` and sets
``func(args, out) -> int`` as the parser default; ``main`` dispatches and turns every
``PybpfError`` into a message on stderr (and ``{"error": ...}`` with ``--json``) and exit 1.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Sequence
from typing import TextIO

from pybpf.errors import PybpfError

# Command modules under pybpf.cli, each exposing register(subparsers).
COMMAND_MODULES = (
    "asm_cmd", "run_cmd", "conformance_cmd", "prog_cmd", "attach_cmd", "link_cmd", "verify_cmd", "trace_cmd",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pybpf", description="eBPF in Python: assemble, inspect, verify, run.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"pybpf.cli.{name}")
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    out = out if out is not None else sys.stdout
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result: int = args.func(args, out)
    except PybpfError as error:
        if getattr(args, "json", False):
            out.write(json.dumps({"error": str(error)}) + "\n")
        sys.stderr.write(f"pybpf: error: {error}\n")
        return 1
    except (OSError, ValueError) as error:  # unreadable files, bad hex on the command line
        if getattr(args, "json", False):
            out.write(json.dumps({"error": str(error)}) + "\n")
        sys.stderr.write(f"pybpf: error: {error}\n")
        return 1
    return result


if __name__ == "__main__":
    sys.exit(main())
