"""LLVM IR for arena accesses (BPF_PROBE_MEM32, BPF_PROBE_ATOMIC) and the cast to user space.

An arena access adds the register and the offset, subtracts the arena's 32-bit user base
(``Slot.ARENA_BASE32``) and, when the result lies in the arena and both pages it touches are
allocated (a byte per page at ``Slot.ARENA_PRESENT``), reads or writes the arena's buffer at
``Slot.ARENA_ADDRESS`` plus that offset; otherwise a load gives 0 and a store does nothing, as the
kernel's exception table makes a faulting arena access do (see :mod:`pybpf.vm.arena`). The slots
are the run's (per load of the program), so native code depends on the program alone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pybpf.isa.insn import AddrSpaceCast, Atomic, Load, Reg, Store
from pybpf.isa.opcodes import ATOMIC_FETCH, AtomicCode
from pybpf.vm.jit.alu_ir import Value
from pybpf.vm.jit.state import Slot

if TYPE_CHECKING:
    from pybpf.vm.jit.codegen import _FunctionEmitter

_PAGE_SHIFT = 12


def _guarded(fb: _FunctionEmitter, pc: int, reg: Reg, off: int, size: int, *,
             action: Callable[[Value], Any]) -> tuple[Any, tuple[Any, Any, Any]]:
    """Run ``action(pointer)`` when the access is backed: its result and the three blocks that
    reach the join block (out of the arena, page not allocated, backed), where the builder is left."""
    builder = fb.builder
    at = builder.sub(builder.add(fb._get(reg), fb._const(off)), fb._load_slot(Slot.ARENA_BASE32))
    limit = builder.sub(fb._load_slot(Slot.ARENA_SIZE), fb._const(size))
    inside = builder.icmp_unsigned("<=", at, limit)  # a negative offset is a huge unsigned one
    check_pages, backed, done = (fb._new_block(f"arena_{what}_{pc}") for what in ("pages", "backed", "done"))
    start = builder.block
    builder.cbranch(inside, check_pages, done)
    builder.position_at_end(check_pages)
    table = builder.inttoptr(fb._load_slot(Slot.ARENA_PRESENT), fb.ir.IntType(8).as_pointer())
    first = builder.load(builder.gep(table, [builder.lshr(at, fb._const(_PAGE_SHIFT))]))
    last_byte = builder.add(at, fb._const(size - 1))
    last = builder.load(builder.gep(table, [builder.lshr(last_byte, fb._const(_PAGE_SHIFT))]))
    both = builder.and_(first, last)
    builder.cbranch(builder.icmp_unsigned("!=", both, fb.ir.Constant(fb.ir.IntType(8), 0)), backed, done)
    builder.position_at_end(backed)
    address = builder.add(fb._load_slot(Slot.ARENA_ADDRESS), at)
    result = action(builder.inttoptr(address, fb.ir.IntType(size * 8).as_pointer()))
    builder.branch(done)
    builder.position_at_end(done)
    return result, (start, check_pages, backed)


def emit_arena_load(fb: _FunctionEmitter, pc: int, insn: Load) -> None:
    builder = fb.builder
    size = insn.size.nbytes

    def load(pointer: Value) -> Value:
        value = fb.parent.tag(builder.load(pointer, align=1), "memory")
        if size < 8:
            value = builder.sext(value, fb.i64) if insn.sign_extend else builder.zext(value, fb.i64)
        return value

    value, (start, check_pages, backed) = _guarded(fb, pc, insn.src, insn.off, size, action=load)
    zero = fb._const(0)
    merged = builder.phi(fb.i64)
    merged.add_incoming(zero, start)
    merged.add_incoming(zero, check_pages)
    merged.add_incoming(value, backed)
    fb._set(insn.dst, merged)


def emit_arena_store(fb: _FunctionEmitter, pc: int, insn: Store) -> None:
    builder = fb.builder
    size = insn.size.nbytes
    value = fb._operand(insn.src)
    if size < 8:
        value = builder.trunc(value, fb.ir.IntType(size * 8))

    def store(pointer: Value) -> None:
        fb.parent.tag(builder.store(value, pointer, align=1), "memory")

    _guarded(fb, pc, insn.dst, insn.off, size, action=store)


def emit_cast_to_user(fb: _FunctionEmitter, insn: AddrSpaceCast) -> None:
    """``dst = low32(src) ? user_high | low32(src) : 0`` (the 1 -> 0 cast is a 32-bit move by now)."""
    builder = fb.builder
    low = builder.and_(fb._get(insn.src), fb._const(0xFFFFFFFF))
    tagged = builder.or_(low, fb._load_slot(Slot.ARENA_USER_HIGH))
    is_null = builder.icmp_unsigned("==", low, fb._const(0))
    fb._set(insn.dst, builder.select(is_null, low, tagged))


def emit_arena_atomic(fb: _FunctionEmitter, pc: int, insn: Atomic) -> None:
    """An atomic on arena memory (``BPF_PROBE_ATOMIC``): where the page is not allocated nothing
    happens, the registers keep their values (a load-acquire gives 0), as the kernel's fault
    handling leaves them."""
    ir, builder = fb.ir, fb.builder
    size, code = insn.size.nbytes, insn.op
    width = ir.IntType(size * 8)

    def narrow(value: Value) -> Value:
        return value if size == 8 else builder.trunc(value, width)

    def widen(value: Value) -> Value:
        return value if size == 8 else builder.zext(value, fb.i64)

    base = insn.src if code is AtomicCode.LOAD_ACQ else insn.dst
    target: Reg | int | None = None
    if code is AtomicCode.LOAD_ACQ:
        target, fallback = insn.dst, fb._const(0)
    elif code is AtomicCode.CMPXCHG:
        target, fallback = 0, fb._get(0)
    elif code is AtomicCode.XCHG or (code is not AtomicCode.STORE_REL and code & ATOMIC_FETCH):
        target, fallback = insn.src, fb._get(insn.src)
    operand = fb._get(insn.src)
    expected = fb._get(0)

    def action(pointer: Value) -> Value | None:
        if code is AtomicCode.LOAD_ACQ:
            return widen(builder.load_atomic(pointer, "acquire", size))
        if code is AtomicCode.STORE_REL:
            builder.store_atomic(narrow(operand), pointer, "release", size)
            return None
        if code is AtomicCode.CMPXCHG:
            pair = builder.cmpxchg(pointer, narrow(expected), narrow(operand), "seq_cst", "seq_cst")
            return widen(builder.extract_value(pair, 0))
        if code is AtomicCode.XCHG:
            return widen(builder.atomic_rmw("xchg", pointer, narrow(operand), "seq_cst"))
        name = _RMW_NAMES[AtomicCode(code & ~ATOMIC_FETCH)]
        return widen(builder.atomic_rmw(name, pointer, narrow(operand), "seq_cst"))

    old, (start, check_pages, backed) = _guarded(fb, pc, base, insn.off, size, action=action)
    if target is None:
        return
    merged = builder.phi(fb.i64)
    merged.add_incoming(fallback, start)
    merged.add_incoming(fallback, check_pages)
    merged.add_incoming(old, backed)
    fb._set(target, merged)


_RMW_NAMES = {AtomicCode.ADD: "add", AtomicCode.OR: "or", AtomicCode.AND: "and", AtomicCode.XOR: "xor"}
