"""LLVM IR for memory: loads, stores, atomics, legacy packet loads, and the range checks.

Pointers (see :class:`~pybpf.vm.jit.plan.FunctionOrigins`): an access through a register
derived from entry register k is ``getelementptr(base_k, address - k's entry value)``, one base
for the whole function, so LLVM sees consecutive accesses as consecutive; an access through r10
is an offset into the frame (a local array when the frame is private, else the region); any
other access is an ``inttoptr`` of its address.

Checks (unless the program runs unchecked): a frame access compares its offset with
``512 - size`` (a constant comparison for a constant offset); any other access tests the hot
range, kept in the function's locals, then scans the range table out of line (``bpf_in_ranges``),
then asks the Python fault handler. A frame access that fails its compare takes the second path to
the region's memory, as the interpreter would reach whatever region holds the address.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pybpf.isa.insn import Atomic, Load, PacketLoad, Reg, Store
from pybpf.isa.opcodes import ATOMIC_FETCH, AtomicCode, Mode
from pybpf.vm.execution import STACK_SIZE
from pybpf.vm.jit import alu_ir
from pybpf.vm.jit.alu_ir import Value, constant
from pybpf.vm.jit.plan import FRAME
from pybpf.vm.jit.state import RANGE_FIELDS, Slot, Status

if TYPE_CHECKING:
    from pybpf.vm.jit.codegen import _FunctionEmitter, _ModuleBuilder

IN_RANGES_NAME = "bpf_in_ranges"
_RMW_NAMES = {AtomicCode.ADD: "add", AtomicCode.OR: "or", AtomicCode.AND: "and", AtomicCode.XOR: "xor"}


def build_in_ranges(parts: _ModuleBuilder) -> Any:
    """``i1 in_ranges(state, address, size, is_write)``: a scan of the run's range table."""
    ir, i64 = parts.ir, parts.i64
    function = ir.Function(
        parts.module, ir.FunctionType(ir.IntType(1), [parts.state_type, i64, i64, i64]), name=IN_RANGES_NAME
    )
    function.linkage = "internal"
    # Out of line: inlined at every access, the scan loops made LLVM's -O2 about 10x slower
    # (2 s for 2,000 instructions). Accesses check the hot range inline first (see
    # check_range); the scan runs when that misses and makes the range it finds hot.
    function.attributes.add("noinline")
    state, address, size, is_write = function.args
    entry, loop, body, step, found, missing = (
        function.append_basic_block(name) for name in ("entry", "loop", "body", "step", "found", "missing")
    )
    builder = ir.IRBuilder(entry)
    count = parts.tag(builder.load(builder.gep(state, [constant(ir, 64, Slot.RANGE_COUNT)])), "state")
    table_address = parts.tag(builder.load(builder.gep(state, [constant(ir, 64, Slot.RANGES)])), "state")
    table = builder.inttoptr(table_address, parts.state_type)
    builder.branch(loop)
    builder.position_at_end(loop)
    index = builder.phi(i64)
    index.add_incoming(constant(ir, 64, 0), entry)
    builder.cbranch(builder.icmp_unsigned(">=", index, count), missing, body)
    builder.position_at_end(body)
    base = builder.mul(index, constant(ir, 64, RANGE_FIELDS))
    start, end, writable = (
        parts.tag(builder.load(builder.gep(table, [builder.add(base, constant(ir, 64, field))])), "tables")
        for field in range(3)
    )
    inside = builder.and_(
        builder.icmp_unsigned(">=", address, start),
        builder.icmp_unsigned("<=", address, builder.sub(end, size)),
    )
    allowed = builder.or_(
        builder.icmp_unsigned("==", is_write, constant(ir, 64, 0)),
        builder.icmp_unsigned("!=", writable, constant(ir, 64, 0)),
    )
    builder.cbranch(builder.and_(inside, allowed), found, step)
    with builder.goto_block(found):
        for slot, value in ((Slot.HOT_START, start), (Slot.HOT_END, end), (Slot.HOT_WRITABLE, writable)):
            parts.tag(builder.store(value, builder.gep(state, [constant(ir, 64, slot)])), "state")
    builder.position_at_end(step)
    index.add_incoming(builder.add(index, constant(ir, 64, 1)), step)
    builder.branch(loop)
    builder.position_at_end(found)
    builder.ret(ir.Constant(ir.IntType(1), 1))
    builder.position_at_end(missing)
    builder.ret(ir.Constant(ir.IntType(1), 0))
    return function


def reload_hot(fb: _FunctionEmitter) -> None:
    """Copy the run's hot range into the locals: start, end, and the end writes may reach.

    The write end is the start when the range is read-only, so a write test is the same two
    compares as a read test (``start <= address <= write_end - size`` holds for no address).
    """
    if not fb.hot:  # unchecked code has no hot range
        return
    builder = fb.builder
    start, end, writable = (fb._load_slot(slot) for slot in (Slot.HOT_START, Slot.HOT_END, Slot.HOT_WRITABLE))
    write_end = builder.select(builder.icmp_unsigned("!=", writable, fb._const(0)), end, start)
    for local, value in zip(fb.hot, (start, end, write_end), strict=True):
        builder.store(value, local)


def check_range(fb: _FunctionEmitter, pc: int, address: Value, size: int, is_write: bool) -> None:
    """Go on (in a new block) once the hot range, the table scan or the fault handler allowed the access."""
    builder = fb.builder
    if not fb.parent.bounds_checks:
        return
    size_value, write_value = fb._const(size), fb._const(int(is_write))
    start, end = builder.load(fb.hot[0]), builder.load(fb.hot[2 if is_write else 1])
    hot = builder.and_(
        builder.icmp_unsigned(">=", address, start),
        builder.icmp_unsigned("<=", address, builder.sub(end, size_value)),
    )
    access, scan, found, slow = (fb._new_block(f"{what}_{pc}") for what in ("access", "scan", "found", "fault"))
    builder.cbranch(hot, access, scan)
    builder.position_at_end(scan)
    allowed = builder.call(fb.parent.in_ranges, [fb.state, address, size_value, write_value])
    builder.cbranch(allowed, found, slow)
    builder.position_at_end(slow)
    handler = builder.inttoptr(fb._load_slot(Slot.FAULT_FN), fb.parent.fault_type.as_pointer())
    verdict = builder.call(handler, [fb.state, address, size_value, write_value, fb._const(pc)])
    builder.cbranch(builder.icmp_unsigned("!=", verdict, fb._const(0)), found, fb.bail)
    builder.position_at_end(found)
    reload_hot(fb)  # the scan made the range it found hot (the handler reset it)
    builder.branch(access)
    builder.position_at_end(access)


def access(  # noqa: PLR0917 - an access is all of these
    fb: _FunctionEmitter, pc: int, reg: Reg, off: int, size: int, is_write: bool, action: Callable[[Value], Any]
) -> Any:
    """``action(pointer)`` on the ``size`` bytes at ``reg + off``; returns what it returns."""
    builder, width = fb.builder, fb.ir.IntType(size * 8).as_pointer()
    address = builder.add(fb._get(reg), fb._const(off))
    origin = fb.origins.base(pc, reg)
    if origin is None:
        return action(fb._checked_pointer(pc, address, size, is_write))
    if origin != FRAME:
        check_range(fb, pc, address, size, is_write)
        offset = builder.sub(address, fb.function.args[2 + origin])
        return action(builder.bitcast(builder.gep(fb.bases[origin], [offset]), width))
    offset = builder.sub(address, fb.frame_bottom)
    frame_pointer = builder.bitcast(builder.gep(fb.frame, [offset]), width)
    if not fb.parent.bounds_checks:
        return action(frame_pointer)
    inside = builder.icmp_unsigned("<=", offset, fb._const(STACK_SIZE - size))
    in_frame, elsewhere, done = (fb._new_block(f"{what}_{pc}") for what in ("frame", "outside", "done"))
    builder.cbranch(inside, in_frame, elsewhere)
    builder.position_at_end(in_frame)
    frame_result = action(frame_pointer)
    frame_end = builder.block
    builder.branch(done)
    builder.position_at_end(elsewhere)
    other_result = action(fb._checked_pointer(pc, address, size, is_write))
    other_end = builder.block
    builder.branch(done)
    builder.position_at_end(done)
    if frame_result is None:
        return None
    result = builder.phi(frame_result.type)
    result.add_incoming(frame_result, frame_end)
    result.add_incoming(other_result, other_end)
    return result


def emit_load(fb: _FunctionEmitter, pc: int, insn: Load) -> None:
    builder = fb.builder
    size = insn.size.nbytes

    def load(pointer: Value) -> Value:
        return fb.parent.tag(builder.load(pointer, align=1), "memory")

    value = access(fb, pc, insn.src, insn.off, size, False, load)
    if size < 8:
        value = builder.sext(value, fb.i64) if insn.sign_extend else builder.zext(value, fb.i64)
    fb._set(insn.dst, value)


def emit_store(fb: _FunctionEmitter, pc: int, insn: Store) -> None:
    builder = fb.builder
    size = insn.size.nbytes
    value = fb._operand(insn.src)
    if size < 8:
        value = builder.trunc(value, fb.ir.IntType(size * 8))

    def store(pointer: Value) -> None:
        fb.parent.tag(builder.store(value, pointer, align=1), "memory")

    access(fb, pc, insn.dst, insn.off, size, True, store)


def emit_atomic(fb: _FunctionEmitter, pc: int, insn: Atomic) -> None:
    """An atomic through its real address (a frame an atomic reaches is never private)."""
    ir, builder = fb.ir, fb.builder
    size, code = insn.size.nbytes, insn.op
    width = ir.IntType(size * 8)

    def narrow(value: Value) -> Value:
        return value if size == 8 else builder.trunc(value, width)

    def widen(value: Value) -> Value:
        return value if size == 8 else builder.zext(value, fb.i64)  # fetched values are zero-extended

    base = insn.src if code is AtomicCode.LOAD_ACQ else insn.dst  # LOAD_ACQ: address in src
    address = builder.add(fb._get(base), fb._const(insn.off))
    pointer = fb._checked_pointer(pc, address, size, code is not AtomicCode.LOAD_ACQ)
    if code is AtomicCode.LOAD_ACQ:
        fb._set(insn.dst, widen(builder.load_atomic(pointer, "acquire", size)))
    elif code is AtomicCode.STORE_REL:
        builder.store_atomic(narrow(fb._get(insn.src)), pointer, "release", size)
    elif code is AtomicCode.CMPXCHG:
        pair = builder.cmpxchg(pointer, narrow(fb._get(0)), narrow(fb._get(insn.src)), "seq_cst", "seq_cst")
        fb._set(0, widen(builder.extract_value(pair, 0)))
    elif code is AtomicCode.XCHG:
        fb._set(insn.src, widen(builder.atomic_rmw("xchg", pointer, narrow(fb._get(insn.src)), "seq_cst")))
    else:
        name = _RMW_NAMES[AtomicCode(code & ~ATOMIC_FETCH)]
        old = builder.atomic_rmw(name, pointer, narrow(fb._get(insn.src)), "seq_cst")
        if code & ATOMIC_FETCH:
            fb._set(insn.src, widen(old))


def emit_packet_load(fb: _FunctionEmitter, pc: int, insn: PacketLoad) -> None:
    """Legacy LD_ABS/LD_IND: r0 = big-endian packet[imm (+ src)]; out of the packet ends the run with r0 = 0."""
    ir, builder = fb.ir, fb.builder
    size = insn.size.nbytes
    packet = fb._load_slot(Slot.PACKET_ADDRESS)
    fb._continue_unless(
        builder.icmp_unsigned("==", packet, fb._const(0)), fb._failure(Status.NO_PACKET, pc), f"packet_{pc}"
    )
    offset = fb._const(insn.imm)
    if insn.mode is Mode.IND and insn.src is not None:
        offset = builder.add(offset, fb._get(insn.src))
    offset = builder.and_(offset, fb._const(0xFFFFFFFF))  # a 32-bit offset, as in the kernel
    outside = builder.or_(
        builder.icmp_unsigned(">=", offset, fb._const(0x80000000)),
        builder.icmp_unsigned(">", builder.add(offset, fb._const(size)), fb._load_slot(Slot.PACKET_SIZE)),
    )
    stop = fb._new_block(f"packet_end_{pc}")
    with builder.goto_block(stop):
        builder.store(fb._const(Status.STOPPED), fb._slot(Slot.STATUS))
        builder.store(fb._const(0), fb._slot(Slot.STOP_R0))
        builder.branch(fb.bail)
    fb._continue_unless(outside, stop, f"packet_in_{pc}")
    pointer = builder.inttoptr(builder.add(packet, offset), ir.IntType(size * 8).as_pointer())
    value = fb.parent.tag(builder.load(pointer, align=1), "memory")
    if size > 1:
        value = alu_ir.byte_swap(ir, builder, fb.parent.module, value, size * 8)
    fb._set(0, value if size == 8 else builder.zext(value, fb.i64))
