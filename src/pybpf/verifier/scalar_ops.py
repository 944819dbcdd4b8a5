"""ALU transfer functions on scalars: every RFC 9669 arithmetic operation, 64- and 32-bit.

Each operation is written once, for a width-generic :class:`View` (a tnum and signed/unsigned
bounds of the low 32 or all 64 bits), in the manner of the kernel's ``scalar_min_max_*`` and
``scalar32_min_max_*`` pairs. :func:`alu` then assembles the register's new state:

* a 64-bit operation computes the 64-bit view; when the low half of the result depends only on
  the low halves of the operands (add, sub, mul, and, or, xor, neg) the 32-bit view is computed
  too, as the kernel does, else it is left for :func:`~pybpf.verifier.scalar.sync` to deduce;
* a 32-bit operation computes the 32-bit view and zero-extends it into the 64-bit one.

Constant operands fold through :mod:`pybpf.isa.semantics` exactly.
"""

from __future__ import annotations

from collections.abc import Callable

from pybpf.errors import VerifierError
from pybpf.isa import semantics
from pybpf.isa.insn import BinOp
from pybpf.isa.opcodes import EndianOrder
from pybpf.verifier.scalar import Scalar, sync
from pybpf.verifier.tnum import U32, Tnum, unchecked
from pybpf.verifier.values import value_class


def _mask(bits: int) -> int:
    return (1 << bits) - 1


def _signed(x: int, bits: int) -> int:
    x &= _mask(bits)
    return x - (1 << bits) if x >> (bits - 1) else x


@value_class
class View:
    """One width's worth of a scalar: the tnum of the low ``bits`` bits and its four bounds."""

    bits: int
    tnum: Tnum
    s_lo: int
    s_hi: int
    u_lo: int
    u_hi: int

    @classmethod
    def full(cls, bits: int, tnum: Tnum | None = None) -> View:
        if tnum is None and cls is View:
            return _FULL[bits]  # immutable: one per width
        half = 1 << (bits - 1)
        return cls(bits, tnum or _UNKNOWN_TNUM[bits], -half, half - 1, 0, _mask(bits))

    @classmethod
    def of(cls, s: Scalar, bits: int) -> View:
        if bits == 64:
            return cls(64, s.var_off, s.smin, s.smax, s.umin, s.umax)
        t = s.var_off
        return cls(32, unchecked(t.value & U32, t.mask & U32), s.s32_min, s.s32_max, s.u32_min, s.u32_max)

    def const_value(self) -> int | None:
        return self.tnum.value if self.tnum.is_const() else None

    def with_signed(self, lo: int, hi: int) -> View:
        return View(self.bits, self.tnum, lo, hi, self.u_lo, self.u_hi)


_UNKNOWN_TNUM = {64: Tnum(0, _mask(64)), 32: Tnum(0, _mask(32))}
"""Per width, the tnum of a fully unknown value (immutable, shared)."""
_FULL = {bits: View(bits, _UNKNOWN_TNUM[bits], -(1 << (bits - 1)), (1 << (bits - 1)) - 1, 0, _mask(bits))
         for bits in (32, 64)}
"""Per width, the view of a fully unknown value (immutable, shared)."""


def _make(bits: int, tnum: Tnum, signed: tuple[int, int] | None, unsigned: tuple[int, int] | None) -> View:
    """A view from optional bounds (None: unbounded, left for sync to deduce from the tnum)."""
    full = _FULL[bits]
    s_lo, s_hi = signed if signed is not None else (full.s_lo, full.s_hi)
    u_lo, u_hi = unsigned if unsigned is not None else (full.u_lo, full.u_hi)
    # (A 64-bit tnum is already cut to 64 bits: only the 32-bit one is cast.)
    return View(bits, tnum if bits == 64 else unchecked(tnum.value & U32, tnum.mask & U32), s_lo, s_hi, u_lo, u_hi)


def _wrap_once(lo: int, hi: int, low_limit: int, high_limit: int, modulus: int) -> tuple[int, int] | None:
    """Bounds of a sum or difference: exact if it did not overflow, or overflowed as a whole."""
    if low_limit <= lo and hi <= high_limit:
        return lo, hi
    if lo > high_limit:
        return lo - modulus, hi - modulus
    if hi < low_limit:
        return lo + modulus, hi + modulus
    return None


def _add(a: View, b: View) -> View:
    n = a.bits
    half = 1 << (n - 1)
    signed = _wrap_once(a.s_lo + b.s_lo, a.s_hi + b.s_hi, -half, half - 1, 1 << n)
    unsigned = _wrap_once(a.u_lo + b.u_lo, a.u_hi + b.u_hi, 0, _mask(n), 1 << n)
    return _make(n, a.tnum.add(b.tnum), signed, unsigned)


def _sub(a: View, b: View) -> View:
    n = a.bits
    half = 1 << (n - 1)
    signed = _wrap_once(a.s_lo - b.s_hi, a.s_hi - b.s_lo, -half, half - 1, 1 << n)
    unsigned = _wrap_once(a.u_lo - b.u_hi, a.u_hi - b.u_lo, 0, _mask(n), 1 << n)
    return _make(n, a.tnum.sub(b.tnum), signed, unsigned)


def _mul(a: View, b: View) -> View:
    n = a.bits
    half = 1 << (n - 1)
    unsigned = (a.u_lo * b.u_lo, a.u_hi * b.u_hi) if a.u_hi * b.u_hi <= _mask(n) else None
    corners = [x * y for x in (a.s_lo, a.s_hi) for y in (b.s_lo, b.s_hi)]
    signed = (min(corners), max(corners)) if -half <= min(corners) and max(corners) < half else None
    return _make(n, a.tnum.mul(b.tnum), signed, unsigned)


def _bitwise_signed(n: int, u_lo: int, u_hi: int) -> tuple[int, int] | None:
    """Signed bounds equal the unsigned ones when the unsigned range stays on one side of the sign."""
    return (_signed(u_lo, n), _signed(u_hi, n)) if _signed(u_lo, n) <= _signed(u_hi, n) else None


def _and(a: View, b: View) -> View:
    n = a.bits
    t = a.tnum.and_(b.tnum)
    unsigned = (t.value, min(a.u_hi, b.u_hi, t.umax()))
    return _make(n, t, _bitwise_signed(n, *unsigned), unsigned)


def _or(a: View, b: View) -> View:
    n = a.bits
    t = a.tnum.or_(b.tnum)
    unsigned = (max(a.u_lo, b.u_lo, t.value), t.umax())
    return _make(n, t, _bitwise_signed(n, *unsigned), unsigned)


def _xor(a: View, b: View) -> View:
    n = a.bits
    t = a.tnum.xor(b.tnum)
    unsigned = (t.value, t.umax())
    return _make(n, t, _bitwise_signed(n, *unsigned), unsigned)


def _shift_range_ok(a: View, b: View) -> bool:
    # Shift amounts at or beyond the width are masked at run time; the kernel then knows nothing.
    return b.u_hi < a.bits


def _lsh(a: View, b: View) -> View:
    n = a.bits
    if not _shift_range_ok(a, b):
        return View.full(n)
    shift = b.const_value()
    t = a.tnum.lshift(shift) if shift is not None else _UNKNOWN_TNUM[n].lshift(b.u_lo)
    # __scalar64/32_min_max_lsh: the kernel keeps the unsigned range only while umax is at most
    # 2**(n-1-shift), so a value with its top bit possibly set loses it even on a shift by 0.
    unsigned = (a.u_lo << b.u_lo, a.u_hi << b.u_hi) if a.u_hi <= 1 << (n - 1 - b.u_hi) else None
    return _make(n, t, None, unsigned)


def _rsh(a: View, b: View) -> View:
    n = a.bits
    if not _shift_range_ok(a, b):
        return View.full(n)
    shift = b.const_value()
    t = a.tnum.rshift(shift) if shift is not None else _UNKNOWN_TNUM[n].rshift(b.u_lo)
    return _make(n, t, None, (a.u_lo >> b.u_hi, a.u_hi >> b.u_lo))


def _arsh(a: View, b: View) -> View:
    n = a.bits
    if not _shift_range_ok(a, b):
        return View.full(n)
    shift = b.const_value()
    t = a.tnum.arshift(shift, n) if shift is not None else _UNKNOWN_TNUM[n]
    lows = (a.s_lo >> b.u_lo, a.s_lo >> b.u_hi)
    highs = (a.s_hi >> b.u_lo, a.s_hi >> b.u_hi)
    return _make(n, t, (min(lows), max(highs)), None)


def _div(a: View, b: View) -> View:
    if b.u_hi == 0:
        return _make(a.bits, Tnum.const(0), (0, 0), (0, 0))  # division by zero gives 0
    low = 0 if b.u_lo == 0 else a.u_lo // b.u_hi
    return _make(a.bits, _UNKNOWN_TNUM[a.bits], None, (low, a.u_hi // max(b.u_lo, 1)))


def _mod(a: View, b: View) -> View:
    if b.u_hi == 0 or (b.u_lo > 0 and a.u_hi < b.u_lo):
        return a  # modulo by zero, or by something larger: the dividend is unchanged
    top = a.u_hi if b.u_lo == 0 else min(a.u_hi, b.u_hi - 1)
    return _make(a.bits, Tnum.range(0, top), None, (0, top))


def _sdiv(a: View, b: View) -> View:
    # |a / b| <= |a| (and INT_MIN / -1 wraps to INT_MIN, which the clipped range still holds).
    n = a.bits
    half = 1 << (n - 1)
    magnitude = max(abs(a.s_lo), abs(a.s_hi))
    return _make(n, _UNKNOWN_TNUM[n], (max(-magnitude, -half), min(magnitude, half - 1)), None)


def _smod(a: View, b: View) -> View:
    # The remainder has the dividend's sign and is no larger in magnitude (b == 0 leaves a).
    return _make(a.bits, _UNKNOWN_TNUM[a.bits], (min(a.s_lo, 0), max(a.s_hi, 0)), None)


def _mov(_a: View, b: View) -> View:
    return b


def _sign_extend(from_bits: int) -> Callable[[View, View], View]:
    def movsx(_a: View, b: View) -> View:
        n = b.bits
        if from_bits >= n:
            return b
        # coerce_reg_to_size_sx / coerce_subreg_to_size_sx: when the signed range does not
        # straddle a multiple of 2**from_bits, the low bits' range, sign-extended, is the result
        # if it lies on one side of zero; the tnum is rebuilt from that range. Else only the
        # sign-extended type's range is known.
        mask = _mask(n)
        if (b.s_lo & mask) >> from_bits == (b.s_hi & mask) >> from_bits:
            ends = (_signed(b.s_lo, from_bits), _signed(b.s_hi, from_bits))
            low, high = min(ends), max(ends)
            if (low >= 0) == (high >= 0):
                return View(n, Tnum.range(low & mask, high & mask), low, high, low & mask, high & mask)
        sign = 1 << (from_bits - 1)
        return _make(n, Tnum(0, mask), (-sign, sign - 1), None)

    return movsx


def sign_extend_to_size(value: Scalar, size: int) -> Scalar:
    """The low ``size`` bytes of ``value``, sign-extended to 64 bits (a sign-extending load)."""
    if size >= 8:
        return value
    constant = value.const_value()
    if constant is not None:
        return Scalar.const(_signed(constant, size * 8) & _mask(64))
    return _from_views(_sign_extend(size * 8)(View.of(value, 64), View.of(value, 64)), None)


OPS: dict[BinOp, Callable[[View, View], View]] = {
    BinOp.ADD: _add,
    BinOp.SUB: _sub,
    BinOp.MUL: _mul,
    BinOp.DIV: _div,
    BinOp.SDIV: _sdiv,
    BinOp.MOD: _mod,
    BinOp.SMOD: _smod,
    BinOp.OR: _or,
    BinOp.AND: _and,
    BinOp.XOR: _xor,
    BinOp.LSH: _lsh,
    BinOp.RSH: _rsh,
    BinOp.ARSH: _arsh,
    BinOp.MOV: _mov,
    BinOp.MOVSX8: _sign_extend(8),
    BinOp.MOVSX16: _sign_extend(16),
    BinOp.MOVSX32: _sign_extend(32),
}

LOW_HALF_ONLY = frozenset({BinOp.ADD, BinOp.SUB, BinOp.MUL, BinOp.AND, BinOp.OR, BinOp.XOR, BinOp.MOV})
"""64-bit operations whose low 32 result bits depend only on the operands' low 32 bits."""


def _from_views(wide: View, low: View | None) -> Scalar:
    var_off = wide.tnum
    if low is not None:
        var_off = var_off.with_subreg(var_off.subreg().intersect(low.tnum))
        return sync(Scalar(var_off, wide.s_lo, wide.s_hi, wide.u_lo, wide.u_hi,
                           low.s_lo, low.s_hi, low.u_lo, low.u_hi))
    return sync(Scalar(var_off, wide.s_lo, wide.s_hi, wide.u_lo, wide.u_hi))


def zero_extend(low: View) -> Scalar:
    """The register after a 32-bit operation: the low view, upper half zero."""
    return sync(Scalar(low.tnum.subreg(), low.u_lo, low.u_hi, low.u_lo, low.u_hi,
                       low.s_lo, low.s_hi, low.u_lo, low.u_hi))


def coerce_to_size(value: Scalar, size: int) -> Scalar:
    """The low ``size`` bytes of ``value``, zero-extended (the kernel's ``coerce_reg_to_size``):
    the tnum is cut, the 64-bit range survives when the cut-off bits are the same at both ends
    of it, and below 4 bytes the 32-bit range is rebuilt from the 64-bit one."""
    if size >= 8:
        return value
    mask = (1 << (size * 8)) - 1
    if value.umin & ~mask == value.umax & ~mask:
        umin, umax = value.umin & mask, value.umax & mask
    else:
        umin, umax = 0, mask
    var_off = value.var_off.cast(size)
    if size < 4:
        return sync(Scalar(var_off, umin, umax, umin, umax))
    return sync(Scalar(var_off, umin, umax, umin, umax, value.s32_min, value.s32_max, value.u32_min,
                       value.u32_max))


MOVES = frozenset({BinOp.MOV, BinOp.MOVSX8, BinOp.MOVSX16, BinOp.MOVSX32})
SHIFTS = frozenset({BinOp.LSH, BinOp.RSH, BinOp.ARSH})
KERNEL_UNTRACKED = frozenset({BinOp.DIV, BinOp.SDIV, BinOp.MOD, BinOp.SMOD})
"""Operations whose result the kernel marks fully unknown (``mark_reg_unknown``), even for constants."""


def alu(op: BinOp, dst: Scalar, src: Scalar, is64: bool, *, kernel_compatible: bool = True) -> Scalar:
    """``dst op= src`` on scalars (ALU64 when ``is64``, else ALU with zero extension).

    With ``kernel_compatible`` (the default) the result is exactly as precise as the kernel's, so
    verdicts agree: division and modulo then forget everything, as the kernel does (its log shows
    ``scalar()``, without even the zero upper half of a 32-bit result). Without it, division and
    modulo keep the (sound) ranges computed here.
    """
    if kernel_compatible and op in KERNEL_UNTRACKED:
        return Scalar.unknown()
    if kernel_compatible and op in SHIFTS:
        # is_safe_to_compute_dst_reg_range: only a constant in-range shift amount is tracked.
        amount = src.const_value() if is64 else (src.var_off.subreg().value if src.is_subreg_const() else None)
        if amount is None or amount >= (64 if is64 else 32):
            return Scalar.unknown()
    table = semantics.ALU64 if is64 else semantics.ALU32
    a, b = dst.const_value(), src.const_value()
    if b is not None and (a is not None or op in MOVES):
        return Scalar.const(table[op](a or 0, b))
    function = OPS.get(op)
    if function is None:
        raise VerifierError(None, f"no transfer function for {op.name}")
    if not is64:
        return zero_extend(function(View.of(dst, 32), View.of(src, 32)))
    wide = function(View.of(dst, 64), View.of(src, 64))
    if op is BinOp.LSH and src.const_value() == 32:
        # __scalar64_min_max_lsh special-cases <<32 (the sign-extension idiom <<32 s>>32): the
        # s32 range moves to the top half exactly, whatever its sign (the kernel since 6.18).
        wide = wide.with_signed(dst.s32_min << 32, dst.s32_max << 32)
    low = function(View.of(dst, 32), View.of(src, 32)) if op in LOW_HALF_ONLY else None
    return _from_views(wide, low)


def neg(dst: Scalar, is64: bool) -> Scalar:
    """``dst = -dst``: subtraction from zero."""
    return alu(BinOp.SUB, Scalar.const(0), dst, is64)


def _swap_bytes(t: Tnum, width: int) -> Tnum:
    # Moving whole bytes around is exact on known/unknown bits alike.
    return Tnum(semantics.byte_swap(t.value, width), semantics.byte_swap(t.mask, width))


def endian(dst: Scalar, width: int, order: EndianOrder) -> Scalar:
    """le16/le32/le64 (truncate on this little-endian machine), be16/32/64 and bswap16/32/64."""
    value = dst.const_value()
    if order == EndianOrder.LE:
        # On a little-endian machine le16/le32 are truncations and le64 a no-op; the kernel
        # (6.18) tracks them as coerce_reg_to_size does, keeping the ranges that survive the cut.
        if value is not None:
            return Scalar.const(semantics.to_le(value, width))
        return coerce_to_size(dst, width // 8)
    if value is not None:
        return Scalar.const(semantics.byte_swap(value, width))
    return Scalar.from_tnum(_swap_bytes(dst.var_off.cast(width // 8), width))
