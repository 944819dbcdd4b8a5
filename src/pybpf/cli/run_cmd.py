"""``pybpf run FILE [--mem HEX]``: run a raw program in the reference interpreter and print r0.

FILE holds raw bytecode (8-byte slots) or assembly text in either syntax; text is recognised
by being valid UTF-8 without NUL bytes. r1/r2 are the address and length of ``--mem``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, TextIO

from pybpf.asm import assemble
from pybpf.isa.codec import decode_program
from pybpf.isa.insn import LabeledInsn
from pybpf.vm import Interpreter, Region, RegionKind


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


def _run(args: argparse.Namespace, out: TextIO) -> int:
    interpreter = Interpreter(read_program(args.file), name=Path(args.file).name)
    memory = bytes.fromhex("".join(args.mem.split())) if args.mem else b""
    region = Region.from_bytes(RegionKind.INPUT, "input", memory) if memory else None
    result = interpreter.run(region, instruction_limit=args.limit)
    if args.json:
        out.write(json.dumps({"r0": result.r0, "instructions": result.instructions}) + "\n")
    else:
        out.write(f"r0 = {result.r0:#x} ({result.r0})\n")
    return 0


def register(subparsers: Any) -> None:
    run = subparsers.add_parser("run", help="run raw bytecode or assembly in the interpreter and print r0")
    run.add_argument("file", metavar="FILE", help="raw bytecode or assembly text")
    run.add_argument("--mem", metavar="HEX", default="", help="input memory as hex bytes (r1 = address, r2 = length)")
    run.add_argument("--limit", type=int, default=None, help="instruction budget (default: the interpreter's)")
    run.add_argument("--json", action="store_true", help='print {"r0": int, "instructions": int}')
    run.set_defaults(func=_run)
