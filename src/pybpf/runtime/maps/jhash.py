"""Bob Jenkins' lookup3 hash as the Linux kernel spells it (``include/linux/jhash.h``).

The bloom filter map hashes values with it; with BPF_F_ZERO_SEED its seed is 0, so the same
values set the same bits as in the kernel and false positives agree exactly.
"""

from __future__ import annotations

JHASH_INITVAL = 0xDEADBEEF
_U32 = 0xFFFFFFFF


def _rol32(word: int, shift: int) -> int:
    return ((word << shift) | (word >> (32 - shift))) & _U32


def _mix(a: int, b: int, c: int) -> tuple[int, int, int]:
    a = (a - c) & _U32
    a ^= _rol32(c, 4)
    c = (c + b) & _U32
    b = (b - a) & _U32
    b ^= _rol32(a, 6)
    a = (a + c) & _U32
    c = (c - b) & _U32
    c ^= _rol32(b, 8)
    b = (b + a) & _U32
    a = (a - c) & _U32
    a ^= _rol32(c, 16)
    c = (c + b) & _U32
    b = (b - a) & _U32
    b ^= _rol32(a, 19)
    a = (a + c) & _U32
    c = (c - b) & _U32
    c ^= _rol32(b, 4)
    b = (b + a) & _U32
    return a, b, c


def _final(a: int, b: int, c: int) -> int:
    c ^= b
    c = (c - _rol32(b, 14)) & _U32
    a ^= c
    a = (a - _rol32(c, 11)) & _U32
    b ^= a
    b = (b - _rol32(a, 25)) & _U32
    c ^= b
    c = (c - _rol32(b, 16)) & _U32
    a ^= c
    a = (a - _rol32(c, 4)) & _U32
    b ^= a
    b = (b - _rol32(a, 14)) & _U32
    c ^= b
    c = (c - _rol32(b, 24)) & _U32
    return c


def jhash(data: bytes, initval: int) -> int:
    """``jhash(key, length, initval)``: bytes, read as little-endian words (the host's order)."""
    length = len(data)
    a = b = c = (JHASH_INITVAL + length + initval) & _U32
    offset = 0
    while length > 12:
        a = (a + int.from_bytes(data[offset : offset + 4], "little")) & _U32
        b = (b + int.from_bytes(data[offset + 4 : offset + 8], "little")) & _U32
        c = (c + int.from_bytes(data[offset + 8 : offset + 12], "little")) & _U32
        a, b, c = _mix(a, b, c)
        length -= 12
        offset += 12
    if length == 0:
        return c
    tail = data[offset:].ljust(12, b"\0")
    a = (a + int.from_bytes(tail[0:4], "little")) & _U32
    b = (b + int.from_bytes(tail[4:8], "little")) & _U32
    c = (c + int.from_bytes(tail[8:12], "little")) & _U32
    return _final(a, b, c)


def jhash2(data: bytes, initval: int) -> int:
    """``jhash2(k, length, initval)``: ``data`` is a whole number of u32 words (host order)."""
    words = [int.from_bytes(data[i : i + 4], "little") for i in range(0, len(data), 4)]
    length = len(words)
    a = b = c = (JHASH_INITVAL + (length << 2) + initval) & _U32
    index = 0
    while length > 3:
        a = (a + words[index]) & _U32
        b = (b + words[index + 1]) & _U32
        c = (c + words[index + 2]) & _U32
        a, b, c = _mix(a, b, c)
        length -= 3
        index += 3
    if length == 0:
        return c
    if length == 3:
        c = (c + words[index + 2]) & _U32
    if length >= 2:
        b = (b + words[index + 1]) & _U32
    a = (a + words[index]) & _U32
    return _final(a, b, c)
