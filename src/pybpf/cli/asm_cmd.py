"""``pybpf asm`` and ``pybpf disasm``: text <-> bytecode.

``pybpf asm FILE [-o OUT] [--json]`` assembles either syntax (detected) and writes the
bytecode to OUT, or prints it as hex. ``pybpf disasm FILE [--json]`` prints a bytecode file as
an llvm-objdump-style listing that ``pybpf asm`` reads back unchanged.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, TextIO

from pybpf.asm import Syntax, assemble, format_insn, format_program
from pybpf.errors import LoadError
from pybpf.isa.codec import decode_program, encode, encode_program
from pybpf.isa.insn import LabeledInsn
from pybpf.obj import load_spec

ELF_MAGIC = b"\x7fELF"


def _load_program_bytes(path: str, *, hex_text: bool = False) -> bytes:
    """The bytecode ``disasm`` shows for a raw (or hex-text) program file."""
    data = Path(path).read_bytes()
    if hex_text:
        return bytes.fromhex(data.decode("ascii", errors="replace"))
    return data


def _load_object_programs(path: str, prog: str | None) -> list[tuple[str, str, list[LabeledInsn]]]:
    """(name, section, instructions) of an ELF object's programs, or of the one named ``prog``."""
    spec = load_spec(path)
    programs = list(spec.programs.values())
    if prog is not None:
        if prog not in spec.programs:
            raise LoadError(f"no program named {prog!r} (programs: {', '.join(spec.programs) or 'none'})", file=path)
        programs = [spec.programs[prog]]
    return [(program.name, program.section, list(program.instructions)) for program in programs]


def _asm(args: argparse.Namespace, out: TextIO) -> int:
    text = Path(args.file).read_text(encoding="utf-8")
    syntax = Syntax(args.syntax) if args.syntax else None
    insns = assemble(text, syntax)
    bytecode = encode_program(insns)
    if args.output:
        Path(args.output).write_bytes(bytecode)
    if args.json:
        out.write(json.dumps({"bytecode": bytecode.hex(), "instructions": len(insns)}) + "\n")
    elif not args.output:
        out.write(bytecode.hex() + "\n")
    return 0


def _disasm(args: argparse.Namespace, out: TextIO) -> int:
    if Path(args.file).read_bytes()[:4] == ELF_MAGIC:
        listings = _load_object_programs(args.file, args.prog)
    else:
        data = _load_program_bytes(args.file, hex_text=args.hex)
        listings = [("", "", decode_program(data, check_jumps=False))]
    if args.json:
        rows: list[dict[str, Any]] = []
        for name, section, insns in listings:
            for item in insns:
                first = encode(item.insn)[0]
                row: dict[str, Any] = {
                    "pc": item.pc,
                    "opcode": first.opcode,
                    "dst": first.dst,
                    "src": first.src,
                    "off": first.off,
                    "imm": first.imm,
                    "text": format_insn(item.insn, item.pc),
                }
                if name:
                    row["program"] = name
                    row["section"] = section
                if item.line is not None:
                    row["source"] = {"file": item.line.file, "line": item.line.line, "text": item.line.text}
                rows.append(row)
        out.write(json.dumps(rows) + "\n")
        return 0
    for index, (name, section, insns) in enumerate(listings):
        if name:
            out.write(("\n" if index else "") + f"; program {name} (section {section})\n")
        out.write(
            format_program(insns, labels=not args.no_labels, with_pc=not args.no_pc, with_bytes=not args.no_bytes)
        )
    return 0


def register(subparsers: Any) -> None:
    """Add the ``asm`` and ``disasm`` commands to the ``pybpf`` parser."""
    asm = subparsers.add_parser("asm", help="assemble text (conformance or LLVM syntax) into bytecode")
    asm.add_argument("file", metavar="FILE", help="assembly text")
    asm.add_argument("-o", "--output", metavar="OUT", help="write raw bytecode here (default: hex on stdout)")
    asm.add_argument("--syntax", choices=[syntax.value for syntax in Syntax], help="skip syntax detection")
    asm.add_argument("--json", action="store_true", help='print {"bytecode": hex, "instructions": N}')
    asm.set_defaults(func=_asm)

    disasm = subparsers.add_parser(
        "disasm", help="disassemble raw bytecode or an object into LLVM syntax (with C source lines)"
    )
    disasm.add_argument("file", metavar="FILE", help="raw bytecode (8-byte slots) or an ELF object")
    disasm.add_argument("--prog", metavar="NAME", help="with an object: only this program (by function name)")
    disasm.add_argument("--hex", action="store_true", help="FILE holds the bytecode as hex text")
    disasm.add_argument("--no-pc", action="store_true", help="omit the pc column")
    disasm.add_argument("--no-bytes", action="store_true", help="omit the raw bytes column")
    disasm.add_argument("--no-labels", action="store_true", help="omit LBB0_n labels and <LBB0_n> annotations")
    disasm.add_argument("--json", action="store_true", help="print one object per instruction")
    disasm.set_defaults(func=_disasm)
