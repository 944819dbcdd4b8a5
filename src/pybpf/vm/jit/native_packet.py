"""Packet and checksum helpers in native code: csum_diff, l3/l4_csum_replace, csum_update, skb_load/store_bytes.

Through the ctypes trampoline each of these costs microseconds; in native code they are a few
loads, adds and a store. The generated code reproduces :mod:`pybpf.runtime.helpers.csum` and
``skb_load_bytes`` of :mod:`pybpf.runtime.helpers.packet` bit for bit (those are tested against
the kernel's ``net/core/filter.c``): the same flag validation and return codes (-EINVAL for
unknown flags or field sizes, -EFAULT for an odd or out-of-packet offset), the same
end-around-carry sums (``csum_partial``'s representative modulo 2**32 - 1), BPF_F_MARK_MANGLED_0.

What native code needs of the run is in the run-state block, filled by :func:`fill_packet_slots`
before native code starts: ``Slot.PACKET_NATIVE`` (which of these helpers are the runtime's and
may be served natively this run, :class:`PacketNative` bits), ``Slot.PACKET_CTX`` (the context
pointer the helpers accept as r1), and the packet's ``data``/``data_end`` (``Slot.PACKET_DATA``,
``Slot.PACKET_END``). A Python helper may reshape the packet (skb_change_head moves the buffer):
:func:`refresh_packet_slots` reads the packet again after every trampoline call. A native batch
sets data/data_end itself for every packet and marks the block :attr:`PacketNative.PER_PACKET`
so that the refresh leaves them alone.

Anything unusual goes through the trampoline, where the Python helper decides: a helper that is
not the runtime's, a run without a packet, an r1 that is not the context (the Python helper
raises), an skb whose ``ip_summed`` is CHECKSUM_PARTIAL or CHECKSUM_COMPLETE (l4_csum_replace and
csum_update then change ``skb->csum``, which lives in Python). Memory the helper reads or writes
(csum_diff's buffers, skb_load_bytes' destination) is checked like a program access: the hot
range, the range table, then the fault handler, which raises the interpreter's
MemoryAccessError at the helper's pc, as the Python helper's read would.

bpf_xdp_adjust_head/tail/meta are translated here too, but served natively only in batches,
which know where the context keeps its packet pointers (:mod:`pybpf.vm.jit.native_xdp`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import IntEnum
from typing import TYPE_CHECKING, Any

from pybpf.platform.uapi_generated import HelperId
from pybpf.vm.execution import STACK_SIZE
from pybpf.vm.jit.native_skb import PER_PACKET as PER_PACKET_BIT
from pybpf.vm.jit.native_skb import emit_skb_load_bytes, emit_skb_store_bytes, store_bytes_native
from pybpf.vm.jit.native_xdp import (
    ADJUST_HEAD_BIT,
    ADJUST_META_BIT,
    ADJUST_TAIL_BIT,
    XDP_ADJUST_HELPERS,
    emit_xdp_adjust,
)
from pybpf.vm.jit.state import Slot

if TYPE_CHECKING:
    from pybpf.vm.execution import HelperFn
    from pybpf.vm.jit.codegen import _FunctionEmitter

U16 = 0xFFFF
U32 = 0xFFFF_FFFF
U64 = (1 << 64) - 1
INT_MAX = 0x7FFF_FFFF
EINVAL = -22 & U64
EFAULT = -14 & U64
ENOTSUPP_RET = -524 & U64
"""The kernel-internal ENOTSUPP (include/linux/errno.h) csum_update returns for a non-COMPLETE skb."""
BPF_F_HDR_FIELD_MASK = 0xF
BPF_F_PSEUDO_HDR = 1 << 4
BPF_F_MARK_MANGLED_0 = 1 << 5
BPF_F_MARK_ENFORCE = 1 << 6
BPF_F_IPV6 = 1 << 7
L4_FLAGS = BPF_F_MARK_MANGLED_0 | BPF_F_MARK_ENFORCE | BPF_F_PSEUDO_HDR | BPF_F_HDR_FIELD_MASK | BPF_F_IPV6
CSUM_MANGLED_0 = 0xFFFF
CHECKSUM_COMPLETE = 2
CHECKSUM_PARTIAL = 3
MAX_SCANNED_SIZE = 0xFFFF
"""Larger helper buffers skip the inline range checks (whose ``end - size`` could wrap) for the fault handler."""
CSUM_PARTIAL_NAME = "bpf_csum_partial"


class PacketNative(IntEnum):
    """Bits of ``Slot.PACKET_NATIVE``."""

    CSUM_DIFF = 1
    L3_CSUM_REPLACE = 2
    L4_CSUM_REPLACE = 4
    """Only for an skb whose ip_summed leaves skb->csum alone (CHECKSUM_NONE or UNNECESSARY)."""
    CSUM_UPDATE = 8
    """Only for an skb that is not CHECKSUM_COMPLETE: the answer is then -ENOTSUPP."""
    SKB_LOAD_BYTES = 16
    SKB_STORE_BYTES = 256
    """Only for an skb that is not CHECKSUM_COMPLETE (BPF_F_RECOMPUTE_CSUM then changes nothing)."""
    XDP_ADJUST_HEAD = ADJUST_HEAD_BIT
    """Only with a ``PacketFrame`` (see :mod:`pybpf.vm.jit.native_xdp`), as the two below."""
    XDP_ADJUST_TAIL = ADJUST_TAIL_BIT
    XDP_ADJUST_META = ADJUST_META_BIT
    PER_PACKET = PER_PACKET_BIT
    """A native batch owns ``Slot.PACKET_DATA``/``PACKET_END``: the refresh after a Python helper skips them."""


_RUNTIME_HELPERS: dict[int, tuple[PacketNative, str, str]] = {
    HelperId.CSUM_DIFF: (PacketNative.CSUM_DIFF, "pybpf.runtime.helpers.csum", "csum_diff_helper"),
    HelperId.L3_CSUM_REPLACE: (PacketNative.L3_CSUM_REPLACE, "pybpf.runtime.helpers.csum", "l3_csum_replace"),
    HelperId.L4_CSUM_REPLACE: (PacketNative.L4_CSUM_REPLACE, "pybpf.runtime.helpers.csum", "l4_csum_replace"),
    HelperId.CSUM_UPDATE: (PacketNative.CSUM_UPDATE, "pybpf.runtime.helpers.csum", "csum_update"),
    HelperId.SKB_LOAD_BYTES: (PacketNative.SKB_LOAD_BYTES, "pybpf.runtime.helpers.packet", "skb_load_bytes"),
    HelperId.SKB_STORE_BYTES: (PacketNative.SKB_STORE_BYTES, "pybpf.runtime.helpers.packet", "skb_store_bytes"),
    HelperId.XDP_ADJUST_HEAD: (PacketNative.XDP_ADJUST_HEAD, "pybpf.runtime.helpers.packet", "xdp_adjust_head"),
    HelperId.XDP_ADJUST_TAIL: (PacketNative.XDP_ADJUST_TAIL, "pybpf.runtime.helpers.packet", "xdp_adjust_tail"),
    HelperId.XDP_ADJUST_META: (PacketNative.XDP_ADJUST_META, "pybpf.runtime.helpers.packet", "xdp_adjust_meta"),
}
NATIVE_PACKET_HELPERS = frozenset(_RUNTIME_HELPERS)
"""Helper ids :func:`emit_packet_helper` translates."""
PACKET_BOUND = frozenset(helper for helper in _RUNTIME_HELPERS if helper != HelperId.CSUM_DIFF)
"""Those that need the run's packet (csum_diff only reads memory)."""


# -- run setup (Python side) ------------------------------------------------------------------------


def packet_native_bits(helpers: Mapping[int, HelperFn], called: Iterable[int], user: object) -> int:
    """The :class:`PacketNative` bits for a run of a program calling ``called`` with ``user`` as run state.

    ``user`` is the runtime's RunState, duck-typed (the VM layer does not import the runtime):
    ``user.packet`` is its PacketContext (``data``, ``data_end``, ``skb.ip_summed``), ``user.ctx``
    the context pointer.
    """
    packet = getattr(user, "packet", None)
    has_packet = packet is not None and bool(getattr(user, "ctx", 0))
    ip_summed = getattr(getattr(packet, "skb", None), "ip_summed", None)
    bits = 0
    for helper in called:
        if not runtime_packet_helper(helpers, helper):
            continue
        if helper in PACKET_BOUND and not has_packet:
            continue
        if helper in XDP_ADJUST_HELPERS:
            continue  # frame_bits() turns these on for a run given a PacketFrame (where the pointers are)
        if helper == HelperId.L4_CSUM_REPLACE and ip_summed in (CHECKSUM_PARTIAL, CHECKSUM_COMPLETE):
            continue
        if helper in (HelperId.CSUM_UPDATE, HelperId.SKB_STORE_BYTES) and ip_summed == CHECKSUM_COMPLETE:
            continue
        bits |= _RUNTIME_HELPERS[helper][0]
    return bits


def fill_packet_slots(state: Any, helpers: Mapping[int, HelperFn], called: Iterable[int], user: object) -> None:
    """Fill the run-state block's packet slots for a run (see the module doc)."""
    state[Slot.PACKET_NATIVE] = packet_native_bits(helpers, called, user)
    state[Slot.PACKET_CTX] = 0
    packet = getattr(user, "packet", None)
    if packet is not None:
        state[Slot.PACKET_CTX] = int(getattr(user, "ctx", 0)) & U64
        _read_layout(state, packet)


def refresh_packet_slots(state: Any, user: object) -> None:
    """After a Python helper: the packet's data/data_end again (it may have moved or changed size)."""
    if not state[Slot.PACKET_CTX] or state[Slot.PACKET_NATIVE] & PacketNative.PER_PACKET:
        return
    packet = getattr(user, "packet", None)
    if packet is not None:
        _read_layout(state, packet)


def _read_layout(state: Any, packet: Any) -> None:
    state[Slot.PACKET_DATA], state[Slot.PACKET_END] = int(packet.data), int(packet.data_end)
    state[Slot.PACKET_META] = int(packet.data_meta)


# -- code generation ------------------------------------------------------------------------------


class _Emit:
    """IR building blocks over one function emitter (the helpers' arithmetic, in 64-bit values)."""

    def __init__(self, fb: _FunctionEmitter, pc: int) -> None:
        self.fb = fb
        self.pc = pc
        self.builder: Any = fb.builder
        self.ir: Any = fb.ir

    def const(self, value: int) -> Any:
        return self.fb._const(value)

    def u32(self, value: Any) -> Any:
        return self.builder.and_(value, self.const(U32))

    def u16(self, value: Any) -> Any:
        return self.builder.and_(value, self.const(U16))

    def not32(self, value: Any) -> Any:
        """``~value & U32``."""
        return self.builder.xor(self.u32(value), self.const(U32))

    def csum_add(self, csum: Any, addend: Any) -> Any:
        """32-bit one's-complement addition (end-around carry) of two 32-bit values."""
        builder = self.builder
        total = builder.add(csum, addend)
        return builder.add(self.u32(total), builder.lshr(total, self.const(32)))

    def from32to16(self, csum: Any) -> Any:
        builder = self.builder
        total = builder.add(self.u16(csum), builder.lshr(self.u32(csum), self.const(16)))
        return builder.add(self.u16(total), builder.lshr(total, self.const(16)))

    def fold(self, csum: Any) -> Any:
        """csum_fold: folded to 16 bits and complemented."""
        return self.builder.xor(self.from32to16(csum), self.const(U16))

    def representative(self, total: Any) -> Any:
        """The end-around-carry 32-bit result of a 64-bit sum of 32-bit addends (0 only for 0)."""
        return _fold64(self.builder, total, self.const)

    def csum16_add(self, csum: Any, addend: Any) -> Any:
        total = self.builder.add(self.u16(csum), self.u16(addend))
        return self.builder.add(self.u16(total), self.builder.lshr(total, self.const(16)))

    def select(self, condition: Any, yes: Any, no: Any) -> Any:
        return self.builder.select(condition, yes, no)

    def eq(self, a: Any, b: Any) -> Any:
        return self.builder.icmp_unsigned("==", a, b)

    def pointer(self, address: Any, bits: int) -> Any:
        return self.builder.inttoptr(address, self.ir.IntType(bits).as_pointer())

    def load16(self, address: Any) -> Any:
        value = self.fb.parent.tag(self.builder.load(self.pointer(address, 16), align=1), "memory")
        return self.builder.zext(value, self.fb.i64)

    def store16(self, address: Any, value: Any) -> None:
        narrow = self.builder.trunc(value, self.ir.IntType(16))
        self.fb.parent.tag(self.builder.store(narrow, self.pointer(address, 16), align=1), "memory")

    def block(self, what: str) -> Any:
        return self.fb._new_block(f"{what}_{self.pc}")

    def check_range(self, address: Any, size: Any, is_write: bool) -> None:
        """Allow ``size`` (a value) bytes at ``address`` as a program access would be allowed, or bail.

        A zero size touches nothing (the Python helpers skip empty reads and writes). The hot
        range is the function's locals when the emitter keeps it there (else the run-state
        slots); a scan or the fault handler changes the slots, so the locals are reloaded after.
        """
        fb, builder = self.fb, self.builder
        if not fb.parent.bounds_checks:
            return
        write = self.const(int(is_write))
        hot_locals = list(getattr(fb, "hot", None) or [])
        if hot_locals:
            hot_start, hot_end, hot_writable = (builder.load(local) for local in hot_locals)
        else:
            hot_start, hot_end, hot_writable = (
                fb._load_slot(slot) for slot in (Slot.HOT_START, Slot.HOT_END, Slot.HOT_WRITABLE)
            )
        hot = builder.and_(
            builder.and_(
                builder.icmp_unsigned(">=", address, hot_start), builder.icmp_unsigned("<=", address, hot_end)
            ),
            builder.icmp_unsigned("<=", size, builder.sub(hot_end, address)),
        )
        if is_write:
            hot = builder.and_(hot, builder.icmp_unsigned("!=", hot_writable, self.const(0)))
        hot = builder.or_(hot, self.eq(size, self.const(0)))
        frame_bottom = getattr(fb, "frame_bottom", None)
        if frame_bottom is not None:
            # The function's own stack frame (a helper's buffer is usually there): always mapped
            # and writable, so one compare instead of a scan that would move the hot range away
            # from the packet the program is working on.
            room = builder.sub(self.const(STACK_SIZE), size)
            in_frame = builder.and_(
                builder.icmp_unsigned("<=", size, self.const(STACK_SIZE)),
                builder.icmp_unsigned("<=", builder.sub(address, frame_bottom), room),
            )
            hot = builder.or_(hot, in_frame)
        access, scan, found, slow = (
            self.block(what) for what in ("range_ok", "range_scan", "range_found", "range_fault")
        )
        builder.cbranch(hot, access, scan)
        builder.position_at_end(scan)
        # in_ranges compares against ``end - size``: only sizes no region end can be below are scanned.
        small = builder.icmp_unsigned("<=", size, self.const(MAX_SCANNED_SIZE))
        scanned = builder.call(fb.parent.in_ranges, [fb.state, address, size, write])
        builder.cbranch(builder.and_(small, scanned), found, slow)
        builder.position_at_end(slow)
        handler = builder.inttoptr(fb._load_slot(Slot.FAULT_FN), fb.parent.fault_type.as_pointer())
        verdict = builder.call(handler, [fb.state, address, size, write, self.const(self.pc)])
        builder.cbranch(builder.icmp_unsigned("!=", verdict, self.const(0)), found, fb.bail)
        builder.position_at_end(found)
        reload = getattr(fb, "_reload_hot", None)
        if hot_locals and reload is not None:
            reload()
        builder.branch(access)
        builder.position_at_end(access)

    def csum_partial(self, address: Any, size: Any, seed: Any) -> Any:
        """``csum_partial(address, size, seed)``: a call of the module's out-of-line function."""
        return self.builder.call(_csum_partial_function(self.fb), [address, size, seed])


def _csum_partial_function(fb: _FunctionEmitter) -> Any:
    """``i64 bpf_csum_partial(i64 address, i64 size, i64 seed)``, built once per module.

    Little-endian 32-bit words (the last one zero-padded) summed in 64 bits with the seed, then
    reduced to the representative the x86-64 kernel's csum_partial gives.
    """
    parent = fb.parent
    module, ir, i64 = parent.module, parent.ir, parent.i64
    try:
        return module.get_global(CSUM_PARTIAL_NAME)
    except KeyError:
        pass
    function = ir.Function(module, ir.FunctionType(i64, [i64, i64, i64]), name=CSUM_PARTIAL_NAME)
    function.linkage = "internal"
    address, size, seed = function.args
    entry, words, word, tail_head, tail, done = (
        function.append_basic_block(name) for name in ("entry", "words", "word", "tail_head", "tail", "done")
    )
    builder = ir.IRBuilder(entry)

    def const(value: int) -> Any:
        return ir.Constant(i64, value)

    count = builder.and_(size, const(~3 & U64))
    start = builder.and_(seed, const(U32))
    builder.branch(words)
    builder.position_at_end(words)
    index = builder.phi(i64)
    total = builder.phi(i64)
    index.add_incoming(const(0), entry)
    total.add_incoming(start, entry)
    builder.cbranch(builder.icmp_unsigned("<", index, count), word, tail_head)
    builder.position_at_end(word)
    pointer = builder.inttoptr(builder.add(address, index), ir.IntType(32).as_pointer())
    value = builder.zext(parent.tag(builder.load(pointer, align=1), "memory"), i64)
    index.add_incoming(builder.add(index, const(4)), word)
    total.add_incoming(builder.add(total, value), word)
    builder.branch(words)
    builder.position_at_end(tail_head)
    at = builder.phi(i64)
    last = builder.phi(i64)
    at.add_incoming(index, words)
    last.add_incoming(const(0), words)
    builder.cbranch(builder.icmp_unsigned("<", at, size), tail, done)
    builder.position_at_end(tail)
    byte = builder.zext(
        parent.tag(builder.load(builder.inttoptr(builder.add(address, at), ir.IntType(8).as_pointer())), "memory"), i64
    )
    shifted = builder.shl(byte, builder.shl(builder.and_(at, const(3)), const(3)))
    at.add_incoming(builder.add(at, const(1)), tail)
    last.add_incoming(builder.or_(last, shifted), tail)
    builder.branch(tail_head)
    builder.position_at_end(done)
    builder.ret(_fold64(builder, builder.add(total, last), const))
    return function


def _fold64(builder: Any, total: Any, const: Any) -> Any:
    """``total`` (a 64-bit sum) folded to 32 bits with end-around carry, twice: no division needed.

    Each fold keeps the value modulo 2**32 - 1 and nonzero unless it was zero; after the first
    the value is below 2**33 - 1, after the second at most 2**32 - 1: exactly the representative
    ``(total - 1) % (2**32 - 1) + 1`` (0 for 0) that x86-64's csum_partial produces.
    """
    for _ in range(2):
        total = builder.add(builder.and_(total, const(U32)), builder.lshr(total, const(32)))
    return total


def emit_packet_helper(fb: _FunctionEmitter, pc: int, helper: int) -> None:
    """A call of a :data:`NATIVE_PACKET_HELPERS` helper: native when ``Slot.PACKET_NATIVE`` allows, else trampoline."""
    builder = fb.builder
    bit = _RUNTIME_HELPERS[helper][0]
    allowed = builder.icmp_unsigned("!=", builder.and_(fb._load_slot(Slot.PACKET_NATIVE), fb._const(bit)), fb._const(0))
    if helper in PACKET_BOUND:
        own_context = builder.icmp_unsigned("==", fb._get(1), fb._load_slot(Slot.PACKET_CTX))
        allowed = builder.and_(allowed, own_context)
    if helper == HelperId.SKB_STORE_BYTES:
        allowed = builder.and_(allowed, store_bytes_native(fb))
    _, slow, done = fb.native_or_trampoline(allowed, f"packet{helper}", pc)
    emit = _Emit(fb, pc)
    match helper:
        case HelperId.CSUM_DIFF:
            _csum_diff(emit)
        case HelperId.L3_CSUM_REPLACE:
            _csum_replace(emit, l4=False)
        case HelperId.L4_CSUM_REPLACE:
            _csum_replace(emit, l4=True)
        case HelperId.CSUM_UPDATE:
            fb._set(0, fb._const(ENOTSUPP_RET))
        case HelperId.XDP_ADJUST_HEAD | HelperId.XDP_ADJUST_TAIL | HelperId.XDP_ADJUST_META:
            emit_xdp_adjust(emit, helper)
        case HelperId.SKB_STORE_BYTES:
            emit_skb_store_bytes(emit)
        case _:
            emit_skb_load_bytes(emit)
    builder.branch(done)
    fb.finish_native_call(pc, helper, slow, done)


def _csum_diff(emit: _Emit) -> None:
    """bpf_csum_diff(from, from_size, to, to_size, seed), Linux >= 6.12 (no size checks, folded to 16 bits)."""
    fb = emit.fb
    source, source_size = fb._get(1), emit.u32(fb._get(2))
    target, target_size = fb._get(3), emit.u32(fb._get(4))
    seed = emit.u32(fb._get(5))
    emit.check_range(source, source_size, False)
    emit.check_range(target, target_size, False)
    zero = emit.const(0)
    target_sum = emit.csum_partial(target, target_size, seed)  # the seed itself for an empty target
    no_target = emit.eq(target_size, zero)
    source_sum = emit.csum_partial(source, source_size, emit.select(no_target, emit.not32(seed), zero))
    both = emit.csum_add(target_sum, emit.not32(source_sum))
    total = emit.select(emit.eq(source_size, zero), target_sum, emit.select(no_target, emit.not32(source_sum), both))
    fb._set(0, emit.from32to16(total))


def _csum_replace(emit: _Emit, *, l4: bool) -> None:
    """bpf_l3_csum_replace / bpf_l4_csum_replace(ctx, offset, from, to, flags) on a CHECKSUM_NONE skb."""
    fb, builder = emit.fb, emit.builder
    offset, old, new, flags = emit.u32(fb._get(2)), fb._get(3), fb._get(4), fb._get(5)
    data = fb._load_slot(Slot.PACKET_DATA)
    length = builder.sub(fb._load_slot(Slot.PACKET_END), data)
    zero = emit.const(0)
    known = L4_FLAGS if l4 else BPF_F_HDR_FIELD_MASK
    bad_flags = builder.icmp_unsigned("!=", builder.and_(flags, emit.const(~known & U64)), zero)
    bad_offset = builder.or_(
        builder.or_(
            builder.icmp_unsigned(">", offset, emit.const(0xFFFF)),
            builder.icmp_unsigned("!=", builder.and_(offset, emit.const(1)), zero),
        ),
        builder.icmp_unsigned(">", builder.add(offset, emit.const(2)), length),
    )
    early = emit.select(bad_flags, emit.const(EINVAL), emit.const(EFAULT))
    fb._set(0, early)
    work, done = emit.block("csum_replace"), emit.block("csum_replace_done")
    builder.cbranch(builder.or_(bad_flags, bad_offset), done, work)
    builder.position_at_end(work)
    where = builder.add(data, offset)
    check = emit.load16(where)
    size = builder.and_(flags, emit.const(BPF_F_HDR_FIELD_MASK))
    not_check = emit.not32(check)  # ~csum_unfold(check): all 32 bits complemented
    by_diff = emit.fold(emit.csum_add(emit.u32(new), not_check))
    if l4:
        # inet_proto_csum_replace2/4 for an skb that is not CHECKSUM_PARTIAL: the two words
        # (~from, to) summed onto ~check with csum_partial.
        old2 = emit.not32(emit.u16(old))
        sum2 = builder.add(builder.add(not_check, old2), emit.u16(new))
        sum4 = builder.add(builder.add(not_check, emit.not32(old)), emit.u32(new))
        by_two = emit.fold(emit.representative(sum2))
        by_four = emit.fold(emit.representative(sum4))
    else:
        inner = emit.csum16_add(
            emit.csum16_add(emit.u16(builder.xor(check, emit.const(U16))), builder.xor(emit.u16(old), emit.const(U16))),
            new,
        )
        by_two = emit.u16(builder.xor(inner, emit.const(U16)))
        subtracted = emit.csum_add(not_check, emit.not32(old))
        by_four = emit.fold(emit.csum_add(subtracted, emit.u32(new)))
    is_zero, is_two, is_four = (emit.eq(size, emit.const(value)) for value in (0, 2, 4))
    bad_size = builder.or_(
        builder.and_(is_zero, builder.icmp_unsigned("!=", old, zero)),
        builder.not_(builder.or_(is_zero, builder.or_(is_two, is_four))),
    )
    result = emit.select(is_zero, by_diff, emit.select(is_two, by_two, by_four))
    store, stored = emit.block("csum_store"), emit.block("csum_stored")
    if l4:
        mangled = builder.icmp_unsigned("!=", builder.and_(flags, emit.const(BPF_F_MARK_MANGLED_0)), zero)
        enforce = builder.icmp_unsigned("!=", builder.and_(flags, emit.const(BPF_F_MARK_ENFORCE)), zero)
        # A zero UDP checksum means "none": with MARK_MANGLED_0 it stays zero (checked before the size).
        untouched = builder.and_(builder.and_(mangled, builder.not_(enforce)), emit.eq(check, zero))
        result = emit.select(builder.and_(mangled, emit.eq(result, zero)), emit.const(CSUM_MANGLED_0), result)
        fb._set(0, emit.select(untouched, zero, emit.select(bad_size, emit.const(EINVAL), zero)))
        builder.cbranch(builder.or_(untouched, bad_size), stored, store)
    else:
        fb._set(0, emit.select(bad_size, emit.const(EINVAL), zero))
        builder.cbranch(bad_size, stored, store)
    builder.position_at_end(store)
    emit.store16(where, result)
    builder.branch(stored)
    builder.position_at_end(stored)
    builder.branch(done)
    builder.position_at_end(done)


def runtime_packet_helper(helpers: Mapping[int, HelperFn], helper: int) -> bool:
    """Whether ``helper`` is one native code serves and ``helpers`` holds the runtime's implementation of it."""
    known = _RUNTIME_HELPERS.get(helper)
    fn = helpers.get(helper)
    return (
        known is not None
        and fn is not None
        and (getattr(fn, "__module__", ""), getattr(fn, "__qualname__", "")) == known[1:]
    )


def frame_bits(helpers: Mapping[int, HelperFn], called: Iterable[int]) -> int:
    """The xdp_adjust_* bits a run given a :class:`~pybpf.vm.jit.native_xdp.PacketFrame` turns on."""
    bits = 0
    for helper in called:
        if helper in XDP_ADJUST_HELPERS and runtime_packet_helper(helpers, helper):
            bits |= _RUNTIME_HELPERS[helper][0]
    return bits
