"""Opcode bit fields of RFC 9669, as IntEnums.

An eBPF opcode byte is built from parts, never written as a magic number::

    arithmetic and jump classes:   | 4-bit code | 1-bit source | 3-bit class |
    load and store classes:        | 3-bit mode | 2-bit size   | 3-bit class |

Members are spelled as the uapi header spells them (``Class.ALU64``, ``Size.DW``, ``Mode.MEMSX``).
"""

from __future__ import annotations

from enum import IntEnum

CLASS_MASK = 0x07
SOURCE_MASK = 0x08
CODE_MASK = 0xF0
SIZE_MASK = 0x18
MODE_MASK = 0xE0


class Class(IntEnum):
    """The low three bits of every opcode."""

    LD = 0x00
    LDX = 0x01
    ST = 0x02
    STX = 0x03
    ALU = 0x04
    JMP = 0x05
    JMP32 = 0x06
    ALU64 = 0x07


class Source(IntEnum):
    """Bit 3 of arithmetic and jump opcodes: immediate (K) or register (X) operand.

    For ``END`` the same bit selects the byte order (TO_LE = K, TO_BE = X).
    """

    K = 0x00
    X = 0x08


class AluCode(IntEnum):
    """The high four bits of ALU/ALU64 opcodes."""

    ADD = 0x00
    SUB = 0x10
    MUL = 0x20
    DIV = 0x30
    OR = 0x40
    AND = 0x50
    LSH = 0x60
    RSH = 0x70
    NEG = 0x80
    MOD = 0x90
    XOR = 0xA0
    MOV = 0xB0
    ARSH = 0xC0
    END = 0xD0


class JmpCode(IntEnum):
    """The high four bits of JMP/JMP32 opcodes."""

    JA = 0x00
    JEQ = 0x10
    JGT = 0x20
    JGE = 0x30
    JSET = 0x40
    JNE = 0x50
    JSGT = 0x60
    JSGE = 0x70
    CALL = 0x80
    EXIT = 0x90
    JLT = 0xA0
    JLE = 0xB0
    JSLT = 0xC0
    JSLE = 0xD0
    JCOND = 0xE0  # kernel extension: may_goto (src_reg = 0)


class Size(IntEnum):
    """Bits 3-4 of load/store opcodes."""

    W = 0x00
    H = 0x08
    B = 0x10
    DW = 0x18

    @property
    def nbytes(self) -> int:
        return _SIZE_BYTES[self]


_SIZE_BYTES = {Size.W: 4, Size.H: 2, Size.B: 1, Size.DW: 8}
SIZE_FOR_BYTES = {4: Size.W, 2: Size.H, 1: Size.B, 8: Size.DW}


class Mode(IntEnum):
    """Bits 5-7 of load/store opcodes."""

    IMM = 0x00
    ABS = 0x20
    IND = 0x40
    MEM = 0x60
    MEMSX = 0x80
    PROBE_MEM32 = 0xA0  # kernel-internal: an arena access after verification; never decoded
    ATOMIC = 0xC0
    PROBE_ATOMIC = 0xE0  # kernel-internal: an atomic on arena memory after verification; never decoded


ADDR_SPACE_CAST_OFF = 1
"""The ``off`` of a 64-bit register ``mov`` that makes it ``addr_space_cast`` (kernel 6.9+)."""


class AtomicCode(IntEnum):
    """The ``imm`` field of an atomic instruction (BPF_STX | BPF_ATOMIC)."""

    ADD = 0x00
    OR = 0x40
    AND = 0x50
    XOR = 0xA0
    FETCH_ADD = 0x01
    FETCH_OR = 0x41
    FETCH_AND = 0x51
    FETCH_XOR = 0xA1
    XCHG = 0xE1
    CMPXCHG = 0xF1
    LOAD_ACQ = 0x100  # kernel extension (6.15): dst = smp_load_acquire(src + off)
    STORE_REL = 0x110  # kernel extension (6.15): smp_store_release(dst + off, src)


ATOMIC_FETCH = 0x01


class PseudoSrc(IntEnum):
    """The ``src`` field of ``lddw``: how the loader/kernel interprets the immediate."""

    IMM64 = 0  # plain 64-bit constant
    MAP_FD = 1  # imm = map fd -> pointer to the map
    MAP_VALUE = 2  # imm = map fd, next imm = offset -> pointer into the map's value
    BTF_ID = 3  # imm = BTF id of a kernel variable
    FUNC = 4  # imm = pc-relative offset of a function -> its address
    MAP_IDX = 5  # imm = index into fd_array
    MAP_IDX_VALUE = 6  # imm = index into fd_array, next imm = offset


class CallSrc(IntEnum):
    """The ``src`` field of ``call``."""

    HELPER = 0  # imm = helper id
    LOCAL = 1  # imm = pc-relative offset of a bpf-to-bpf function
    KFUNC = 2  # imm = BTF id of a kernel function, off = module BTF fd index


class EndianOrder(IntEnum):
    """Which conversion an ``END`` instruction performs."""

    LE = 0  # ALU  | END | TO_LE: to little-endian (truncates on this little-endian VM)
    BE = 1  # ALU  | END | TO_BE: to big-endian (swaps)
    SWAP = 2  # ALU64 | END: unconditional byte swap (bswap16/32/64)


MAX_REGISTER = 10
