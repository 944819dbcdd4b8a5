"""Seeded random programs that exercise the verifier's decisions, for the verdict-differential fuzzer.

A program is not random bytes: it is a sequence of *fragments*, each a small realistic idiom the
verifier has to reason about (bounds arithmetic feeding an index, a pointer spilled and filled
back, a map lookup and its null check, a packet access against ``data_end``, pointer arithmetic,
a bounded loop, a bpf-to-bpf call, a ring-buffer reservation, a helper call), written so that it
passes the kernel's verifier. Each fragment then suffers, with some probability, one *mutation*
drawn from the mistakes people make (a missing null check, an off-by-one bound, a partial
overwrite of a spilled pointer, a leaked reservation, a 32-bit compare on a pointer, ...), so
that about half of the programs are rejected and for varied reasons.

Conventions inside a program: r6 holds the context for the whole program (saved at entry), each
fragment uses r0-r5 and r7-r9 as scratch and its own stack area (a bump allocator hands them
out), and jumps only forward inside itself or to its own end label, except loops. Subprograms
for bpf-to-bpf calls are appended after the main program's ``exit``.

The output is LLVM-syntax assembly with labels (``pybpf.asm``) — exactly the corpus format
(tests/verifier/corpus.py), so a shrunk disagreement becomes a corpus case by pasting it. Maps
are ``map[fd:N]``, the Nth entry of :attr:`FuzzProgram.maps`. Everything comes from
``random.Random(seed)``: the same seed gives the same program.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from pybpf.platform import BpfMapFlag, BpfMapType, BpfProgType
from pybpf.verifier import MapInfo

PROG_TYPES = (BpfProgType.SOCKET_FILTER, BpfProgType.XDP, BpfProgType.SCHED_CLS, BpfProgType.KPROBE,
              BpfProgType.TRACEPOINT)

# Map shapes a fragment may ask for (each program creates only the ones it uses).
MAP_SHAPES: dict[str, MapInfo] = {
    "hash": MapInfo(BpfMapType.HASH, 4, 16, 16),
    "hash_big": MapInfo(BpfMapType.HASH, 8, 64, 16),
    "array": MapInfo(BpfMapType.ARRAY, 4, 48, 4),
    "percpu": MapInfo(BpfMapType.PERCPU_ARRAY, 4, 8, 2),
    "rdonly": MapInfo(BpfMapType.ARRAY, 4, 16, 1, int(BpfMapFlag.RDONLY_PROG)),
    "ringbuf": MapInfo(BpfMapType.RINGBUF, 0, 0, 4096),
    "prog_array": MapInfo(BpfMapType.PROG_ARRAY, 4, 4, 4),
    "perf": MapInfo(BpfMapType.PERF_EVENT_ARRAY, 4, 4, 2),
}

# Helper ids used (include/uapi/linux/bpf.h).
MAP_LOOKUP, MAP_UPDATE, MAP_DELETE = 1, 2, 3
KTIME, TRACE_PRINTK, PRANDOM, SMP_ID = 5, 6, 7, 8
SKB_STORE_BYTES, TAIL_CALL, PID_TGID, CURRENT_COMM = 9, 12, 14, 16
PERF_OUTPUT, SKB_LOAD_BYTES, CSUM_DIFF, XDP_ADJUST_HEAD = 25, 26, 28, 44
PROBE_READ_KERNEL = 113
RINGBUF_OUTPUT, RINGBUF_RESERVE, RINGBUF_SUBMIT, RINGBUF_DISCARD = 130, 131, 132, 133

ALU_OPS = ("+=", "-=", "*=", "&=", "|=", "^=", "<<=", ">>=", "s>>=", "/=", "%=")
CONDS = ("==", "!=", ">", ">=", "<", "<=", "s>", "s>=", "s<", "s<=", "&")
SIZES = {1: "u8", 2: "u16", 4: "u32", 8: "u64"}
EDGE_CONSTS = (0, 1, 2, 3, 4, 7, 8, 15, 16, 31, 32, 63, 64, 255, 256, 0x7FFF, 0xFFFF, 0x7FFFFFFF, -1, -2, -8,
               -16, -256, -0x80000000)


@dataclass(frozen=True, slots=True)
class PacketLayout:
    """Where a packet program's context keeps data, data_end and data_meta (None: no packet access)."""

    data: int
    data_end: int
    meta: int | None


@dataclass(frozen=True, slots=True)
class ProgProfile:
    """What a program type offers the generator: scalar context fields, packet access, helpers."""

    prog_type: BpfProgType
    scalar_fields: tuple[tuple[int, int], ...]  # (offset, size) of readable scalar fields
    packet: PacketLayout | None
    tracing: bool
    skb: bool
    ret: int  # a return value the program type accepts


PROFILES: dict[BpfProgType, ProgProfile] = {
    BpfProgType.SOCKET_FILTER: ProgProfile(BpfProgType.SOCKET_FILTER, ((0, 4), (8, 4), (16, 4), (48, 4), (52, 4)),
                                           None, False, True, 0),
    BpfProgType.SCHED_CLS: ProgProfile(BpfProgType.SCHED_CLS, ((0, 4), (8, 4), (16, 4), (48, 4), (52, 4)),
                                       PacketLayout(76, 80, 140), False, True, 0),
    BpfProgType.XDP: ProgProfile(BpfProgType.XDP, ((12, 4), (16, 4)), PacketLayout(0, 4, 8), False, False, 2),
    BpfProgType.KPROBE: ProgProfile(BpfProgType.KPROBE, ((112, 8), (104, 8), (80, 8), (0, 8)), None, True, False, 0),
    BpfProgType.TRACEPOINT: ProgProfile(BpfProgType.TRACEPOINT, ((8, 8), (16, 8), (24, 8)), None, True, False, 0),
}


@dataclass(frozen=True, slots=True)
class FuzzProgram:
    """One generated program: its type, the maps ``map[fd:N]`` names, and the assembly."""

    seed: int
    prog_type: BpfProgType
    maps: tuple[MapInfo, ...]
    map_names: tuple[str, ...]
    asm: str
    fragments: tuple[str, ...]
    mutations: tuple[str, ...]


class _Builder:
    """Accumulates one program's lines, labels, maps and stack areas."""

    def __init__(self, rng: random.Random, profile: ProgProfile, mutation_rate: float) -> None:
        self.rng = rng
        self.profile = profile
        self.mutation_rate = mutation_rate
        self.lines: list[str] = []
        self.subprogs: list[list[str]] = []
        self.maps: list[str] = []
        self.labels = 0
        self.stack_top = 0  # bytes handed out below r10
        self.mutations: list[str] = []
        self.pending_end: list[str] = []  # end labels of pointers made by :meth:`pointer`

    # -- plumbing --------------------------------------------------------------------------
    def emit(self, *lines: str) -> None:
        self.lines.extend(lines)

    def label(self, stem: str) -> str:
        self.labels += 1
        return f"{stem}{self.labels}"

    def place(self, label: str) -> None:
        self.lines.append(f"{label}:")

    def map_index(self, shape: str) -> int:
        if shape not in self.maps:
            self.maps.append(shape)
        return self.maps.index(shape)

    def stack(self, size: int) -> int:
        """A fresh 8-aligned stack area of ``size`` bytes; returns its (negative) offset from r10."""
        self.stack_top += (size + 7) // 8 * 8
        if self.stack_top > 480:  # keep well inside 512: fragments reuse the top when it runs out
            self.stack_top = (size + 7) // 8 * 8
        return -self.stack_top

    def mutate(self, *choices: str) -> str | None:
        """One of ``choices`` (a mutation to apply) with the builder's rate, else None."""
        if choices and self.rng.random() < self.mutation_rate:
            choice = self.rng.choice(choices)
            self.mutations.append(choice)
            return choice
        return None

    def const(self) -> int:
        return self.rng.choice(EDGE_CONSTS) if self.rng.random() < 0.6 else self.rng.randint(-300, 300)

    # -- sources of values -----------------------------------------------------------------
    def unknown_scalar(self, reg: str) -> None:
        """``reg`` = a value the verifier cannot know (context field, prandom or a map value)."""
        kind = self.rng.choice(("ctx", "ctx", "prandom", "ktime"))
        if kind == "ctx":
            offset, size = self.rng.choice(self.profile.scalar_fields)
            self.emit(f"{reg} = *({SIZES[size]} *)(r6 + {offset})")
        else:
            self.emit(f"call {PRANDOM if kind == 'prandom' else KTIME}")
            if reg != "r0":
                self.emit(f"{reg} = r0")

    def bounded_scalar(self, reg: str, limit: int) -> None:
        """``reg`` = an unknown value in [0, limit) by a mask or a branch (one way or another)."""
        self.unknown_scalar(reg)
        shape = self.rng.choice(("and", "and", "branch", "branch32", "mod"))
        mask = 1
        while mask * 2 <= limit:
            mask *= 2
        off_by_one = self.mutate("bound-off-by-one", "bound-signed", "bound-missing")
        if off_by_one == "bound-missing":
            return
        if shape == "and" or (shape == "mod" and limit & (limit - 1) == 0):
            bound = mask * 2 - 1 if off_by_one == "bound-off-by-one" else mask - 1
            self.emit(f"{reg} &= {bound}")
        elif shape == "mod":
            self.emit(f"{reg} %= {limit + 1 if off_by_one == 'bound-off-by-one' else limit}")
        else:
            out = self.label("Lb")
            ok = self.label("Lk")
            reg32 = "w" + reg[1:] if shape == "branch32" else reg
            cond = "s>=" if off_by_one == "bound-signed" else ">="
            limit_text = limit + 1 if off_by_one == "bound-off-by-one" else limit
            self.emit(f"if {reg32} {cond} {limit_text} goto {out}", f"goto {ok}")
            self.place(out)
            self.emit(f"{reg} = 0")
            self.place(ok)

    def pointer(self, reg: str) -> str:
        """``reg`` = a pointer of a random kind (checked where it needs to be); returns the kind."""
        kinds = ["ctx", "stack", "map_value"]
        if self.profile.packet is not None:
            kinds.append("packet")
        kind = self.rng.choice(kinds)
        if kind == "ctx":
            self.emit(f"{reg} = r6")
        elif kind == "stack":
            offset = self.stack(16)
            self.emit(f"{reg} = r10", f"{reg} += {offset}")
        elif kind == "map_value":
            end = self.lookup("array", null_check=True)
            self.emit(f"{reg} = r0")
            self.pending_end.append(end)
        else:
            end = self.packet_pointers("r2", "r3", 16)
            self.emit(f"{reg} = r2")
            self.pending_end.append(end)
        return kind

    def lookup(self, shape: str, *, null_check: bool) -> str:
        """A map lookup with key 0 from the stack; r0 = the value (checked unless told otherwise).
        Returns the label to place at the end of the fragment (where the null path goes)."""
        index = self.map_index(shape)
        key_size = MAP_SHAPES[shape].key_size
        key = self.stack(key_size)
        key_mutation = self.mutate("key-uninit", "key-partial", "key-scalar") if null_check else None
        if key_mutation != "key-uninit":
            width = 4 if key_mutation == "key-partial" and key_size == 8 else key_size
            if key_mutation == "key-partial" and key_size == 4:
                width = 2
            self.emit("r1 = 0", f"*({SIZES[width]} *)(r10 {key:+d}) = r1")
        self.emit(f"r1 = map[fd:{index}]")
        self.emit("r2 = 0" if key_mutation == "key-scalar" else "r2 = r10", *(() if key_mutation == "key-scalar" else
                                                                              (f"r2 += {key}",)))
        self.emit(f"call {MAP_LOOKUP}")
        end = self.label("Lend")
        if null_check:
            shape_choice = self.rng.choice(("eq", "eq", "ne", "copy"))
            if shape_choice == "eq":
                self.emit(f"if r0 == 0 goto {end}")
            elif shape_choice == "ne":
                ok = self.label("Lnn")
                self.emit(f"if r0 != 0 goto {ok}", f"goto {end}")
                self.place(ok)
            else:
                self.emit("r9 = r0", f"if r9 == 0 goto {end}")
        return end

    def packet_pointers(self, data: str, end_reg: str, length: int) -> str:
        """``data`` = the packet start, checked to have ``length`` bytes against ``end_reg`` =
        data_end, in one of the comparison shapes; returns the end label the short path goes to."""
        layout = self.profile.packet
        if layout is None:
            raise ValueError("no packet in this program type")
        end = self.label("Lpe")
        self.emit(f"{data} = *(u32 *)(r6 + {layout.data})", f"{end_reg} = *(u32 *)(r6 + {layout.data_end})")
        mutation = self.mutate("pkt-short-check", "pkt-jmp32", "pkt-wrong-side", "pkt-no-check")
        if mutation == "pkt-no-check":
            return end
        checked = length - 1 if mutation == "pkt-short-check" else length
        self.emit("r4 = " + data, f"r4 += {checked}")
        shape = self.rng.choice(("gt", "lt-rev", "le-ok", "ge-rev-ok", "ge", "lt-ok"))
        left = "w4" if mutation == "pkt-jmp32" else "r4"
        right = "w" + end_reg[1:] if mutation == "pkt-jmp32" else end_reg
        if mutation == "pkt-wrong-side":
            self.emit(f"if {left} <= {right} goto {end}")
            return end
        if shape == "gt":
            self.emit(f"if {left} > {right} goto {end}")
        elif shape == "lt-rev":
            self.emit(f"if {right} < {left} goto {end}")
        elif shape == "ge":
            # data + len >= data_end leaves len - 1 bytes: check one byte more
            self.emit(f"{left.replace('w', 'r')} += 1" if mutation != "pkt-jmp32" else "w4 += 1",
                      f"if {left} >= {right} goto {end}")
        else:
            ok = self.label("Lpok")
            if shape == "le-ok":
                self.emit(f"if {left} <= {right} goto {ok}")
            elif shape == "ge-rev-ok":
                self.emit(f"if {right} >= {left} goto {ok}")
            else:  # data + len < data_end: len + 1 bytes are known; check one byte less
                self.emit("r4 += -1" if mutation != "pkt-jmp32" else "w4 += -1", f"if {left} < {right} goto {ok}")
            self.emit(f"goto {end}")
            self.place(ok)
        return end


# -- fragments ---------------------------------------------------------------------------------
Fragment = Callable[[_Builder], None]


def frag_scalar(b: _Builder) -> None:
    """Bounds arithmetic (32/64-bit, signed/unsigned) and branches, ending in a use that needs bounds."""
    b.unknown_scalar("r7")
    for _ in range(b.rng.randint(1, 4)):
        op = b.rng.choice(ALU_OPS)
        width = b.rng.choice(("r", "r", "w"))
        value = b.const()
        if op in ("<<=", ">>=", "s>>="):
            value = b.rng.randint(0, 31 if width == "w" else 63)
        if op in ("/=", "%=") and value == 0:
            value = 3
        b.emit(f"{width}7 {op} {value}")
    if b.rng.random() < 0.3:
        b.emit(b.rng.choice(("r7 = -r7", "w7 = -w7", "r7 = (s8)r7", "r7 = (s16)r7", "r7 = (s32)r7",
                             "w7 = (s8)w7", "r7 = be16 r7", "r7 = le32 r7")))
    skip = b.label("Ls")
    for _ in range(b.rng.randint(1, 3)):
        cond = b.rng.choice(CONDS)
        width = b.rng.choice(("r", "w"))
        target = b.const()
        if b.rng.random() < 0.3:
            b.unknown_scalar("r8")
            b.emit(f"r8 &= {b.rng.choice((7, 63, 255, 0xFFFF))}")
            b.emit(f"if {width}7 {cond} {width}8 goto {skip}")
        else:
            b.emit(f"if {width}7 {cond} {target} goto {skip}")
    use = b.rng.choice(("stack", "map", "shift", "div", "helper-size"))
    if use == "stack":
        area = b.stack(64)
        b.emit("r1 = r10", f"r1 += {area}", "r1 += r7", f"r0 = *(u8 *)(r1 + {b.rng.choice((0, 0, 7, 63))})")
    elif use == "map":
        end = b.lookup("array", null_check=True)
        b.emit("r0 += r7", f"r0 = *(u8 *)(r0 + {b.rng.choice((0, 0, 1, 47))})")
        b.place(end)
    elif use == "shift":
        b.emit("r0 = 1", b.rng.choice(("r0 <<= r7", "w0 <<= w7", "r0 s>>= r7")))
    elif use == "div":
        b.emit("r0 = 1000", b.rng.choice(("r0 /= r7", "w0 %= w7", "r0 s/= r7")))
    else:
        area = b.stack(32)
        b.emit("r1 = r10", f"r1 += {area}", "r2 = r7")
        if b.profile.tracing:
            b.emit("r3 = 0", f"call {PROBE_READ_KERNEL}")
        elif b.profile.skb:
            b.emit("r3 = r1", "r2 = 0", "r4 = r7", "r1 = r6", f"call {SKB_LOAD_BYTES}")
        else:
            b.emit("r3 = 0", "r4 = 0", "r5 = 0", f"call {CSUM_DIFF}")
    b.place(skip)


def frag_spill(b: _Builder) -> None:
    """A pointer or scalar spilled to the stack, maybe partly overwritten, filled back and used."""
    b.pending_end = []
    slot = b.stack(16)
    kind = b.rng.choice(("pointer", "pointer", "scalar", "scalar32"))
    if kind == "pointer":
        ptr_kind = b.pointer("r7")
        b.emit(f"*(u64 *)(r10 {slot:+d}) = r7")
        mutation = b.mutate("spill-partial-overwrite", "spill-partial-fill", "spill-misaligned-fill",
                            "spill-overwrite-scalar")
        if mutation == "spill-partial-overwrite":
            b.emit(f"*({b.rng.choice(('u8', 'u16', 'u32'))} *)(r10 {slot + b.rng.choice((0, 4)):+d}) = r1")
        elif mutation == "spill-overwrite-scalar":
            b.emit("r1 = 8", f"*(u64 *)(r10 {slot:+d}) = r1")
        if mutation == "spill-partial-fill":
            b.emit(f"r8 = *(u32 *)(r10 {slot:+d})")
        elif mutation == "spill-misaligned-fill":
            b.emit(f"r8 = *(u64 *)(r10 {slot + 4:+d})")
        else:
            b.emit(f"r8 = *(u64 *)(r10 {slot:+d})")
        if ptr_kind == "ctx":
            offset, size = b.rng.choice(b.profile.scalar_fields)
            b.emit(f"r0 = *({SIZES[size]} *)(r8 + {offset})")
        elif ptr_kind == "stack":
            b.emit("r1 = 5", "*(u64 *)(r8 + 0) = r1", "r0 = *(u64 *)(r8 + 8)")
        else:
            b.emit("r0 = *(u32 *)(r8 + 4)")
    else:
        b.bounded_scalar("r7", 16)
        if kind == "scalar32":
            b.emit(f"*(u32 *)(r10 {slot:+d}) = r7")
        else:
            b.emit(f"*(u64 *)(r10 {slot:+d}) = r7")
        mutation = b.mutate("fill-wide", "fill-other-half", "spill-partial-overwrite")
        if mutation == "spill-partial-overwrite":
            b.emit("r1 = 255", f"*(u8 *)(r10 {slot:+d}) = r1")
        width = "u64" if mutation == "fill-wide" else "u32" if kind == "scalar32" else "u64"
        offset = slot + 4 if mutation == "fill-other-half" else slot
        b.emit(f"r8 = *({width} *)(r10 {offset:+d})")
        area = b.stack(16)
        b.emit("r1 = r10", f"r1 += {area}", "r1 += r8", "r0 = *(u8 *)(r1 + 0)")
    for end in b.pending_end:
        b.place(end)


def frag_map(b: _Builder) -> None:
    """A map lookup, its null check, and accesses at constant and variable offsets into the value."""
    shape = b.rng.choice(("hash", "hash_big", "array", "percpu", "rdonly"))
    info = MAP_SHAPES[shape]
    mutation = b.mutate("no-null-check", "access-past-end", "write-rdonly", "var-off-unbounded", "neg-offset")
    end = b.lookup(shape, null_check=mutation != "no-null-check")
    size = b.rng.choice((1, 2, 4, 8))
    last = info.value_size - size
    offset = last + size if mutation == "access-past-end" else -size if mutation == "neg-offset" else \
        b.rng.randint(0, last) // size * size
    b.emit("r7 = r0")
    action = b.rng.choice(("read", "write", "atomic", "var"))
    if shape == "rdonly" and action in ("write", "atomic") and mutation != "write-rdonly":
        action = "read"
    if mutation == "write-rdonly":
        action = "write"
    if action == "read":
        b.emit(f"r0 = *({SIZES[size]} *)(r7 {offset:+d})")
    elif action == "write":
        b.emit(f"*({SIZES[size]} *)(r7 {offset:+d}) = {b.const() if size < 8 else 1}")
    elif action == "atomic":
        size = b.rng.choice((4, 8))
        offset = min(offset, info.value_size - size) // size * size if mutation != "access-past-end" else offset
        b.emit("r1 = 1", f"lock *({SIZES[size]} *)(r7 {offset:+d}) += {'r1' if size == 8 else 'w1'}")
    else:
        if mutation == "var-off-unbounded":
            b.unknown_scalar("r8")
        else:
            b.bounded_scalar("r8", info.value_size - size + 1)
        b.emit("r7 += r8", f"r0 = *({SIZES[size]} *)(r7 + 0)")
    if b.rng.random() < 0.3:
        # update the entry from a stack copy of the value
        value = b.stack(info.value_size)
        key = b.stack(info.key_size)
        b.emit("r1 = 0", f"*(u32 *)(r10 {key:+d}) = r1")
        fill = info.value_size if b.mutate("value-partial-init") is None else info.value_size - 8
        for pos in range(0, fill, 8):
            b.emit(f"*(u64 *)(r10 {value + pos:+d}) = r1")
        b.emit(f"r1 = map[fd:{b.map_index(shape)}]", "r2 = r10", f"r2 += {key}", "r3 = r10", f"r3 += {value}",
               "r4 = 0", f"call {MAP_UPDATE}")
    b.place(end)


def frag_packet(b: _Builder) -> None:
    """Packet accesses after a data_end check: constant offsets, variable offsets, data_meta."""
    if b.profile.packet is None:
        frag_ctx(b)
        return
    length = b.rng.choice((1, 2, 4, 8, 14, 20, 34))
    variant = b.rng.choice(("const", "const", "var", "meta", "subtract"))
    if variant == "meta" and b.profile.packet.meta is not None:
        end = b.label("Lme")
        b.emit(f"r2 = *(u32 *)(r6 + {b.profile.packet.meta})", f"r3 = *(u32 *)(r6 + {b.profile.packet.data})",
               "r4 = r2", f"r4 += {length}")
        mutation = b.mutate("meta-no-check", "meta-off-by-one")
        if mutation != "meta-no-check":
            b.emit(f"if r4 > r3 goto {end}")
        size = min(length, 4)
        offset = length - size + (1 if mutation == "meta-off-by-one" else 0)
        b.emit(f"r0 = *({SIZES[size]} *)(r2 + {offset})")
        b.place(end)
        return
    if variant == "var":
        b.bounded_scalar("r8", 32)
        end0 = b.label("Lv")
        b.emit(f"r2 = *(u32 *)(r6 + {b.profile.packet.data})", f"r3 = *(u32 *)(r6 + {b.profile.packet.data_end})",
               "r2 += r8", "r4 = r2", f"r4 += {length}")
        mutation = b.mutate("var-pkt-no-recheck", "var-pkt-off-by-one")
        if mutation != "var-pkt-no-recheck":
            b.emit(f"if r4 > r3 goto {end0}")
        size = max(s for s in (1, 2, 4, 8) if s <= length)
        offset = length - size + (1 if mutation == "var-pkt-off-by-one" else 0)
        b.emit(f"r0 = *({SIZES[size]} *)(r2 + {offset})")
        b.place(end0)
        return
    end = b.packet_pointers("r2", "r3", length)
    size = max(s for s in (1, 2, 4, 8) if s <= length)
    mutation = b.mutate("pkt-access-past", "pkt-write-end", "pkt-neg-offset")
    offset = b.rng.randint(0, length - size)
    if mutation == "pkt-access-past":
        offset = length - size + 1
    elif mutation == "pkt-neg-offset":
        offset = -1
    if variant == "subtract":
        b.emit("r5 = r3", "r5 -= r2", "r0 = r5")  # packet - packet is a scalar
    if mutation == "pkt-write-end":
        b.emit("*(u8 *)(r3 + 0) = 1")
    elif b.rng.random() < 0.4:
        b.emit(f"*({SIZES[size]} *)(r2 {offset:+d}) = 0")
    else:
        b.emit(f"r0 = *({SIZES[size]} *)(r2 {offset:+d})")
    b.place(end)


def frag_ctx(b: _Builder) -> None:
    """Context reads at allowed offsets and sizes, and sometimes not."""
    offset, size = b.rng.choice(b.profile.scalar_fields)
    mutation = b.mutate("ctx-bad-size", "ctx-bad-offset", "ctx-write")
    if mutation == "ctx-bad-size":
        size = 8 if size == 4 else 4
    elif mutation == "ctx-bad-offset":
        offset += b.rng.choice((1, 2, 3))
    if mutation == "ctx-write":
        b.emit(f"*({SIZES[size]} *)(r6 + {offset}) = r0" if b.rng.random() < 0.5 else
               f"*({SIZES[size]} *)(r6 + {offset}) = 0")
    else:
        b.emit(f"r0 = *({SIZES[size]} *)(r6 + {offset})")


def frag_ptr_arith(b: _Builder) -> None:
    """Pointer arithmetic on each pointer kind: constant, bounded and unbounded offsets, the
    operations the kernel forbids on pointers, pointer minus pointer."""
    b.pending_end = []
    b.pointer("r7")
    op = b.rng.choice(("add-const", "add-var", "add-var", "sub-ptr", "forbidden", "map-ptr", "scalar-plus-ptr"))
    if op == "add-const":
        delta = b.rng.choice((1, 4, 8, -8, 16))
        b.emit(f"r7 += {delta}")
        b.emit("r0 = *(u8 *)(r7 + 0)")
    elif op == "add-var":
        b.bounded_scalar("r8", 8)
        b.emit("r7 += r8", "r0 = *(u8 *)(r7 + 0)")
    elif op == "scalar-plus-ptr":
        b.emit("r8 = 4", "r8 += r7", "r0 = *(u8 *)(r8 + 0)")
    elif op == "sub-ptr":
        b.emit("r8 = r7", "r8 += 4", "r8 -= r7", "r0 = r8")
    elif op == "map-ptr":
        b.emit(f"r8 = map[fd:{b.map_index('array')}]", f"r8 += {b.rng.choice((0, 8))}", "r0 = r8")
    else:
        b.emit(b.rng.choice(("r7 &= 7", "w7 += 1", "r7 <<= 1", "r7 = -r7", "r7 *= 2", "r7 |= 1", "r7 += r6",
                             "r7 ^= r7", "r7 s>>= 1")))
        b.emit("r0 = 0")
    for end in b.pending_end:
        b.place(end)


def frag_loop(b: _Builder) -> None:
    """A bounded loop with a counter, indexing the stack (or an infinite one)."""
    count = b.rng.choice((2, 3, 5, 8, 16))
    area = b.stack(count * 8)
    step = b.rng.choice((1, 1, 2))
    cond = b.rng.choice(("<", "!=", "s<", "w<", "w!="))
    mutation = b.mutate("loop-no-step", "loop-overrun", "loop-unknown-start")
    head = b.label("Lloop")
    if mutation == "loop-unknown-start":
        b.unknown_scalar("r7")
        b.emit("r7 &= 3")
    else:
        b.emit("r7 = 0")
    b.emit("r8 = 0")
    b.place(head)
    b.emit("r1 = r7", "r1 <<= 3" if step == 1 else "r1 <<= 2", "r2 = r10", f"r2 += {area}", "r2 += r1",
           "*(u64 *)(r2 + 0) = r8", "r8 += r7")
    if mutation != "loop-no-step":
        b.emit(f"{'w' if cond.startswith('w') else 'r'}7 += {step}")
    limit = count * (2 if mutation == "loop-overrun" else 1)
    if cond in ("!=", "w!="):
        limit = limit // step * step
    reg = "w7" if cond.startswith("w") else "r7"
    b.emit(f"if {reg} {cond.removeprefix('w')} {limit} goto {head}")
    b.emit("r0 = r8")


def frag_call(b: _Builder) -> None:
    """A bpf-to-bpf call passing a stack pointer and a bounded scalar; the callee writes through it."""
    name = b.label("fn")
    buffer = b.stack(16)
    mutation = b.mutate("callee-no-r0", "caller-reads-r1", "callee-returns-stack", "callee-unbounded",
                        "callee-oob", "callee-uninit-read")
    if mutation != "callee-uninit-read":
        b.emit("r1 = 0", f"*(u64 *)(r10 {buffer:+d}) = r1", f"*(u64 *)(r10 {buffer + 8:+d}) = r1")
    b.emit("r1 = r10", f"r1 += {buffer}")
    if mutation == "callee-unbounded":
        b.unknown_scalar("r2")
    else:
        b.bounded_scalar("r2", 8)
    b.emit(f"call {name}")
    if mutation == "caller-reads-r1":
        b.emit("r0 = r1")
    b.emit("r0 &= 7", "r1 = r10", f"r1 += {buffer}", "r1 += r0", "r0 = *(u8 *)(r1 + 0)")
    body = [f"{name}:", "r3 = r1", "r3 += r2", f"r4 = *(u8 *)(r3 + {8 if mutation == 'callee-oob' else 0})",
            "r4 += 1", "*(u8 *)(r3 + 0) = r4", "r5 = *(u64 *)(r1 + 8)"]
    if mutation == "callee-uninit-read":
        body = [f"{name}:", "r0 = *(u64 *)(r10 - 8)", "r5 = *(u64 *)(r1 + 0)"]
    if b.rng.random() < 0.3:
        body += ["r6 = 1", "*(u64 *)(r10 - 8) = r6", "r5 = *(u64 *)(r10 - 8)"]
    if mutation == "callee-returns-stack":
        body += ["r0 = r10", "r0 += -8"]
    elif mutation != "callee-no-r0":
        body += ["r0 = r5", "r0 &= 15"]
    body.append("exit")
    b.subprogs.append(body)


def frag_ringbuf(b: _Builder) -> None:
    """bpf_ringbuf_reserve, a null check, writes, and submit or discard on every path (or not)."""
    rb = b.map_index("ringbuf")
    size = b.rng.choice((8, 16, 32))
    mutation = b.mutate("rb-no-null-check", "rb-leak", "rb-leak-one-path", "rb-double-submit", "rb-use-after",
                        "rb-oob", "rb-var-size", "rb-modified-release")
    end = b.label("Lrb")
    b.emit(f"r1 = map[fd:{rb}]")
    if mutation == "rb-var-size":
        b.bounded_scalar("r2", 32)
        b.emit("r2 += 8", f"r1 = map[fd:{rb}]")
    else:
        b.emit(f"r2 = {size}")
    b.emit("r3 = 0", f"call {RINGBUF_RESERVE}")
    if mutation != "rb-no-null-check":
        b.emit(f"if r0 == 0 goto {end}")
    b.emit("r7 = r0", f"*(u64 *)(r7 + {size if mutation == 'rb-oob' else size - 8}) = 0")
    if mutation == "rb-leak":
        b.emit("r0 = 0")
        b.place(end)
        return
    discard = b.label("Ldis")
    b.unknown_scalar("r8")
    b.emit(f"if r8 > 100 goto {discard}")
    b.emit("r1 = r7")
    if mutation == "rb-modified-release":
        b.emit("r1 += 8")
    b.emit("r2 = 0", f"call {RINGBUF_SUBMIT}")
    if mutation == "rb-double-submit":
        b.emit("r1 = r7", "r2 = 0", f"call {RINGBUF_SUBMIT}")
    if mutation == "rb-use-after":
        b.emit("r0 = *(u64 *)(r7 + 0)")
    b.emit(f"goto {end}")
    b.place(discard)
    if mutation != "rb-leak-one-path":
        b.emit("r1 = r7", "r2 = 0", f"call {RINGBUF_DISCARD}")
    b.place(end)


def frag_helper(b: _Builder) -> None:
    """A helper call with arguments of its prototype's kinds, sometimes of the wrong kind or size."""
    options = ["printk", "update", "delete", "ringbuf_output", "perf_output", "tail_call", "plain"]
    if b.profile.tracing:
        options += ["probe_read", "comm"]
    if b.profile.skb:
        options += ["load_bytes"]
    if b.profile.prog_type == BpfProgType.SCHED_CLS:
        options += ["store_bytes", "csum"]
    if b.profile.prog_type == BpfProgType.XDP:
        options += ["adjust_head", "csum"]
    which = b.rng.choice(options)
    buf = b.stack(32)
    mutation = b.mutate("buf-uninit", "size-zero", "size-too-big", "arg-scalar-ptr", "arg-ctx-for-map",
                        "size-unbounded")
    init = 32 if mutation != "buf-uninit" else 0
    for pos in range(0, init, 8):
        b.emit("r1 = 0", f"*(u64 *)(r10 {buf + pos:+d}) = r1")
    size = {"size-zero": 0, "size-too-big": 40}.get(mutation or "", b.rng.choice((1, 4, 8, 16, 32)))

    def size_into(reg: str) -> None:
        if mutation == "size-unbounded":
            b.unknown_scalar(reg)
        else:
            b.emit(f"{reg} = {size}")

    def buf_into(reg: str) -> None:
        if mutation == "arg-scalar-ptr":
            b.emit(f"{reg} = 0")
        else:
            b.emit(f"{reg} = r10", f"{reg} += {buf}")

    if which == "printk":
        size_into("r2")
        buf_into("r1")
        b.emit("r3 = 7", f"call {TRACE_PRINTK}")
    elif which in ("update", "delete"):
        shape = b.rng.choice(("hash", "array"))
        if mutation == "arg-ctx-for-map":
            b.emit("r1 = r6")
        else:
            b.emit(f"r1 = map[fd:{b.map_index(shape)}]")
        buf_into("r2")
        if which == "update":
            b.emit("r3 = r10", f"r3 += {buf}", "r4 = 0", f"call {MAP_UPDATE}")
        else:
            b.emit(f"call {MAP_DELETE}")
    elif which == "ringbuf_output":
        b.emit(f"r1 = map[fd:{b.map_index('ringbuf')}]")
        size_into("r3")
        buf_into("r2")
        b.emit("r4 = 0", f"call {RINGBUF_OUTPUT}")
    elif which == "perf_output":
        b.emit("r1 = r6", f"r2 = map[fd:{b.map_index('perf')}]")
        if mutation == "arg-ctx-for-map":
            b.emit("r2 = r6")
        b.emit("r3 = 0xffffffff ll")
        size_into("r5")
        buf_into("r4")
        b.emit(f"call {PERF_OUTPUT}")
    elif which == "tail_call":
        b.emit("r1 = r6", f"r2 = map[fd:{b.map_index('prog_array')}]")
        if mutation == "arg-ctx-for-map":
            b.emit(f"r2 = map[fd:{b.map_index('array')}]")
        b.emit(f"r3 = {b.rng.choice((0, 1, 3, 7))}", f"call {TAIL_CALL}")
    elif which == "plain":
        b.emit(f"call {b.rng.choice((KTIME, PRANDOM, SMP_ID))}")
        if mutation is not None:
            b.emit("r0 = r1")  # r1 is clobbered by the call
    elif which == "probe_read":
        buf_into("r1")
        size_into("r2")
        b.unknown_scalar("r3")
        b.emit("r1 = r10", f"r1 += {buf}", f"call {PROBE_READ_KERNEL}")
    elif which == "comm":
        buf_into("r1")
        size_into("r2")
        b.emit(f"call {CURRENT_COMM}")
    elif which in ("load_bytes", "store_bytes"):
        b.emit("r1 = r6", "r2 = 0")
        buf_into("r3")
        size_into("r4")
        if which == "store_bytes":
            b.emit("r5 = 0")
        b.emit(f"call {SKB_LOAD_BYTES if which == 'load_bytes' else SKB_STORE_BYTES}")
    elif which == "csum":
        buf_into("r1")
        b.emit(f"r2 = {size // 4 * 4}", "r3 = r10", f"r3 += {buf}", "r4 = 4", "r5 = 0", f"call {CSUM_DIFF}")
    elif which == "adjust_head":
        end = b.packet_pointers("r7", "r8", 8)
        b.emit("r1 = r6", "r2 = 4", f"call {XDP_ADJUST_HEAD}")
        if mutation is not None:
            b.emit("r0 = *(u8 *)(r7 + 0)")  # packet pointers are invalid after adjust_head
        b.place(end)
    b.emit("r0 = 0")


FRAGMENTS: dict[str, Fragment] = {
    "scalar": frag_scalar,
    "spill": frag_spill,
    "map": frag_map,
    "packet": frag_packet,
    "ctx": frag_ctx,
    "ptr_arith": frag_ptr_arith,
    "loop": frag_loop,
    "call": frag_call,
    "ringbuf": frag_ringbuf,
    "helper": frag_helper,
}
WEIGHTS = {"scalar": 4, "spill": 3, "map": 3, "packet": 3, "ctx": 1, "ptr_arith": 3, "loop": 2, "call": 2,
           "ringbuf": 2, "helper": 3}


def generate(seed: int, *, mutation_rate: float = 0.12, prog_type: BpfProgType | None = None) -> FuzzProgram:
    """The program for ``seed``: 1-4 fragments of one program type, some of them mutated."""
    rng = random.Random(seed)
    chosen = prog_type if prog_type is not None else rng.choice(PROG_TYPES)
    profile = PROFILES[chosen]
    b = _Builder(rng, profile, mutation_rate)
    b.emit("r6 = r1")
    names = list(FRAGMENTS)
    picked = rng.choices(names, weights=[WEIGHTS[n] for n in names], k=rng.randint(1, 4))
    for name in picked:
        FRAGMENTS[name](b)
    ending = b.mutate("ret-uninit", "ret-pointer")
    if ending == "ret-pointer":
        b.emit("r0 = r10")
    elif ending is None:
        b.emit(f"r0 = {profile.ret}")
    b.emit("exit")
    for body in b.subprogs:
        b.lines.extend(body)
    asm = "\n".join(b.lines) + "\n"
    return FuzzProgram(seed, chosen, tuple(MAP_SHAPES[name] for name in b.maps), tuple(b.maps), asm,
                       tuple(picked), tuple(b.mutations))
