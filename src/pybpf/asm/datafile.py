"""The bpf_conformance ``.data`` test file format.

A file is a sequence of sections, each opened by a ``-- NAME`` line:

- ``-- asm``: the program in conformance syntax; ``-- raw``: the program as bytecode, either
  one little-endian 64-bit word per line (``0x5566778800000018``: opcode 0x18 in the low
  byte) or lines of hex bytes (``07 00 01 00 01 00 00 00``);
- ``-- mem``: hex bytes of the input memory; ``-- result``: the expected r0 (hex with ``0x``,
  else decimal); ``-- error``: the expected error text (may be empty: "some error");
- ``-- c`` and ``-- no register offset``: informational, kept as text.

Lines before the first section (the licence header) are ignored. Any other ``--`` directive is
rejected, as is a file with no program or with neither a result nor an error.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from pybpf.asm.conformance import parse_conformance
from pybpf.errors import AssemblerError
from pybpf.isa.codec import decode_program, encode_program
from pybpf.isa.insn import LabeledInsn

KNOWN_SECTIONS = ("asm", "raw", "mem", "result", "error", "c", "no register offset")


class DataFileError(AssemblerError):
    """A ``.data`` file that does not follow the format (line and column in the file)."""


@dataclass(frozen=True, slots=True)
class DataFile:
    """One parsed ``.data`` file. ``asm_line`` is the file line of the asm section's first line."""

    asm: str | None
    raw: bytes | None
    mem: bytes | None
    result: int | None
    error: str | None
    c: str | None = None
    no_register_offset: str | None = None
    asm_line: int = 1

    def program(self) -> list[LabeledInsn]:
        """The instructions: assembled from ``asm`` (errors name lines of the file), else decoded from ``raw``."""
        if self.asm is not None:
            try:
                return parse_conformance(self.asm)
            except AssemblerError as error:
                raise AssemblerError(error.line + self.asm_line - 1, error.column, error.reason, error.source) from None
        if self.raw is None:
            raise DataFileError(1, 1, "the file has neither an '-- asm' nor a '-- raw' section")
        return decode_program(self.raw, check_jumps=False)

    def bytecode(self) -> bytes:
        """The program bytes: ``raw`` exactly as written when present, else the assembled ``asm``."""
        if self.raw is not None:
            return self.raw
        return encode_program(self.program())


def _hex_bytes(lines: list[tuple[int, str]], what: str) -> bytes:
    out = bytearray()
    for number, text in lines:
        for index, token in enumerate(text.split()):
            column = text.find(token) + 1 if index == 0 else text.index(token) + 1
            try:
                value = int(token, 16)
            except ValueError:
                raise DataFileError(number, column, f"{what}: {token!r} is not a hex byte") from None
            if not 0 <= value <= 0xFF or len(token) > 2:
                raise DataFileError(number, column, f"{what}: {token!r} is not one byte (two hex digits)")
            out.append(value)
    return bytes(out)


def _raw(lines: list[tuple[int, str]]) -> bytes:
    """Raw bytecode: 64-bit words (one ``0x...`` per line) or lines of hex bytes."""
    out = bytearray()
    for number, text in lines:
        tokens = text.split()
        if len(tokens) == 1 and (tokens[0].lower().startswith("0x") or len(tokens[0]) > 2):
            try:
                word = int(tokens[0], 16) if tokens[0].lower().startswith("0x") else int(tokens[0])
            except ValueError:
                raise DataFileError(number, 1, f"raw: {tokens[0]!r} is not a 64-bit word") from None
            if not 0 <= word < 1 << 64:
                raise DataFileError(number, 1, f"raw: {tokens[0]!r} does not fit 64 bits")
            out += struct.pack("<Q", word)
        else:
            out += _hex_bytes([(number, text)], "raw")
    return bytes(out)


def _result(lines: list[tuple[int, str]]) -> int | None:
    if not lines:
        return None
    number, text = lines[-1]
    value = text.strip()
    try:
        return int(value, 16) if value.lower().startswith("0x") else int(value)
    except ValueError:
        raise DataFileError(number, 1, f"result: {value!r} is not a number (0x hex or decimal)") from None


def parse_data_file(text: str) -> DataFile:
    """Parse a ``.data`` file. Raises ``DataFileError`` on unknown directives or missing sections."""
    sections: dict[str, list[tuple[int, str]]] = {}
    starts: dict[str, int] = {}
    current: str | None = None
    for number, raw_line in enumerate(text.splitlines(), 1):
        line = raw_line.rstrip("\r")
        if line.startswith("--"):
            name = line[2:].strip()
            if name not in KNOWN_SECTIONS:
                known = ", ".join(KNOWN_SECTIONS)
                raise DataFileError(number, 1, f"unknown directive '{line.strip()}' (known sections: {known})")
            if name in sections:
                raise DataFileError(number, 1, f"section '-- {name}' appears twice (first on line {starts[name] - 1})")
            current = name
            sections[name] = []
            starts[name] = number + 1
            continue
        if current is not None:
            sections[current].append((number, line))

    def text_of(name: str) -> str | None:
        if name not in sections:
            return None
        return "\n".join(line for _, line in sections[name]).strip("\n") + ("\n" if sections[name] else "")

    def content(name: str) -> list[tuple[int, str]]:
        return [(number, line) for number, line in sections.get(name, []) if line.strip()]

    if "asm" not in sections and "raw" not in sections:
        raise DataFileError(1, 1, "the file has no program: it needs an '-- asm' or a '-- raw' section")
    if "result" not in sections and "error" not in sections:
        raise DataFileError(1, 1, "the file expects nothing: it needs a '-- result' or an '-- error' section")
    error = text_of("error")
    asm_lines = sections.get("asm")
    return DataFile(
        asm="".join(line + "\n" for _, line in asm_lines) if asm_lines is not None else None,
        raw=_raw(content("raw")) if "raw" in sections else None,
        mem=_hex_bytes(content("mem"), "mem") if "mem" in sections else None,
        result=_result(content("result")),
        error=error.strip() if error is not None else None,
        c=text_of("c"),
        no_register_offset=text_of("no register offset"),
        asm_line=starts.get("asm", 1),
    )
