"""The scalar abstract value as the kernel keeps it in ``struct bpf_reg_state``.

A :class:`Scalar` is a tnum (``var_off``) plus signed and unsigned bounds on the full 64-bit
value and on its low 32 bits. It describes every 64-bit ``x`` that satisfies *all* of them.
Signed bounds are held as Python signed ints, unsigned ones as non-negative ints.

:func:`sync` is the kernel's ``reg_bounds_sync``: each piece of knowledge tightens the others
(``__update_reg_bounds`` from the tnum, ``__reg_deduce_bounds`` across signedness and width,
``__reg_bound_offset`` back into the tnum). A value whose constraints admit no integer at all
:meth:`Scalar.is_bottom` (used for infeasible branches).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pybpf.verifier.tnum import U32, U64, Tnum
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
        return self.var_off.is_const()

    def const_value(self) -> int | None:
        return self.var_off.value if self.var_off.is_const() else None

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


@dataclass(slots=True)
class _Bounds:
    """Mutable scratch copy of a Scalar's fields, so the sync steps read like the kernel's."""

    var_off: Tnum
    smin: int
    smax: int
    umin: int
    umax: int
    s32_min: int
    s32_max: int
    u32_min: int
    u32_max: int

    @classmethod
    def of(cls, s: Scalar) -> _Bounds:
        return cls(s.var_off, s.smin, s.smax, s.umin, s.umax, s.s32_min, s.s32_max, s.u32_min, s.u32_max)

    def freeze(self) -> Scalar:
        return Scalar(self.var_off, self.smin, self.smax, self.umin, self.umax,
                      self.s32_min, self.s32_max, self.u32_min, self.u32_max)

    def update_bounds(self) -> None:
        """``__update_reg_bounds``: bounds implied by the tnum."""
        low = self.var_off.subreg()
        # Smallest signed member: unknown sign bit set, other unknown bits clear.
        self.s32_min = max(self.s32_min, to_s32(low.value | (low.mask & (1 << 31))))
        self.s32_max = min(self.s32_max, to_s32(low.value | (low.mask & S32_MAX)))
        self.u32_min = max(self.u32_min, low.value)
        self.u32_max = min(self.u32_max, low.value | low.mask)
        t = self.var_off
        self.smin = max(self.smin, to_s64(t.value | (t.mask & (1 << 63))))
        self.smax = min(self.smax, to_s64(t.value | (t.mask & S64_MAX)))
        self.umin = max(self.umin, t.value)
        self.umax = min(self.umax, t.value | t.mask)

    def deduce32(self) -> None:
        """``__reg32_deduce_bounds``: 32-bit bounds from 64-bit ones and across signedness."""
        if self.umin >> 32 == self.umax >> 32:
            # Same upper half: the low halves of umin/umax bound the low 32 bits.
            self.u32_min = max(self.u32_min, self.umin & U32)
            self.u32_max = min(self.u32_max, self.umax & U32)
            if to_s32(self.umin) <= to_s32(self.umax):
                self.s32_min = max(self.s32_min, to_s32(self.umin))
                self.s32_max = min(self.s32_max, to_s32(self.umax))
        if self.smin >> 32 == self.smax >> 32:
            self.u32_min = max(self.u32_min, self.smin & U32)
            self.u32_max = min(self.u32_max, self.smax & U32)
            if to_s32(self.smin) <= to_s32(self.smax):
                self.s32_min = max(self.s32_min, to_s32(self.smin))
                self.s32_max = min(self.s32_max, to_s32(self.smax))
        # Upper halves differ by one and the low halves wrap from negative to non-negative:
        # the low 32 bits run through [low(min), U32] then [0, low(max)], i.e. a signed range.
        # (Python's >> on the signed pair is arithmetic, as the kernel's (s64) >> 32 is.)
        for lo, hi in ((self.umin, self.umax), (self.smin, self.smax)):
            if (lo >> 32) + 1 == hi >> 32 and to_s32(lo) < 0 <= to_s32(hi):
                self.s32_min = max(self.s32_min, to_s32(lo))
                self.s32_max = min(self.s32_max, to_s32(hi))
        if to_s32(self.u32_min) <= to_s32(self.u32_max):
            self.s32_min = max(self.s32_min, to_s32(self.u32_min))
            self.s32_max = min(self.s32_max, to_s32(self.u32_max))
        if self.s32_min & U32 <= self.s32_max & U32:
            self.u32_min = max(self.u32_min, self.s32_min & U32)
            self.u32_max = min(self.u32_max, self.s32_max & U32)
        elif self.u32_max < self.s32_min & U32:
            # As deduce64's split case, on 32 bits (6.18): the signed range crosses zero and
            # the unsigned one meets only its non-negative part...
            self.s32_min = max(self.s32_min, to_s32(self.u32_min))
            self.u32_max = min(self.u32_max, self.s32_max & U32)
        elif self.s32_max & U32 < self.u32_min:
            # ... or only its negative part.
            self.s32_max = min(self.s32_max, to_s32(self.u32_max))
            self.u32_min = max(self.u32_min, self.s32_min & U32)

    def deduce64(self) -> None:
        """``__reg64_deduce_bounds``: signed from unsigned and back, including split ranges."""
        if to_s64(self.umin) <= to_s64(self.umax):
            self.smin = max(self.smin, to_s64(self.umin))
            self.smax = min(self.smax, to_s64(self.umax))
        if self.smin & U64 <= self.smax & U64:
            self.umin = max(self.umin, self.smin & U64)
            self.umax = min(self.umax, self.smax & U64)
        elif self.umax < self.smin & U64:
            # The signed range crosses zero but the unsigned range ends below its negative part:
            # only [0, smax] remains. (An umin above S64_MAX then leaves smin > smax: empty.)
            self.smin = max(self.smin, self.umin)
            self.umax = min(self.umax, self.smax)
        elif self.smax & U64 < self.umin:
            # ... or starts above its non-negative part: only [smin, -1] remains.
            self.smax = min(self.smax, self.umax - (1 << 64))
            self.umin = max(self.umin, self.smin & U64)

    def deduce_mixed(self) -> None:
        """``__reg_deduce_mixed_bounds``: the 32-bit bounds sharpen the 64-bit ones."""
        high = ~U32 & U64
        self.umin = max(self.umin, (self.umin & high) | self.u32_min)
        self.umax = min(self.umax, (self.umax & high) | self.u32_max)
        self.smin = max(self.smin, to_s64((self.smin & high) | self.u32_min))
        self.smax = min(self.smax, to_s64((self.smax & high) | self.u32_max))
        if self.s32_min >= 0 and self.smin >= S32_MIN and self.smax <= S32_MAX:
            # The value is a non-negative 32-bit number sign-extended: 32-bit bounds are exact.
            self.smin = max(self.smin, self.s32_min)
            self.smax = min(self.smax, self.s32_max)
            self.umin = max(self.umin, self.s32_min)
            self.umax = min(self.umax, self.s32_max)

    def bound_offset(self) -> None:
        """``__reg_bound_offset``: the tnum learns from the unsigned ranges."""
        if self.umin > self.umax or self.u32_min > self.u32_max:
            return  # empty: leave it to is_bottom
        wide = self.var_off.intersect(Tnum.range(self.umin, self.umax))
        low = wide.subreg().intersect(Tnum.range(self.u32_min, self.u32_max))
        self.var_off = wide.clear_subreg().or_(low)


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


def sync_reference(s: Scalar) -> Scalar:
    """:func:`sync_full` written step by step as the kernel's functions (the specification the
    flat version is property-tested against)."""
    b = _Bounds.of(s)
    b.update_bounds()
    for _ in range(2):
        b.deduce32()
        b.deduce64()
        b.deduce_mixed()
    b.bound_offset()
    b.update_bounds()
    return b.freeze()


def _s32(x: int) -> int:
    x &= U32
    return x - (1 << 32) if x >> 31 else x


def _s64(x: int) -> int:
    x &= U64
    return x - (1 << 64) if x >> 63 else x


def sync_full(s: Scalar) -> Scalar:
    """:func:`sync` without the constant shortcut (every deduction step, as the kernel runs them).

    The steps of :class:`_Bounds` (see :func:`sync_reference`) inlined on local variables: the
    verifier's hottest function, where attribute access and calls dominated. Steps that cannot
    change anything are skipped: a second deduction round after one that changed nothing, and
    the final bounds update when ``bound_offset`` left the tnum as it was (the first update
    already applied the same limits, and bounds only ever tighten)."""
    t = s.var_off
    tv, tm = t.value, t.mask
    smin, smax, umin, umax = s.smin, s.smax, s.umin, s.umax
    s32_min, s32_max, u32_min, u32_max = s.s32_min, s.s32_max, s.u32_min, s.u32_max
    high = ~U32 & U64
    # __update_reg_bounds
    lv, lm = tv & U32, tm & U32
    s32_min = max(s32_min, _s32(lv | (lm & (1 << 31))))
    s32_max = min(s32_max, _s32(lv | (lm & S32_MAX)))
    u32_min = max(u32_min, lv)
    u32_max = min(u32_max, lv | lm)
    smin = max(smin, _s64(tv | (tm & (1 << 63))))
    smax = min(smax, _s64(tv | (tm & S64_MAX)))
    umin = max(umin, tv)
    umax = min(umax, tv | tm)
    for _ in range(2):
        before = (smin, smax, umin, umax, s32_min, s32_max, u32_min, u32_max)
        # __reg32_deduce_bounds
        if umin >> 32 == umax >> 32:
            u32_min = max(u32_min, umin & U32)
            u32_max = min(u32_max, umax & U32)
            if _s32(umin) <= _s32(umax):
                s32_min = max(s32_min, _s32(umin))
                s32_max = min(s32_max, _s32(umax))
        if smin >> 32 == smax >> 32:
            u32_min = max(u32_min, smin & U32)
            u32_max = min(u32_max, smax & U32)
            if _s32(smin) <= _s32(smax):
                s32_min = max(s32_min, _s32(smin))
                s32_max = min(s32_max, _s32(smax))
        if (umin >> 32) + 1 == umax >> 32 and _s32(umin) < 0 <= _s32(umax):
            s32_min = max(s32_min, _s32(umin))
            s32_max = min(s32_max, _s32(umax))
        if (smin >> 32) + 1 == smax >> 32 and _s32(smin) < 0 <= _s32(smax):
            s32_min = max(s32_min, _s32(smin))
            s32_max = min(s32_max, _s32(smax))
        if _s32(u32_min) <= _s32(u32_max):
            s32_min = max(s32_min, _s32(u32_min))
            s32_max = min(s32_max, _s32(u32_max))
        if s32_min & U32 <= s32_max & U32:
            u32_min = max(u32_min, s32_min & U32)
            u32_max = min(u32_max, s32_max & U32)
        elif u32_max < s32_min & U32:
            s32_min = max(s32_min, _s32(u32_min))
            u32_max = min(u32_max, s32_max & U32)
        elif s32_max & U32 < u32_min:
            s32_max = min(s32_max, _s32(u32_max))
            u32_min = max(u32_min, s32_min & U32)
        # __reg64_deduce_bounds
        if _s64(umin) <= _s64(umax):
            smin = max(smin, _s64(umin))
            smax = min(smax, _s64(umax))
        if smin & U64 <= smax & U64:
            umin = max(umin, smin & U64)
            umax = min(umax, smax & U64)
        elif umax < smin & U64:
            smin = max(smin, umin)
            umax = min(umax, smax)
        elif smax & U64 < umin:
            smax = min(smax, umax - (1 << 64))
            umin = max(umin, smin & U64)
        # __reg_deduce_mixed_bounds
        umin = max(umin, (umin & high) | u32_min)
        umax = min(umax, (umax & high) | u32_max)
        smin = max(smin, _s64((smin & high) | u32_min))
        smax = min(smax, _s64((smax & high) | u32_max))
        if s32_min >= 0 and smin >= S32_MIN and smax <= S32_MAX:
            smin = max(smin, s32_min)
            smax = min(smax, s32_max)
            umin = max(umin, s32_min)
            umax = min(umax, s32_max)
        if before == (smin, smax, umin, umax, s32_min, s32_max, u32_min, u32_max):
            break  # a fixed point: the second round would compute the same
    # __reg_bound_offset (skipped when empty: left to is_bottom)
    if umin <= umax and u32_min <= u32_max:
        wide = t.intersect(Tnum.range(umin, umax))
        low = wide.subreg().intersect(Tnum.range(u32_min, u32_max))
        bounded = wide.clear_subreg().or_(low)
        if bounded.value != tv or bounded.mask != tm:
            t = bounded
            tv, tm = t.value, t.mask
            # __update_reg_bounds again, from the sharper tnum
            lv, lm = tv & U32, tm & U32
            s32_min = max(s32_min, _s32(lv | (lm & (1 << 31))))
            s32_max = min(s32_max, _s32(lv | (lm & S32_MAX)))
            u32_min = max(u32_min, lv)
            u32_max = min(u32_max, lv | lm)
            smin = max(smin, _s64(tv | (tm & (1 << 63))))
            smax = min(smax, _s64(tv | (tm & S64_MAX)))
            umin = max(umin, tv)
            umax = min(umax, tv | tm)
    return Scalar(t, smin, smax, umin, umax, s32_min, s32_max, u32_min, u32_max)


def tnums_compatible(a: Tnum, b: Tnum) -> bool:
    """Whether two tnums share a member (no bit is known to differ)."""
    return (a.value ^ b.value) & ~(a.mask | b.mask) & U64 == 0
