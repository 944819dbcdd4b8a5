"""Programs that touch memory: stack and input loads/stores, atomics, faults, LD_ABS/LD_IND."""

from __future__ import annotations

import pytest
from vm_build import U32, U64, const, mov, prepare, ret, run

from pybpf.errors import MemoryAccessError, VmError
from pybpf.isa import (
    Atomic,
    AtomicCode,
    Bin,
    BinOp,
    CallLocal,
    Exit,
    Imm,
    Instruction,
    Load,
    Mode,
    PacketLoad,
    Reg,
    Size,
    Store,
)
from pybpf.vm import Region, RegionKind

SIZES = [(Size.B, 1), (Size.H, 2), (Size.W, 4), (Size.DW, 8)]


@pytest.mark.parametrize(("size", "nbytes"), SIZES, ids=lambda v: getattr(v, "name", None))
def test_stack_store_register_then_load(size: Size, nbytes: int) -> None:
    value = 0x8877665544332211
    program: list[Instruction] = [
        const(Reg.R1, value),
        Store(Size.DW, Reg.R10, -16, Imm(-1)),  # fill, so a short store leaves the rest visible
        Store(Size.DW, Reg.R10, -8, Imm(-1)),
        Store(size, Reg.R10, -16, Reg.R1),
        Load(size, Reg.R0, Reg.R10, -16),
        Load(Size.DW, Reg.R2, Reg.R10, -16),
        Exit(),
    ]
    result = run(program)
    mask = (1 << (8 * nbytes)) - 1
    assert result.r0 == value & mask
    assert result.registers[2] == (U64 & ~mask) | (value & mask)


@pytest.mark.parametrize(("size", "nbytes"), SIZES, ids=lambda v: getattr(v, "name", None))
def test_store_immediate_is_sign_extended_then_truncated(size: Size, nbytes: int) -> None:
    program: list[Instruction] = [
        Store(Size.DW, Reg.R10, -8, Imm(0)),
        Store(size, Reg.R10, -8, Imm(-2)),
        Load(Size.DW, Reg.R0, Reg.R10, -8),
        Exit(),
    ]
    assert run(program).r0 == ((1 << (8 * nbytes)) - 2)


@pytest.mark.parametrize(("size", "nbytes"), SIZES[:3], ids=lambda v: getattr(v, "name", None))
def test_sign_extending_loads(size: Size, nbytes: int) -> None:
    memory = b"\xfe" + b"\xff" * 7  # -2 in every size
    result = run(
        [Load(size, Reg.R0, Reg.R1, 0, sign_extend=True), Load(size, Reg.R3, Reg.R1, 0), Exit()], memory=memory
    )
    assert result.r0 == U64 - 1  # -2 sign-extended to 64 bits
    assert result.registers[3] == (1 << (8 * nbytes)) - 2  # the plain load zero-extends
    positive = run([Load(size, Reg.R0, Reg.R1, 0, sign_extend=True), Exit()], memory=bytes([0x7F] * 8))
    assert positive.r0 == int.from_bytes(bytes([0x7F] * nbytes), "little")


def test_input_memory_is_r1_and_r2_and_writes_land_in_it() -> None:
    buffer = bytearray(b"\x01\x02\x03\x04\x05\x06\x07\x08")
    region = Region(RegionKind.INPUT, "input", buffer)
    program: list[Instruction] = [
        Load(Size.W, Reg.R0, Reg.R1, 4),
        Store(Size.H, Reg.R1, 0, Imm(0x7777)),
        Bin(BinOp.ADD, Reg.R0, Reg.R2, True),
        Exit(),
    ]
    result = prepare(program).run(region)
    assert result.r0 == 0x08070605 + 8
    assert buffer[:2] == b"\x77\x77"


def test_region_of_a_run_is_unmapped_afterwards() -> None:
    interpreter = prepare([Load(Size.B, Reg.R0, Reg.R1, 0), Exit()])
    region = Region.from_bytes(RegionKind.INPUT, "input", b"\x05")
    assert interpreter.run(region).r0 == 5
    assert region not in interpreter.memory
    assert interpreter.memory.regions == ()  # the stack is gone too


def test_r10_is_the_top_of_a_512_byte_stack() -> None:
    assert run([Load(Size.DW, Reg.R0, Reg.R10, -512), Exit()]).r0 == 0
    with pytest.raises(MemoryAccessError, match=r"pc 0: invalid read of 8 byte\(s\).*before the start of stack"):
        run([Load(Size.DW, Reg.R0, Reg.R10, -520), Exit()])
    with pytest.raises(MemoryAccessError, match=r"pc 1: invalid write of 1 byte\(s\).*past the end of stack"):
        run([mov(Reg.R0, 0), Store(Size.B, Reg.R10, 0, Imm(1)), Exit()])


def test_faults_name_the_pc() -> None:
    with pytest.raises(MemoryAccessError, match=r"pc 2: invalid read of 4 byte\(s\) at 0x0: null pointer") as info:
        run([mov(Reg.R1, 0), mov(Reg.R0, 0), Load(Size.W, Reg.R0, Reg.R1, 0), Exit()])
    assert info.value.pc == 2
    with pytest.raises(MemoryAccessError, match=r"pc 0: .*runs 4 byte\(s\) past the end of input 'input'"):
        run([Load(Size.DW, Reg.R0, Reg.R1, 0), Exit()], memory=b"1234")


def test_writes_to_read_only_memory_fault() -> None:
    interpreter = prepare([Store(Size.W, Reg.R1, 0, Imm(1)), *ret(0)])
    region = Region.from_bytes(RegionKind.RODATA, ".rodata", b"\0" * 8, writable=False)
    with pytest.raises(MemoryAccessError, match=r"pc 0: invalid write .*read-only region"):
        interpreter.run(region)


# -- atomics ----------------------------------------------------------------------------------

START64 = 0x0F0F0F0F_0000FFFF
OPERAND = 0xF0F0F0F0_12345678


def _atomic(op: AtomicCode, size: Size, initial: int, operand: int, r0: int = 0) -> tuple[int, int, int]:
    """Run one atomic on an 8-byte stack slot; return (memory after, operand register after, r0 after)."""
    program: list[Instruction] = [
        const(Reg.R1, initial),
        Store(Size.DW, Reg.R10, -8, Reg.R1),
        const(Reg.R2, operand),
        const(Reg.R0, r0),
        Atomic(op, size, Reg.R10, -8, Reg.R2),
        Load(Size.DW, Reg.R3, Reg.R10, -8),
        Exit(),
    ]
    registers = run(program).registers
    return registers[3], registers[2], registers[0]


@pytest.mark.parametrize(
    ("op", "combine"),
    [
        (AtomicCode.ADD, lambda a, b: a + b),
        (AtomicCode.OR, lambda a, b: a | b),
        (AtomicCode.AND, lambda a, b: a & b),
        (AtomicCode.XOR, lambda a, b: a ^ b),
    ],
    ids=lambda v: getattr(v, "name", None),
)
@pytest.mark.parametrize("fetch", [False, True], ids=["plain", "fetch"])
def test_read_modify_write(op: AtomicCode, combine: object, fetch: bool) -> None:
    code = AtomicCode(op | 0x01) if fetch else op
    memory, operand, _ = _atomic(code, Size.DW, START64, OPERAND)
    assert memory == combine(START64, OPERAND) & U64  # type: ignore[operator]
    assert operand == (START64 if fetch else OPERAND)
    memory, operand, _ = _atomic(code, Size.W, START64, OPERAND)
    low = combine(START64 & U32, OPERAND & U32) & U32  # type: ignore[operator]
    assert memory == (START64 & ~U32) | low  # the upper half of the slot is untouched
    assert operand == ((START64 & U32) if fetch else OPERAND)  # fetched 32-bit values are zero-extended


def test_xchg() -> None:
    assert _atomic(AtomicCode.XCHG, Size.DW, START64, OPERAND)[:2] == (OPERAND, START64)
    memory, operand, _ = _atomic(AtomicCode.XCHG, Size.W, START64, OPERAND)
    assert (memory, operand) == ((START64 & ~U32) | (OPERAND & U32), START64 & U32)


def test_cmpxchg_compares_with_r0() -> None:
    assert _atomic(AtomicCode.CMPXCHG, Size.DW, START64, OPERAND, r0=START64) == (OPERAND, OPERAND, START64)
    assert _atomic(AtomicCode.CMPXCHG, Size.DW, START64, OPERAND, r0=1) == (START64, OPERAND, START64)
    # 32-bit: compares the low halves, and r0 receives the zero-extended old value.
    memory, _, r0 = _atomic(AtomicCode.CMPXCHG, Size.W, START64, OPERAND, r0=(7 << 32) | (START64 & U32))
    assert (memory, r0) == ((START64 & ~U32) | (OPERAND & U32), START64 & U32)


@pytest.mark.parametrize(("size", "nbytes"), SIZES, ids=lambda v: getattr(v, "name", None))
def test_load_acquire_and_store_release(size: Size, nbytes: int) -> None:
    mask = (1 << (8 * nbytes)) - 1
    program: list[Instruction] = [
        const(Reg.R2, OPERAND),
        Store(Size.DW, Reg.R10, -8, Imm(0)),
        Atomic(AtomicCode.STORE_REL, size, Reg.R10, -8, Reg.R2),  # *(r10 - 8) = r2
        Bin(BinOp.MOV, Reg.R3, Reg.R10, True),
        Atomic(AtomicCode.LOAD_ACQ, size, Reg.R0, -8, Reg.R3),  # r0 = *(r3 - 8)
        Exit(),
    ]
    assert run(program).r0 == OPERAND & mask


def test_atomic_fault_names_pc() -> None:
    with pytest.raises(MemoryAccessError, match="pc 1: invalid read of 8 byte"):
        run([mov(Reg.R1, 16), Atomic(AtomicCode.ADD, Size.DW, Reg.R1, 0, Reg.R2), Exit()])


# -- LD_ABS / LD_IND --------------------------------------------------------------------------

PACKET = bytes(range(0x10, 0x30))


def _packet_run(insns: list, packet: bytes = PACKET) -> int:  # type: ignore[type-arg]
    interpreter = prepare(insns)
    return interpreter.run(packet=Region.from_bytes(RegionKind.PACKET, "packet", packet)).r0


@pytest.mark.parametrize(("size", "expected"), [(Size.B, 0x12), (Size.H, 0x1213), (Size.W, 0x12131415)])
def test_ld_abs_reads_big_endian(size: Size, expected: int) -> None:
    assert _packet_run([mov(Reg.R0, -1), PacketLoad(size, Mode.ABS, None, 2), Exit()]) == expected


def test_ld_ind_adds_the_register() -> None:
    program: list[Instruction] = [mov(Reg.R6, 4), PacketLoad(Size.H, Mode.IND, Reg.R6, 3), Exit()]
    assert _packet_run(program) == 0x1718


@pytest.mark.parametrize("offset", [len(PACKET) - 1, len(PACKET), 1 << 20, -1])
def test_out_of_range_packet_load_exits_with_zero(offset: int) -> None:
    program: list[Instruction] = [mov(Reg.R6, offset), PacketLoad(Size.H, Mode.IND, Reg.R6, 0), *ret(7)]
    assert _packet_run(program) == 0


def test_packet_load_without_a_packet_is_an_error() -> None:
    with pytest.raises(VmError, match="pc 0: LD_ABS/LD_IND needs a packet"):
        run([PacketLoad(Size.B, Mode.ABS, None, 0), Exit()])


def test_an_instructions_cached_region_dies_with_its_mapping() -> None:
    interpreter = prepare([Load(Size.B, Reg.R0, Reg.R1, 0), Store(Size.B, Reg.R1, 0, Imm(9)), Exit()])
    region = Region.from_bytes(RegionKind.INPUT, "input", b"\x05")
    assert interpreter.run(region).r0 == 5
    assert region.view[0] == 9
    with pytest.raises(MemoryAccessError, match="pc 0: invalid read"):
        interpreter.run(registers={1: region.address})  # the region is no longer mapped


def test_one_instruction_alternating_between_regions() -> None:
    # A function called twice: once with a stack pointer, once with a pointer into the input.
    program: list[Instruction] = [
        Store(Size.DW, Reg.R10, -8, Imm(30)),
        Bin(BinOp.MOV, Reg.R6, Reg.R1, True),
        Bin(BinOp.MOV, Reg.R1, Reg.R10, True),
        CallLocal(6),  # pc 3 -> 10
        Bin(BinOp.MOV, Reg.R7, Reg.R0, True),
        Bin(BinOp.MOV, Reg.R1, Reg.R6, True),
        Bin(BinOp.ADD, Reg.R1, Imm(16), True),
        CallLocal(2),  # pc 7 -> 10
        Bin(BinOp.ADD, Reg.R0, Reg.R7, True),
        Exit(),
        Load(Size.DW, Reg.R0, Reg.R1, -8),  # pc 10
        Exit(),
    ]
    interpreter = prepare(program)
    for extra in (12, 99):
        region = Region.from_bytes(RegionKind.INPUT, "input", bytes(8) + extra.to_bytes(8, "little"))
        assert interpreter.run(region).r0 == 30 + extra
