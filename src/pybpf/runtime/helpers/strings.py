"""Printing and string helpers: trace_printk, trace_vprintk, snprintf, strncmp, strtol, strtoul."""

# Every helper takes (env, r1..r5): the helper ABI fixes six positional parameters.
# ruff: noqa: PLR0917

from __future__ import annotations

import struct

from pybpf.platform.uapi_generated import HelperId
from pybpf.runtime.helpers._common import EINVAL, ERANGE, U32, U64, neg, read, read_cstring, try_read, write
from pybpf.runtime.helpers.bprintf import (
    MAX_BPRINTF_BUF,
    MAX_BPRINTF_VARARGS,
    MAX_TRACE_PRINTK_VARARGS,
    FormatError,
    format_message,
)
from pybpf.runtime.helpers.services import TraceEvent, run_state
from pybpf.vm.execution import ExecutionContext, HelperFn

BPF_STRTOX_BASE_MASK = 0x1F
_STRTOX_MAX_DIGITS = 63  # the kernel parses from a 64-byte stack copy
_KERNEL_SPACE = frozenset(b" \t\n\v\f\r\xa0")  # the kernel's _ctype marks 0xA0 as space too


def _format(env: ExecutionContext, fmt: bytes, args: list[int], num_args: int) -> bytes:
    def read_string(address: int, limit: int) -> bytes | None:
        return read_cstring(env, address, limit)

    def read_bytes(address: int, size: int) -> bytes | None:
        return try_read(env, address, size)

    return format_message(fmt, args, num_args, read_string, read_bytes)


def _fmt_arg(env: ExecutionContext, address: int, size: int) -> bytes | None:
    """The format string of a (pointer, size) pair: up to its NUL, or None when it has none."""
    raw = read(env, address, size)
    end = raw.find(b"\0")
    return None if end < 0 else raw[:end]


def _trace(env: ExecutionContext, message: bytes) -> int:
    state = run_state(env)
    services = state.services
    task = services.task
    text = message[: MAX_BPRINTF_BUF - 1].decode("latin-1")
    event = TraceEvent(text, task.pid, task.comm.decode("latin-1"), state.current_cpu, services.clock.monotonic_ns())
    services.trace_pipe.write(event)
    return len(message)


def trace_printk(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    fmt = _fmt_arg(env, r1, r2 & U32)
    if fmt is None:
        return EINVAL
    try:
        message = _format(env, fmt, [r3, r4, r5], MAX_TRACE_PRINTK_VARARGS)
    except FormatError as error:
        return neg(error.errno)
    return _trace(env, message)


def _u64_args(env: ExecutionContext, address: int, size: int) -> list[int] | None:
    if size % 8 or size > MAX_BPRINTF_VARARGS * 8 or (size and not address):
        return None
    raw = read(env, address, size)
    return list(struct.unpack(f"<{size // 8}Q", raw))


def trace_vprintk(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    args = _u64_args(env, r3, r4 & U32)
    if args is None:
        return EINVAL
    fmt = _fmt_arg(env, r1, r2 & U32)
    if fmt is None:
        return EINVAL
    try:
        message = _format(env, fmt, args, len(args))
    except FormatError as error:
        return neg(error.errno)
    return _trace(env, message)


def snprintf(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    """Format into str[str_size] (NUL-terminated when it has room); the full length plus one."""
    args = _u64_args(env, r4, r5 & U32)
    if args is None:
        return EINVAL
    fmt = read_cstring(env, r3, 1 << 20)
    if fmt is None:
        return EINVAL
    try:
        message = _format(env, fmt, args, len(args))
    except FormatError as error:
        return neg(error.errno)
    size = r2 & U32
    if size:
        kept = message[: size - 1]
        write(env, r1, kept + b"\0")
    return len(message) + 1


def strncmp(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    """strncmp(s1, s2, s1_sz): -1, 0 or 1 like the kernel's lib/string.c."""
    size = r2 & U32
    s1 = read(env, r1, size)
    s2 = read_cstring(env, r3, size)
    s2_bytes = b"" if s2 is None else s2
    for index in range(size):
        c1 = s1[index]
        c2 = s2_bytes[index] if index < len(s2_bytes) else 0
        if c1 != c2:
            return 1 if c1 > c2 else U64  # -1
        if c1 == 0:
            return 0
    return 0


def _strtoull(raw: bytes, flags: int) -> tuple[int, int, bool]:
    """__bpf_strtoull: (characters consumed, value, negative) or raise _StrtoxError(errno)."""
    base = flags & BPF_STRTOX_BASE_MASK
    if not raw or base not in (0, 8, 10, 16) or flags & ~BPF_STRTOX_BASE_MASK:
        raise _StrtoxError(EINVAL)
    cursor = 0
    while cursor < len(raw) and raw[cursor] in _KERNEL_SPACE:
        cursor += 1
    negative = cursor < len(raw) and raw[cursor] == ord("-")
    if negative:
        cursor += 1
    consumed = cursor
    if consumed == len(raw):
        raise _StrtoxError(EINVAL)
    text = raw[cursor : cursor + _STRTOX_MAX_DIGITS]
    nul = text.find(b"\0")
    if nul >= 0:
        text = text[:nul]
    start = 0
    lowered = text.lower()
    if base == 0:
        if lowered[:1] == b"0":
            hex_digit = lowered[2:3]
            base = 16 if lowered[1:2] == b"x" and hex_digit and hex_digit in b"0123456789abcdef" else 8
        else:
            base = 10
    if base == 16 and lowered[:2] == b"0x":
        start = 2
    value = 0
    overflow = False
    index = start
    while index < len(lowered):
        digit = _digit(lowered[index])
        if digit is None or digit >= base:
            break
        value = value * base + digit
        if value > U64:
            overflow = True
            value &= U64
        index += 1
    if overflow:
        raise _StrtoxError(ERANGE)
    if index == start:
        raise _StrtoxError(EINVAL)
    return consumed + index, value, negative


def _digit(char: int) -> int | None:
    if 0x30 <= char <= 0x39:
        return char - 0x30
    if 0x61 <= char <= 0x66:
        return char - 0x61 + 10
    return None


class _StrtoxError(Exception):
    def __init__(self, result: int) -> None:
        self.result = result
        super().__init__(result)


def _store_long(env: ExecutionContext, address: int, value: int) -> None:
    write(env, address, (value & U64).to_bytes(8, "little"))


def strtol(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    raw = read(env, r1, r2 & U32)
    try:
        consumed, value, negative = _strtoull(raw, r3)
        if negative:
            result = -value & U64
            if result and not result >> 63:  # -value is positive: below LONG_MIN
                raise _StrtoxError(ERANGE)
        else:
            if value >> 63:
                raise _StrtoxError(ERANGE)
            result = value
    except _StrtoxError as error:
        _store_long(env, r4, 0)  # the kernel zeroes *res on every error (no stale data leaks)
        return error.result
    _store_long(env, r4, result)
    return consumed


def strtoul(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    raw = read(env, r1, r2 & U32)
    try:
        consumed, value, negative = _strtoull(raw, r3)
        if negative:
            raise _StrtoxError(EINVAL)
    except _StrtoxError as error:
        _store_long(env, r4, 0)
        return error.result
    _store_long(env, r4, value)
    return consumed


STRING_HELPERS: dict[HelperId, HelperFn] = {
    HelperId.TRACE_PRINTK: trace_printk,
    HelperId.TRACE_VPRINTK: trace_vprintk,
    HelperId.SNPRINTF: snprintf,
    HelperId.STRNCMP: strncmp,
    HelperId.STRTOL: strtol,
    HelperId.STRTOUL: strtoul,
}
