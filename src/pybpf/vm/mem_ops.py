"""Operation closures for memory: loads, stores, atomics and the legacy packet loads.

Plain loads and stores keep a one-entry cache per instruction (the region it touched last, valid
while that region is mapped): on a hit they read or write the buffer directly; otherwise
:meth:`AddressSpace.region_for` finds the region or raises a
:class:`~pybpf.errors.MemoryAccessError` naming the pc.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

from pybpf.errors import VmError
from pybpf.isa.insn import AddrSpaceCast, Atomic, Imm, Load, PacketLoad, Store
from pybpf.isa.opcodes import ATOMIC_FETCH, AtomicCode, Mode
from pybpf.isa.semantics import sign_extend
from pybpf.vm.arena import ArenaMemory
from pybpf.vm.execution import ExecutionContext, Op, ProgramStop
from pybpf.vm.memory import PACK, SIZE_MASKS, UNPACK, AddressSpace


def build_load(insn: Load, pc: int, memory: AddressSpace) -> Op:
    """``dst = *(size *)(src + off)``, zero- or sign-extended."""
    d, s, off, size, nxt = int(insn.dst), int(insn.src), insn.off, insn.size.nbytes, pc + 1
    unpack = UNPACK[size]
    slow = memory.load
    find = memory.region_for
    if unpack is None:
        raise VmError(f"invalid access size {size}", pc)
    if insn.sign_extend:
        bits = size * 8

        def load_sx(regs: list[int], run: ExecutionContext) -> int:
            regs[d] = sign_extend(slow(regs[s] + off, size, pc), bits)
            return nxt

        return load_sx

    cached = memory.last  # this instruction's last region: an instruction nearly always hits one region

    def load(regs: list[int], run: ExecutionContext) -> int:
        nonlocal cached
        address = regs[s] + off
        region = cached
        offset = address - region.address
        if not (0 <= offset <= region.size - size and region.owner is memory):
            region = cached = find(address, size, pc, False)
            offset = address - region.address
        regs[d] = unpack(region.view, offset)[0]
        return nxt

    return load


def build_store(insn: Store, pc: int, memory: AddressSpace) -> Op:
    """``*(size *)(dst + off) = src`` (register or immediate)."""
    d, off, size, nxt = int(insn.dst), insn.off, insn.size.nbytes, pc + 1
    pack = PACK[size]
    mask = SIZE_MASKS[size]
    if pack is None:
        raise VmError(f"invalid access size {size}", pc)
    find = memory.region_for
    cached = memory.last  # as for loads: the region this instruction wrote last
    if isinstance(insn.src, Imm):
        value = insn.src.value & mask  # the immediate is sign-extended, then truncated to the size

        def store_imm(regs: list[int], run: ExecutionContext) -> int:
            nonlocal cached
            address = regs[d] + off
            region = cached
            offset = address - region.address
            if not (0 <= offset <= region.size - size and region.owner is memory and region.writable):
                region = cached = find(address, size, pc, True)
                offset = address - region.address
            pack(region.view, offset, value)
            return nxt

        return store_imm
    s = int(insn.src)

    def store_reg(regs: list[int], run: ExecutionContext) -> int:
        nonlocal cached
        address = regs[d] + off
        region = cached
        offset = address - region.address
        if not (0 <= offset <= region.size - size and region.owner is memory and region.writable):
            region = cached = find(address, size, pc, True)
            offset = address - region.address
        pack(region.view, offset, regs[s] & mask)
        return nxt

    return store_reg


def build_atomic(insn: Atomic, pc: int, memory: AddressSpace) -> Op:
    """Atomic read-modify-write, exchange, compare-exchange, load-acquire and store-release.

    Several threads may run programs on one address space at once, so each read-modify-write
    holds the address space's ``atomic_lock`` from its load to its store: no other atomic
    instruction of an interpreted program can slip in between. (Native code uses the CPU's
    atomic instructions instead; the two agree only when one engine runs at a time.) Load-acquire
    and store-release are one access each and need no lock. Fetched values are zero-extended
    from the access size (the 32-bit forms zero-extend into the register).
    """
    d, s, off, size, nxt = int(insn.dst), int(insn.src), insn.off, insn.size.nbytes, pc + 1
    mask = SIZE_MASKS[size]
    load, store = memory.load, memory.store
    atomic = memory.atomic_lock
    code = insn.op
    if code is AtomicCode.LOAD_ACQ:
        # Encoded with the address in src and the destination in dst.
        def load_acquire(regs: list[int], run: ExecutionContext) -> int:
            regs[d] = load(regs[s] + off, size, pc)
            return nxt

        return load_acquire
    if code is AtomicCode.STORE_REL:

        def store_release(regs: list[int], run: ExecutionContext) -> int:
            store(regs[d] + off, size, regs[s], pc)
            return nxt

        return store_release
    if code is AtomicCode.CMPXCHG:

        def cmpxchg(regs: list[int], run: ExecutionContext) -> int:
            address = regs[d] + off
            with atomic:
                old = load(address, size, pc)
                if old == regs[0] & mask:
                    store(address, size, regs[s], pc)
            regs[0] = old
            return nxt

        return cmpxchg
    if code is AtomicCode.XCHG:

        def xchg(regs: list[int], run: ExecutionContext) -> int:
            address = regs[d] + off
            with atomic:
                old = load(address, size, pc)
                store(address, size, regs[s], pc)
            regs[s] = old
            return nxt

        return xchg
    combine: Callable[[int, int], int] = {
        AtomicCode.ADD: operator.add,
        AtomicCode.OR: operator.or_,
        AtomicCode.AND: operator.and_,
        AtomicCode.XOR: operator.xor,
    }[AtomicCode(code & ~ATOMIC_FETCH)]
    fetch = bool(code & ATOMIC_FETCH)

    def rmw(regs: list[int], run: ExecutionContext) -> int:
        address = regs[d] + off
        with atomic:
            old = load(address, size, pc)
            store(address, size, combine(old, regs[s]) & mask, pc)
        if fetch:
            regs[s] = old
        return nxt

    return rmw


def build_packet_load(insn: PacketLoad, pc: int) -> Op:
    """Legacy LD_ABS/LD_IND: r0 = the big-endian value at packet[imm (+ src)].

    As in the kernel, an offset outside the packet ends the program with r0 = 0.
    """
    size, imm, nxt = insn.size.nbytes, insn.imm, pc + 1
    index = int(insn.src) if insn.mode is Mode.IND and insn.src is not None else None

    def packet_load(regs: list[int], run: ExecutionContext) -> int:
        packet = run.packet
        if packet is None:
            raise VmError("LD_ABS/LD_IND needs a packet, and this run has none", pc)
        offset = imm if index is None else imm + regs[index]
        offset &= 0xFFFFFFFF  # the offset is a 32-bit int, as in the kernel
        if offset >= 0x80000000 or offset + size > packet.size:
            raise ProgramStop(0)
        regs[0] = int.from_bytes(packet.view[offset : offset + size], "big")
        return nxt

    return packet_load


# -- arena accesses (BPF_PROBE_MEM32) -----------------------------------------------------------


def build_arena_load(insn: Load, pc: int, arena: ArenaMemory | None) -> Op:
    """``dst = *(size *)(arena + src + off)``: 0 where the arena has no page (the kernel's
    exception table), zero- or sign-extended."""
    if arena is None:
        raise VmError("an arena load in a program without an arena", pc)
    d, s, off, size, nxt = int(insn.dst), int(insn.src), insn.off, insn.size.nbytes, pc + 1
    load = arena.load
    bits = size * 8 if insn.sign_extend else 0

    def arena_load(regs: list[int], run: ExecutionContext) -> int:
        value = load(regs[s] + off, size)
        regs[d] = sign_extend(value, bits) if bits else value
        return nxt

    return arena_load


def build_arena_store(insn: Store, pc: int, arena: ArenaMemory | None) -> Op:
    """``*(size *)(arena + dst + off) = src``, dropped where the arena has no page."""
    if arena is None:
        raise VmError("an arena store in a program without an arena", pc)
    d, off, size, nxt = int(insn.dst), insn.off, insn.size.nbytes, pc + 1
    store = arena.store
    if isinstance(insn.src, Imm):
        value = insn.src.value

        def arena_store_imm(regs: list[int], run: ExecutionContext) -> int:
            store(regs[d] + off, size, value)
            return nxt

        return arena_store_imm
    s = int(insn.src)

    def arena_store(regs: list[int], run: ExecutionContext) -> int:
        store(regs[d] + off, size, regs[s])
        return nxt

    return arena_store


def build_cast_to_user(insn: AddrSpaceCast, pc: int, arena: ArenaMemory | None) -> Op:
    """``dst = addr_space_cast(src, 1, 0)``: the arena's user-space upper half on a non-zero
    low half (what the kernel's JIT emits; the other cast is rewritten to ``wX = wY``)."""
    if arena is None:
        raise VmError("addr_space_cast in a program without an arena", pc)
    if insn.imm != ADDR_SPACE_CAST_TO_USER:
        raise VmError(f"addr_space_cast({insn.dst_as}, {insn.src_as}) should have been rewritten to a move", pc)
    d, s, nxt = int(insn.dst), int(insn.src), pc + 1
    to_user = arena.to_user

    def cast_to_user(regs: list[int], run: ExecutionContext) -> int:
        regs[d] = to_user(regs[s])
        return nxt

    return cast_to_user


ADDR_SPACE_CAST_TO_USER = 1 << 16
"""The ``imm`` of ``addr_space_cast(src, 1, 0)``."""


def build_arena_atomic(insn: Atomic, pc: int, arena: ArenaMemory | None, lock: Any) -> Op:
    """An atomic on arena memory (``BPF_PROBE_ATOMIC``): as :func:`build_atomic` where the page is
    allocated; elsewhere the kernel's fault handling leaves memory and registers as they were (a
    load-acquire, a load, gives 0)."""
    if arena is None:
        raise VmError("an arena atomic in a program without an arena", pc)
    code, size, off, nxt = insn.op, insn.size.nbytes, insn.off, pc + 1
    d, s = int(insn.dst), int(insn.src)
    mask = SIZE_MASKS[size]
    unpack, pack = UNPACK[size], PACK[size]
    if unpack is None or pack is None:
        raise VmError(f"invalid access size {size}", pc)
    index, view = arena.index, arena.view
    base = s if code is AtomicCode.LOAD_ACQ else d  # load-acquire: the address in src
    combine = _COMBINE.get(AtomicCode(code & ~ATOMIC_FETCH)) if code not in _SPECIAL_ATOMICS else None
    fetch = bool(code & ATOMIC_FETCH)

    def arena_atomic(regs: list[int], run: ExecutionContext) -> int:
        at = index(regs[base] + off, size)
        if at is None:
            if code is AtomicCode.LOAD_ACQ:
                regs[d] = 0
            return nxt
        with lock:
            old = unpack(view, at)[0]
            if code is AtomicCode.LOAD_ACQ:
                regs[d] = old
            elif code is AtomicCode.STORE_REL:
                pack(view, at, regs[s] & mask)
            elif code is AtomicCode.CMPXCHG:
                if old == regs[0] & mask:
                    pack(view, at, regs[s] & mask)
                regs[0] = old
            elif code is AtomicCode.XCHG:
                pack(view, at, regs[s] & mask)
                regs[s] = old
            elif combine is not None:
                pack(view, at, combine(old, regs[s]) & mask)
                if fetch:
                    regs[s] = old
        return nxt

    return arena_atomic


_COMBINE: dict[AtomicCode, Callable[[int, int], int]] = {
    AtomicCode.ADD: operator.add,
    AtomicCode.OR: operator.or_,
    AtomicCode.AND: operator.and_,
    AtomicCode.XOR: operator.xor,
}
_SPECIAL_ATOMICS = frozenset({AtomicCode.LOAD_ACQ, AtomicCode.STORE_REL, AtomicCode.CMPXCHG, AtomicCode.XCHG})
