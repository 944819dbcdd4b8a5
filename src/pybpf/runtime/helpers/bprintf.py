"""The kernel's bprintf format subset (bpf_bprintf_prepare + bstr_printf) for trace_printk and snprintf.

Accepted conversions, after optional flags ``0 + - space`` and a width: ``%d %i %u %x %X`` with
``l``/``ll`` (int, long, long long), ``%c``, ``%s``, ``%%``, and pointers ``%p %pK %px %ps %pS
%pB`` (printed as numbers), ``%pks %pus`` (strings), ``%pI4 %pi4 %pI6 %pi6`` (addresses read from
memory). Anything else, a non-printable non-space character, or more conversions than arguments
is -EINVAL, as in the kernel. Arguments (strings included) share the kernel's 512-byte binary
buffer: overflowing it is -ENOSPC.

Divergence: plain ``%p``/``%pK`` print the raw pointer as 16 hex digits; the kernel prints a
keyed hash (or zeros), which no user-space run could reproduce.
"""

from __future__ import annotations

import errno as errno_codes
from collections.abc import Callable, Sequence
from dataclasses import dataclass

MAX_BPRINTF_VARARGS = 12
"""Most u64 arguments trace_vprintk/snprintf accept."""
MAX_TRACE_PRINTK_VARARGS = 3
MAX_BPRINTF_BUF = 1024
"""Bytes of the buffer trace_printk formats into (the message is truncated to 1023)."""
MAX_BPRINTF_BIN_ARGS = 512
"""Bytes of the binary argument buffer shared by all arguments of one call."""

_FLAGS = b"0+- "
_PUNCT = frozenset(b"!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
_SPACE = frozenset(b" \t\n\v\f\r")

ReadString = Callable[[int, int], bytes | None]
"""``read(address, limit)``: bytes before the NUL (at most limit), or None on a fault."""
ReadBytes = Callable[[int, int], bytes | None]


class FormatError(Exception):
    """A format the kernel rejects; ``errno`` is what the helper returns negated."""

    def __init__(self, errno: int, reason: str) -> None:
        self.errno = errno
        super().__init__(reason)


@dataclass(frozen=True, slots=True)
class Spec:
    """One conversion: ``kind`` is d i u x X c s p pK px ps pS pB pks pus pI4 pi4 pI6 pi6."""

    start: int  # index of '%'
    end: int  # index after the conversion
    flags: str
    width: int
    kind: str
    size: int  # 4 or 8 for integers


def _printable(char: int) -> bool:
    return 0x20 <= char < 0x7F or char in _SPACE


def _at(fmt: bytes, index: int) -> int:
    return fmt[index] if index < len(fmt) else 0


def _ends_string(char: int) -> bool:
    return char == 0 or char in _SPACE or char in _PUNCT


def parse_format(fmt: bytes, num_args: int) -> list[Spec]:
    """The conversions of ``fmt`` (without its NUL), or FormatError as bpf_bprintf_prepare fails."""
    specs: list[Spec] = []
    i = 0
    while i < len(fmt):
        char = fmt[i]
        if not _printable(char):
            raise FormatError(errno_codes.EINVAL, f"character {char:#x} at {i} is not printable ASCII")
        if char != ord("%"):
            i += 1
            continue
        if _at(fmt, i + 1) == ord("%"):
            i += 2
            continue
        if len(specs) >= num_args:
            raise FormatError(errno_codes.EINVAL, f"more conversions than the {num_args} arguments given")
        start = i
        i += 1
        flags_start = i
        while _at(fmt, i) in _FLAGS and _at(fmt, i):
            i += 1
        flags = fmt[flags_start:i].decode()
        width = 0
        if ord("1") <= _at(fmt, i) <= ord("9"):
            width_start = i
            while ord("0") <= _at(fmt, i) <= ord("9"):
                i += 1
            width = int(fmt[width_start:i])
        conv = _at(fmt, i)
        nxt = _at(fmt, i + 1)
        if conv == ord("p"):
            kind, i = _pointer_kind(fmt, i, nxt)
            specs.append(Spec(start, i, flags, width, kind, 8))
            continue
        if conv == ord("s"):
            if not _ends_string(nxt):
                raise FormatError(errno_codes.EINVAL, f"%s at {start} is followed by {chr(nxt)!r}")
            specs.append(Spec(start, i + 1, flags, width, "s", 8))
            i += 1
            continue
        if conv == ord("c"):
            specs.append(Spec(start, i + 1, flags, width, "c", 4))
            i += 1
            continue
        size = 4
        if _at(fmt, i) == ord("l"):
            size = 8
            i += 1
        if _at(fmt, i) == ord("l"):
            i += 1
        conv = _at(fmt, i)
        if conv not in b"iduxX" or conv == 0:
            raise FormatError(errno_codes.EINVAL, f"unsupported conversion at {start}")
        specs.append(Spec(start, i + 1, flags, width, chr(conv), size))
        i += 1
    return specs


def _pointer_kind(fmt: bytes, i: int, nxt: int) -> tuple[str, int]:
    """The kind of the %p conversion whose 'p' is at ``i`` and the index after it."""
    if nxt in b"ku" and nxt and _at(fmt, i + 2) == ord("s"):
        if not _ends_string(_at(fmt, i + 3)):
            raise FormatError(errno_codes.EINVAL, f"%p{chr(nxt)}s at {i - 1} is followed by a letter")
        return f"p{chr(nxt)}s", i + 3
    if nxt in b"KxsSB" and nxt:
        return f"p{chr(nxt)}", i + 2
    if nxt == 0 or nxt in _SPACE or nxt in _PUNCT:
        return "p", i + 1
    if nxt in b"iI" and _at(fmt, i + 2) in b"46" and _at(fmt, i + 2):
        return f"p{chr(nxt)}{chr(_at(fmt, i + 2))}", i + 3
    raise FormatError(errno_codes.EINVAL, f"unsupported pointer conversion %p{chr(nxt)}")


def _pad(text: str, spec: Spec, numeric: bool) -> str:
    if len(text) >= spec.width:
        return text
    if "-" in spec.flags:
        return text.ljust(spec.width)
    if numeric and "0" in spec.flags:
        sign = text[0] if text and text[0] in "+- " else ""
        return sign + text[len(sign) :].rjust(spec.width - len(sign), "0")
    return text.rjust(spec.width)


def _integer(value: int, spec: Spec) -> str:
    bits = spec.size * 8
    value &= (1 << bits) - 1
    if spec.kind in "di":
        signed = value - (1 << bits) if value >> (bits - 1) else value
        sign = "-" if signed < 0 else "+" if "+" in spec.flags else " " if " " in spec.flags else ""
        return _pad(sign + str(abs(signed)), spec, True)
    if spec.kind == "u":
        return _pad(str(value), spec, True)
    return _pad(format(value, "x" if spec.kind == "x" else "X"), spec, True)


def _address(kind: str, raw: bytes) -> str:
    if kind == "pI4":
        return ".".join(str(b) for b in raw)
    if kind == "pi4":
        return ".".join(f"{b:03d}" for b in raw)
    if kind == "pI6":
        return ":".join(raw[j : j + 2].hex() for j in range(0, 16, 2))
    return raw.hex()


class _Budget:
    """The kernel's shared binary-argument buffer: each argument takes room or the call is -ENOSPC."""

    def __init__(self) -> None:
        self.used = 0

    def number(self, size: int) -> None:
        self.used = (self.used + 3) & ~3
        if MAX_BPRINTF_BIN_ARGS - self.used < size:
            raise FormatError(errno_codes.ENOSPC, "arguments overflow the 512-byte bprintf buffer")
        self.used += size

    def string_room(self) -> int:
        room = MAX_BPRINTF_BIN_ARGS - self.used
        if room <= 0:
            raise FormatError(errno_codes.ENOSPC, "arguments overflow the 512-byte bprintf buffer")
        return room

    def take(self, size: int) -> None:
        self.used += size


def format_message(
    fmt: bytes, args: Sequence[int], num_args: int, read_string: ReadString, read_bytes: ReadBytes
) -> bytes:
    """Validate ``fmt`` against ``num_args`` and render it with ``args`` (FormatError when invalid)."""
    specs = parse_format(fmt, num_args)
    budget = _Budget()
    out: list[str] = []
    cursor = 0
    for index, spec in enumerate(specs):
        out.append(fmt[cursor : spec.start].decode("ascii").replace("%%", "%"))
        cursor = spec.end
        value = args[index] if index < len(args) else 0
        out.append(_render(spec, value, budget, read_string, read_bytes))
    out.append(fmt[cursor:].decode("ascii").replace("%%", "%"))
    return "".join(out).encode("latin-1")


def _render(spec: Spec, value: int, budget: _Budget, read_string: ReadString, read_bytes: ReadBytes) -> str:
    kind = spec.kind
    if kind in ("s", "pks", "pus"):
        room = budget.string_room()
        text = read_string(value, room - 1)
        data = b"" if text is None else text
        budget.take(len(data) + 1)
        return _pad(data.decode("latin-1"), spec, False)
    if kind == "c":
        if budget.string_room() <= 0:
            raise FormatError(errno_codes.ENOSPC, "no room for %c")
        budget.take(1)
        return _pad(chr(value & 0xFF), spec, False)
    if kind in ("pI4", "pi4", "pI6", "pi6"):
        length = 4 if kind.endswith("4") else 16
        if budget.string_room() < length:
            raise FormatError(errno_codes.ENOSPC, "no room for an address argument")
        raw = read_bytes(value, length) or bytes(length)
        address = _address(kind, raw)
        budget.take(len(address) + 1)
        return _pad(address, spec, False)
    budget.number(spec.size)
    if kind.startswith("p"):
        value &= (1 << 64) - 1
        if kind in ("ps", "pS", "pB"):
            return _pad(f"{value:#x}", spec, False)
        return _pad(f"{value:016x}", spec, False)
    return _integer(value, spec)
