"""Owned file descriptors for kernel BPF objects (maps, programs, BTF, links).

A map or program lives while some descriptor (or pin, or attachment) refers to it, so every
descriptor bpf(2) hands back is wrapped at once in an :class:`Fd` that closes it exactly
once: by :meth:`Fd.close`, by leaving a ``with`` block, or when the object is collected.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable
from types import TracebackType
from typing import Self

from pybpf.errors import PybpfError


class BadFdError(PybpfError):
    """A value that is not a usable file descriptor."""


class ClosedFdError(BadFdError):
    """An :class:`Fd` was used after it was closed or detached."""


class Fd:
    """Owns one file descriptor and closes it exactly once.

    ``closer`` is the function that releases the descriptor (``os.close``; tests pass a spy).
    The finalizer holds only the number and the closer, never ``self``, so it does not keep
    the object alive.
    """

    __slots__ = ("__weakref__", "_finalizer", "_value")

    def __init__(self, value: int, *, closer: Callable[[int], None] = os.close) -> None:
        if value < 0:
            raise BadFdError(f"not a file descriptor: {value}")
        self._value = value
        self._finalizer = weakref.finalize(self, closer, value)

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive

    def fileno(self) -> int:
        """The descriptor number; ClosedFdError once closed."""
        if not self._finalizer.alive:
            raise ClosedFdError(f"file descriptor {self._value} is closed")
        return self._value

    def __index__(self) -> int:
        return self.fileno()

    def close(self) -> None:
        """Close the descriptor; later calls do nothing."""
        self._finalizer()

    def detach(self) -> int:
        """Give up ownership: return the number without closing it."""
        value = self.fileno()
        self._finalizer.detach()
        return value

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"Fd({self._value}, {state})"


FdLike = Fd | int
"""Where a descriptor is an argument, an owned :class:`Fd` or a plain (borrowed) number."""


def fd_number(fd: FdLike) -> int:
    """The descriptor number of ``fd`` (ClosedFdError for a closed :class:`Fd`)."""
    if isinstance(fd, Fd):
        return fd.fileno()
    if fd < 0:
        raise BadFdError(f"not a file descriptor: {fd}")
    return fd
