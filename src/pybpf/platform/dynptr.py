"""``struct bpf_dynptr``: the kinds of dynamic pointer and their 16-byte in-memory layout.

A program sees a dynptr as 16 opaque, 8-byte aligned bytes on its stack (``struct bpf_dynptr``);
the kernel fills them as ``struct bpf_dynptr_kern`` (include/linux/bpf.h, kernel/bpf/helpers.c):

====== ===== ===========================================================================
offset bytes field
====== ===== ===========================================================================
0      8     ``data``: the address of the memory the dynptr views (0: a NULL dynptr)
8      4     ``size``: bits 0-23 the size, bits 28-30 the :class:`DynptrType`, bit 31 read-only
12     4     ``offset``: where the view starts inside ``data``
====== ===== ===========================================================================

The verifier (which only knows the kind) and the runtime (which reads and writes these bytes in
the shared address space, so interpreter and JIT agree) both use this module.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

__all__ = [
    "DYNPTR_MAX_SIZE",
    "DYNPTR_RDONLY_BIT",
    "DYNPTR_SIZE",
    "DYNPTR_SIZE_MASK",
    "DYNPTR_TYPE_SHIFT",
    "DynptrType",
    "DynptrValue",
    "decode_dynptr",
    "encode_dynptr",
]

DYNPTR_SIZE = 16
"""``sizeof(struct bpf_dynptr)``: two stack slots."""
DYNPTR_SIZE_MASK = 0xFFFFFF
DYNPTR_MAX_SIZE = DYNPTR_SIZE_MASK
"""The largest size a dynptr can describe (the upper 8 bits of ``size`` hold metadata)."""
DYNPTR_TYPE_SHIFT = 28
DYNPTR_RDONLY_BIT = 1 << 31
_LAYOUT = struct.Struct("<QII")


class DynptrType(IntEnum):
    """``enum bpf_dynptr_type``."""

    INVALID = 0
    LOCAL = 1  # memory of the program: a map value (bpf_dynptr_from_mem), a user ring buffer sample
    RINGBUF = 2  # a ring buffer record reserved by bpf_ringbuf_reserve_dynptr (a reference)
    SKB = 3
    XDP = 4

    @property
    def refcounted(self) -> bool:
        """``dynptr_type_refcounted``: the dynptr holds a reference the program must release."""
        return self is DynptrType.RINGBUF


@dataclass(frozen=True, slots=True)
class DynptrValue:
    """The decoded contents of a ``struct bpf_dynptr_kern``."""

    data: int
    size: int
    type: int  # a DynptrType value; kept as an int, since a program may have scribbled on it
    offset: int = 0
    rdonly: bool = False

    @property
    def is_null(self) -> bool:
        return self.data == 0


def decode_dynptr(raw: bytes) -> DynptrValue:
    """The fields of 16 dynptr bytes."""
    data, size_word, offset = _LAYOUT.unpack(raw[:DYNPTR_SIZE])
    kind = (size_word & ~DYNPTR_RDONLY_BIT) >> DYNPTR_TYPE_SHIFT
    return DynptrValue(data, size_word & DYNPTR_SIZE_MASK, kind, offset, bool(size_word & DYNPTR_RDONLY_BIT))


def encode_dynptr(value: DynptrValue) -> bytes:
    """``bpf_dynptr_init`` (plus ``bpf_dynptr_set_rdonly``): the 16 bytes for ``value``."""
    size_word = (value.size & DYNPTR_SIZE_MASK) | (value.type << DYNPTR_TYPE_SHIFT)
    if value.rdonly:
        size_word |= DYNPTR_RDONLY_BIT
    return _LAYOUT.pack(value.data, size_word, value.offset)
