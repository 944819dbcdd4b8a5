"""Instructions at two levels: the raw 8-byte slot and the semantic instruction.

``RawInsn`` is one slot exactly as encoded. The semantic types (``Bin``, ``Load``, ``Jump``...)
say what an instruction *does*: the variants that the wire format folds into ``off`` and ``imm``
(sdiv/smod, movsx, sign-extending loads, atomic operations, pseudo ``lddw`` sources) are
spelled out as their own operations. ``pybpf.isa.codec`` converts losslessly between the two.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import Enum, IntEnum
from typing import ClassVar

from pybpf.isa.opcodes import AtomicCode, EndianOrder, Mode, PseudoSrc, Size


class Reg(IntEnum):
    """The eleven registers. R10 is the read-only frame pointer."""

    R0 = 0
    R1 = 1
    R2 = 2
    R3 = 3
    R4 = 4
    R5 = 5
    R6 = 6
    R7 = 7
    R8 = 8
    R9 = 9
    R10 = 10

    def __str__(self) -> str:
        return f"r{self.value}"


@dataclass(frozen=True, slots=True)
class Imm:
    """An immediate operand. A wrapper because ``Reg`` is an int and ``Reg | int`` would be ambiguous."""

    value: int


Operand = Reg | Imm


@dataclass(frozen=True, slots=True)
class RawInsn:
    """One 8-byte instruction slot as encoded (little-endian), fields signed where the RFC says so."""

    opcode: int
    dst: int
    src: int
    off: int
    imm: int

    FORMAT: ClassVar[struct.Struct] = struct.Struct("<BBhi")

    def to_bytes(self) -> bytes:
        return self.FORMAT.pack(self.opcode, (self.src << 4) | self.dst, self.off, self.imm)

    @classmethod
    def from_bytes(cls, data: bytes | memoryview, offset: int = 0) -> RawInsn:
        opcode, regs, off, imm = cls.FORMAT.unpack_from(data, offset)
        return cls(opcode, regs & 0x0F, regs >> 4, off, imm)


class BinOp(Enum):
    """Two-operand arithmetic, semantic (not bits): MOVSX8 is ``mov`` with off=8, SDIV is ``div`` with off=1."""

    ADD = "+="
    SUB = "-="
    MUL = "*="
    DIV = "/="
    SDIV = "s/="
    OR = "|="
    AND = "&="
    LSH = "<<="
    RSH = ">>="
    MOD = "%="
    SMOD = "s%="
    XOR = "^="
    MOV = "="
    MOVSX8 = "=(s8)"
    MOVSX16 = "=(s16)"
    MOVSX32 = "=(s32)"
    ARSH = "s>>="

    # Members are singletons compared by identity: the identity hash (C speed) agrees with that
    # equality, where Enum's own __hash__ is a Python call (the verifier looks ops up in sets).
    __hash__ = object.__hash__


class Cond(Enum):
    """Conditional jump comparisons."""

    JEQ = "=="
    JGT = ">"
    JGE = ">="
    JSET = "&"
    JNE = "!="
    JSGT = "s>"
    JSGE = "s>="
    JLT = "<"
    JLE = "<="
    JSLT = "s<"
    JSLE = "s<="

    __hash__ = object.__hash__  # as BinOp's


@dataclass(frozen=True, slots=True)
class Bin:
    """``dst op= src`` on 64 bits (ALU64) or 32 bits (ALU; result zero-extended)."""

    op: BinOp
    dst: Reg
    src: Operand
    is64: bool


@dataclass(frozen=True, slots=True)
class AddrSpaceCast:
    """``dst = addr_space_cast(src, dst_as, src_as)``: a kernel extension for BPF arenas.

    Encoded as a 64-bit register ``mov`` with ``off=1`` and ``imm = dst_as << 16 | src_as``.
    Address space 1 is the arena as user space maps it (the pointers C code stores), 0 the
    program's view: casting 1 -> 0 keeps the low 32 bits (the offset the kernel adds to its own
    mapping), 0 -> 1 puts the arena's user-space upper half back on a non-zero offset. The
    kernel accepts only those two casts; the codec keeps any pair, losslessly.
    """

    dst: Reg
    src: Reg
    dst_as: int  # 0..0xFFFF
    src_as: int  # 0..0xFFFF

    @property
    def imm(self) -> int:
        """The encoded ``imm`` field (signed 32-bit)."""
        value = (self.dst_as << 16) | self.src_as
        return value - (1 << 32) if value >= 1 << 31 else value


@dataclass(frozen=True, slots=True)
class Neg:
    """``dst = -dst``."""

    dst: Reg
    is64: bool


@dataclass(frozen=True, slots=True)
class Endian:
    """Byte-order conversion of the low ``width`` bits of ``dst`` (le16/be32/bswap64...)."""

    dst: Reg
    width: int  # 16, 32 or 64
    order: EndianOrder


@dataclass(frozen=True, slots=True)
class LoadImm64:
    """``lddw``: two slots. ``imm``/``next_imm`` are the two signed 32-bit halves as encoded.

    For ``PseudoSrc.IMM64`` the value is ``next_imm << 32 | imm``; for the pseudo forms the
    halves mean what ``src`` says (map fd and value offset, BTF id, function offset...).
    """

    dst: Reg
    imm: int
    next_imm: int
    src: PseudoSrc = PseudoSrc.IMM64

    @property
    def value(self) -> int:
        """The 64-bit constant (unsigned) the two halves spell."""
        return ((self.next_imm & 0xFFFFFFFF) << 32) | (self.imm & 0xFFFFFFFF)

    @classmethod
    def constant(cls, dst: Reg, value: int) -> LoadImm64:
        value &= (1 << 64) - 1
        lo = value & 0xFFFFFFFF
        hi = value >> 32
        return cls(dst, lo - (1 << 32) if lo >= 1 << 31 else lo, hi - (1 << 32) if hi >= 1 << 31 else hi)


@dataclass(frozen=True, slots=True)
class Load:
    """``dst = *(size *)(src + off)``; ``sign_extend`` for the MEMSX loads."""

    size: Size
    dst: Reg
    src: Reg
    off: int
    sign_extend: bool = False
    # Kernel-internal (BPF_PROBE_MEM32), never decoded from a program: the verifier found an arena
    # pointer here, so the address is the arena's base + src + off and a fault reads 0.
    arena: bool = False


@dataclass(frozen=True, slots=True)
class Store:
    """``*(size *)(dst + off) = src`` (a register: STX, or an immediate: ST)."""

    size: Size
    dst: Reg
    off: int
    src: Operand
    arena: bool = False  # as Load.arena: a store through an arena pointer, dropped on a fault


@dataclass(frozen=True, slots=True)
class PacketLoad:
    """Legacy ``LD_ABS``/``LD_IND``: r0 = ntoh(packet[imm (+ src)]) for socket filters."""

    size: Size
    mode: Mode  # Mode.ABS or Mode.IND
    src: Reg | None  # the index register for IND
    imm: int


@dataclass(frozen=True, slots=True)
class Atomic:
    """An atomic read-modify-write, exchange, or (kernel extension) load-acquire/store-release.

    The memory operand is ``*(size *)(dst + off)``. ``src`` is the value operand (for
    LOAD_ACQ it is the address register and ``dst`` receives the value, as the kernel encodes it).
    """

    op: AtomicCode
    size: Size
    dst: Reg
    off: int
    src: Reg
    arena: bool = False  # kernel-internal (BPF_PROBE_ATOMIC): on arena memory, a fault does nothing


@dataclass(frozen=True, slots=True)
class Jump:
    """``if dst cond src goto pc + 1 + off`` on 64 bits (JMP) or the low 32 bits (JMP32)."""

    cond: Cond
    dst: Reg
    src: Operand
    off: int
    is32: bool


@dataclass(frozen=True, slots=True)
class Goto:
    """Unconditional jump: ``ja`` (JMP class, 16-bit ``off``) or ``gotol`` (JMP32 class, 32-bit ``imm``)."""

    off: int
    long: bool = False


@dataclass(frozen=True, slots=True)
class MayGoto:
    """Kernel extension: jump if the loop budget is exhausted, else fall through."""

    off: int


@dataclass(frozen=True, slots=True)
class Call:
    """Call helper number ``helper``."""

    helper: int


@dataclass(frozen=True, slots=True)
class CallLocal:
    """bpf-to-bpf call: the callee starts at ``pc + 1 + off``."""

    off: int


@dataclass(frozen=True, slots=True)
class CallKfunc:
    """Call a kernel function by BTF id (``module`` is the fd_array index of its BTF, 0 for vmlinux)."""

    btf_id: int
    module: int = 0


@dataclass(frozen=True, slots=True)
class CallReg:
    """``callx``: call the function whose address (or helper id) is in ``reg``."""

    reg: Reg


@dataclass(frozen=True, slots=True)
class Exit:
    """Return r0 to the caller (or end the program)."""


Instruction = (
    Bin
    | AddrSpaceCast
    | Neg
    | Endian
    | LoadImm64
    | Load
    | Store
    | PacketLoad
    | Atomic
    | Jump
    | Goto
    | MayGoto
    | Call
    | CallLocal
    | CallKfunc
    | CallReg
    | Exit
)

JumpLike = Jump | Goto | MayGoto


def slot_count(insn: Instruction) -> int:
    """How many 8-byte slots ``insn`` occupies (2 for ``lddw``)."""
    return 2 if isinstance(insn, LoadImm64) else 1


def jump_target(pc: int, insn: Instruction) -> int | None:
    """The pc a jump or local call at ``pc`` may transfer to, or None for other instructions."""
    if isinstance(insn, Jump | Goto | MayGoto | CallLocal):
        return pc + 1 + insn.off
    return None


@dataclass(frozen=True, slots=True)
class SourceLine:
    """Where an instruction came from in C (filled from BTF line info by the loader)."""

    file: str
    line: int
    column: int
    text: str


@dataclass(frozen=True, slots=True)
class LabeledInsn:
    """An instruction with its pc (slot index) and, when known, its source line."""

    pc: int
    insn: Instruction
    line: SourceLine | None = None
