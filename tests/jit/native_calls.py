"""Counting what reaches a compiled program's Python trampoline (the fast path must make no Python call)."""

from __future__ import annotations

import ctypes
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def python_calls(jit: Any) -> Iterator[list[int]]:
    """The helper id of every call that reaches ``jit``'s Python trampoline inside the block.

    The native code reads the trampoline's address from the run-state block at each run, so a
    counting callback swapped into ``_callback_addresses`` sees every call of an already
    compiled program (patching the class would not: the ctypes callback is bound at compile time).
    """
    seen: list[int] = []
    serve = jit._serve_helper

    def counting(key: int, helper: int, pc: int, *registers: int) -> int:
        seen.append(helper)
        return int(serve(key, helper, pc, *registers))

    callback = type(jit._helper_callback)(counting)
    saved = jit._callback_addresses
    jit._callback_addresses = (ctypes.cast(callback, ctypes.c_void_p).value, saved[1])
    try:
        yield seen
    finally:
        jit._callback_addresses = saved
