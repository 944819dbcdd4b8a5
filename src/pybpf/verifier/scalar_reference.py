"""The specification of :func:`pybpf.verifier.scalar.sync_full`: the kernel's ``reg_bounds_sync``
written step by step, one method per kernel function (``__update_reg_bounds``,
``__reg32_deduce_bounds``, ``__reg64_deduce_bounds``, ``__reg_deduce_mixed_bounds``,
``__reg_bound_offset``) on a mutable scratch copy of a scalar. The verifier runs the flat,
inlined version; the property tests check that both agree on arbitrary inputs.
"""

from __future__ import annotations

from dataclasses import dataclass

from pybpf.verifier.scalar import S32_MAX, S32_MIN, S64_MAX, Scalar, to_s32, to_s64
from pybpf.verifier.tnum import U32, U64, Tnum


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
