"""Tristate numbers: the kernel's bit-level abstract domain (kernel/bpf/tnum.c).

A :class:`Tnum` ``(value, mask)`` stands for every 64-bit unsigned integer ``x`` with
``x & ~mask == value``: a bit set in ``mask`` is unknown, other bits equal the bit in ``value``.
The invariant ``value & mask == 0`` always holds. All arithmetic is modulo 2**64, like the
registers it describes; operations are sound (they over-approximate every concrete result),
which the property tests check against concrete arithmetic.
"""

from __future__ import annotations

from pybpf.errors import VerifierError
from pybpf.verifier.values import value_class

U64 = (1 << 64) - 1
U32 = (1 << 32) - 1


@value_class
class Tnum:
    """``value``: the known bits; ``mask``: the unknown bits (disjoint from ``value``)."""

    value: int
    mask: int

    def __post_init__(self) -> None:
        # Constructed only by this module's operations and by callers; a broken invariant would
        # make every later operation unsound, so refuse it outright.
        if self.value & self.mask or not 0 <= self.value <= U64 or not 0 <= self.mask <= U64:
            raise VerifierError(None, f"malformed tnum (value={self.value:#x}, mask={self.mask:#x})")

    def __eq__(self, other: object) -> bool:
        # Without building tuples (dataclass's __eq__): memo lookups compare keys.
        if not isinstance(other, Tnum):
            return NotImplemented
        return self.value == other.value and self.mask == other.mask

    def __hash__(self) -> int:
        return hash((self.value, self.mask))

    # -- constructors -------------------------------------------------------------------------

    @classmethod
    def const(cls, value: int) -> Tnum:
        return unchecked(value & U64, 0) if cls is Tnum else cls(value & U64, 0)

    @classmethod
    def unknown(cls) -> Tnum:
        return _UNKNOWN if cls is Tnum else cls(0, U64)

    @classmethod
    def range(cls, umin: int, umax: int) -> Tnum:
        """The smallest tnum holding every value of the unsigned range ``[umin, umax]``."""
        umin &= U64
        umax &= U64
        differing = umin ^ umax
        bits = differing.bit_length()
        if bits > 63:
            # The kernel gives up when the top bit differs (a 64-bit shift is undefined in C).
            return cls.unknown()
        delta = (1 << bits) - 1
        return unchecked(umin & ~delta & U64, delta) if cls is Tnum else cls(umin & ~delta & U64, delta)

    # -- queries ------------------------------------------------------------------------------

    def is_const(self) -> bool:
        return self.mask == 0

    def is_unknown(self) -> bool:
        return self.mask == U64

    def contains(self, x: int) -> bool:
        """Whether the concrete value ``x`` (taken modulo 2**64) is described by this tnum."""
        return (x & U64) & ~self.mask & U64 == self.value

    def includes(self, other: Tnum) -> bool:
        """The kernel's ``tnum_in(self, other)``: every value of ``other`` is a value of ``self``."""
        if other.mask & ~self.mask:
            return False
        return self.value == other.value & ~self.mask & U64

    def umin(self) -> int:
        return self.value

    def umax(self) -> int:
        return self.value | self.mask

    def is_aligned(self, size: int) -> bool:
        if size == 0:
            return True
        return ((self.value | self.mask) & (size - 1)) == 0

    # -- arithmetic ---------------------------------------------------------------------------

    def add(self, other: Tnum) -> Tnum:
        sum_mask = (self.mask + other.mask) & U64
        sum_value = (self.value + other.value) & U64
        # Bits where carrying through the unknown bits may change the result become unknown.
        carries = ((sum_mask + sum_value) & U64) ^ sum_value
        unknown = carries | self.mask | other.mask
        return unchecked(sum_value & ~unknown & U64, unknown)

    def sub(self, other: Tnum) -> Tnum:
        diff = (self.value - other.value) & U64
        high = (diff + self.mask) & U64
        low = (diff - other.mask) & U64
        unknown = (high ^ low) | self.mask | other.mask
        return unchecked(diff & ~unknown & U64, unknown)

    def neg(self) -> Tnum:
        return Tnum.const(0).sub(self)

    def and_(self, other: Tnum) -> Tnum:
        maybe_a = self.value | self.mask
        maybe_b = other.value | other.mask
        known_ones = self.value & other.value
        return unchecked(known_ones, maybe_a & maybe_b & ~known_ones & U64)

    def or_(self, other: Tnum) -> Tnum:
        known_ones = self.value | other.value
        return unchecked(known_ones, (self.mask | other.mask) & ~known_ones & U64)

    def xor(self, other: Tnum) -> Tnum:
        unknown = self.mask | other.mask
        return unchecked((self.value ^ other.value) & ~unknown & U64, unknown)

    def mul(self, other: Tnum) -> Tnum:
        """Shift-and-add multiplication as Linux 6.18's ``tnum_mul``: a known 1 bit of ``self``
        adds the shifted ``other``; an unknown bit joins the sums with and without it (more
        precise than the older value/mask split, and what the kernel's verdicts follow)."""
        acc = Tnum.const(0)
        a, b = self, other
        while a.value or a.mask:
            if a.value & 1:
                acc = acc.add(b)
            elif a.mask & 1:
                acc = acc.union(acc.add(b))
            a = a.rshift(1)
            b = b.lshift(1)
        return acc

    def lshift(self, shift: int) -> Tnum:
        return unchecked((self.value << shift) & U64, (self.mask << shift) & U64)

    def rshift(self, shift: int) -> Tnum:
        return unchecked(self.value >> shift, self.mask >> shift)

    def arshift(self, shift: int, bits: int = 64) -> Tnum:
        """Arithmetic right shift of the low ``bits`` (32 or 64) bits; the result is zero-extended."""
        width_mask = (1 << bits) - 1
        sign = 1 << (bits - 1)

        def signed(x: int) -> int:
            x &= width_mask
            return x - (1 << bits) if x & sign else x

        # An unknown sign bit spreads into every vacated bit as unknown, a known one as itself.
        return unchecked((signed(self.value) >> shift) & width_mask, (signed(self.mask) >> shift) & width_mask)

    # -- lattice ------------------------------------------------------------------------------

    def intersect(self, other: Tnum) -> Tnum:
        """Meet: the values described by both (assumes they are compatible, as the kernel does)."""
        known_ones = self.value | other.value
        unknown = self.mask & other.mask
        return unchecked(known_ones & ~unknown & U64, unknown)

    def union(self, other: Tnum) -> Tnum:
        """Join: describes every value of either."""
        unknown = (self.value ^ other.value) | self.mask | other.mask
        return unchecked(self.value & other.value & ~unknown & U64, unknown)

    def cast(self, size: int) -> Tnum:
        """Truncate to the low ``size`` bytes (1, 2, 4 or 8)."""
        width_mask = (1 << (size * 8)) - 1
        return unchecked(self.value & width_mask, self.mask & width_mask)

    # -- 32-bit sub-register helpers (tnum_subreg & co) -------------------------------------------

    def subreg(self) -> Tnum:
        return unchecked(self.value & U32, self.mask & U32)  # cast(4), spelt out

    def clear_subreg(self) -> Tnum:
        return self.rshift(32).lshift(32)

    def with_subreg(self, subreg: Tnum) -> Tnum:
        return self.clear_subreg().or_(subreg.subreg())

    def const_subreg(self, value: int) -> Tnum:
        return self.with_subreg(Tnum.const(value & U32))

    def __str__(self) -> str:
        if self.is_const():
            return f"{self.value:#x}"
        return f"(value={self.value:#x}, mask={self.mask:#x})"


_new = object.__new__


def unchecked(value: int, mask: int) -> Tnum:
    """A tnum whose value and mask are already known valid (disjoint, both within 64 bits), as
    the results of this module's operations are by construction: built without the check of
    ``__post_init__``, which every other construction still runs. (The operations build
    several tnums per scalar operation; the check doubled their cost.) Only for callers that
    have just computed such a pair."""
    made = _new(Tnum)
    made.value = value  # type: ignore[misc]  # (frozen to type checkers; this is its construction)
    made.mask = mask  # type: ignore[misc]
    return made


_UNKNOWN = Tnum(0, U64)  # immutable: one shared unknown tnum
