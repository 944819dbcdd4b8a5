"""Seeded random eBPF programs for differential testing against the kernel.

How one program is compared
---------------------------
BPF_PROG_TEST_RUN reports only a 32-bit return value, so every program is an XDP program
that writes its whole final state into the packet, and we compare the kernel's ``data_out``
with the packet our interpreter leaves behind. The program has four parts:

1. **prologue** -- the only part that differs between the two sides. The kernel gets
   ``struct xdp_md *`` in r1, so its prologue reads ``data``/``data_end``, checks
   ``data + PACKET_SIZE <= data_end`` (the verifier then allows every access below) and keeps
   ``data`` in r6. Our interpreter has no context rewriting yet, and ``xdp_md`` holds 32-bit
   fields that cannot carry a native address anyway, so its prologue is just ``r6 = r1``: the
   interpreter is run with the packet region itself as its context, so r1 is the packet's
   address. Both prologues spill the packet pointer to ``fp-8`` (the verifier keeps a spilled
   pointer's checked range, so the epilogue can use it after the body clobbered everything).
2. **setup** -- shared: initialises a window of stack slots and all of r0-r9, each either from
   the packet (a value the verifier cannot know) or from a constant (a value it tracks
   exactly, so its constant folding and dead-branch removal get exercised as well).
3. **body** -- shared: the random part. A list of :class:`Block`: arithmetic, stack loads,
   stores and atomics, forward conditional jumps to a later block (or to the epilogue), and
   bounded backward loops whose counter starts as a constant so the verifier can bound them.
4. **epilogue** -- shared: stores r0-r9 and the stack window into the packet, returns XDP_PASS.

Jumps are relative, so a body means the same thing behind either prologue. Everything comes
from ``random.Random(seed)``: the same seed gives the same program and input packet.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from pybpf.isa import (
    Atomic,
    AtomicCode,
    Bin,
    BinOp,
    Endian,
    EndianOrder,
    Exit,
    Goto,
    Imm,
    Instruction,
    Jump,
    LabeledInsn,
    Load,
    LoadImm64,
    Neg,
    Reg,
    Size,
    Store,
)
from pybpf.isa.insn import Cond
from pybpf.isa.opcodes import ATOMIC_FETCH

U32 = (1 << 32) - 1
U64 = (1 << 64) - 1

XDP_ABORTED = 0
XDP_PASS = 2
XDP_MD_DATA = 0  # offsetof(struct xdp_md, data)
XDP_MD_DATA_END = 4  # offsetof(struct xdp_md, data_end)

DATA_REGS = tuple(Reg(n) for n in range(10))
"""r0-r9: what the body may read and write (r10 is only ever a stack base)."""
PACKET_SPILL = -8
"""Stack slot holding the packet pointer across the body (the body never touches it)."""
R9_SPILL = -16
"""Stack slot the epilogue parks r9 in while r9 holds the packet pointer."""
WINDOW_BYTES = 64
"""Size of the stack window the body works on (and the epilogue dumps)."""
REGS_AREA = 8 * len(DATA_REGS)
"""Packet bytes [0, 80): initial register values in, final r0-r9 out."""
PACKET_SIZE = REGS_AREA + WINDOW_BYTES
"""Packet bytes [80, 144): initial stack window in, final stack window out."""

SIZES = (Size.B, Size.H, Size.W, Size.DW)
ATOMIC_CODES = tuple(code for code in AtomicCode if code not in (AtomicCode.LOAD_ACQ, AtomicCode.STORE_REL))
SHIFTS = (BinOp.LSH, BinOp.RSH, BinOp.ARSH)
DIVISIONS = (BinOp.DIV, BinOp.MOD, BinOp.SDIV, BinOp.SMOD)
MOVSX = (BinOp.MOVSX8, BinOp.MOVSX16, BinOp.MOVSX32)

INTERESTING64 = (
    0,
    1,
    2,
    7,
    31,
    32,
    33,
    63,
    64,
    65,
    0x7F,
    0x80,
    0xFF,
    0x7FFF,
    0x8000,
    0xFFFF,
    0x7FFFFFFF,
    0x80000000,
    0xFFFFFFFF,
    0x1_0000_0000,
    0x1_8000_0000,
    0x7FFFFFFF_FFFFFFFF,
    0x80000000_00000000,
    0x80000000_00000001,
    0xFFFFFFFF_00000000,
    0xFFFFFFFF_7FFFFFFF,
    0xFFFFFFFF_80000000,
    0xFFFFFFFF_FFFFFF80,
    0xFFFFFFFF_FFFFFFFE,
    U64,
)
INTERESTING32 = (
    0,
    1,
    2,
    3,
    7,
    8,
    31,
    32,
    63,
    64,
    0x7F,
    0x80,
    0xFF,
    0x8000,
    0xFFFF,
    0x7FFFFFFF,
    -1,
    -2,
    -0x80,
    -0x80000000,
)


# -- the program model --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Block:
    """A run of body instructions. When ``target`` is set, the last one is a forward jump.

    ``target`` is the index of the block the jump lands on (``len(blocks)`` is the epilogue);
    its ``off`` is filled in by :meth:`DiffProgram.body`. Backward jumps only occur inside a
    ``loop`` block, already resolved, so blocks can be dropped and reordered without breaking them.
    """

    kind: str
    insns: tuple[Instruction, ...]
    target: int | None = None


@dataclass(frozen=True, slots=True)
class DiffProgram:
    """One generated program: initial state, body blocks, and the input packet."""

    seed: int | None
    window_top: int  # stack offset just past the window's highest byte (a multiple of 8, <= R9_SPILL)
    reg_init: tuple[int | None, ...]  # per register: a constant, or None to load it from the packet
    slot_init: tuple[int | None, ...]  # per window slot (lowest first): a store-immediate value, or None
    blocks: tuple[Block, ...]
    packet: bytes

    @property
    def window_base(self) -> int:
        return self.window_top - WINDOW_BYTES

    def slot_offset(self, index: int) -> int:
        return self.window_base + 8 * index

    def setup(self) -> list[Instruction]:
        out: list[Instruction] = []
        for index, value in enumerate(self.slot_init):
            off = self.slot_offset(index)
            if value is None:
                out.append(Load(Size.DW, Reg.R0, Reg.R6, REGS_AREA + 8 * index))
                out.append(Store(Size.DW, Reg.R10, off, Reg.R0))
            else:
                out.append(Store(Size.DW, Reg.R10, off, Imm(value)))
        # r6 (the packet pointer) is initialised last, as the loads above and below read through it.
        for reg in sorted(DATA_REGS, key=lambda r: r == Reg.R6):
            value = self.reg_init[reg]
            if value is None:
                out.append(Load(Size.DW, reg, Reg.R6, 8 * int(reg)))
            else:
                out.append(LoadImm64.constant(reg, value))
        return out

    def body(self) -> list[Instruction]:
        """The body with every forward jump's offset resolved (in slots)."""
        starts: list[int] = []
        pc = 0
        for block in self.blocks:
            starts.append(pc)
            pc += sum(_slots(insn) for insn in block.insns)
        starts.append(pc)  # the epilogue
        out: list[Instruction] = []
        for index, block in enumerate(self.blocks):
            insns = list(block.insns)
            if block.target is not None:
                jump_pc = starts[index + 1] - 1
                off = starts[block.target] - (jump_pc + 1)
                last = insns[-1]
                if isinstance(last, Jump):
                    insns[-1] = replace(last, off=off)
            out.extend(insns)
        return out

    def epilogue(self) -> list[Instruction]:
        out: list[Instruction] = [
            Store(Size.DW, Reg.R10, R9_SPILL, Reg.R9),
            Load(Size.DW, Reg.R9, Reg.R10, PACKET_SPILL),
        ]
        out.extend(Store(Size.DW, Reg.R9, 8 * int(reg), reg) for reg in DATA_REGS[:9])
        out.append(Load(Size.DW, Reg.R0, Reg.R10, R9_SPILL))
        out.append(Store(Size.DW, Reg.R9, 8 * int(Reg.R9), Reg.R0))
        for index in range(WINDOW_BYTES // 8):
            out.append(Load(Size.DW, Reg.R0, Reg.R10, self.slot_offset(index)))
            out.append(Store(Size.DW, Reg.R9, REGS_AREA + 8 * index, Reg.R0))
        out += [Bin(BinOp.MOV, Reg.R0, Imm(XDP_PASS), True), Exit()]
        return out

    def kernel_program(self) -> list[Instruction]:
        """The XDP program for the kernel: ``r1`` is ``struct xdp_md *``."""
        prologue: list[Instruction] = [
            Load(Size.W, Reg.R6, Reg.R1, XDP_MD_DATA),
            Load(Size.W, Reg.R7, Reg.R1, XDP_MD_DATA_END),
            Bin(BinOp.MOV, Reg.R8, Reg.R6, True),
            Bin(BinOp.ADD, Reg.R8, Imm(PACKET_SIZE), True),
            Jump(Cond.JLE, Reg.R8, Reg.R7, 2, False),
            Bin(BinOp.MOV, Reg.R0, Imm(XDP_ABORTED), True),
            Exit(),
            Store(Size.DW, Reg.R10, PACKET_SPILL, Reg.R6),
        ]
        return prologue + self.setup() + self.body() + self.epilogue()

    def interpreter_program(self) -> list[Instruction]:
        """The same program for our interpreter: ``r1`` is the packet's address."""
        prologue: list[Instruction] = [
            Bin(BinOp.MOV, Reg.R6, Reg.R1, True),
            Store(Size.DW, Reg.R10, PACKET_SPILL, Reg.R6),
        ]
        return prologue + self.setup() + self.body() + self.epilogue()

    def without_block(self, index: int) -> DiffProgram:
        """This program minus one body block; jumps that targeted it land on its successor."""
        blocks = []
        for position, block in enumerate(self.blocks):
            if position == index:
                continue
            if block.target is not None and block.target > index:
                block = replace(block, target=block.target - 1)
            blocks.append(block)
        return replace(self, blocks=tuple(blocks))


def insert_after(block: Block, wanted: Callable[[Instruction], bool], extra: Instruction) -> Block:
    """``block`` with ``extra`` placed after every instruction ``wanted`` selects.

    The block's own jumps (diamond branches, loop back-edges) keep their targets; its final
    forward jump, if any, is resolved later from ``target`` and is left alone. Body blocks never
    hold an ``lddw``, so instruction indices are slot indices here.
    """
    new_index: list[int] = []
    out: list[Instruction] = []
    for insn in block.insns:
        new_index.append(len(out))
        out.append(insn)
        if wanted(insn):
            out.append(extra)
    new_index.append(len(out))  # the end of the block
    internal = len(block.insns) - (1 if block.target is not None else 0)
    for old, insn in enumerate(block.insns[:internal]):
        if isinstance(insn, Jump | Goto):
            target = old + 1 + insn.off
            out[new_index[old]] = replace(insn, off=new_index[target] - (new_index[old] + 1))
    return replace(block, insns=tuple(out))


def _slots(insn: Instruction) -> int:
    return 2 if isinstance(insn, LoadImm64) else 1


def labeled(insns: Sequence[Instruction]) -> list[LabeledInsn]:
    """Number instructions by pc (``lddw`` takes two slots)."""
    out: list[LabeledInsn] = []
    pc = 0
    for insn in insns:
        out.append(LabeledInsn(pc, insn))
        pc += _slots(insn)
    return out


# -- the generator ------------------------------------------------------------------------------


class Generator:
    """Draws random blocks from one ``random.Random``; see :func:`generate`."""

    def __init__(self, rng: random.Random, window_top: int) -> None:
        self.rng = rng
        self.window_top = window_top

    # values

    def value64(self) -> int:
        rng = self.rng
        roll = rng.random()
        if roll < 0.55:
            return rng.choice(INTERESTING64)
        if roll < 0.7:
            return (-rng.choice(INTERESTING64)) & U64
        if roll < 0.85:
            return rng.getrandbits(32)
        return rng.getrandbits(64)

    def imm32(self) -> int:
        rng = self.rng
        if rng.random() < 0.7:
            return rng.choice(INTERESTING32)
        return rng.randrange(-(1 << 31), 1 << 31)

    def reg(self, avoid: frozenset[Reg] = frozenset()) -> Reg:
        return self.rng.choice([reg for reg in DATA_REGS if reg not in avoid])

    def stack_offset(self, size: Size) -> int:
        nbytes = size.nbytes
        return self.window_top - WINDOW_BYTES + nbytes * self.rng.randrange(WINDOW_BYTES // nbytes)

    # instructions

    def bin(self, avoid: frozenset[Reg]) -> Instruction:
        rng = self.rng
        op = rng.choice(list(BinOp))
        is64 = rng.random() < 0.5
        dst = self.reg(avoid)
        if op in MOVSX:
            if op is BinOp.MOVSX32 and not is64:
                op = rng.choice((BinOp.MOVSX8, BinOp.MOVSX16))  # ALU32 has no movsx32
            return Bin(op, dst, self.reg(), is64)  # sign-extending moves take a register only
        if rng.random() < 0.5:
            return Bin(op, dst, self.reg(), is64)
        if op in SHIFTS:
            # The verifier refuses immediate shifts of the width or more; registers are masked.
            width = 64 if is64 else 32
            amount = rng.choice((0, 1, width // 2 - 1, width // 2, width - 1, rng.randrange(width)))
            return Bin(op, dst, Imm(amount), is64)
        imm = self.imm32()
        if op in DIVISIONS and imm == 0:
            imm = rng.choice((-1, 1, 3, -0x80000000))  # the verifier refuses division by an immediate 0
        return Bin(op, dst, Imm(imm), is64)

    def unary(self, avoid: frozenset[Reg]) -> Instruction:
        rng = self.rng
        dst = self.reg(avoid)
        if rng.random() < 0.3:
            return Neg(dst, rng.random() < 0.5)
        return Endian(dst, rng.choice((16, 32, 64)), rng.choice(tuple(EndianOrder)))

    def load(self, avoid: frozenset[Reg]) -> Instruction:
        size = self.rng.choice(SIZES)
        sign_extend = size is not Size.DW and self.rng.random() < 0.5
        return Load(size, self.reg(avoid), Reg.R10, self.stack_offset(size), sign_extend)

    def store(self) -> Instruction:
        size = self.rng.choice(SIZES)
        src: Reg | Imm = self.reg() if self.rng.random() < 0.6 else Imm(self.imm32())
        return Store(size, Reg.R10, self.stack_offset(size), src)

    def atomic(self, avoid: frozenset[Reg]) -> Instruction:
        rng = self.rng
        code = rng.choice(ATOMIC_CODES)
        size = rng.choice((Size.W, Size.DW))
        # Fetching forms and xchg overwrite src; cmpxchg overwrites r0 instead.
        writes_src = bool(code & ATOMIC_FETCH) and code is not AtomicCode.CMPXCHG
        src = self.reg(avoid if writes_src else frozenset())
        if code is AtomicCode.CMPXCHG and Reg.R0 in avoid:
            code = AtomicCode.FETCH_ADD
            src = self.reg(avoid)
        return Atomic(code, size, Reg.R10, self.stack_offset(size), src)

    def straight(self, avoid: frozenset[Reg] = frozenset()) -> Instruction:
        """One non-jump instruction that writes no register in ``avoid``."""
        roll = self.rng.random()
        if roll < 0.55:
            return self.bin(avoid)
        if roll < 0.65:
            return self.unary(avoid)
        if roll < 0.75:
            return self.load(avoid)
        if roll < 0.87:
            return self.store()
        return self.atomic(avoid)

    def jump(self) -> Jump:
        rng = self.rng
        src: Reg | Imm = self.reg() if rng.random() < 0.5 else Imm(self.imm32())
        return Jump(rng.choice(list(Cond)), self.reg(), src, 0, rng.random() < 0.5)

    def diamond(self) -> Block:
        """``if (cond) { else_part } else { then_part }``: the one place a ``goto`` appears.

        A lone forward ``goto`` would leave the code it skips structurally unreachable, which
        the verifier refuses ("unreachable insn"); here the conditional jump reaches it.
        """
        rng = self.rng
        then_part = [self.straight() for _ in range(rng.randint(1, 3))]
        else_part = [self.straight() for _ in range(rng.randint(1, 3))]
        branch = replace(self.jump(), off=len(then_part) + 1)
        skip = Goto(len(else_part), long=rng.random() < 0.5)
        return Block("diamond", (branch, *then_part, skip, *else_part))

    def loop(self) -> Block:
        """``counter = 0; do { body } while (++counter < trips)`` (or counting down), 1-5 trips."""
        rng = self.rng
        counter = self.reg()
        avoid = frozenset({counter})
        inner = [self.straight(avoid) for _ in range(rng.randint(1, 4))]
        trips = rng.randint(1, 5)
        is32 = rng.random() < 0.5
        if rng.random() < 0.5:
            head: Instruction = Bin(BinOp.MOV, counter, Imm(0), True)
            step: Instruction = Bin(BinOp.ADD, counter, Imm(1), True)
            back = Jump(rng.choice((Cond.JLT, Cond.JNE, Cond.JSLT)), counter, Imm(trips), -(len(inner) + 2), is32)
        else:
            head = Bin(BinOp.MOV, counter, Imm(trips), True)
            step = Bin(BinOp.SUB, counter, Imm(1), True)
            back = Jump(rng.choice((Cond.JNE, Cond.JGT, Cond.JSGT)), counter, Imm(0), -(len(inner) + 2), is32)
        return Block("loop", (head, *inner, step, back))

    def blocks(self, count: int) -> tuple[Block, ...]:
        rng = self.rng
        kinds: list[str] = []
        loops = 0
        for _ in range(count):
            roll = rng.random()
            if roll < 0.16:
                kinds.append("jump")
            elif roll < 0.2:
                kinds.append("diamond")
            elif roll < 0.24 and loops < 2:
                kinds.append("loop")
                loops += 1
            else:
                kinds.append("straight")
        out: list[Block] = []
        for index, kind in enumerate(kinds):
            if kind == "jump":
                # Forward only: to a later block or the epilogue (index count).
                out.append(Block("jump", (self.jump(),), rng.randint(index + 1, count)))
            elif kind == "loop":
                out.append(self.loop())
            elif kind == "diamond":
                out.append(self.diamond())
            else:
                out.append(Block("straight", tuple(self.straight() for _ in range(rng.randint(1, 3)))))
        return tuple(out)


def generate(seed: int) -> DiffProgram:
    """The program for ``seed`` (deterministic)."""
    rng = random.Random(seed)
    # Anywhere from just below the reserved slots down to the very bottom of the 512-byte stack.
    window_top = rng.choice((R9_SPILL, R9_SPILL - 8 * rng.randrange(1, 55), -512 + WINDOW_BYTES))
    generator = Generator(rng, window_top)
    reg_init = tuple(generator.value64() if rng.random() < 0.3 else None for _ in DATA_REGS)
    slot_init = tuple(generator.imm32() if rng.random() < 0.2 else None for _ in range(WINDOW_BYTES // 8))
    blocks = generator.blocks(rng.randint(12, 36))
    packet = b"".join(generator.value64().to_bytes(8, "little") for _ in range(PACKET_SIZE // 8))
    return DiffProgram(seed, window_top, reg_init, slot_init, blocks, packet)


# -- text ---------------------------------------------------------------------------------------


def _operand(src: Reg | Imm) -> str:
    return f"r{int(src)}" if isinstance(src, Reg) else f"{src.value:#x}" if src.value >= 0 else f"-{-src.value:#x}"


def _mem(base: Reg, off: int) -> str:
    return f"r{int(base)} {'-' if off < 0 else '+'} {abs(off)}"


_SIZE_NAMES = {Size.B: "u8", Size.H: "u16", Size.W: "u32", Size.DW: "u64"}


def format_insn(insn: Instruction) -> str:
    """One instruction in the kernel verifier log's C-like syntax."""
    match insn:
        case Bin(op, dst, src, is64):
            reg = f"r{int(dst)}" if is64 else f"w{int(dst)}"
            operand = _operand(src) if is64 or isinstance(src, Imm) else f"w{int(src)}"
            return f"{reg} {op.value} {operand}"
        case Neg(dst, is64):
            return f"r{int(dst)} = -r{int(dst)}" if is64 else f"w{int(dst)} = -w{int(dst)}"
        case Endian(dst, width, order):
            name = {EndianOrder.LE: "le", EndianOrder.BE: "be", EndianOrder.SWAP: "bswap"}[order]
            return f"r{int(dst)} = {name}{width} r{int(dst)}"
        case LoadImm64():
            return f"r{int(insn.dst)} = {insn.value:#x} ll"
        case Load(size, dst, src, off, sign_extend):
            kind = _SIZE_NAMES[size].replace("u", "s") if sign_extend else _SIZE_NAMES[size]
            return f"r{int(dst)} = *({kind} *)({_mem(src, off)})"
        case Store(size, dst, off, src):
            return f"*({_SIZE_NAMES[size]} *)({_mem(dst, off)}) = {_operand(src)}"
        case Atomic(op, size, dst, off, src):
            return f"lock {op.name.lower()} *({_SIZE_NAMES[size]} *)({_mem(dst, off)}), r{int(src)}"
        case Jump(cond, dst, src, off, is32):
            reg = f"w{int(dst)}" if is32 else f"r{int(dst)}"
            operand = f"w{int(src)}" if is32 and isinstance(src, Reg) else _operand(src)
            return f"if {reg} {cond.value} {operand} goto pc{off:+d}"
        case Goto(off, long):
            return f"{'gotol' if long else 'goto'} pc{off:+d}"
        case Exit():
            return "exit"
    return repr(insn)


def format_program(insns: Sequence[Instruction], *, body_start: int | None = None) -> str:
    """A numbered listing; ``body_start`` (a pc) marks where the random body begins."""
    lines = []
    for item in labeled(insns):
        marker = ">" if body_start is not None and item.pc == body_start else " "
        lines.append(f"{marker}{item.pc:4d}: {format_insn(item.insn)}")
    return "\n".join(lines)
