"""The key hash native code and Python compute identically (the JIT emits the same steps as IR).

A byte string is hashed in 8-byte little-endian words, the last one zero-padded, each mixed in
with MurmurHash3's multiply-rotate-multiply (one multiply alone would let a flip of a word's top
bit cancel against one bit of the next word), then the length is folded in and SplitMix64's
finaliser spreads every input bit over the low bits an open-addressing table masks with: four
multiplies for a key of up to 8 bytes, which is what native code waits for on every probe.
The seed separates key spaces sharing one table (an LPM trie's prefix lengths).

LPM tries hash a prefix, not the whole key: the ``prefixlen // 8`` whole bytes of the
big-endian data and, when ``prefixlen % 8`` bits remain, the next byte with only those bits
kept (:func:`prefix_bytes`); native code reads the same bytes straight from the lookup key.
"""

from __future__ import annotations

U64 = (1 << 64) - 1
SEED_MULTIPLIER = 0x9E3779B97F4A7C15
"""2**64 / golden ratio: spreads small seeds (prefix lengths) apart before the first word."""
WORD_MULTIPLIER = 0x87C37B91114253D5
WORD_MULTIPLIER_2 = 0x4CF5AD432745937F
"""MurmurHash3 x64's block constants."""
WORD_ROTATE = 31
FINAL_C1 = 0xBF58476D1CE4E5B9
FINAL_C2 = 0x94D049BB133111EB
FINAL_SHIFTS = (30, 27, 31)
"""SplitMix64's finaliser: xor-shift, multiply, xor-shift, multiply, xor-shift."""
WORD_BYTES = 8


def rotl64(value: int, shift: int) -> int:
    return ((value << shift) | (value >> (64 - shift))) & U64


def mix_word(state: int, word: int) -> int:
    """One 64-bit word into the state."""
    return (rotl64(((state ^ word) * WORD_MULTIPLIER) & U64, WORD_ROTATE) * WORD_MULTIPLIER_2) & U64


def finish(state: int, length: int) -> int:
    """Fold in the length, then SplitMix64's finaliser."""
    state ^= length
    first, second, third = FINAL_SHIFTS
    state ^= state >> first
    state = (state * FINAL_C1) & U64
    state ^= state >> second
    state = (state * FINAL_C2) & U64
    return state ^ (state >> third)


def initial_state(seed: int, length: int) -> int:
    return ((seed * SEED_MULTIPLIER) & U64) ^ length


def native_hash(data: bytes, seed: int = 0) -> int:
    """The 64-bit hash of ``data`` under ``seed``."""
    length = len(data)
    state = initial_state(seed, length)
    for offset in range(0, length, WORD_BYTES):
        state = mix_word(state, int.from_bytes(data[offset : offset + WORD_BYTES], "little"))
    return finish(state, length)


def tail_mask(prefixlen: int) -> int:
    """The bits of the byte after the whole ones that a prefix covers (0: none)."""
    bits = prefixlen % 8
    return (0xFF << (8 - bits)) & 0xFF if bits else 0


def prefix_bytes(data: bytes, prefixlen: int) -> bytes:
    """The bytes an LPM prefix of ``prefixlen`` bits over big-endian ``data`` is hashed and compared on."""
    whole = prefixlen // 8
    mask = tail_mask(prefixlen)
    if not mask:
        return bytes(data[:whole])
    return bytes(data[:whole]) + bytes([data[whole] & mask])
