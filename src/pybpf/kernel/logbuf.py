"""Capturing the kernel's verifier and BTF logs, whatever their size.

BPF_PROG_LOAD and BPF_BTF_LOAD write their log into a user buffer and fail with ENOSPC when
it does not fit (since 6.4 they also report the size it needed, ``log_true_size``). The
loader in :func:`load_with_log` retries with a bigger buffer until the log fits or reaches
a cap; it is shared by programs and BTF, which differ only in their attr fields.
"""

from __future__ import annotations

import ctypes
import errno as errno_codes
from collections.abc import Callable
from dataclasses import dataclass, field

INITIAL_LOG_SIZE = 128 << 10
"""First log buffer (128 KiB): enough for most rejections, cheap to allocate."""

# Kernels before 6.4 do not report the size needed; grow this much per retry then.
_GROWTH_FACTOR = 4


@dataclass(slots=True)
class LogCapture:
    """One log buffer handed to the kernel for one attempt."""

    level: int
    size: int
    buffer: ctypes.Array[ctypes.c_char] = field(repr=False)
    true_size: int = 0
    """Filled by the attempt from ``log_true_size`` (0 when the kernel does not report it)."""

    @classmethod
    def allocate(cls, level: int, size: int) -> LogCapture:
        return cls(level, size, ctypes.create_string_buffer(size))

    @property
    def address(self) -> int:
        return ctypes.addressof(self.buffer)

    def text(self) -> str:
        raw = self.buffer.raw
        end = raw.find(b"\0")
        return raw[: end if end >= 0 else len(raw)].decode("utf-8", errors="replace")


@dataclass(frozen=True, slots=True)
class LogOutcome:
    """The last attempt's result (``-errno`` on failure) and the log it produced."""

    result: int
    log: str
    truncated: bool


Attempt = Callable[[LogCapture | None], int]
"""One load: with no log for None, else into the capture's buffer; ``-errno`` on failure."""


def load_with_log(
    attempt: Attempt,
    *,
    log_level: int,
    log_cap: int,
    initial_size: int = INITIAL_LOG_SIZE,
) -> LogOutcome:
    """Load, capturing the log: fast path without it when ``log_level`` is 0.

    With ``log_level`` 0 a failed load is repeated at level 1 to get the log. An ENOSPC with
    the log full grows the buffer (to ``log_true_size`` when reported) up to ``log_cap``.
    """
    unlogged_result: int | None = None
    if log_level == 0:
        unlogged_result = attempt(None)
        if unlogged_result >= 0:
            return LogOutcome(unlogged_result, "", truncated=False)
        log_level = 1
    size = min(initial_size, log_cap)
    while True:
        capture = LogCapture.allocate(log_level, size)
        result = attempt(capture)
        text = capture.text()
        if result != -errno_codes.ENOSPC:
            return LogOutcome(result, text, truncated=False)
        if 0 < capture.true_size <= size:
            # The log fitted: this ENOSPC is the command's own, not the log's.
            return LogOutcome(result, text, truncated=False)
        if size >= log_cap:
            break
        wanted = capture.true_size if capture.true_size > size else size * _GROWTH_FACTOR
        size = min(log_cap, wanted)
    # The log cannot fit under the cap. A program (or BTF) that is fine but logs a lot fails
    # only because of the log, so load it once more without one before giving up; and when
    # the load without a log already failed, its errno is the real one.
    if unlogged_result is None:
        unlogged_result = attempt(None)
    return LogOutcome(unlogged_result, text, truncated=True)


@dataclass(frozen=True, slots=True)
class LogSummary:
    """The gist of a verifier log: the cause, the lines leading to it, how many are left out."""

    cause: str
    tail: tuple[str, ...]
    omitted: int


# Lines the verifier appends after its verdict: statistics, not the reason for it.
_STATS_PREFIXES = ("processed ", "verification time ", "stack depth ")


def summarize_log(log: str, tail_lines: int = 5) -> LogSummary:
    """The cause of a rejection (the last line before the statistics) and the lines before it."""
    lines = [line.rstrip() for line in log.splitlines() if line.strip()]
    while lines and lines[-1].startswith(_STATS_PREFIXES):
        lines.pop()
    if not lines:
        return LogSummary("(empty verifier log)", (), 0)
    tail = tuple(lines[-tail_lines:]) if tail_lines > 0 else ()
    return LogSummary(lines[-1].strip(), tail, len(lines) - len(tail))
