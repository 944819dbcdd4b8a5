"""bpf_xdp_adjust_head / bpf_xdp_adjust_tail / bpf_xdp_adjust_meta in native code, for native batches.

These move ``data``, ``data_end`` or ``data_meta``: the context's pointer fields and the
packet's layout change. Native code can change both only when it knows where the context keeps
its pointers and where the frame starts and ends: a :class:`PacketFrame`, which a native batch
always passes and a single run (``JitProgram.run(..., frame=...)``) may pass; without one the
helpers stay in Python. After a single run, and before any Python helper runs, the Python
packet (the PacketContext that owns the layout) is brought up to date from the run-state block
(:func:`sync_packet_back`); a batch sets the layout per packet and needs no sync.

The rules are those of :mod:`pybpf.runtime.helpers.packet` (net/core/filter.c): the head may
move between ``XDP_FRAME_STRUCT`` bytes plus the metadata after the frame start and an Ethernet
header before ``data_end``, carrying the metadata with it; the metadata may grow to 32 bytes in
steps of 4 (-EACCES otherwise) and never past ``data``; the tail may grow to the frame's end
minus ``skb_shared_info`` (the new bytes zeroed) or shrink to an Ethernet header. Addresses are
compared signed: a negative delta must not wrap below zero.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pybpf.platform.packet_layout import ETH_HLEN, XDP_FRAME_STRUCT, XDP_METADATA_MAX
from pybpf.platform.uapi_generated import HelperId
from pybpf.vm.jit.native_skb import PER_PACKET
from pybpf.vm.jit.state import Slot

if TYPE_CHECKING:
    from pybpf.vm.jit.native_packet import _Emit

U64 = (1 << 64) - 1
EINVAL = -22 & U64
EACCES = -13 & U64
XDP_ADJUST_HELPERS = frozenset({HelperId.XDP_ADJUST_HEAD, HelperId.XDP_ADJUST_TAIL, HelperId.XDP_ADJUST_META})
ADJUST_HEAD_BIT, ADJUST_TAIL_BIT, ADJUST_META_BIT = 32, 64, 128
"""``PacketNative`` bits of the three helpers (defined here: native_packet imports this module)."""
ADJUST_MASK = ADJUST_HEAD_BIT | ADJUST_TAIL_BIT | ADJUST_META_BIT


@dataclass(frozen=True, slots=True)
class PacketFrame:
    """Where a batch's XDP frame and the context's packet pointers live (native addresses).

    ``start`` is the frame's first byte, ``hard_end`` how far the tail may grow; the three
    slots are the context's 8-byte data, data_end and data_meta pointers.
    """

    start: int
    hard_end: int
    data_slot: int
    end_slot: int
    meta_slot: int

    def fill(self, state: Any) -> None:
        """Write the frame into a run-state block."""
        state[Slot.PACKET_FRAME], state[Slot.PACKET_FRAME_END] = self.start, self.hard_end
        state[Slot.CONTEXT_DATA_SLOT], state[Slot.CONTEXT_END_SLOT] = self.data_slot, self.end_slot
        state[Slot.CONTEXT_META_SLOT] = self.meta_slot


def sync_packet_back(state: Any, user: object) -> None:
    """The Python packet's layout from the run-state block, after native xdp_adjust_* of a single run.

    ``user`` is the runtime's RunState, duck-typed: ``user.packet`` is its PacketContext, whose
    ``start``/``end``/``meta`` are offsets in ``region``; its listeners (the context image) are
    told when the layout changed. A batch (``PER_PACKET``) keeps the layout per packet: skipped.
    """
    native = state[Slot.PACKET_NATIVE]
    if not native & ADJUST_MASK or native & PER_PACKET:
        return
    packet = getattr(user, "packet", None)
    if packet is None:
        return
    base = packet.region.address
    start, end, meta = (int(state[slot]) - base for slot in (Slot.PACKET_DATA, Slot.PACKET_END, Slot.PACKET_META))
    meta_supported = bool(packet.meta_supported)
    if (start, end) == (packet.start, packet.end) and (not meta_supported or meta == packet.meta):
        return
    packet.start, packet.end = start, end
    if meta_supported:
        packet.meta = meta
    packet.changed()


def emit_xdp_adjust(emit: _Emit, helper: int) -> None:
    """The native body of one of :data:`XDP_ADJUST_HELPERS` (r1 already checked to be the context)."""
    fb, builder = emit.fb, emit.builder
    delta = builder.sext(builder.trunc(fb._get(2), emit.ir.IntType(32)), fb.i64)
    data, end, meta = (fb._load_slot(slot) for slot in (Slot.PACKET_DATA, Slot.PACKET_END, Slot.PACKET_META))
    frame = builder.add(fb._load_slot(Slot.PACKET_FRAME), emit.const(XDP_FRAME_STRUCT))
    if helper == HelperId.XDP_ADJUST_HEAD:
        _adjust_head(emit, delta, data=data, end=end, meta=meta, frame=frame)
    elif helper == HelperId.XDP_ADJUST_META:
        _adjust_meta(emit, delta, data, meta, frame)
    else:
        _adjust_tail(emit, delta, data, end)


def _store(emit: _Emit, value: Any, slot: Slot, pointer_slot: Slot) -> None:
    """``value`` into the run-state slot and into the context's pointer field."""
    fb, builder = emit.fb, emit.builder
    builder.store(value, fb._slot(slot))
    field = builder.inttoptr(fb._load_slot(pointer_slot), fb.i64.as_pointer())
    fb.parent.tag(builder.store(value, field, align=8), "memory")


def _result(emit: _Emit, code: Any, apply: Any) -> None:
    """r0 = ``code``; when it is 0, ``apply()`` emits the change."""
    fb, builder = emit.fb, emit.builder
    fb._set(0, code)
    change, done = emit.block("xdp_adjust"), emit.block("xdp_adjusted")
    builder.cbranch(emit.eq(code, emit.const(0)), change, done)
    builder.position_at_end(change)
    apply()
    builder.branch(done)
    builder.position_at_end(done)


def _adjust_head(emit: _Emit, delta: Any, *, data: Any, end: Any, meta: Any, frame: Any) -> None:
    fb, builder, ir = emit.fb, emit.builder, emit.ir
    metalen = builder.sub(data, meta)
    new_data = builder.add(data, delta)
    bad = builder.or_(
        builder.icmp_signed("<", new_data, builder.add(frame, metalen)),
        builder.icmp_signed(">", new_data, builder.sub(end, emit.const(ETH_HLEN))),
    )
    new_meta = builder.add(meta, delta)

    def apply() -> None:
        i8p = ir.IntType(8).as_pointer()
        memmove = fb.parent.module.declare_intrinsic("llvm.memmove", [i8p, i8p, fb.i64])
        pointers = [builder.inttoptr(new_meta, i8p), builder.inttoptr(meta, i8p)]
        builder.call(memmove, [*pointers, metalen, ir.Constant(ir.IntType(1), 0)])  # the metadata moves along
        _store(emit, new_meta, Slot.PACKET_META, Slot.CONTEXT_META_SLOT)
        _store(emit, new_data, Slot.PACKET_DATA, Slot.CONTEXT_DATA_SLOT)

    _result(emit, emit.select(bad, emit.const(EINVAL), emit.const(0)), apply)


def _adjust_meta(emit: _Emit, delta: Any, data: Any, meta: Any, frame: Any) -> None:
    builder = emit.builder
    new_meta = builder.add(meta, delta)
    bad = builder.or_(builder.icmp_signed("<", new_meta, frame), builder.icmp_signed(">", new_meta, data))
    metalen = builder.sub(data, new_meta)
    refused = builder.or_(
        builder.icmp_unsigned("!=", builder.and_(metalen, emit.const(3)), emit.const(0)),
        builder.icmp_unsigned(">", metalen, emit.const(XDP_METADATA_MAX)),
    )
    code = emit.select(bad, emit.const(EINVAL), emit.select(refused, emit.const(EACCES), emit.const(0)))
    _result(emit, code, lambda: _store(emit, new_meta, Slot.PACKET_META, Slot.CONTEXT_META_SLOT))


def _adjust_tail(emit: _Emit, delta: Any, data: Any, end: Any) -> None:
    fb, builder, ir = emit.fb, emit.builder, emit.ir
    new_end = builder.add(end, delta)
    bad = builder.or_(
        builder.icmp_signed(">", new_end, fb._load_slot(Slot.PACKET_FRAME_END)),
        builder.icmp_signed("<", new_end, builder.add(data, emit.const(ETH_HLEN))),
    )

    def apply() -> None:
        i8p = ir.IntType(8).as_pointer()
        memset = fb.parent.module.declare_intrinsic("llvm.memset", [i8p, fb.i64])
        grown = builder.select(builder.icmp_signed(">", delta, emit.const(0)), delta, emit.const(0))
        # The kernel clears grown tail room (it could hold an earlier packet's bytes).
        builder.call(
            memset, [builder.inttoptr(end, i8p), ir.Constant(ir.IntType(8), 0), grown, ir.Constant(ir.IntType(1), 0)]
        )
        _store(emit, new_end, Slot.PACKET_END, Slot.CONTEXT_END_SLOT)

    _result(emit, emit.select(bad, emit.const(EINVAL), emit.const(0)), apply)
