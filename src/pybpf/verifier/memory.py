"""Memory accesses: loads, stores and atomics through every pointer kind (``check_mem_access``).

Each region has its own rule, as in the kernel: the stack is tracked byte by byte in 8-byte
slots (spilled registers survive a store/load round trip), the context goes through the program
type's layout, map values and helper memory are bounded by their size (with the variable offset's
signed minimum and unsigned maximum), and packet data only up to the range a ``data_end``
comparison proved. The defaults are the kernel's rules for a privileged (root) loader, which may
read uninitialised stack.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from types import MappingProxyType

from pybpf.isa.insn import Atomic, Imm, Load, Reg, Store
from pybpf.isa.opcodes import ATOMIC_FETCH, AtomicCode, Size
from pybpf.platform import Conversion, PacketAccess
from pybpf.platform.kernel_types import map_struct
from pybpf.verifier import dynptr, graphs, kptrs, spectre
from pybpf.verifier.btf_access import FieldRead, btf_object_access, map_struct_access
from pybpf.verifier.machine import (
    BPF_MAX_VAR_OFF,
    Env,
    Frame,
    State,
    check_ptr_off_reg,
    reject,
    tnum_text,
    type_name,
)
from pybpf.verifier.scalar import Scalar
from pybpf.verifier.scalar_ops import coerce_to_size, sign_extend_to_size
from pybpf.verifier.state import (
    BPF_REG_SIZE,
    MAX_BPF_STACK,
    MEM_ALLOC,
    PTR_TRUSTED,
    RegState,
    RegType,
    SlotByte,
    StackSlot,
    StackState,
)
from pybpf.verifier.tnum import U64, Tnum
from pybpf.verifier.transfer import read_reg

# (Enum members read through their class are slow on Python 3.11: see pybpf.verifier.state.)
_CONST_PTR_TO_MAP = RegType.CONST_PTR_TO_MAP
_PTR_TO_ARENA = RegType.PTR_TO_ARENA
_PTR_TO_BTF_ID = RegType.PTR_TO_BTF_ID
_PTR_TO_BUF = RegType.PTR_TO_BUF
_PTR_TO_CTX = RegType.PTR_TO_CTX
_PTR_TO_FLOW_KEYS = RegType.PTR_TO_FLOW_KEYS
_PTR_TO_MAP_KEY = RegType.PTR_TO_MAP_KEY
_PTR_TO_MAP_VALUE = RegType.PTR_TO_MAP_VALUE
_PTR_TO_MEM = RegType.PTR_TO_MEM
_PTR_TO_PACKET = RegType.PTR_TO_PACKET
_PTR_TO_PACKET_END = RegType.PTR_TO_PACKET_END
_PTR_TO_PACKET_META = RegType.PTR_TO_PACKET_META
_PTR_TO_SOCKET = RegType.PTR_TO_SOCKET
_PTR_TO_SOCK_COMMON = RegType.PTR_TO_SOCK_COMMON
_PTR_TO_STACK = RegType.PTR_TO_STACK
_PTR_TO_TCP_SOCK = RegType.PTR_TO_TCP_SOCK
_PTR_TO_TP_BUFFER = RegType.PTR_TO_TP_BUFFER
_PTR_TO_XDP_SOCK = RegType.PTR_TO_XDP_SOCK
_SCALAR_VALUE = RegType.SCALAR_VALUE
_STACK_DYNPTR = SlotByte.STACK_DYNPTR
_STACK_INVALID = SlotByte.STACK_INVALID
_STACK_IRQ_FLAG = SlotByte.STACK_IRQ_FLAG
_STACK_ITER = SlotByte.STACK_ITER
_STACK_MISC = SlotByte.STACK_MISC
_STACK_SPILL = SlotByte.STACK_SPILL
_STACK_ZERO = SlotByte.STACK_ZERO
_READ_WRITE = PacketAccess.READ_WRITE
_BYTES = {size: size.nbytes for size in Size}

_CONVERSIONS: dict[Conversion, tuple[RegType, bool]] = {
    Conversion.PACKET_DATA: (_PTR_TO_PACKET, False),
    Conversion.PACKET_END: (_PTR_TO_PACKET_END, False),
    Conversion.PACKET_META: (_PTR_TO_PACKET_META, False),
    Conversion.SOCK_COMMON_OR_NULL: (_PTR_TO_SOCK_COMMON, True),
    Conversion.SOCKET: (_PTR_TO_SOCKET, False),
    Conversion.SOCKET_OR_NULL: (_PTR_TO_SOCKET, True),
    Conversion.FLOW_KEYS: (_PTR_TO_FLOW_KEYS, False),
}
# Kernel objects we let programs read without modelling their BTF layout.
_OPAQUE_READABLE = frozenset({
    _PTR_TO_BTF_ID, _PTR_TO_SOCKET, _PTR_TO_SOCK_COMMON, _PTR_TO_TCP_SOCK,
    _PTR_TO_FLOW_KEYS, _PTR_TO_TP_BUFFER, _PTR_TO_BUF, _PTR_TO_XDP_SOCK,
})
# Where an unprivileged program may not store a pointer (it could read it back as a number).
_LEAK_TARGETS = {_PTR_TO_MAP_VALUE: "map", _PTR_TO_CTX: "ctx", _PTR_TO_PACKET: "packet",
                 _PTR_TO_MEM: "mem"}
_SIZED = frozenset({_PTR_TO_MAP_VALUE, _PTR_TO_MAP_KEY, _PTR_TO_MEM})
_ATOMIC_REGIONS = frozenset({_PTR_TO_STACK, _PTR_TO_MAP_VALUE, _PTR_TO_MEM,
                             _PTR_TO_BTF_ID, _PTR_TO_ARENA})
# How check_ptr_alignment names a region in its "misaligned ... access" message.
_ALIGNMENT_NAMES: Mapping[RegType, str] = MappingProxyType({
    _PTR_TO_MAP_VALUE: "value ", _PTR_TO_MAP_KEY: "key ", _PTR_TO_CTX: "context ",
    _PTR_TO_FLOW_KEYS: "flow keys ", _PTR_TO_SOCKET: "sock ", _PTR_TO_SOCK_COMMON: "sock_common ",
    _PTR_TO_TCP_SOCK: "tcp_sock ", _PTR_TO_XDP_SOCK: "xdp_sock ",
})


def check_strict_alignment(regno: int, reg: RegState, off: int, size: int) -> None:
    """``check_ptr_alignment`` with ``strict_alignment_once``: atomics (and load-acquire/
    store-release) must be naturally aligned in every region, whatever the machine tolerates
    for plain loads. The stack is checked strictly on every access (:func:`_stack_access`)."""
    if size == 1 or reg.type is _PTR_TO_STACK or reg.type is _PTR_TO_ARENA:
        return  # (arena accesses are never checked: check_ptr_alignment returns 0 for them)
    if reg.var_off.var_off.add(Tnum.const((reg.off + off) & U64)).is_aligned(size):
        return
    where = reg.var_off.const_value() if reg.var_off.is_const() else tnum_text(reg.var_off)
    if reg.type in (_PTR_TO_PACKET, _PTR_TO_PACKET_META):
        # NET_IP_ALIGN is 0 on the machines the JIT targets here (x86-64, arm64).
        raise reject(f"misaligned packet access off 0+{where}+{reg.off}+{off} size {size}")
    raise reject(f"misaligned {_ALIGNMENT_NAMES.get(reg.type, '')}access off {where}+{reg.off}+{off} size {size}")


def _build_sized_scalar(size: int, sign_extend: bool) -> RegState:
    if size >= 8:
        return RegState.scalar()
    bits = size * 8
    if sign_extend:
        return RegState.scalar(Scalar.from_srange(-(1 << (bits - 1)), (1 << (bits - 1)) - 1))
    return RegState.scalar(Scalar.from_urange(0, (1 << bits) - 1))


# Loads produce these few values over and over; they are immutable, so build each once.
_SIZED_SCALARS: Mapping[tuple[int, bool], RegState] = MappingProxyType(
    {(size, signed): _build_sized_scalar(size, signed) for size in (1, 2, 4, 8) for signed in (False, True)}
)


def sized_scalar(size: int, sign_extend: bool = False) -> RegState:
    """An unknown value loaded from ``size`` bytes (zero- or sign-extended to 64 bits)."""
    cached = _SIZED_SCALARS.get((size, sign_extend))
    return cached if cached is not None else _build_sized_scalar(size, sign_extend)


def truncate(value: RegState, size: int, sign_extend: bool) -> RegState:
    """A scalar read back narrower than it was stored: its low ``size`` bytes, with the bounds
    that survive the cut (the kernel's ``coerce_reg_to_size`` and ``coerce_reg_to_size_sx``)."""
    if size >= 8:
        return value
    if value.type is not _SCALAR_VALUE:
        return sized_scalar(size, sign_extend)
    bits = size * 8
    constant = value.var_off.const_value()
    if constant is not None:
        low = constant & ((1 << bits) - 1)
        if sign_extend and low >> (bits - 1):
            low -= 1 << bits
        return RegState.const(low)
    if sign_extend:
        return RegState.scalar(sign_extend_to_size(value.var_off, size))
    coerced = coerce_to_size(value.var_off, size)
    # A copy keeps its id (so a later branch refines both) only when nothing was cut off.
    return RegState.scalar(coerced, id=value.id if value.var_off.umax < 1 << bits else 0)


# -- the entry points --------------------------------------------------------------------------


def load(env: Env, state: State, insn: Load, pc: int | None = None) -> None:
    base = read_reg(state, insn.src)
    value = access(env, state, int(insn.src), base, off=insn.off, size=_BYTES[insn.size], write=None,
                   sign_extend=insn.sign_extend)
    save_ptr_type(env, pc, base)
    state.regs[int(insn.dst)] = value


def store(env: Env, state: State, insn: Store, pc: int | None = None) -> None:
    # The kernel reads the stored register before the base (check_store_reg: src, then dst).
    value = RegState.const(insn.src.value) if isinstance(insn.src, Imm) else read_reg(state, insn.src)
    base = read_reg(state, insn.dst)
    if not isinstance(insn.src, Imm) and value.is_pointer and not env.options.privileged \
            and base.type in _LEAK_TARGETS:
        raise reject(f"R{int(insn.src)} leaks addr into {_LEAK_TARGETS[base.type]}")
    access(env, state, int(insn.dst), base, off=insn.off, size=_BYTES[insn.size], write=value,
           via=kptrs.VIA_ST_IMM if isinstance(insn.src, Imm) else kptrs.VIA_MEM,
           value_regno=0 if isinstance(insn.src, Imm) else int(insn.src))
    save_ptr_type(env, pc, base)


def atomic(env: Env, state: State, insn: Atomic, pc: int | None = None) -> None:
    size = _BYTES[insn.size]
    if insn.op == AtomicCode.LOAD_ACQ:
        base = read_reg(state, insn.src)
        if base.is_pointer and not base.maybe_null:
            check_strict_alignment(int(insn.src), base, insn.off, size)
        state.regs[int(insn.dst)] = access(env, state, int(insn.src), base, off=insn.off, size=size, write=None,
                                           via=kptrs.VIA_ATOMIC)
        save_ptr_type(env, pc, base)
        return
    if insn.op == AtomicCode.STORE_REL:
        base = read_reg(state, insn.dst)
        if base.is_pointer and not base.maybe_null:
            check_strict_alignment(int(insn.dst), base, insn.off, size)
        access(env, state, int(insn.dst), base, off=insn.off, size=size, write=read_reg(state, insn.src),
               via=kptrs.VIA_ATOMIC)
        save_ptr_type(env, pc, base)
        return
    if size not in (4, 8):
        raise reject("invalid atomic operand size")
    operand = read_reg(state, insn.src)
    base = read_reg(state, insn.dst)
    if insn.op == AtomicCode.CMPXCHG:
        read_reg(state, Reg.R0)
    if base.maybe_null or not base.is_pointer:
        # check_atomic names only the kernel-object pointers; others fail as a plain access.
        raise reject(f"R{int(insn.dst)} invalid mem access '{type_name(base)}'")
    if base.type not in _ATOMIC_REGIONS:
        raise reject(f"BPF_ATOMIC stores into R{int(insn.dst)} {type_name(base)} is not allowed")
    check_strict_alignment(int(insn.dst), base, insn.off, size)
    # check_atomic_rmw reads the old value as a load would (a spilled constant stays known):
    # that is what a fetch, an xchg or a cmpxchg hands back.
    old = access(env, state, int(insn.dst), base, off=insn.off, size=size, write=None, via=kptrs.VIA_ATOMIC)
    if base.type is _PTR_TO_STACK:
        # The memory now holds old (op) operand, nothing the verifier tracks: the bytes become
        # unknown data, as the kernel's write with no value register makes them (never a spill
        # of the operand, which would claim *slot == operand afterwards).
        low, high = stack_bounds(int(insn.dst), base, insn.off, size, " write to")
        dynptr.destroy_overlapping(env, state, state.frames[base.frameno], low, high + size)
        mark_stack_bytes(state.frames[base.frameno], low, high + size, _STACK_MISC)
    else:
        access(env, state, int(insn.dst), base, off=insn.off, size=size,
               write=RegState.scalar() if operand.is_pointer else operand, via=kptrs.VIA_ATOMIC)
    save_ptr_type(env, pc, base)
    if insn.op == AtomicCode.CMPXCHG:
        state.regs[0] = old
    elif insn.op & ATOMIC_FETCH:
        state.regs[int(insn.src)] = old


# Pointer kinds whose accesses are rewritten per instruction after verification, so one
# instruction may not go through them and through anything else (``reg_type_mismatch_ok``).
_UNMIXABLE = frozenset({_PTR_TO_CTX, _PTR_TO_SOCKET, _PTR_TO_SOCK_COMMON,
                        _PTR_TO_TCP_SOCK, _PTR_TO_XDP_SOCK, _PTR_TO_BTF_ID,
                        _PTR_TO_ARENA})


def save_ptr_type(env: Env, pc: int | None, base: RegState) -> None:
    """``save_aux_ptr_type``: remember the pointer type the memory instruction at ``pc`` went
    through (the first one: :attr:`Env.ptr_types`), refusing a second, different one when
    either is rewritten per instruction (the runtime converts context accesses by this record)."""
    if pc is None:
        return
    first = env.ptr_types.setdefault(pc, base.type)
    if first is not base.type and (first in _UNMIXABLE or base.type in _UNMIXABLE):
        raise reject("same insn cannot be used with different pointers")


def access(env: Env, state: State, regno: int, reg: RegState, *, off: int, size: int,
           write: RegState | None, sign_extend: bool = False, via: int = kptrs.VIA_MEM,
           value_regno: int = 0) -> RegState:
    """Check one access of ``size`` bytes at ``reg + off``; the value a load produces. ``via``
    says how the instruction reaches memory and ``value_regno`` which register a store stores
    (both matter to kptrs only)."""
    is_write = write is not None
    if reg.maybe_null or not reg.is_pointer:
        raise reject(f"R{regno} invalid mem access '{type_name(reg)}'")
    # One identity test per region kind on module aliases (a ``match`` on the members reads each
    # through its class: slow on Python 3.11, and this runs for every load and store).
    t = reg.type
    if t is _PTR_TO_STACK:
        return _stack_access(env, state, regno, reg, off=off, size=size, write=write, sign_extend=sign_extend)
    elif t is _PTR_TO_CTX:
        return _ctx_access(env, regno, reg, off=off, size=size, write=is_write, sign_extend=sign_extend)
    elif t is _PTR_TO_MAP_VALUE:
        info = env.map_of(reg)
        if is_write and info.readonly:
            raise reject(f"write into map forbidden, value_size={info.value_size} off={reg.off + off} size={size}")
        region_access(regno, reg, off, size, mem_size=info.value_size, what="map value")
        if info.fields:
            kptr = kptrs.special_field_access(env, state, reg, info, off=off, size=size, write=write, via=via,
                                              value_regno=value_regno)
            if kptr is not None and not is_write:
                return kptr
    elif t is _PTR_TO_MAP_KEY:
        if is_write:
            raise reject(f"R{regno} cannot write into map_key")
        region_access(regno, reg, off, size, mem_size=env.map_of(reg).key_size, what="map key")
    elif t is _PTR_TO_MEM:
        if is_write and reg.rdonly:
            raise reject(f"R{regno} cannot write into {type_name(reg)}")
        region_access(regno, reg, off, size, mem_size=reg.mem_size, what="memory")
    elif t is _PTR_TO_PACKET or t is _PTR_TO_PACKET_META:
        if is_write and env.options.prog_type.packet_access is not _READ_WRITE:
            raise reject("cannot write into packet")
        packet_access(regno, reg, off, size)
    elif t is _PTR_TO_ARENA:
        # Anywhere: the access becomes BPF_PROBE_MEM32 (kernel base + 32-bit offset), and an
        # address without a page behind it reads 0 / drops the write instead of faulting.
        pass
    elif t is _CONST_PTR_TO_MAP:
        struct = map_struct(env.map_of(reg).type)
        return _field_value(map_struct_access(env, regno, reg, struct, off=off, size=size, write=is_write),
                            size, sign_extend)
    elif t in _OPAQUE_READABLE:
        if t is _PTR_TO_BTF_ID and reg.type_flags & MEM_ALLOC:
            # A program-allocated object: its own struct, readable and writable.
            graphs.object_access(env, regno, reg, off=off, size=size)
            return sized_scalar(size, sign_extend)
        if t is _PTR_TO_BTF_ID:
            read = btf_object_access(env, regno, reg, off=off, size=size, write=is_write)
            if read is not None:
                return _field_value(read, size, sign_extend)
        if is_write and t is not _PTR_TO_BTF_ID and t is not _PTR_TO_FLOW_KEYS:
            raise reject(f"R{regno} cannot write into {type_name(reg)}")
    else:
        raise reject(f"R{regno} invalid mem access '{type_name(reg)}'")
    return sized_scalar(size, sign_extend)


def _field_value(read: FieldRead, size: int, sign_extend: bool) -> RegState:
    """The register a checked kernel-struct read loads: a pointer member's BTF pointer, else
    an unknown number of the load's width (the member's own signedness plays no part)."""
    if read.pointer_to is not None:
        return RegState.pointer(_PTR_TO_BTF_ID, btf_type=read.pointer_to)
    return sized_scalar(size, sign_extend)


def region_access(regno: int, reg: RegState, off: int, size: int, *, mem_size: int, what: str) -> None:
    """``check_mem_region_access``: both ends of the variable offset within ``mem_size``."""
    off += reg.off
    low = reg.var_off.smin
    if low < 0 and (low + off < 0 or low < -(1 << 31)):
        raise reject(f"R{regno} min value is negative, either use unsigned index or do a if (index >=0) check.")
    label = {"map value": "value_size", "memory": "mem_size", "map key": "key_size"}[what]

    def fits(at: int) -> bool:
        return at >= 0 and at + size <= mem_size

    if not fits(max(low, 0) + off):
        if reg.var_off.is_const():
            raise reject(f"invalid access to {what}, {label}={mem_size} off={off + reg.var_off.smin} size={size}")
        raise reject(f"R{regno} min value is outside of the allowed memory range")
    if reg.var_off.umax >= BPF_MAX_VAR_OFF:
        raise reject(f"R{regno} unbounded memory access, make sure to bounds check any such access")
    if not fits(reg.var_off.umax + off):
        if reg.var_off.is_const():
            raise reject(f"invalid access to {what}, {label}={mem_size} off={off + reg.var_off.umax} size={size}")
        raise reject(f"R{regno} max value is outside of the allowed memory range")


def packet_access(regno: int, reg: RegState, off: int, size: int, zero_ok: bool = False) -> None:
    """``check_packet_access``: within the range proven against ``data_end`` for this pointer."""
    if reg.var_off.smin < 0:
        raise reject(f"R{regno} min value is negative, either use unsigned index or do a if (index >=0) check.")
    start = reg.off + off
    if start < 0 or start + size > reg.range or (size == 0 and not zero_ok):
        raise reject(f"invalid access to packet, off={start} size={size}, R{regno}(id={reg.id},off={reg.off},"
                     f"r={reg.range})\nR{regno} offset is outside of the packet")


def check_ctx_pointer(regno: int, reg: RegState) -> None:
    """``check_ptr_off_reg`` with no offset allowed (the kernel rewrites ctx accesses by offset)."""
    check_ptr_off_reg(regno, reg, "ctx")


def _ctx_access(env: Env, regno: int, reg: RegState, *, off: int, size: int, write: bool,
                sign_extend: bool = False) -> RegState:
    check_ctx_pointer(regno, reg)
    field = env.options.prog_type.context.check_access(off, size, write)
    if field is None:
        raise reject(f"invalid bpf_context access off={off} size={size}")
    if write or field.conversion is Conversion.PLAIN:
        traced = env.options.ctx_args
        if traced is not None and not write and size == BPF_REG_SIZE and not off % BPF_REG_SIZE \
                and off // BPF_REG_SIZE < len(traced.structs) and traced.structs[off // BPF_REG_SIZE]:
            # btf_ctx_access: a pointer argument of the target is a BTF pointer to its struct.
            return RegState.pointer(_PTR_TO_BTF_ID, btf_type=traced.structs[off // BPF_REG_SIZE],
                                    type_flags=PTR_TRUSTED if traced.trusted else 0)
        # A sign-extending load (BPF_MEMSX) of a field is sign-extended like any other load.
        return sized_scalar(size, sign_extend and not write)
    kind, maybe_null = _CONVERSIONS[field.conversion]
    return RegState.pointer(kind, maybe_null=maybe_null, id=env.new_id() if maybe_null else 0)


# -- the stack -----------------------------------------------------------------------------------


def _slot_and_byte(at: int) -> tuple[int, int]:
    """Slot index and byte index inside it for stack byte ``fp + at`` (``at`` < 0)."""
    return (-at - 1) // BPF_REG_SIZE, (-at - 1) % BPF_REG_SIZE


def stack_bounds(regno: int, reg: RegState, off: int, size: int, verb: str) -> tuple[int, int]:
    """The lowest and highest start byte of an access, checked inside the 512-byte frame."""
    base = reg.off + off
    low, high = base + reg.var_off.smin, base + reg.var_off.smax
    if not reg.var_off.is_const() and (reg.var_off.smax >= BPF_MAX_VAR_OFF or reg.var_off.smin <= -BPF_MAX_VAR_OFF):
        raise reject(f"invalid unbounded variable-offset{verb} stack R{regno}")
    if low < -MAX_BPF_STACK or high + size > 0 or reg.var_off.smin < -BPF_MAX_VAR_OFF or size <= 0:
        if reg.var_off.is_const():
            raise reject(f"invalid{verb} stack R{regno} off={low} size={size}")
        tnum = tnum_text(reg.var_off)
        raise reject(f"invalid variable-offset{verb} stack R{regno} var_off={tnum} off={base} size={size}")
    return low, high


def _stack_access(env: Env, state: State, regno: int, reg: RegState, *, off: int, size: int,
                  write: RegState | None, sign_extend: bool) -> RegState:
    verb = " write to" if write is not None else " read from"
    # Tnum.add of the constant offset then is_aligned, without building the tnum: bits a
    # carry through the unknown bits may change are unknown, and every value must be aligned.
    known = reg.var_off.var_off
    total = (known.value + ((reg.off + off) & U64)) & U64
    unknown = (((known.mask + total) & U64) ^ total) | known.mask
    if size and (total | unknown) & (size - 1):
        # The kernel checks alignment before bounds (check_ptr_alignment comes first), and for
        # the stack always strictly: every value the variable offset may take must be aligned.
        where = reg.var_off.const_value() if reg.var_off.is_const() else tnum_text(reg.var_off)
        raise reject(f"misaligned stack access off {where}+{reg.off}+{off} size {size}")
    low, high = stack_bounds(regno, reg, off, size, verb)
    frame = state.frames[reg.frameno]
    env.touch_stack(frame, low)
    if write is not None:
        dynptr.destroy_overlapping(env, state, frame, low, high + size)
    if not reg.var_off.is_const():
        if write is not None:
            mark_stack_bytes(frame, low, high + size, _STACK_MISC)
            return write
        _refuse_special_read(frame, low, high + size, f"R{regno} var_off {tnum_text(reg.var_off)}", size)
        return sized_scalar(size, sign_extend)
    if write is not None:
        if not env.options.privileged and size != BPF_REG_SIZE:
            slot = frame.stack.slot((-low - 1) // BPF_REG_SIZE)
            if slot.is_spilled_register() and slot.spilled_ptr.is_pointer:
                raise reject("attempt to corrupt spilled pointer on stack")
        if write.is_pointer and size != BPF_REG_SIZE:
            # A pointer is spilled whole or not at all (check_stack_write_fixed_off).
            raise reject("invalid size of register spill")
        if env.spec is not None:
            spectre.note_stack_write(env, frame.stack.slot((-low - 1) // BPF_REG_SIZE), size, write)
            if write.type is _SCALAR_VALUE:
                # Only a bpf_capable loader's scalar spills are tracked (check_stack_write_fixed_off):
                # an unprivileged store leaves unknown data, or known zeros.
                zero = write.var_off.const_value() == 0
                mark_stack_bytes(frame, low, low + size, _STACK_ZERO if zero else _STACK_MISC)
                return write
        _stack_write(frame, low, size, write)
        return write
    return _stack_read(env, frame, low, size, sign_extend)


def mark_stack_bytes(frame: Frame, start: int, end: int, byte: SlotByte) -> None:
    """Bytes ``[start, end)`` below fp now hold ``byte``; a spilled register there is destroyed."""
    if start >= end:
        return
    # Slot by slot (not byte by byte): each touched slot and the stack are rebuilt once.
    touched: dict[int, list[SlotByte]] = {}
    for at in range(start, end):
        index, position = (-at - 1) // BPF_REG_SIZE, (-at - 1) % BPF_REG_SIZE  # (_slot_and_byte)
        tags = touched.get(index)
        if tags is None:
            slot = frame.stack.slot(index)
            tags = touched[index] = (
                [_STACK_MISC if t is _STACK_SPILL else t for t in slot.slot_type]
                if _has_spill(slot) else list(slot.slot_type))
        tags[position] = byte
    slots = list(frame.stack.slots)
    slots.extend([StackSlot()] * max(0, max(touched) + 1 - len(slots)))
    for index, tags in touched.items():
        slots[index] = StackSlot(tuple(tags))
    frame.stack = StackState(tuple(slots))


def _stack_write(frame: Frame, start: int, size: int, value: RegState) -> None:
    if size == BPF_REG_SIZE and start % BPF_REG_SIZE == 0:
        frame.stack = frame.stack.with_slot(_slot_and_byte(start)[0], StackSlot.spill(value))
        return
    zero = value.type is _SCALAR_VALUE and value.var_off.const_value() == 0
    if value.type is _SCALAR_VALUE and not zero and start % BPF_REG_SIZE == 0:
        # A narrow scalar spill (the kernel tracks these too): the low ``size`` bytes of the
        # slot hold the value, the other bytes of the slot become unknown data.
        slot = frame.stack.slot(_slot_and_byte(start)[0])
        tags: list[SlotByte] = [_STACK_MISC if t is _STACK_SPILL else t for t in slot.slot_type]
        for position in range(BPF_REG_SIZE - size, BPF_REG_SIZE):
            tags[position] = _STACK_SPILL
        stored = replace(truncate(value, size, sign_extend=False), off=0)
        frame.stack = frame.stack.with_slot(_slot_and_byte(start)[0], StackSlot(tuple(tags), stored))
        return
    mark_stack_bytes(frame, start, start + size, _STACK_ZERO if zero else _STACK_MISC)


def _has_spill(slot: StackSlot) -> bool:
    return _STACK_SPILL in slot.slot_type


def _spill_size(slot: StackSlot) -> int:
    """How many bytes from the slot's lowest address hold a spilled register."""
    size = 0
    for position in range(BPF_REG_SIZE - 1, -1, -1):
        if slot.slot_type[position] is not _STACK_SPILL:
            break
        size += 1
    return size


def _stack_read(env: Env, frame: Frame, start: int, size: int, sign_extend: bool) -> RegState:
    index, _ = _slot_and_byte(start)
    slot = frame.stack.slot(index)
    if slot.is_spilled_register():
        spilled = slot.spilled_ptr
        if size == BPF_REG_SIZE:
            return spilled
        if spilled.is_pointer:
            raise reject("invalid size of register fill")
        # Little-endian: the low bytes of the spilled value sit at the slot's lowest address
        # (bpf_stack_narrow_access_ok), and the fill keeps what the cut leaves of its bounds.
        if start % BPF_REG_SIZE == 0:
            return truncate(spilled, size, sign_extend)
        if spilled.var_off.const_value() == 0:
            return RegState.const(0)  # any bytes of a spilled zero are zero
        return sized_scalar(size, sign_extend)
    spill_size = _spill_size(slot)
    if spill_size and start % BPF_REG_SIZE == 0 and size <= spill_size:
        # A narrow fill of a narrow spill: the value is as stored (cut further if read narrower).
        spilled = slot.spilled_ptr
        if size == spill_size and not sign_extend:
            return spilled
        return truncate(spilled, size, sign_extend)
    stack = frame.stack
    tags = [stack.slot((-at - 1) // BPF_REG_SIZE).slot_type[(-at - 1) % BPF_REG_SIZE]
            for at in range(start, start + size)]
    for at, tag in enumerate(tags):
        if tag in _OPAQUE_BYTES:  # (_refuse_special_read, on the tags at hand)
            raise reject(f"invalid read from stack off {start}+{at} size {size}")
    if all(t is _STACK_ZERO for t in tags):
        return RegState.const(0)
    if not env.options.privileged and any(t is _STACK_INVALID for t in tags):
        raise reject(f"invalid read from stack off {start}+0 size {size}")
    return sized_scalar(size, sign_extend)


# Stack objects (dynptrs, iterators, irq flags) are opaque: no load or helper may read their bytes.
_OPAQUE_BYTES = frozenset({_STACK_DYNPTR, _STACK_ITER, _STACK_IRQ_FLAG})


def _refuse_special_read(frame: Frame, start: int, end: int, where: str, size: int) -> None:
    stack = frame.stack
    for at in range(start, end):
        if stack.slot((-at - 1) // BPF_REG_SIZE).slot_type[(-at - 1) % BPF_REG_SIZE] in _OPAQUE_BYTES:
            raise reject(f"invalid read from stack {where}+{at - start} size {size}")


def helper_memory(env: Env, state: State, regno: int, reg: RegState, size: int, *, write: bool,
                  zero_ok: bool = False) -> None:
    """``check_helper_mem_access``: a helper reads (or fills) ``size`` bytes at ``reg``."""
    if size == 0:
        if zero_ok:
            return
        raise reject("invalid zero-sized read")
    t = reg.type
    if t is _PTR_TO_STACK:
        low, high = stack_bounds(regno, reg, 0, size, " write to" if write else " read from")
        frame = state.frames[reg.frameno]
        env.touch_stack(frame, low)
        if write:
            dynptr.refuse_helper_write(frame, regno, low, high + size)
            mark_stack_bytes(frame, low, high + size, _STACK_MISC)
            return
        # check_stack_range_initialized (6.18 no longer says "indirect"): a variable offset
        # is named by its tnum.
        where = f"R{regno} off {low}" if reg.var_off.is_const() else f"R{regno} var_off {tnum_text(reg.var_off)}"
        _refuse_special_read(frame, low, high + size, where, size)
        if not env.options.privileged:
            for at in range(low, high + size):
                slot_index, position = _slot_and_byte(at)
                if frame.stack.slot(slot_index).slot_type[position] is _STACK_INVALID:
                    raise reject(f"invalid read from stack {where}+{at - low} size {size}")
    elif t is _PTR_TO_PACKET or t is _PTR_TO_PACKET_META:
        if write and env.options.prog_type.packet_access is not _READ_WRITE:
            raise reject("cannot write into packet")
        packet_access(regno, reg, 0, size, zero_ok)
    elif t is _PTR_TO_MAP_VALUE:
        info = env.map_of(reg)
        if write and info.readonly:
            raise reject(f"write into map forbidden, value_size={info.value_size} off={reg.off} size={size}")
        region_access(regno, reg, 0, size, mem_size=info.value_size, what="map value")
        if info.fields:
            kptrs.special_field_access(env, state, reg, info, off=0, size=size, write=None, via=kptrs.VIA_HELPER)
    elif t is _PTR_TO_MAP_KEY:
        region_access(regno, reg, 0, size, mem_size=env.map_of(reg).key_size, what="map key")
    elif t is _PTR_TO_MEM:
        if write and reg.rdonly:
            raise reject(f"R{regno} cannot write into {type_name(reg)}")
        region_access(regno, reg, 0, size, mem_size=reg.mem_size, what="memory")
    elif t in _OPAQUE_READABLE or t is _PTR_TO_CTX:
        return
    else:
        raise reject(f"R{regno} type={type_name(reg)} expected=fp, pkt, pkt_meta, map_key, map_value, mem")


def invalidate_packet_pointers(state: State) -> None:
    """After a helper that may move packet data, every packet pointer is an unknown number, and
    so is every slice of a packet (skb/xdp) dynptr (``clear_all_pkt_pointers``)."""
    kinds = (_PTR_TO_PACKET, _PTR_TO_PACKET_META, _PTR_TO_PACKET_END)

    def gone(reg: RegState) -> RegState | None:
        if reg.type in kinds or (reg.type is _PTR_TO_MEM and reg.dynptr_type in dynptr.PACKET_KINDS):
            return RegState.scalar()
        return None

    state.update_registers(gone)


def havoc_scalar_spills(state: State) -> None:
    """A callback may write through its context pointer any number of times: forget the
    caller frames' spilled scalars (pointers spilled there keep their type)."""
    for frame in state.frames:
        for index, slot in enumerate(frame.stack.slots):
            if slot.is_spilled_register():
                if slot.spilled_ptr.type is _SCALAR_VALUE:
                    frame.stack = frame.stack.with_slot(index, StackSlot.spill(RegState.scalar()))
            elif _has_spill(slot) or any(t is _STACK_ZERO for t in slot.slot_type):
                # Known bytes (a narrow spill, zeroes) become unknown data; the spill is gone.
                forgotten: tuple[SlotByte, ...] = tuple(
                    _STACK_MISC if t in (_STACK_SPILL, _STACK_ZERO) else t
                    for t in slot.slot_type)
                frame.stack = frame.stack.with_slot(index, StackSlot(forgotten))
