"""pybpf.asm: assembler and disassembler for two syntaxes.

- the conformance-suite syntax (``mov %r0, 1``; :mod:`pybpf.asm.conformance`);
- the LLVM / kernel syntax (``r0 = 1``; :mod:`pybpf.asm.llvm`, printed by :mod:`pybpf.asm.printer`).

``assemble`` detects which one a text uses. Every error is an ``AssemblerError`` naming the
line and the 1-based column.
"""

from __future__ import annotations

import re
from enum import Enum

from pybpf.asm.conformance import MNEMONICS, format_conformance, format_conformance_insn, parse_conformance
from pybpf.asm.datafile import DataFile, DataFileError, parse_data_file
from pybpf.asm.llvm import parse_llvm
from pybpf.asm.printer import format_insn, format_program
from pybpf.isa.codec import encode_program
from pybpf.isa.insn import LabeledInsn


class Syntax(Enum):
    CONFORMANCE = "conformance"
    LLVM = "llvm"


_LLVM_LINE = re.compile(
    r"\s*(?:\d+:|[0-9a-fA-F]{16}\s+<|(?:[0-9a-fA-F]{2}[ \t]){7}[0-9a-fA-F]{2}\b"
    r"|(?:if|goto|gotol|may_goto|callx|ld_pseudo|lock\s*\*|store_release)\b|\*)"
)
_CALL_LLVM = re.compile(r"\s*call\s+(?:pc\b|kfunc\b)")
_WORD = re.compile(r"\s*([A-Za-z_][\w]*)")
_LABEL_ONLY = re.compile(r"\s*[A-Za-z_.][\w.]*\s*:\s*$")


def detect_syntax(text: str) -> Syntax:
    """Which syntax ``text`` is written in, from its first line that tells.

    ``%r`` registers or a conformance mnemonic mean conformance; an ``=``, a pc column, ``if``,
    ``goto``... mean LLVM. A text of only ``exit`` and ``call N`` lines reads the same in both.
    """
    for raw_line in text.splitlines():
        line = raw_line.split("#", 1)[0].split(";", 1)[0]
        if not line.strip() or _LABEL_ONLY.match(line):
            continue
        if "%r" in line:
            return Syntax.CONFORMANCE
        if "=" in line or _LLVM_LINE.match(line) or _CALL_LLVM.match(line):
            return Syntax.LLVM
        word = _WORD.match(line)
        if word and word.group(1).lower() in MNEMONICS - {"exit", "call"}:
            return Syntax.CONFORMANCE
    return Syntax.CONFORMANCE


def assemble(text: str, syntax: Syntax | None = None) -> list[LabeledInsn]:
    """Assemble ``text`` (syntax detected unless given) into instructions with their pcs."""
    chosen = syntax if syntax is not None else detect_syntax(text)
    if chosen is Syntax.LLVM:
        return parse_llvm(text)
    return parse_conformance(text)


def assemble_bytes(text: str, syntax: Syntax | None = None) -> bytes:
    """Assemble ``text`` into bytecode."""
    return encode_program(assemble(text, syntax))


__all__ = [
    "DataFile",
    "DataFileError",
    "Syntax",
    "assemble",
    "assemble_bytes",
    "detect_syntax",
    "format_conformance",
    "format_conformance_insn",
    "format_insn",
    "format_program",
    "parse_conformance",
    "parse_data_file",
    "parse_llvm",
]
