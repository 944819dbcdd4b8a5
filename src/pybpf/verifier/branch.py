"""Branch refinement: what ``if a cond b`` teaches about both operands (the kernel's ``reg_set_min_max``).

:func:`refine` narrows two scalars under the assumption that ``a cond b`` holds (``taken``) or
fails (not taken), on all 64 bits (JMP) or the low 32 (JMP32). It returns None when no pair of
concrete values can satisfy the assumption, i.e. that edge is dead (the kernel's
``is_branch_taken`` verdicts fall out of this). Refinement never excludes a pair that does
satisfy it; the property tests check this against :data:`pybpf.isa.semantics.JMP64`/``JMP32``.
"""

from __future__ import annotations

from collections.abc import Callable

from pybpf.isa.insn import Cond
from pybpf.isa.semantics import JMP32, JMP64
from pybpf.verifier.scalar import Scalar, sync, tnums_compatible
from pybpf.verifier.scalar_ops import View
from pybpf.verifier.tnum import U32, Tnum

NEGATION: dict[Cond, Cond | None] = {
    Cond.JEQ: Cond.JNE,
    Cond.JNE: Cond.JEQ,
    Cond.JGT: Cond.JLE,
    Cond.JLE: Cond.JGT,
    Cond.JGE: Cond.JLT,
    Cond.JLT: Cond.JGE,
    Cond.JSGT: Cond.JSLE,
    Cond.JSLE: Cond.JSGT,
    Cond.JSGE: Cond.JSLT,
    Cond.JSLT: Cond.JSGE,
    Cond.JSET: None,  # "a & b == 0" has no jump of its own
}

_JSET = Cond.JSET  # (read through the enum class, a member is slow: see pybpf.verifier.state)

_ViewRefiner = Callable[[View, View], "tuple[View, View] | None"]
"""Both views narrowed under one condition; None when no pair of values satisfies it."""


def _u(v: View, lo: int, hi: int) -> View:
    return View(v.bits, v.tnum, v.s_lo, v.s_hi, max(v.u_lo, lo), min(v.u_hi, hi))


def _s(v: View, lo: int, hi: int) -> View:
    return View(v.bits, v.tnum, max(v.s_lo, lo), min(v.s_hi, hi), v.u_lo, v.u_hi)


def _signed(x: int, bits: int) -> int:
    x &= (1 << bits) - 1
    return x - (1 << bits) if x >> (bits - 1) else x


def _not_equal(a: View, b: View) -> View:
    """Narrow ``a`` knowing ``a != c`` for a constant ``b == c``: only an end of a range can move."""
    c = b.const_value()
    if c is None:
        return a
    u_lo, u_hi, s_lo, s_hi = a.u_lo, a.u_hi, a.s_lo, a.s_hi
    sc = _signed(c, a.bits)
    if c not in (u_lo, u_hi) and sc not in (s_lo, s_hi):
        return a
    if u_lo == c:
        u_lo = c + 1
    if u_hi == c:
        u_hi = c - 1
    if s_lo == sc:
        s_lo = sc + 1
    if s_hi == sc:
        s_hi = sc - 1
    return View(a.bits, a.tnum, s_lo, s_hi, u_lo, u_hi)


def _refine_eq(a: View, b: View) -> tuple[View, View] | None:
    if not tnums_compatible(a.tnum, b.tnum):
        return None
    t = a.tnum.intersect(b.tnum)
    meet = View(a.bits, t, max(a.s_lo, b.s_lo), min(a.s_hi, b.s_hi), max(a.u_lo, b.u_lo), min(a.u_hi, b.u_hi))
    return meet, meet


def _refine_ne(a: View, b: View) -> tuple[View, View] | None:
    return _not_equal(a, b), _not_equal(b, a)


def _refine_gt(a: View, b: View) -> tuple[View, View] | None:
    return _u(a, b.u_lo + 1, a.u_hi), _u(b, b.u_lo, a.u_hi - 1)


def _refine_ge(a: View, b: View) -> tuple[View, View] | None:
    return _u(a, b.u_lo, a.u_hi), _u(b, b.u_lo, a.u_hi)


def _refine_sgt(a: View, b: View) -> tuple[View, View] | None:
    return _s(a, b.s_lo + 1, a.s_hi), _s(b, b.s_lo, a.s_hi - 1)


def _refine_sge(a: View, b: View) -> tuple[View, View] | None:
    return _s(a, b.s_lo, a.s_hi), _s(b, b.s_lo, a.s_hi)


def _swapped(refine: _ViewRefiner) -> _ViewRefiner:
    """a < b is b > a: the refinement of the swapped condition, its results swapped back."""
    def swapped(a: View, b: View) -> tuple[View, View] | None:
        result = refine(b, a)
        return None if result is None else (result[1], result[0])
    return swapped


# One function per condition (a dict lookup: a match on Cond members reads each through the
# enum class, slow on Python 3.11). JSET (and its negation, None) narrow whole scalars in
# _refine_bit_test instead (the kernel forgets the ranges there): not in this table.
_REFINE_VIEWS: dict[Cond, _ViewRefiner] = {
    Cond.JEQ: _refine_eq,
    Cond.JNE: _refine_ne,
    Cond.JGT: _refine_gt,
    Cond.JGE: _refine_ge,
    Cond.JSGT: _refine_sgt,
    Cond.JSGE: _refine_sge,
    Cond.JLT: _swapped(_refine_gt),
    Cond.JLE: _swapped(_refine_ge),
    Cond.JSLT: _swapped(_refine_sgt),
    Cond.JSLE: _swapped(_refine_sge),
}


def _refine_views(cond: Cond | None, a: View, b: View) -> tuple[View, View] | None:
    """Narrow both views assuming ``a cond b`` (``cond`` None: assuming ``a & b == 0``)."""
    refine = _REFINE_VIEWS.get(cond) if cond is not None else None
    return (a, b) if refine is None else refine(a, b)


def _refine_bit_test(a: Scalar, b: Scalar, is32: bool, taken: bool) -> tuple[Scalar, Scalar]:
    """``a & b`` != 0 (taken) or == 0, against a constant operand (the kernel swaps it to ``b``).

    Like the kernel, forget every bound of the narrowed register (``__mark_reg_unbounded``) before
    narrowing its tnum, then let sync rebuild the bounds from the tnum alone.
    """
    if b.const_value() is None and a.const_value() is not None:
        b2, a2 = _refine_bit_test(b, a, is32, taken)
        return a2, b2
    if (value := b.const_value()) is None:
        return a, b
    if is32:
        value &= 0xFFFF_FFFF
    if taken:
        if value == 0 or value & (value - 1):
            return a, b  # only a single-bit test teaches which bit is set
        low = a.var_off.subreg().or_(Tnum.const(value)) if is32 else a.var_off.or_(Tnum.const(value))
    else:
        keep = Tnum.const(~value & ((1 << 64) - 1))
        low = a.var_off.subreg().and_(keep).subreg() if is32 else a.var_off.and_(keep)
    var_off = a.var_off.with_subreg(low) if is32 else low
    return sync(Scalar(var_off)), b


def _bit_test_outcome(a: Scalar, b: Scalar, is32: bool) -> bool | None:
    """Whether ``a & b`` is known non-zero (True) or zero (False) from the known bits, against
    a constant operand (is_scalar_branch_taken's BPF_JSET case); None when either can happen."""
    if b.const_value() is None:
        a, b = b, a
    value = b.const_value()
    if value is None:
        return None
    tnum = a.var_off.subreg() if is32 else a.var_off
    if is32:
        value &= 0xFFFF_FFFF
    if tnum.value & ~tnum.mask & value:
        return True
    if not (tnum.value | tnum.mask) & value:
        return False
    return None


def _write_back(old: Scalar, view: View) -> Scalar | None:
    if view.bits == 64:
        if (view.tnum is old.var_off and view.s_lo == old.smin and view.s_hi == old.smax
                and view.u_lo == old.umin and view.u_hi == old.umax):
            return old  # nothing learnt (typically the constant operand): already in sync
    elif (view.s_lo == old.s32_min and view.s_hi == old.s32_max and view.u_lo == old.u32_min
          and view.u_hi == old.u32_max and view.tnum.value == old.var_off.value & U32
          and view.tnum.mask == old.var_off.mask & U32):
        return old
    if view.bits == 64:
        new = Scalar(view.tnum, view.s_lo, view.s_hi, view.u_lo, view.u_hi,
                     old.s32_min, old.s32_max, old.u32_min, old.u32_max)
    else:
        new = Scalar(old.var_off.with_subreg(view.tnum), old.smin, old.smax, old.umin, old.umax,
                     view.s_lo, view.s_hi, view.u_lo, view.u_hi)
    if new.is_bottom():
        return None
    synced = sync(new)
    return None if synced.is_bottom() else synced


def refine(cond: Cond, a: Scalar, b: Scalar, is32: bool, taken: bool) -> tuple[Scalar, Scalar] | None:
    """Both operands narrowed under ``a cond b`` (or its negation); None when that is impossible."""
    if a.var_off.mask == 0 and b.var_off.mask == 0:
        # Two constants (loop counters, flags): the outcome is known and nothing narrows.
        holds = (JMP32 if is32 else JMP64)[cond](a.var_off.value, b.var_off.value)
        return (a, b) if holds == taken else None
    if cond is _JSET:
        known = _bit_test_outcome(a, b, is32)
        if known is not None and known != taken:
            return None
        return _refine_bit_test(a, b, is32, taken)
    effective = cond if taken else NEGATION[cond]
    bits = 32 if is32 else 64
    views = _refine_views(effective, View.of(a, bits), View.of(b, bits))
    if views is None:
        return None
    new_a, new_b = _write_back(a, views[0]), _write_back(b, views[1])
    if new_a is None or new_b is None:
        return None
    return new_a, new_b


def branch_outcomes(
    cond: Cond, a: Scalar, b: Scalar, is32: bool
) -> tuple[tuple[Scalar, Scalar] | None, tuple[Scalar, Scalar] | None]:
    """(taken, not taken) refinements; a None side is an edge no execution can follow."""
    return refine(cond, a, b, is32, True), refine(cond, a, b, is32, False)
