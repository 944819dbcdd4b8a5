"""The scalar abstract value as the kernel keeps it in ``struct bpf_reg_state``.

A :class:`Scalar` is a tnum (``var_off``) plus signed and unsigned bounds on the full 64-bit
value and on its low 32 bits. It describes every 64-bit ``x`` that satisfies *all* of them.
Signed bounds are held as Python signed ints, unsigned ones as non-negative ints.

:func:`sync` is the kernel's ``reg_bounds_sync``: each piece of knowledge tightens the others
(``__update_reg_bounds`` from the tnum, ``__reg_deduce_bounds`` across signedness and width,
``__reg_bound_offset`` back into the tnum). A value whose constraints admit no integer at all
:meth:`Scalar.is_bottom` (used for infeasible branches).
"""

# sync_full spells ``x = max(x, y)`` as ``if y > x: x = y`` on purpose (see its docstring).
# ruff: noqa: PLR1730

from __future__ import annotations

from dataclasses import field

from pybpf.verifier.tnum import U32, U64, Tnum, unchecked
from pybpf.verifier.values import value_class

S64_MIN = -(1 << 63)
S64_MAX = (1 << 63) - 1
S32_MIN = -(1 << 31)
S32_MAX = (1 << 31) - 1


def to_s64(x: int) -> int:
    x &= U64
    return x - (1 << 64) if x >> 63 else x


def to_s32(x: int) -> int:
    x &= U32
    return x - (1 << 32) if x >> 31 else x


@value_class
class Scalar:
    """``SCALAR_VALUE`` knowledge: a tnum and eight bounds (kernel field names, snake_case)."""

    var_off: Tnum
    smin: int = S64_MIN
    smax: int = S64_MAX
    umin: int = 0
    umax: int = U64
    s32_min: int = S32_MIN
    s32_max: int = S32_MAX
    u32_min: int = 0
    u32_max: int = U32
    # The hash, computed on first use (0: not yet): the ALU and branch memos of
    # pybpf.verifier.machine.Env hash the same long-lived values over and over.
    _hash: int = field(default=0, init=False, repr=False, compare=False)

    def __hash__(self) -> int:
        cached = self._hash
        if not cached:
            var_off = self.var_off
            cached = hash((var_off.value, var_off.mask, self.smin, self.smax, self.umin, self.umax,
                           self.s32_min, self.s32_max, self.u32_min, self.u32_max)) or 1
            object.__setattr__(self, "_hash", cached)  # bookkeeping only: the value is unchanged
        return cached

    def __eq__(self, other: object) -> bool:
        # Field by field without building tuples (dataclass's __eq__): memo lookups compare keys.
        if self is other:
            return True
        if not isinstance(other, Scalar):
            return NotImplemented
        return (self.umin == other.umin and self.umax == other.umax and self.smin == other.smin
                and self.smax == other.smax and self.u32_min == other.u32_min and self.u32_max == other.u32_max
                and self.s32_min == other.s32_min and self.s32_max == other.s32_max
                and self.var_off.value == other.var_off.value and self.var_off.mask == other.var_off.mask)

    # -- constructors -------------------------------------------------------------------------

    @classmethod
    def unknown(cls) -> Scalar:
        # Immutable, so one shared instance serves every unknown value (it is made very often).
        return _UNKNOWN if cls is Scalar else cls(Tnum.unknown())

    @classmethod
    def const(cls, value: int) -> Scalar:
        value &= U64
        if not value and cls is Scalar:
            return _ZERO  # as unknown(): immutable, and every pointer's variable offset
        low = value & U32
        # to_s64/to_s32, inlined: constants are built on every path through an immediate.
        signed = value - (1 << 64) if value >> 63 else value
        signed_low = low - (1 << 32) if low >> 31 else low
        return cls(Tnum.const(value), signed, signed, value, value, signed_low, signed_low, low, low)

    @classmethod
    def from_tnum(cls, var_off: Tnum) -> Scalar:
        return sync(cls(var_off))

    @classmethod
    def from_urange(cls, umin: int, umax: int) -> Scalar:
        return sync(cls(Tnum.unknown(), umin=umin & U64, umax=umax & U64))

    @classmethod
    def from_srange(cls, smin: int, smax: int) -> Scalar:
        return sync(cls(Tnum.unknown(), smin=to_s64(smin), smax=to_s64(smax)))

    @classmethod
    def from_values(cls, values: list[int]) -> Scalar:
        """The tightest scalar holding every one of ``values`` (used to build test inputs)."""
        result = cls.const(values[0])
        for value in values[1:]:
            result = result.join(cls.const(value))
        return sync(result)

    # -- queries ------------------------------------------------------------------------------

    def is_const(self) -> bool:
        return not self.var_off.mask

    def const_value(self) -> int | None:
        var_off = self.var_off
        return None if var_off.mask else var_off.value

    def is_subreg_const(self) -> bool:
        return self.var_off.subreg().is_const()

    def contains(self, x: int) -> bool:
        """Whether the concrete 64-bit value ``x`` is described (its concretisation)."""
        x &= U64
        low = x & U32
        return (
            self.var_off.contains(x)
            and self.umin <= x <= self.umax
            and self.smin <= to_s64(x) <= self.smax
            and self.u32_min <= low <= self.u32_max
            and self.s32_min <= to_s32(low) <= self.s32_max
        )

    def is_bottom(self) -> bool:
        """True when no 64-bit value meets every constraint (detected after :func:`sync`)."""
        if self.umin > self.umax or self.smin > self.smax:
            return True
        if self.u32_min > self.u32_max or self.s32_min > self.s32_max:
            return True
        # The tnum's smallest and largest members must reach into the unsigned range.
        return self.var_off.umin() > self.umax or self.var_off.umax() < self.umin

    # -- lattice ------------------------------------------------------------------------------

    def join(self, other: Scalar) -> Scalar:
        """Least upper bound in this representation (every member of either is a member)."""
        return Scalar(
            self.var_off.union(other.var_off),
            min(self.smin, other.smin), max(self.smax, other.smax),
            min(self.umin, other.umin), max(self.umax, other.umax),
            min(self.s32_min, other.s32_min), max(self.s32_max, other.s32_max),
            min(self.u32_min, other.u32_min), max(self.u32_max, other.u32_max),
        )

    def includes(self, other: Scalar) -> bool:
        """The kernel's range_within + tnum_in: every member of ``other`` is a member of ``self``."""
        return (
            self.smin <= other.smin and other.smax <= self.smax
            and self.umin <= other.umin and other.umax <= self.umax
            and self.s32_min <= other.s32_min and other.s32_max <= self.s32_max
            and self.u32_min <= other.u32_min and other.u32_max <= self.u32_max
            and self.var_off.includes(other.var_off)
        )

    def __str__(self) -> str:
        if self.is_const():
            return f"scalar({self.var_off.value:#x})"
        return (f"scalar(smin={self.smin},smax={self.smax},umin={self.umin:#x},umax={self.umax:#x},"
                f"s32=[{self.s32_min},{self.s32_max}],u32=[{self.u32_min:#x},{self.u32_max:#x}],"
                f"var_off={self.var_off})")


_UNKNOWN = Scalar(Tnum.unknown())
_ZERO = Scalar(Tnum(0, 0), 0, 0, 0, 0, 0, 0, 0, 0)


def sync(s: Scalar) -> Scalar:
    """``reg_bounds_sync``: bring all nine pieces of knowledge into agreement."""
    if s.var_off.mask == 0:
        # Most synced values are constants; when every bound admits the constant, the full
        # deduction below can only tighten each bound to it, so skip straight to the result.
        exact = Scalar.const(s.var_off.value)
        if (s.umin <= exact.umin <= s.umax and s.smin <= exact.smin <= s.smax
                and s.u32_min <= exact.u32_min <= s.u32_max and s.s32_min <= exact.s32_min <= s.s32_max):
            return exact
    return sync_full(s)


_SIGN32 = 1 << 31
_SIGN64 = 1 << 63
_WRAP32 = 1 << 32
_WRAP64 = 1 << 64
_HIGH = ~U32 & U64


def sync_full(s: Scalar) -> Scalar:
    """:func:`sync` without the constant shortcut (every deduction step, as the kernel runs them).

    The steps of :func:`pybpf.verifier.scalar_reference.sync_reference` inlined on local variables: the
    verifier's hottest function, where attribute access and calls dominated. Every
    ``x = max(x, y)`` is written ``if y > x: x = y`` (and min alike), and every signed
    reinterpretation (``to_s32``/``to_s64``) spelt out, because a builtin or function call costs
    several times the comparison. Steps that cannot change anything are skipped: a second
    deduction round after one that changed nothing, and the final bounds update when
    ``bound_offset`` left the tnum as it was (the first update already applied the same limits,
    and bounds only ever tighten)."""
    t = s.var_off
    tv, tm = t.value, t.mask
    smin, smax, umin, umax = s.smin, s.smax, s.umin, s.umax
    s32_min, s32_max, u32_min, u32_max = s.s32_min, s.s32_max, s.u32_min, s.u32_max
    # __update_reg_bounds
    lv, lm = tv & U32, tm & U32
    x = lv | (lm & _SIGN32)
    if x & _SIGN32:
        x -= _WRAP32
    if x > s32_min:
        s32_min = x
    x = lv | (lm & S32_MAX)
    if x & _SIGN32:
        x -= _WRAP32
    if x < s32_max:
        s32_max = x
    if lv > u32_min:
        u32_min = lv
    x = lv | lm
    if x < u32_max:
        u32_max = x
    x = tv | (tm & _SIGN64)
    if x & _SIGN64:
        x -= _WRAP64
    if x > smin:
        smin = x
    x = tv | (tm & S64_MAX)
    if x & _SIGN64:
        x -= _WRAP64
    if x < smax:
        smax = x
    if tv > umin:
        umin = tv
    x = tv | tm
    if x < umax:
        umax = x
    for _ in range(2):
        before = (smin, smax, umin, umax, s32_min, s32_max, u32_min, u32_max)
        # __reg32_deduce_bounds
        if umin >> 32 == umax >> 32:
            x = umin & U32
            if x > u32_min:
                u32_min = x
            y = umax & U32
            if y < u32_max:
                u32_max = y
            if x & _SIGN32:
                x -= _WRAP32
            if y & _SIGN32:
                y -= _WRAP32
            if x <= y:
                if x > s32_min:
                    s32_min = x
                if y < s32_max:
                    s32_max = y
        if smin >> 32 == smax >> 32:
            x = smin & U32
            if x > u32_min:
                u32_min = x
            y = smax & U32
            if y < u32_max:
                u32_max = y
            if x & _SIGN32:
                x -= _WRAP32
            if y & _SIGN32:
                y -= _WRAP32
            if x <= y:
                if x > s32_min:
                    s32_min = x
                if y < s32_max:
                    s32_max = y
        if (umin >> 32) + 1 == umax >> 32:
            x, y = umin & U32, umax & U32
            if x & _SIGN32:
                x -= _WRAP32
            if y & _SIGN32:
                y -= _WRAP32
            if x < 0 <= y:
                if x > s32_min:
                    s32_min = x
                if y < s32_max:
                    s32_max = y
        if (smin >> 32) + 1 == smax >> 32:
            x, y = smin & U32, smax & U32
            if x & _SIGN32:
                x -= _WRAP32
            if y & _SIGN32:
                y -= _WRAP32
            if x < 0 <= y:
                if x > s32_min:
                    s32_min = x
                if y < s32_max:
                    s32_max = y
        x, y = u32_min & U32, u32_max & U32
        if x & _SIGN32:
            x -= _WRAP32
        if y & _SIGN32:
            y -= _WRAP32
        if x <= y:
            if x > s32_min:
                s32_min = x
            if y < s32_max:
                s32_max = y
        x, y = s32_min & U32, s32_max & U32
        if x <= y:
            if x > u32_min:
                u32_min = x
            if y < u32_max:
                u32_max = y
        elif u32_max < x:
            z = u32_min & U32
            if z & _SIGN32:
                z -= _WRAP32
            if z > s32_min:
                s32_min = z
            if y < u32_max:
                u32_max = y
        elif y < u32_min:
            z = u32_max & U32
            if z & _SIGN32:
                z -= _WRAP32
            if z < s32_max:
                s32_max = z
            if x > u32_min:
                u32_min = x
        # __reg64_deduce_bounds
        x, y = umin & U64, umax & U64
        if x & _SIGN64:
            x -= _WRAP64
        if y & _SIGN64:
            y -= _WRAP64
        if x <= y:
            if x > smin:
                smin = x
            if y < smax:
                smax = y
        x, y = smin & U64, smax & U64
        if x <= y:
            if x > umin:
                umin = x
            if y < umax:
                umax = y
        elif umax < x:
            if umin > smin:
                smin = umin
            if smax < umax:
                umax = smax
        elif y < umin:
            z = umax - _WRAP64
            if z < smax:
                smax = z
            if x > umin:
                umin = x
        # __reg_deduce_mixed_bounds
        x = (umin & _HIGH) | u32_min
        if x > umin:
            umin = x
        x = (umax & _HIGH) | u32_max
        if x < umax:
            umax = x
        x = ((smin & _HIGH) | u32_min) & U64
        if x & _SIGN64:
            x -= _WRAP64
        if x > smin:
            smin = x
        x = ((smax & _HIGH) | u32_max) & U64
        if x & _SIGN64:
            x -= _WRAP64
        if x < smax:
            smax = x
        if s32_min >= 0 and smin >= S32_MIN and smax <= S32_MAX:
            if s32_min > smin:
                smin = s32_min
            if s32_max < smax:
                smax = s32_max
            if s32_min > umin:
                umin = s32_min
            if s32_max < umax:
                umax = s32_max
        if before == (smin, smax, umin, umax, s32_min, s32_max, u32_min, u32_max):
            break  # a fixed point: the second round would compute the same
    # __reg_bound_offset (skipped when empty: left to is_bottom), Tnum.range, intersect,
    # subreg, clear_subreg and or_ spelt out on the value/mask pairs.
    if umin <= umax and u32_min <= u32_max:
        low_end, high_end = umin & U64, umax & U64
        bits = (low_end ^ high_end).bit_length()
        if bits > 63:
            range_value, range_mask = 0, U64
        else:
            range_mask = (1 << bits) - 1
            range_value = low_end & ~range_mask & U64
        wide_mask = tm & range_mask
        wide_value = (tv | range_value) & ~wide_mask & U64
        low_end, high_end = u32_min & U64, u32_max & U64
        bits = (low_end ^ high_end).bit_length()
        if bits > 63:
            range_value, range_mask = 0, U64
        else:
            range_mask = (1 << bits) - 1
            range_value = low_end & ~range_mask & U64
        low_mask = wide_mask & U32 & range_mask
        low_value = ((wide_value & U32) | range_value) & ~low_mask & U64
        known = (wide_value & _HIGH) | low_value
        bounded_mask = ((wide_mask & _HIGH) | low_mask) & ~known & U64
        if known != tv or bounded_mask != tm:
            t = unchecked(known, bounded_mask)  # (disjoint: the mask excludes the known bits)
            tv, tm = known, bounded_mask
            # __update_reg_bounds again, from the sharper tnum
            lv, lm = tv & U32, tm & U32
            x = lv | (lm & _SIGN32)
            if x & _SIGN32:
                x -= _WRAP32
            if x > s32_min:
                s32_min = x
            x = lv | (lm & S32_MAX)
            if x & _SIGN32:
                x -= _WRAP32
            if x < s32_max:
                s32_max = x
            if lv > u32_min:
                u32_min = lv
            x = lv | lm
            if x < u32_max:
                u32_max = x
            x = tv | (tm & _SIGN64)
            if x & _SIGN64:
                x -= _WRAP64
            if x > smin:
                smin = x
            x = tv | (tm & S64_MAX)
            if x & _SIGN64:
                x -= _WRAP64
            if x < smax:
                smax = x
            if tv > umin:
                umin = tv
            x = tv | tm
            if x < umax:
                umax = x
    return Scalar(t, smin, smax, umin, umax, s32_min, s32_max, u32_min, u32_max)


def tnums_compatible(a: Tnum, b: Tnum) -> bool:
    """Whether two tnums share a member (no bit is known to differ)."""
    return (a.value ^ b.value) & ~(a.mask | b.mask) & U64 == 0
