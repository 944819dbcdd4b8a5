"""The verdict fuzzer's fragments: each a small realistic idiom, sometimes with a typical mistake.

See :mod:`.fuzz_gen` for how they are put together into programs.
"""

from __future__ import annotations

from collections.abc import Callable

from pybpf.platform import BpfProgType

from .fuzz_builder import (
    ALU_OPS,
    CONDS,
    CSUM_DIFF,
    CURRENT_COMM,
    KTIME,
    MAP_DELETE,
    MAP_SHAPES,
    MAP_UPDATE,
    PERF_OUTPUT,
    PRANDOM,
    PROBE_READ_KERNEL,
    RINGBUF_DISCARD,
    RINGBUF_OUTPUT,
    RINGBUF_RESERVE,
    RINGBUF_SUBMIT,
    SIZES,
    SKB_LOAD_BYTES,
    SKB_STORE_BYTES,
    SMP_ID,
    TAIL_CALL,
    TRACE_PRINTK,
    XDP_ADJUST_HEAD,
    Builder,
)

# -- fragments ---------------------------------------------------------------------------------
Fragment = Callable[[Builder], None]


def frag_scalar(b: Builder) -> None:
    """Bounds arithmetic (32/64-bit, signed/unsigned) and branches, ending in a use that needs bounds."""
    b.unknown_scalar("r7")
    for _ in range(b.rng.randint(1, 4)):
        op = b.rng.choice(ALU_OPS)
        width = b.rng.choice(("r", "r", "w"))
        value = b.const()
        if op in ("<<=", ">>=", "s>>="):
            value = b.rng.randint(0, 31 if width == "w" else 63)
            if b.mutate("shift-out-of-range") is not None:
                value = b.rng.choice((32, 46, 64, -1))
        if op in ("/=", "%=") and value == 0:
            value = 0 if b.mutate("div-by-zero-imm") is not None else 3
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


def frag_spill(b: Builder) -> None:
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


def frag_map(b: Builder) -> None:
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


def frag_packet(b: Builder) -> None:
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


def frag_ctx(b: Builder) -> None:
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


def frag_ptr_arith(b: Builder) -> None:
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


def frag_loop(b: Builder) -> None:
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


def frag_call(b: Builder) -> None:
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


def frag_ringbuf(b: Builder) -> None:
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


def frag_helper(b: Builder) -> None:
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
