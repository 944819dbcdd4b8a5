"""bpf_skb_load_bytes and bpf_skb_store_bytes in native code (see :mod:`pybpf.vm.jit.native_packet`).

Both copy between the linear packet (``Slot.PACKET_DATA`` to ``Slot.PACKET_END``) and program
memory, which is range-checked like a program access. The results are those of
:mod:`pybpf.runtime.helpers.packet` (net/core/filter.c): load_bytes out of the packet zeroes the
destination and returns -EFAULT; store_bytes refuses unknown flags (-EINVAL), an offset above
INT_MAX (-EFAULT) and a range past the packet (-ENOMEM, skb_ensure_writable failing).
BPF_F_RECOMPUTE_CSUM changes nothing on an skb that is not CHECKSUM_COMPLETE (the only kind
served natively); BPF_F_INVALIDATE_HASH clears the Python skb's hash, so with that flag a single
run goes through the trampoline. In a native batch nothing can read that hash (the helpers that
do keep a batch per packet, and every packet's context starts with hash 0), so the flag is served
there too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pybpf.vm.jit.state import Slot

if TYPE_CHECKING:
    from pybpf.vm.jit.codegen import _FunctionEmitter
    from pybpf.vm.jit.native_packet import _Emit

U64 = (1 << 64) - 1
INT_MAX = 0x7FFF_FFFF
EINVAL = -22 & U64
EFAULT = -14 & U64
ENOMEM = -12 & U64
BPF_F_RECOMPUTE_CSUM = 1
BPF_F_INVALIDATE_HASH = 2
PER_PACKET = 1 << 62
"""``PacketNative.PER_PACKET`` (a native batch); repeated here: native_packet imports this module."""


def store_bytes_native(fb: _FunctionEmitter) -> Any:
    """Whether this call of skb_store_bytes may be native: no hash to invalidate, or a batch."""
    builder = fb.builder
    invalidates = builder.icmp_unsigned("!=", builder.and_(fb._get(5), fb._const(BPF_F_INVALIDATE_HASH)), fb._const(0))
    batch = builder.icmp_unsigned(
        "!=", builder.and_(fb._load_slot(Slot.PACKET_NATIVE), fb._const(PER_PACKET)), fb._const(0)
    )
    return builder.or_(builder.not_(invalidates), batch)


def _memory_intrinsic(emit: _Emit, name: str) -> Any:
    i8p = emit.ir.IntType(8).as_pointer()
    types = [i8p, i8p, emit.fb.i64] if name == "llvm.memmove" else [i8p, emit.fb.i64]
    return emit.fb.parent.module.declare_intrinsic(name, types)


def emit_skb_load_bytes(emit: _Emit) -> None:
    """bpf_skb_load_bytes(ctx, offset, to, len): a copy from the linear packet; out of it, zeros and -EFAULT."""
    fb, builder, ir = emit.fb, emit.builder, emit.ir
    offset, target, size = emit.u32(fb._get(2)), fb._get(3), emit.u32(fb._get(4))
    data = fb._load_slot(Slot.PACKET_DATA)
    length = builder.sub(fb._load_slot(Slot.PACKET_END), data)
    emit.check_range(target, size, True)
    outside = builder.or_(
        builder.icmp_unsigned(">", offset, emit.const(INT_MAX)),
        builder.icmp_unsigned(">", builder.add(offset, size), length),
    )
    i8p = ir.IntType(8).as_pointer()
    no_volatile = ir.Constant(ir.IntType(1), 0)
    copy, clear, done = emit.block("load_bytes_copy"), emit.block("load_bytes_clear"), emit.block("load_bytes_done")
    builder.cbranch(outside, clear, copy)
    builder.position_at_end(copy)
    source = builder.inttoptr(builder.add(data, offset), i8p)
    builder.call(_memory_intrinsic(emit, "llvm.memmove"), [builder.inttoptr(target, i8p), source, size, no_volatile])
    builder.branch(done)
    builder.position_at_end(clear)
    zero = ir.Constant(ir.IntType(8), 0)
    builder.call(_memory_intrinsic(emit, "llvm.memset"), [builder.inttoptr(target, i8p), zero, size, no_volatile])
    builder.branch(done)
    builder.position_at_end(done)
    fb._set(0, emit.select(outside, emit.const(EFAULT), emit.const(0)))


def emit_skb_store_bytes(emit: _Emit) -> None:
    """bpf_skb_store_bytes(ctx, offset, from, len, flags): a copy into the linear packet."""
    fb, builder, ir = emit.fb, emit.builder, emit.ir
    offset, source, size, flags = emit.u32(fb._get(2)), fb._get(3), emit.u32(fb._get(4)), fb._get(5)
    data = fb._load_slot(Slot.PACKET_DATA)
    length = builder.sub(fb._load_slot(Slot.PACKET_END), data)
    known = BPF_F_RECOMPUTE_CSUM | BPF_F_INVALIDATE_HASH
    bad_flags = builder.icmp_unsigned("!=", builder.and_(flags, emit.const(~known & U64)), emit.const(0))
    bad_offset = builder.icmp_unsigned(">", offset, emit.const(INT_MAX))
    not_writable = builder.icmp_unsigned(">", builder.add(offset, size), length)
    code = emit.select(
        bad_flags,
        emit.const(EINVAL),
        emit.select(bad_offset, emit.const(EFAULT), emit.select(not_writable, emit.const(ENOMEM), emit.const(0))),
    )
    fb._set(0, code)
    copy, done = emit.block("store_bytes_copy"), emit.block("store_bytes_done")
    builder.cbranch(emit.eq(code, emit.const(0)), copy, done)
    builder.position_at_end(copy)
    emit.check_range(source, size, False)  # read only once the packet range is known good, as in Python
    i8p = ir.IntType(8).as_pointer()
    target = builder.inttoptr(builder.add(data, offset), i8p)
    arguments = [target, builder.inttoptr(source, i8p), size, ir.Constant(ir.IntType(1), 0)]
    builder.call(_memory_intrinsic(emit, "llvm.memmove"), arguments)
    builder.branch(done)
    builder.position_at_end(done)
