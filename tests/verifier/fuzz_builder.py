"""The verdict fuzzer's program builder: program-type profiles, map shapes, and :class:`Builder`,
which accumulates one program's lines, labels, maps and stack areas and offers the idioms
fragments share (unknown and bounded scalars, pointers of each kind, map lookups, packet checks).
See :mod:`.fuzz_gen` for how programs are put together.
"""

from __future__ import annotations

import random
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
    "locked": MapInfo(BpfMapType.ARRAY, 4, 16, 2),
    "locked_hash": MapInfo(BpfMapType.HASH, 4, 24, 8),
}
# The special fields (corpus ``value-btf:`` syntax) of the shapes whose values carry BTF.
MAP_VALUE_BTF: dict[str, str] = {"locked": "bpf_spin_lock@0", "locked_hash": "bpf_spin_lock@8"}

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
    value_btf: str = ""  # the corpus' ``value-btf:`` text for maps whose values hold special fields
    func_info: bool = False  # loaded with BTF func_info (callbacks need it)
    global_funcs: str = ""  # the corpus' ``global-funcs:`` text: global functions and their arguments


class Builder:
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
        self.func_info = False  # set by fragments that need BTF func_info (callbacks)
        self.global_funcs: list[str] = []  # ``N: args`` of the global functions (corpus syntax)

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
