"""Verdict-fuzzer fragments for the verifier's stateful objects: open-coded iterators, dynptrs
(local, ring buffer, skb/xdp slices), ``bpf_loop`` callbacks, spin locks in map values and tail
calls — each in its correct form and with the mistakes newcomers make with it (a leaked
iterator or reservation, a NULL slice used, a lock held over a call, a callback returning 2, ...).

See :mod:`.fuzz_gen` for how fragments are put together into programs.
"""

from __future__ import annotations

from pybpf.platform import BpfProgType, kfunc_by_name

from .fuzz_builder import KTIME, MAP_LOOKUP, RINGBUF_RESERVE, RINGBUF_SUBMIT, TAIL_CALL, Builder

LOOP, SPIN_LOCK, SPIN_UNLOCK = 181, 93, 94
DYNPTR_FROM_MEM, RB_RESERVE_DYNPTR, RB_SUBMIT_DYNPTR, RB_DISCARD_DYNPTR = 197, 198, 199, 200
DYNPTR_READ, DYNPTR_WRITE, DYNPTR_DATA = 201, 202, 203


def kfunc(b: Builder, name: str) -> None:
    """``call kfunc NAME``, as the corpus writes it (:func:`.corpus.resolve_kfunc_names` turns it
    into pybpf's id; the kernel loader resolves it by name in the kernel's BTF)."""
    if kfunc_by_name(name) is None:
        raise ValueError(f"pybpf has no kfunc {name!r}")
    b.emit(f"call kfunc {name}")


def _fp(b: Builder, reg: str, offset: int) -> None:
    b.emit(f"{reg} = r10", f"{reg} += {offset}")


def frag_iter(b: Builder) -> None:
    """``bpf_iter_num`` new/next/destroy around a loop whose element indexes a stack buffer."""
    it = b.stack(8)
    area = b.stack(16)
    mutation = b.mutate("iter-no-destroy", "iter-no-null-check", "iter-unbounded-index", "iter-uninit-next",
                        "iter-double-new", "iter-overwrite", "iter-destroy-twice", "iter-next-after-destroy",
                        "iter-misaligned", "iter-signed-index", "iter-copy-slot")
    at = it + 4 if mutation == "iter-misaligned" else it
    head, done = b.label("Lit"), b.label("Lid")
    _fp(b, "r1", at)
    if b.rng.random() < 0.3:
        b.unknown_scalar("r3")
        _fp(b, "r1", at)
        b.emit("r2 = 0")
    else:
        start, end = b.rng.choice(((0, 16), (0, 4), (2, 10), (0, 0), (5, 3), (-3, 2)))
        b.emit(f"r2 = {start}", f"r3 = {end}")
    if mutation != "iter-uninit-next":
        kfunc(b, "bpf_iter_num_new")
    if mutation == "iter-double-new":
        _fp(b, "r1", at)
        b.emit("r2 = 0", "r3 = 1")
        kfunc(b, "bpf_iter_num_new")
    if mutation == "iter-overwrite":
        b.emit(f"*(u32 *)(r10 {at + b.rng.choice((0, 4)):+d}) = 0")
    if mutation == "iter-copy-slot":
        copy = b.stack(8)
        b.emit(f"r1 = *(u64 *)(r10 {at:+d})", f"*(u64 *)(r10 {copy:+d}) = r1")
        at = copy
    b.emit("r8 = 0")
    b.place(head)
    _fp(b, "r1", at)
    kfunc(b, "bpf_iter_num_next")
    if mutation != "iter-no-null-check":
        b.emit(f"if r0 == 0 goto {done}")
    signed = mutation == "iter-signed-index"
    b.emit(f"r7 = *({'s32' if signed or b.rng.random() < 0.3 else 'u32'} *)(r0 + 0)")
    if mutation not in ("iter-unbounded-index", "iter-signed-index"):
        b.emit(f"if r7 > 15 goto {head}")
    elif signed:
        b.emit(f"if r7 s> 15 goto {head}")
    _fp(b, "r1", area)
    b.emit("r1 += r7", "*(u8 *)(r1 + 0) = r7", "r8 += r7", f"goto {head}")
    b.place(done)
    if mutation != "iter-no-destroy":
        _fp(b, "r1", at)
        kfunc(b, "bpf_iter_num_destroy")
    if mutation == "iter-destroy-twice":
        _fp(b, "r1", at)
        kfunc(b, "bpf_iter_num_destroy")
    elif mutation == "iter-next-after-destroy":
        _fp(b, "r1", at)
        kfunc(b, "bpf_iter_num_next")
    b.emit("r0 = r8")


def frag_dynptr_local(b: Builder) -> None:
    """``bpf_dynptr_from_mem`` over a map value (or the stack), then read/write/data on it."""
    dp = b.stack(16)
    mutation = b.mutate("dynptr-misaligned", "dynptr-uninit", "dynptr-overwrite", "dynptr-data-no-null",
                        "dynptr-data-oob", "dynptr-data-var-size", "dynptr-read-too-big", "dynptr-var-offset",
                        "dynptr-stack-mem", "dynptr-submit-local", "dynptr-partial-copy")
    at = dp + b.rng.choice((4, 8)) if mutation == "dynptr-misaligned" else dp
    ends: list[str] = []
    if mutation == "dynptr-var-offset":
        b.bounded_scalar("r8", 2)
        b.emit("r8 <<= 3")
    if mutation == "dynptr-stack-mem" or b.rng.random() < 0.2:
        buf = b.stack(16)
        size = 16
        _fp(b, "r9", buf)
    else:
        ends.append(b.lookup("array", null_check=True))
        size = 48
        b.emit("r9 = r0")
    if mutation != "dynptr-uninit":
        b.emit("r1 = r9", f"r2 = {size}", "r3 = 0")
        _fp(b, "r4", at)
        if mutation == "dynptr-var-offset":
            b.emit("r4 += r8")
        b.emit(f"call {DYNPTR_FROM_MEM}")
    if mutation == "dynptr-overwrite":
        b.emit(f"*({b.rng.choice(('u8', 'u32', 'u64'))} *)(r10 {at + b.rng.choice((0, 8)):+d}) = 0")
    if mutation == "dynptr-partial-copy":
        b.emit(f"r1 = *(u64 *)(r10 {at:+d})")
    for _ in range(b.rng.randint(1, 2)):
        op = b.rng.choice(("read", "write", "data", "data"))
        n = b.rng.choice((1, 4, 8))
        if op == "read":
            out = b.stack(8)
            _fp(b, "r1", out)
            b.emit(f"r2 = {16 if mutation == 'dynptr-read-too-big' else n}")
            _fp(b, "r3", at)
            b.emit(f"r4 = {b.rng.choice((0, 4, 8))}", "r5 = 0", f"call {DYNPTR_READ}")
        elif op == "write":
            src = b.stack(8)
            b.emit(f"*(u64 *)(r10 {src:+d}) = 7")
            _fp(b, "r1", at)
            b.emit(f"r2 = {b.rng.choice((0, 8))}")
            _fp(b, "r3", src)
            b.emit(f"r4 = {n}", "r5 = 0", f"call {DYNPTR_WRITE}")
        else:
            skip = b.label("Ldd")
            _fp(b, "r1", at)
            b.emit(f"r2 = {b.rng.choice((0, 4, 8))}")
            if mutation == "dynptr-data-var-size":
                b.bounded_scalar("r3", 8)
                _fp(b, "r1", at)
                b.emit("r2 = 0")
            else:
                b.emit(f"r3 = {n}")
            b.emit(f"call {DYNPTR_DATA}")
            if mutation != "dynptr-data-no-null":
                b.emit(f"if r0 == 0 goto {skip}")
            last = n if mutation == "dynptr-data-oob" else n - 1
            b.emit(f"r7 = *(u8 *)(r0 + {last})", f"*(u8 *)(r0 + 0) = {b.rng.choice((0, 1))}")
            b.place(skip)
    if mutation == "dynptr-submit-local":
        _fp(b, "r1", at)
        b.emit("r2 = 0", f"call {RB_SUBMIT_DYNPTR}")
    for end in ends:
        b.place(end)


def frag_dynptr_ringbuf(b: Builder) -> None:
    """``bpf_ringbuf_reserve_dynptr``: a reference to submit or discard on every path, even when
    the reservation failed; written through ``bpf_dynptr_data``."""
    rb = b.map_index("ringbuf")
    dp = b.stack(16)
    size = b.rng.choice((8, 16, 32))
    mutation = b.mutate("rbd-leak", "rbd-leak-on-fail", "rbd-double-submit", "rbd-use-after-submit",
                        "rbd-overwrite", "rbd-data-oob", "rbd-var-size", "rbd-misaligned", "rbd-flags",
                        "rbd-discard-local", "rbd-one-path-leak")
    at = dp + 8 if mutation == "rbd-misaligned" else dp
    out = b.label("Lro")
    b.emit(f"r1 = map[fd:{rb}]")
    if mutation == "rbd-var-size":
        b.bounded_scalar("r2", 64)
        b.emit(f"r1 = map[fd:{rb}]")
    else:
        b.emit(f"r2 = {size}")
    b.emit(f"r3 = {1 if mutation == 'rbd-flags' else 0}")
    _fp(b, "r4", at)
    b.emit(f"call {RB_RESERVE_DYNPTR}")
    if mutation == "rbd-leak-on-fail":
        b.emit(f"if r0 != 0 goto {out}")
    skip = b.label("Lrd")
    _fp(b, "r1", at)
    n = size + 8 if mutation == "rbd-data-oob" else size
    b.emit("r2 = 0", f"r3 = {min(n, 32) if mutation != 'rbd-data-oob' else n}", f"call {DYNPTR_DATA}",
           f"if r0 == 0 goto {skip}", "*(u64 *)(r0 + 0) = 1")
    b.place(skip)
    if mutation == "rbd-overwrite":
        b.emit(f"*(u64 *)(r10 {at:+d}) = 0")
    if mutation == "rbd-leak":
        b.place(out)
        return
    if mutation == "rbd-one-path-leak":
        b.unknown_scalar("r7")
        b.emit(f"if r7 > 5 goto {out}")
    _fp(b, "r1", at)
    b.emit("r2 = 0", f"call {RB_DISCARD_DYNPTR if b.rng.random() < 0.3 else RB_SUBMIT_DYNPTR}")
    if mutation == "rbd-double-submit":
        _fp(b, "r1", at)
        b.emit("r2 = 0", f"call {RB_SUBMIT_DYNPTR}")
    elif mutation == "rbd-use-after-submit":
        _fp(b, "r1", at)
        b.emit("r2 = 0", "r3 = 8", f"call {DYNPTR_DATA}")
    elif mutation == "rbd-discard-local":
        local = b.stack(16)
        buf = b.stack(8)
        _fp(b, "r1", buf)
        b.emit("r2 = 8", "r3 = 0")
        _fp(b, "r4", local)
        b.emit(f"call {DYNPTR_FROM_MEM}")
        _fp(b, "r1", local)
        b.emit("r2 = 0", f"call {RB_DISCARD_DYNPTR}")
    b.place(out)


def frag_dynptr_slice(b: Builder) -> None:
    """``bpf_dynptr_from_skb``/``_xdp`` and ``bpf_dynptr_slice(_rdwr)``: a NULL-checked window
    of constant size into the packet."""
    if b.profile.packet is None and b.profile.prog_type != BpfProgType.SOCKET_FILTER:
        frag_dynptr_local(b)
        return
    xdp = b.profile.prog_type == BpfProgType.XDP
    dp = b.stack(16)
    buf = b.stack(16)
    mutation = b.mutate("slice-no-null", "slice-oob", "slice-var-size", "slice-write-ro", "slice-buf-small",
                        "slice-not-ctx", "slice-uninit", "slice-flags", "slice-after-adjust")
    szk = b.rng.choice((1, 4, 8, 14, 16))
    if mutation != "slice-uninit":
        b.emit("r1 = r10" if mutation == "slice-not-ctx" else "r1 = r6",
               f"r2 = {1 if mutation == 'slice-flags' else 0}")
        _fp(b, "r3", dp)
        kfunc(b, "bpf_dynptr_from_xdp" if xdp else "bpf_dynptr_from_skb")
    end = b.label("Lsl")
    rdwr = b.rng.random() < 0.5
    _fp(b, "r1", dp)
    b.emit(f"r2 = {b.rng.choice((0, 0, 12, 14))}")
    if b.rng.random() < 0.3:
        b.emit("r3 = 0")
    else:
        _fp(b, "r3", buf + (8 if mutation == "slice-buf-small" else 0))
    if mutation == "slice-var-size":
        b.bounded_scalar("r4", 16)
        _fp(b, "r1", dp)
        b.emit("r2 = 0", "r3 = 0")
    else:
        b.emit(f"r4 = {szk}")
    kfunc(b, "bpf_dynptr_slice_rdwr" if rdwr else "bpf_dynptr_slice")
    if mutation != "slice-no-null":
        b.emit(f"if r0 == 0 goto {end}")
    last = szk if mutation == "slice-oob" else szk - 1
    b.emit(f"r7 = *(u8 *)(r0 + {last})")
    if rdwr or mutation == "slice-write-ro":
        b.emit("*(u8 *)(r0 + 0) = 1")
    if mutation == "slice-after-adjust":
        b.emit("r7 = r0", "r1 = r6", "r2 = 0")
        b.emit("call 44" if xdp else "call 39")  # bpf_xdp_adjust_head / bpf_skb_pull_data: packet moves
        b.emit("r0 = *(u8 *)(r7 + 0)")
    b.place(end)


def frag_loop_callback(b: Builder) -> None:
    """``bpf_loop`` with a callback summing into (or indexing) a context struct on the caller's stack."""
    b.func_info = True
    ctx = b.stack(16)
    name = b.label("cb")
    mutation = b.mutate("cb-ret-2", "cb-ret-uninit", "cb-ctx-oob", "cb-no-ctx", "cb-reads-r6", "cb-index-unbounded",
                        "cb-ctx-uninit", "cb-not-func", "cb-ret-unknown", "cb-writes-r10")
    if mutation != "cb-ctx-uninit":
        b.emit("r1 = 0", f"*(u64 *)(r10 {ctx:+d}) = r1", f"*(u64 *)(r10 {ctx + 8:+d}) = r1")
    if b.rng.random() < 0.3:
        b.unknown_scalar("r1")
        b.emit("r1 &= 1023")
    else:
        b.emit(f"r1 = {b.rng.choice((0, 1, 4, 100, 1 << 23, 1 << 24))}")
    b.emit("r2 = 0" if mutation == "cb-not-func" else f"r2 = func {name}")
    if mutation == "cb-no-ctx":
        b.emit("r3 = 0")
    else:
        _fp(b, "r3", ctx)
    b.emit("r4 = 0", f"call {LOOP}", f"r7 = *(u64 *)(r10 {ctx:+d})")
    body = [f"{name}:"]
    shape = b.rng.choice(("sum", "index", "lookup"))
    if shape == "sum":
        body += ["r3 = *(u64 *)(r2 + 0)", "r3 += r1", "*(u64 *)(r2 + 0) = r3"]
    elif shape == "index":
        body += ["r1 &= 1" if mutation != "cb-index-unbounded" else "r1 += 0", "r1 <<= 3", "r2 += r1",
                 "*(u64 *)(r2 + 0) = r1"]
    else:
        index = b.map_index("array")
        body += ["r6 = r2", "r1 = 0", "*(u32 *)(r10 - 4) = r1", f"r1 = map[fd:{index}]", "r2 = r10", "r2 += -4",
                 f"call {MAP_LOOKUP}", "if r0 == 0 goto +2", "r1 = *(u64 *)(r0 + 0)", "*(u64 *)(r6 + 8) = r1"]
    if mutation == "cb-ctx-oob":
        body.append("r3 = *(u64 *)(r2 + 16)" if shape != "lookup" else "r3 = *(u64 *)(r6 + 16)")
    elif mutation == "cb-reads-r6" and shape != "lookup":
        body.append("r0 = r6")
    elif mutation == "cb-writes-r10":
        body.append("r10 = 0")
    if mutation == "cb-ret-2":
        body.append("r0 = 2")
    elif mutation == "cb-ret-unknown":
        body += [f"call {KTIME}"]
    elif mutation != "cb-ret-uninit":
        body.append(f"r0 = {b.rng.choice((0, 0, 1))}")
    body.append("exit")
    b.subprogs.append(body)


def frag_spin_lock(b: Builder) -> None:
    """``bpf_spin_lock``/``unlock`` around an update of the value holding the lock."""
    shape = b.rng.choice(("locked", "locked_hash"))
    lock_off, data_off = (0, 8) if shape == "locked" else (8, b.rng.choice((0, 16)))
    mutation = b.mutate("lock-no-unlock", "lock-double", "lock-helper-inside", "lock-wrong-off", "lock-unlock-only",
                        "lock-access-lock", "lock-exit-held", "lock-call-inside", "lock-no-null", "lock-other-map",
                        "lock-ktime-inside")
    end = b.lookup(shape, null_check=mutation != "lock-no-null")
    b.emit("r7 = r0")
    lock = f"r1 = r7; r1 += {lock_off + (4 if mutation == 'lock-wrong-off' else 0)}"
    if mutation != "lock-unlock-only":
        b.emit(*lock.split("; "), f"call {SPIN_LOCK}")
    if mutation == "lock-double":
        b.emit(*lock.split("; "), f"call {SPIN_LOCK}")
    b.emit(f"r1 = *(u64 *)(r7 + {data_off})", "r1 += 1", f"*(u64 *)(r7 + {data_off}) = r1")
    if mutation == "lock-access-lock":
        b.emit(f"r2 = *(u32 *)(r7 + {lock_off})")
    elif mutation == "lock-helper-inside":
        b.emit(f"r1 = map[fd:{b.map_index('ringbuf')}]", "r2 = 8", "r3 = 0", f"call {RINGBUF_RESERVE}")
    elif mutation == "lock-ktime-inside":
        b.emit(f"call {KTIME}")
    elif mutation == "lock-call-inside":
        name = b.label("fnl")
        b.emit("r1 = 1", f"call {name}")
        b.subprogs.append([f"{name}:", "r0 = r1", "exit"])
    elif mutation == "lock-exit-held":
        b.unknown_scalar("r2")
        b.emit(f"if r2 > 7 goto {end}")
    elif mutation == "lock-other-map":
        b.emit("r8 = r7")
        other = b.lookup(shape, null_check=True)
        b.emit("r7 = r0")
        b.pending_end.append(other)
    if mutation != "lock-no-unlock":
        b.emit(*lock.split("; "), f"call {SPIN_UNLOCK}")
    if mutation == "lock-other-map":
        b.place(b.pending_end.pop())
    b.place(end)


def frag_tail_call(b: Builder) -> None:
    """``bpf_tail_call`` from the main program or from a subprogram, with what must not be held over it."""
    arr = b.map_index("prog_array")
    mutation = b.mutate("tc-ref-held", "tc-lock-held", "tc-not-ctx", "tc-wrong-map", "tc-deep-stack",
                        "tc-use-r1-after", "tc-index-unknown")
    index = "r3 = 0"
    ctx = "r1 = r10" if mutation == "tc-not-ctx" else "r1 = r6"
    where = b.rng.choice(("main", "main", "subprog"))
    if mutation in ("tc-deep-stack",):
        where = "subprog"
    map_line = f"r2 = map[fd:{b.map_index('array') if mutation == 'tc-wrong-map' else arr}]"
    call = [ctx, map_line, index, f"call {TAIL_CALL}"]
    if mutation == "tc-use-r1-after":
        call.append("r0 = *(u32 *)(r1 + 0)")
    if mutation == "tc-ref-held":
        end = b.label("Ltr")
        b.emit(f"r1 = map[fd:{b.map_index('ringbuf')}]", "r2 = 8", "r3 = 0", f"call {RINGBUF_RESERVE}",
               f"if r0 == 0 goto {end}", "r7 = r0", *call, "r1 = r7", "r2 = 0", f"call {RINGBUF_SUBMIT}")
        b.place(end)
        return
    if mutation == "tc-lock-held":
        end = b.lookup("locked", null_check=True)
        b.emit("r7 = r0", "r1 = r7", f"call {SPIN_LOCK}", *call, "r1 = r7", f"call {SPIN_UNLOCK}")
        b.place(end)
        return
    if mutation == "tc-index-unknown":
        b.unknown_scalar("r3")
        call[2] = "r3 += 0"
        where = "main"
    if where == "main":
        b.emit(*call)
        return
    b.func_info = True
    name = b.label("fnt")
    depth = 300 if mutation == "tc-deep-stack" else b.rng.choice((8, 64))
    b.emit(f"*(u64 *)(r10 -{depth}) = 0", "r1 = r6", f"call {name}")
    b.subprogs.append([f"{name}:", "r6 = r1", "*(u64 *)(r10 -8) = 0", *call, "r0 = 0", "exit"])


_GLOBAL_ARGS = ("ctx", "u64", "u32", "u8", "int")


def frag_global_func(b: Builder) -> None:
    """A call to a global function (verified once, from its BTF prototype) with context, memory
    and scalar arguments, some tagged ``__arg_nonnull``; the callee NULL-checks the others."""
    name = b.label("gfn")
    count = b.rng.randint(1, 3)
    kinds = [b.rng.choice(_GLOBAL_ARGS) for _ in range(count)]
    nonnull = [kind in ("u64", "u32", "u8") and b.rng.random() < 0.4 for kind in kinds]
    mutation = b.mutate("gf-null-to-nonnull", "gf-small-mem", "gf-uninit-mem", "gf-no-null-check", "gf-oob",
                        "gf-reads-r6", "gf-ret-ptr", "gf-ctx-offset", "gf-scalar-for-ptr", "gf-void-arg",
                        "gf-ptr-for-int")
    sizes = {"u64": 8, "u32": 4, "u8": 1}
    tokens = []
    for kind, strict in zip(kinds, nonnull, strict=True):
        if kind == "ctx" and b.profile.prog_type not in (BpfProgType.SOCKET_FILTER, BpfProgType.SCHED_CLS,
                                                        BpfProgType.XDP, BpfProgType.KPROBE):
            tokens.append("ctx:void")
        else:
            tokens.append(("nonnull:" if strict else "") + kind)
    if mutation == "gf-void-arg":
        tokens[-1] = "void"
    for index, kind in enumerate(kinds):
        reg = f"r{index + 1}"
        if kind == "ctx":
            b.emit(f"{reg} = r6", *((f"{reg} += 8",) if mutation == "gf-ctx-offset" and index == 0 else ()))
        elif kind == "int":
            b.emit(f"{reg} = r10" if mutation == "gf-ptr-for-int" else f"{reg} = {b.rng.choice((0, 5, -1))}")
        elif mutation == "gf-null-to-nonnull" and nonnull[index]:
            b.emit(f"{reg} = 0")
        elif mutation == "gf-scalar-for-ptr" and index == len(kinds) - 1:
            b.emit(f"{reg} = 8")
        else:
            area = b.stack(8)
            if mutation != "gf-uninit-mem":
                b.emit(f"*(u64 *)(r10 {area:+d}) = 1")
            at = area + 8 - sizes[kind] // 2 if mutation == "gf-small-mem" else area
            _fp(b, reg, at)
    b.emit(f"call {name}")
    b.global_funcs.append(f"{len(b.subprogs) + 1}: {' '.join(tokens)}")
    body = [f"{name}:"]
    for index, kind in enumerate(kinds):
        reg = f"r{index + 1}"
        if kind == "ctx":
            offset, size = b.profile.scalar_fields[0]
            body.append(f"r0 = *({'u64' if size == 8 else 'u32'} *)({reg} + {offset})")
        elif kind in sizes:
            skip = b.label("Lgn")
            if not nonnull[index] and mutation != "gf-no-null-check":
                body.append(f"if {reg} == 0 goto {skip}")
            width = {"u64": "u64", "u32": "u32", "u8": "u8"}[kind]
            at = sizes[kind] if mutation == "gf-oob" else 0
            body += [f"r0 = *({width} *)({reg} + {at})", f"*({width} *)({reg} + 0) = 3", f"{skip}:"]
    if mutation == "gf-reads-r6":
        body.append("r0 = r6")
    body.append("r0 = r10" if mutation == "gf-ret-ptr" else "r0 = 0")
    body.append("exit")
    b.subprogs.append(body)
