"""What the dynptr test programs (tests/progs/dynptr.c, dynptr_kfuncs.c) leave in their maps.

Both programs record each helper's or kfunc's return value in an array map ``results`` of s64 and
their ring-buffer records in ``events``; these read both, from a user-space or a kernel object alike.
"""

from __future__ import annotations

import struct

from pybpf.kernel.object import KernelObject
from pybpf.runtime.object import Object


def plain_value(value: bytes | tuple[bytes, ...]) -> bytes:
    """A map value as bytes (these maps are not per-CPU)."""
    if isinstance(value, tuple):
        raise TypeError("a per-CPU value where a plain one was expected")
    return bytes(value)


def results_of(obj: Object | KernelObject) -> list[int]:
    """The ``results`` map's s64 values, in key order."""
    return [struct.unpack("<q", plain_value(entry.value))[0] for entry in obj.map_entries("results")]


def records_of(obj: Object | KernelObject) -> list[bytes]:
    """The records waiting in the ``events`` ring buffer (consumed)."""
    found: list[bytes] = []
    obj.maps["events"].consume(found.append)
    return found
