"""Verdict-fuzzer fragments for newer instructions and value tracking through them: atomics on
the stack and in map values (plain, fetch, xchg, cmpxchg), sign-extending loads and ``movsx``,
32-bit jumps mixed with 64-bit bounds, and packet accesses at variable offsets (a header
length read from the packet), each with the mistakes newcomers make with them.

See :mod:`.fuzz_gen` for how fragments are put together into programs.
"""

from __future__ import annotations

from .fuzz_builder import KTIME, SIZES, Builder

_ATOMIC_OPS = ("add", "or", "and", "xor", "fetch_add", "fetch_or", "fetch_and", "fetch_xor", "xchg", "cmpxchg")


def _atomic(op: str, width: int, base: str, off: int, src: str) -> str:
    """The asm of one atomic instruction on ``*(base + off)`` with register ``src`` (r-name)."""
    reg = src if width == 8 else "w" + src[1:]
    addr = f"{base} {off:+d}"
    if op in ("add", "or", "and", "xor"):
        sign = {"add": "+", "or": "|", "and": "&", "xor": "^"}[op]
        return f"lock *({SIZES[width]} *)({addr}) {sign}= {reg}"
    if op.startswith("fetch_"):
        return f"{reg} = atomic_{op}(({SIZES[width]} *)({addr}), {reg})"
    if op == "xchg":
        return f"{reg} = xchg_64({addr}, {reg})" if width == 8 else f"{reg} = xchg32_32({addr}, {reg})"
    return f"r0 = cmpxchg_64({addr}, r0, {reg})" if width == 8 else f"w0 = cmpxchg32_32({addr}, w0, {reg})"


def frag_atomic(b: Builder) -> None:
    """An atomic update of a stack slot or a map value; a fetched old value is then used as an index."""
    op = b.rng.choice(_ATOMIC_OPS)
    width = b.rng.choice((4, 8))
    mutation = b.mutate("atomic-uninit-stack", "atomic-ctx", "atomic-pkt", "atomic-ptr-src", "atomic-cmpxchg-ptr",
                        "atomic-spilled-ptr", "atomic-misaligned", "atomic-rdonly", "atomic-fetch-index",
                        "atomic-oob", "atomic-null")
    end = None
    target = "map" if mutation in ("atomic-rdonly", "atomic-oob", "atomic-null") else b.rng.choice(("stack", "map"))
    if mutation in ("atomic-ctx", "atomic-pkt"):
        target = "ctx" if mutation == "atomic-ctx" or b.profile.packet is None else "pkt"
    off = 0
    if target == "stack":
        slot = b.stack(8)
        if mutation == "atomic-spilled-ptr":
            b.emit(f"*(u64 *)(r10 {slot:+d}) = r10")
        elif mutation != "atomic-uninit-stack":
            b.emit(f"*(u64 *)(r10 {slot:+d}) = {b.rng.choice((0, 3, 0xFF))}")
        b.emit("r7 = r10")
        off = slot + (2 if mutation == "atomic-misaligned" else 0)
    elif target == "map":
        shape = "rdonly" if mutation == "atomic-rdonly" else b.rng.choice(("array", "hash"))
        end = b.lookup(shape, null_check=mutation != "atomic-null")
        b.emit("r7 = r0")
        size = 48 if shape == "array" else 16
        off = size if mutation == "atomic-oob" else b.rng.randrange(0, size - width + 1, width)
        if mutation == "atomic-misaligned":
            off += 2
    elif target == "ctx":
        b.emit("r7 = r6")
    else:
        layout = b.profile.packet
        if layout is None:
            raise ValueError("packet target without a packet")
        end = b.packet_pointers("r7", "r8", 8)
    src = "r10" if mutation == "atomic-ptr-src" else "r1"
    if src == "r1":
        b.emit(f"r1 = {b.rng.choice((1, 2, 0xF0, -1))}")
    if op == "cmpxchg":
        b.emit("r0 = r10" if mutation == "atomic-cmpxchg-ptr" else f"r0 = {b.rng.choice((0, 3))}")
    b.emit(_atomic(op, width, "r7", off, src))
    fetched = "r0" if op == "cmpxchg" else src
    if op.startswith("fetch_") or op in ("xchg", "cmpxchg"):
        if mutation != "atomic-fetch-index":
            b.emit(f"{fetched} &= 15")
        area = b.stack(16)
        b.emit("r2 = r10", f"r2 += {area}", f"r2 += {fetched}", "r0 = *(u8 *)(r2 + 0)")
    if target == "stack" and b.rng.random() < 0.5:
        b.emit(f"r0 = *({SIZES[width]} *)(r10 {off:+d})")
    if end is not None:
        b.place(end)


def frag_sign_extend(b: Builder) -> None:
    """Sign-extending loads (``*(s8 *)``...) and moves (``(s8)``...), then the value as an index:
    it needs a signed lower bound as well as an upper one."""
    width = b.rng.choice((1, 2, 4))
    kind = b.rng.choice(("stack", "map", "move", "move32", "ctx"))
    mutation = b.mutate("sx-upper-only-signed", "sx-no-lower", "sx-ctx", "sx-wide-bound", "sx-from-uninit")
    end = None
    if mutation == "sx-ctx":
        kind = "ctx"
    if kind == "stack":
        slot = b.stack(8)
        if mutation != "sx-from-uninit":
            b.unknown_scalar("r1")
            b.emit(f"*(u64 *)(r10 {slot:+d}) = r1")
        b.emit(f"r7 = *(s{width * 8} *)(r10 {slot:+d})")
    elif kind == "map":
        end = b.lookup("array", null_check=True)
        b.emit(f"r7 = *(s{width * 8} *)(r0 + {b.rng.choice((0, 8, 40))})")
    elif kind == "ctx":
        offset, size = b.rng.choice(b.profile.scalar_fields)
        b.emit(f"r7 = *(s{min(size, width) * 8} *)(r6 + {offset})")
    else:
        b.unknown_scalar("r7")
        if kind == "move32" and width < 4:
            b.emit(f"w7 = (s{width * 8})w7")
        else:
            b.emit(f"r7 = (s{width * 8})r7")
    skip = b.label("Lsx")
    limit = 100 if mutation == "sx-wide-bound" else 15
    if mutation == "sx-upper-only-signed":
        b.emit(f"if r7 s> {limit} goto {skip}")
    elif mutation == "sx-no-lower":
        b.emit(f"if r7 s> {limit} goto {skip}", "r7 += 0")
    else:
        b.emit(f"if r7 s> {limit} goto {skip}", f"if r7 s< 0 goto {skip}")
    area = b.stack(16)
    b.emit("r1 = r10", f"r1 += {area}", "r1 += r7", "r0 = *(u8 *)(r1 + 0)")
    b.place(skip)
    if end is not None:
        b.place(end)


def frag_jmp32_mixed(b: Builder) -> None:
    """Bounds learnt by 32-bit jumps and used on 64 bits: a ``w`` check says nothing about the
    upper half unless the value was zero-extended (a ``w`` move, a 32-bit load, ``&= 0xffffffff``)."""
    mutation = b.mutate("j32-upper-unknown", "j32-signed-only", "j32-then-64-add", "j32-wrong-width")
    if mutation == "j32-upper-unknown":
        b.emit(f"call {KTIME}", "r7 = r0")  # all 64 bits unknown
    else:
        b.unknown_scalar("r7")
        if b.rng.random() < 0.5:
            b.emit(b.rng.choice(("w7 = w7", "r7 &= 0xffffffff", "r7 <<= 32", "r7 >>= 32")))
    skip = b.label("Lj")
    shape = b.rng.choice(("u", "s", "range"))
    if mutation == "j32-signed-only":
        b.emit(f"if w7 s> 31 goto {skip}")
    elif shape == "u":
        b.emit(f"if w7 > 31 goto {skip}")
    elif shape == "s":
        b.emit(f"if w7 s> 31 goto {skip}", f"if w7 s< 0 goto {skip}")
    else:
        b.emit(f"if w7 < 4 goto {skip}", f"if w7 >= 36 goto {skip}", "w7 += -4")
    if b.rng.random() < 0.4 and mutation != "j32-wrong-width":
        b.emit(f"if r7 s> {b.rng.choice((31, 0x7FFFFFFF, -1))} goto {skip}")
    if mutation == "j32-then-64-add":
        b.emit("r7 += -1")
    elif mutation == "j32-wrong-width":
        b.emit("r8 = r7", "r8 >>= 1", f"if w8 > 15 goto {skip}", "r7 = r8")
    area = b.stack(32)
    b.emit("r1 = r10", f"r1 += {area}", "r1 += r7", "r0 = *(u8 *)(r1 + 0)")
    b.place(skip)


def frag_packet_varoff(b: Builder) -> None:
    """A packet access past a variable-length header: the length comes from the packet (IPv4
    ``ihl * 4``), the pointer moves by it, and the access must be checked again after the move."""
    layout = b.profile.packet
    if layout is None:
        frag_jmp32_mixed(b)
        return
    end = b.label("Lpv")
    mutation = b.mutate("pv-no-recheck", "pv-check-before-add", "pv-signed-len", "pv-unmasked-wide", "pv-short",
                        "pv-add-to-end", "pv-32bit-add")
    b.emit(f"r2 = *(u32 *)(r6 + {layout.data})", f"r3 = *(u32 *)(r6 + {layout.data_end})", "r4 = r2", "r4 += 15",
           f"if r4 > r3 goto {end}")
    if mutation == "pv-signed-len":
        b.emit("r7 = *(s8 *)(r2 + 14)")
    elif mutation == "pv-unmasked-wide":
        b.emit(f"r7 = *(u32 *)(r6 + {b.rng.choice(b.profile.scalar_fields)[0]})")
    else:
        b.emit("r7 = *(u8 *)(r2 + 14)", "r7 &= 15", "r7 <<= 2")
    length = b.rng.choice((4, 8, 20))
    if mutation == "pv-check-before-add":
        b.emit("r4 = r2", f"r4 += {14 + length}", f"if r4 > r3 goto {end}", "r2 += 14", "r2 += r7")
    else:
        b.emit("r2 += 14")
        b.emit("w2 += w7" if mutation == "pv-32bit-add" else "r3 += r7" if mutation == "pv-add-to-end"
               else "r2 += r7")
        if mutation != "pv-no-recheck":
            b.emit("r4 = r2", f"r4 += {length - 1 if mutation == 'pv-short' else length}", f"if r4 > r3 goto {end}")
    size = b.rng.choice((1, 2, 4))
    offset = b.rng.randrange(0, length - size + 1, size)
    if b.rng.random() < 0.3:
        b.emit(f"*({SIZES[size]} *)(r2 {offset:+d}) = 0")
    else:
        b.emit(f"r0 = *({SIZES[size]} *)(r2 {offset:+d})")
    b.place(end)
