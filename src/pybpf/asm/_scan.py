"""Scanning one line of assembly: a cursor that knows its line and column, and number parsing.

Both syntaxes (conformance and LLVM) parse with the same cursor, so every error names the
line and the 1-based column of the offending token, and immediates and offsets follow one
set of range rules:

- a 32-bit immediate written in decimal must fit a signed 32-bit integer; written in hex it
  may also be the unsigned bit pattern (``0xffffffff`` is ``-1``), so ``2147483648`` and
  ``0x100000000`` are both rejected;
- a 16-bit offset must fit a signed 16-bit integer, whatever the base (it carries its sign);
- a 64-bit immediate (``lddw``) may be anything from ``-2**63`` to ``2**64 - 1``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pybpf.errors import AssemblerError

INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1
UINT32_MAX = (1 << 32) - 1
INT16_MIN = -(1 << 15)
INT16_MAX = (1 << 15) - 1
INT64_MIN = -(1 << 63)
UINT64_MAX = (1 << 64) - 1

_NUMBER = re.compile(r"([+-]?)\s*(0[xX][0-9a-fA-F]+|[0-9]+)(?![\w.])")
_IDENT = re.compile(r"[A-Za-z_.][\w.]*")
_SPACE = re.compile(r"\s*")


@dataclass(frozen=True, slots=True)
class Number:
    """An integer literal as written: its value, whether it was hex, and its column."""

    value: int
    is_hex: bool
    column: int
    text: str


def to_signed32(value: int) -> int:
    value &= UINT32_MAX
    return value - (1 << 32) if value > INT32_MAX else value


class Cursor:
    """A read position in one line. ``line`` is 1-based; columns reported are 1-based."""

    __slots__ = ("limit", "line", "pos", "text")

    def __init__(self, text: str, line: int, pos: int = 0, limit: int | None = None) -> None:
        self.text = text
        self.line = line
        self.pos = pos
        self.limit = len(text) if limit is None else limit

    @property
    def column(self) -> int:
        return self.pos + 1

    def error(self, reason: str, column: int | None = None) -> AssemblerError:
        """An error at ``column`` (default: the current position, after blanks)."""
        if column is None:
            self.skip_space()
            column = self.column
        return AssemblerError(self.line, column, reason, self.text)

    def skip_space(self) -> None:
        match = _SPACE.match(self.text, self.pos, self.limit)
        if match:
            self.pos = match.end()

    def at_end(self) -> bool:
        self.skip_space()
        return self.pos >= self.limit

    def rest(self) -> str:
        self.skip_space()
        return self.text[self.pos : self.limit]

    def peek(self, token: str) -> bool:
        self.skip_space()
        return self.text.startswith(token, self.pos, self.limit)

    def accept(self, token: str) -> bool:
        if self.peek(token):
            self.pos += len(token)
            return True
        return False

    def expect(self, token: str, context: str = "") -> None:
        if not self.accept(token):
            found = self.rest()
            shown = repr(found[:20]) if found else "the end of the line"
            where = f" {context}" if context else ""
            raise self.error(f"expected '{token}'{where}, found {shown}")

    def match(self, pattern: re.Pattern[str]) -> re.Match[str] | None:
        self.skip_space()
        found = pattern.match(self.text, self.pos, self.limit)
        if found:
            self.pos = found.end()
        return found

    def ident(self) -> tuple[str, int] | None:
        """An identifier and its column, or None (the cursor does not move then)."""
        self.skip_space()
        column = self.column
        found = self.match(_IDENT)
        return (found.group(0), column) if found else None

    def number(self, what: str) -> Number:
        self.skip_space()
        column = self.column
        found = _NUMBER.match(self.text, self.pos, self.limit)
        if not found:
            rest = self.rest()
            shown = repr(rest.split()[0][:20]) if rest else "the end of the line"
            raise self.error(f"expected {what} (a decimal or 0x hex number), found {shown}")
        self.pos = found.end()
        sign, digits = found.groups()
        is_hex = digits[:2].lower() == "0x"
        magnitude = int(digits, 16 if is_hex else 10)
        return Number(-magnitude if sign == "-" else magnitude, is_hex, column, found.group(0))

    def end(self) -> None:
        if not self.at_end():
            raise self.error(f"unexpected text {self.rest()[:30]!r} at the end of the instruction")


def check_imm32(cursor: Cursor, number: Number, what: str = "immediate") -> int:
    """The signed 32-bit field value of a 32-bit immediate (see the module doc for the rule)."""
    low = INT32_MIN
    high = UINT32_MAX if number.is_hex else INT32_MAX
    if not low <= number.value <= high:
        allowed = "-0x80000000..0xffffffff" if number.is_hex else "-2147483648..2147483647"
        raise cursor.error(
            f"{what} {number.text.strip()} is out of 32-bit range (allowed: {allowed}; "
            "hex may also spell the unsigned bit pattern)",
            number.column,
        )
    return to_signed32(number.value)


def check_off16(cursor: Cursor, number: Number, what: str = "offset") -> int:
    if not INT16_MIN <= number.value <= INT16_MAX:
        raise cursor.error(
            f"{what} {number.text.strip()} is out of 16-bit range (allowed: -32768..32767)", number.column
        )
    return number.value


def check_int32(cursor: Cursor, number: Number, what: str) -> int:
    """A signed 32-bit quantity that is not a bit pattern (a pc-relative offset)."""
    if not INT32_MIN <= number.value <= INT32_MAX:
        raise cursor.error(
            f"{what} {number.text.strip()} is out of 32-bit range (allowed: -2147483648..2147483647)",
            number.column,
        )
    return number.value


def check_imm64(cursor: Cursor, number: Number) -> int:
    """The unsigned 64-bit value of an ``lddw`` immediate."""
    if not INT64_MIN <= number.value <= UINT64_MAX:
        raise cursor.error(
            f"64-bit immediate {number.text.strip()} is out of range (allowed: -2**63..2**64-1)", number.column
        )
    return number.value & UINT64_MAX


def check_uint32(cursor: Cursor, number: Number, what: str) -> int:
    """A non-negative 32-bit quantity stored in a signed field (map fd, BTF id): returns the field value."""
    if not 0 <= number.value <= UINT32_MAX:
        raise cursor.error(f"{what} {number.text.strip()} is out of range (allowed: 0..4294967295)", number.column)
    return to_signed32(number.value)


def is_identifier(text: str) -> bool:
    return _IDENT.fullmatch(text) is not None
