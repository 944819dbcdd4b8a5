"""More verdict-fuzzer fragments: scalar ids and linked copies, legacy packet loads, ``BPF_ST``
immediates, ``may_goto`` loops, nested calls and stack depth, pointer comparisons, and a
*chaos* fragment of random instructions over whatever the registers hold.

See :mod:`.fuzz_gen` for how fragments are put together into programs.
"""

from __future__ import annotations

from .fuzz_builder import CONDS, KTIME, PRANDOM, SIZES, Builder

# Operations chaos may apply (asm spelling); shifts and divisions get their own immediates.
_CHAOS_ALU = ("+=", "-=", "*=", "&=", "|=", "^=", "<<=", ">>=", "s>>=", "=", "/=", "%=", "s/=", "s%=")
_CHAOS_REGS = ("r0", "r1", "r2", "r3", "r7", "r8", "r9")


def frag_linked(b: Builder) -> None:
    """A scalar copied (maybe plus a constant) before a branch on the original: the kernel
    refines the copies too (scalar ids, and ``r8 = r7 + K`` links since 6.10)."""
    b.unknown_scalar("r7")
    delta = b.rng.choice((0, 0, 4, -4, 8))
    b.emit("r8 = r7" if b.rng.random() < 0.7 else "w8 = w7")
    if delta:
        b.emit(f"r8 += {delta}")
    if b.rng.random() < 0.3:
        slot = b.stack(8)
        b.emit(f"*(u64 *)(r10 {slot:+d}) = r7")
        refill = f"r7 = *(u64 *)(r10 {slot:+d})"
    else:
        refill = ""
    end = b.label("Ll")
    limit = b.rng.choice((8, 16, 40))
    cond = b.rng.choice(("<", "<=", "s<", "!="))
    mutation = b.mutate("linked-wrong-side", "linked-broken")
    if mutation == "linked-broken":
        b.emit("r8 += r8")
    if mutation == "linked-wrong-side":
        b.emit(f"if r7 {cond} {limit} goto {end}")
    else:
        negated = {"<": ">=", "<=": ">", "s<": "s>=", "!=": "=="}[cond]
        b.emit(f"if r7 {negated} {limit} goto {end}", "if r7 s< 0 goto " + end)
    if refill:
        b.emit(refill)
    area = b.stack(64)
    b.emit("r1 = r10", f"r1 += {area}", "r1 += r8", f"r0 = *(u8 *)(r1 + {b.rng.choice((0, 8, 16))})")
    b.place(end)


def frag_ld_abs(b: Builder) -> None:
    """Legacy packet loads (``LD_ABS``/``LD_IND``), socket filters and tc only; r6 is the context."""
    if not b.profile.skb:
        frag_st_imm(b)
        return
    size = b.rng.choice((1, 2, 4))
    if b.rng.random() < 0.5:
        b.emit(f"r0 = *({SIZES[size]} *)skb[{b.rng.choice((0, 12, 14, 23, 1000))}]")
    else:
        b.bounded_scalar("r7", 64)
        b.emit(f"r0 = *({SIZES[size]} *)skb[r7 + {b.rng.choice((0, 14))}]")
    if b.mutate("ld-abs-clobbers") is not None:
        b.emit("r0 = r1")  # LD_ABS clobbers r1-r5 like a call


def frag_st_imm(b: Builder) -> None:
    """Stack stores of immediates (``BPF_ST``), read back whole or in part and used as indexes."""
    slot = b.stack(8)
    size = b.rng.choice((1, 2, 4, 8))
    value = b.rng.choice((0, 1, 7, 63, 200, -1))
    b.emit(f"*({SIZES[size]} *)(r10 {slot:+d}) = {value}")
    width = b.rng.choice((size, size, 8, 4))
    mutation = b.mutate("st-read-wider", "st-read-offset")
    if mutation == "st-read-wider":
        width = 8
    at = slot + (b.rng.choice((1, 2, 4)) if mutation == "st-read-offset" else 0)
    if width == 8 and at % 8:
        width = 1
    b.emit(f"r7 = *({SIZES[width]} *)(r10 {at:+d})")
    area = b.stack(64)
    b.emit("r7 &= 63" if b.rng.random() < 0.5 else "r7 += 0", "r1 = r10", f"r1 += {area}", "r1 += r7",
           "r0 = *(u8 *)(r1 + 0)")


def frag_may_goto(b: Builder) -> None:
    """A loop bounded only by ``may_goto`` (the kernel's implicit iteration budget). Its counter
    stays data (never an offset): precise, it would keep every iteration apart and exhaust the
    kernel's 1M-instruction budget."""
    slot = b.stack(8)
    head = b.label("Lmg")
    out = b.label("Lmo")
    b.emit("r7 = 0", f"*(u64 *)(r10 {slot:+d}) = r7")
    b.place(head)
    b.emit(f"may_goto {out}")
    b.emit(f"r1 = *(u64 *)(r10 {slot:+d})", "r1 += r7", f"*(u64 *)(r10 {slot:+d}) = r1", "r7 += 1")
    if b.mutate("may-goto-uninit-read") is not None:
        b.emit("r0 = r5")
    b.emit(f"goto {head}")
    b.place(out)
    b.emit(f"r0 = *(u64 *)(r10 {slot:+d})")


def frag_nested_calls(b: Builder) -> None:
    """Calls two or three deep, each frame using some stack: the combined depth is checked."""
    depth = b.rng.choice((2, 3))
    names = [b.label("fnn") for _ in range(depth)]
    sizes = [b.rng.choice((8, 64, 128, 256)) for _ in range(depth + 1)]
    if b.mutate("stack-too-deep") is not None:
        sizes = [256] * (depth + 1)
    b.emit(f"*(u64 *)(r10 -{sizes[0]}) = 0", "r1 = r10", f"r1 += -{sizes[0]}", f"call {names[0]}")
    for level, name in enumerate(names):
        size = sizes[level + 1]
        body = [f"{name}:", f"*(u64 *)(r10 -{size}) = 0", "r2 = *(u64 *)(r1 + 0)"]
        if level + 1 < depth:
            body += ["r6 = r1", "r1 = r10", f"r1 += -{size}", f"call {names[level + 1]}", "r1 = r6"]
        body += ["r0 = *(u64 *)(r1 + 0)", "exit"]
        b.subprogs.append(body)
    b.emit("r0 = 0")


def frag_ptr_compare(b: Builder) -> None:
    """Comparisons involving pointers: against NULL, against each other, against scalars."""
    b.pending_end = []
    b.pointer("r7")
    end = b.label("Lpc")
    shape = b.rng.choice(("null", "self", "scalar", "stack"))
    if shape == "null":
        b.emit(f"if r7 == 0 goto {end}")
    elif shape == "self":
        b.emit("r8 = r7", "r8 += 8", f"if r8 > r7 goto {end}")
    elif shape == "scalar":
        b.unknown_scalar("r8")
        b.emit(f"if r7 {b.rng.choice(CONDS)} r8 goto {end}")
    else:
        b.emit("r8 = r10", f"if r7 != r8 goto {end}")
    b.emit("r0 = *(u8 *)(r7 + 0)")
    b.place(end)
    for label in b.pending_end:
        b.place(label)


def frag_chaos(b: Builder) -> None:
    """Random instructions over r0-r3 and r7-r9 — which may hold scalars, pointers or nothing
    from earlier fragments — with forward jumps, loads and stores through them."""
    if b.rng.random() < 0.5:
        b.unknown_scalar("r8")
    if b.rng.random() < 0.5:
        b.emit(f"call {b.rng.choice((KTIME, PRANDOM))}")
    count = b.rng.randint(3, 8)
    end = b.label("Lch")
    for _ in range(count):
        kind = b.rng.choice(("alu", "alu", "alu", "jump", "load", "store", "mov"))
        dst = b.rng.choice(_CHAOS_REGS)
        width = "w" if b.rng.random() < 0.3 else "r"
        if kind == "alu":
            op = b.rng.choice(_CHAOS_ALU)
            if b.rng.random() < 0.5:
                src = b.rng.choice((*_CHAOS_REGS, "r10", "r6"))
                src = width + src[1:] if width == "w" and src not in ("r10",) else src
                if src == "r10" and width == "w":
                    src = "w1"
            else:
                src = str(b.rng.randint(0, 63) if op in ("<<=", ">>=", "s>>=") else b.const() or 1)
            b.emit(f"{width}{dst[1:]} {op} {src}")
        elif kind == "mov":
            b.emit(f"{dst} = {b.rng.choice(('r6', 'r10', 'r0', 'r7'))}")
            if b.rng.random() < 0.5:
                b.emit(f"{dst} += {b.rng.choice((-8, -16, 0, 4, 8))}")
        elif kind == "jump":
            other = b.rng.choice((*_CHAOS_REGS, str(b.const())))
            reg = width + dst[1:]
            other = width + other[1:] if other.startswith("r") else other
            b.emit(f"if {reg} {b.rng.choice(CONDS)} {other} goto {end}")
        elif kind == "load":
            base = b.rng.choice(("r6", "r10", dst))
            off = b.rng.choice((-8, -16, 0, 4, 8)) if base != "r10" else b.rng.choice((-8, -16, -24))
            b.emit(f"{b.rng.choice(_CHAOS_REGS)} = *({b.rng.choice(list(SIZES.values()))} *)({base} {off:+d})")
        else:
            base = b.rng.choice(("r10", dst))
            off = b.rng.choice((-8, -16, -24)) if base == "r10" else b.rng.choice((0, 4, 8))
            value = b.rng.choice((*_CHAOS_REGS, "0"))
            b.emit(f"*({b.rng.choice(list(SIZES.values()))} *)({base} {off:+d}) = {value}")
    b.place(end)
