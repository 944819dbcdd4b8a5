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

from pybpf.platform import BpfProgType

from .fuzz_builder import MAP_SHAPES, MAP_VALUE_BTF, PROFILES, PROG_TYPES, Builder, FuzzProgram
from .fuzz_fragments import FRAGMENTS as BASIC
from .fuzz_fragments import WEIGHTS as BASIC_WEIGHTS
from .fuzz_fragments import Fragment
from .fuzz_idioms import (
    frag_chaos,
    frag_ld_abs,
    frag_linked,
    frag_may_goto,
    frag_nested_calls,
    frag_ptr_compare,
    frag_st_imm,
)
from .fuzz_memops import frag_atomic, frag_jmp32_mixed, frag_packet_varoff, frag_sign_extend
from .fuzz_objects import (
    frag_dynptr_local,
    frag_dynptr_ringbuf,
    frag_dynptr_slice,
    frag_global_func,
    frag_iter,
    frag_loop_callback,
    frag_spin_lock,
    frag_tail_call,
)

__all__ = ["FRAGMENTS", "PROG_TYPES", "FuzzProgram", "generate"]

FRAGMENTS: dict[str, Fragment] = {
    **BASIC,
    "linked": frag_linked,
    "ld_abs": frag_ld_abs,
    "st_imm": frag_st_imm,
    "nested_calls": frag_nested_calls,
    "ptr_compare": frag_ptr_compare,
    "chaos": frag_chaos,
    "may_goto": frag_may_goto,
    "iter": frag_iter,
    "dynptr_local": frag_dynptr_local,
    "dynptr_ringbuf": frag_dynptr_ringbuf,
    "dynptr_slice": frag_dynptr_slice,
    "loop_callback": frag_loop_callback,
    "spin_lock": frag_spin_lock,
    "tail_call": frag_tail_call,
    "atomic": frag_atomic,
    "sign_extend": frag_sign_extend,
    "jmp32_mixed": frag_jmp32_mixed,
    "packet_varoff": frag_packet_varoff,
    "global_func": frag_global_func,
}
WEIGHTS = {**BASIC_WEIGHTS, "linked": 3, "ld_abs": 1, "st_imm": 2, "nested_calls": 1,
           "ptr_compare": 2, "chaos": 3, "may_goto": 1, "iter": 2, "dynptr_local": 2, "dynptr_ringbuf": 2,
           "dynptr_slice": 2, "loop_callback": 2, "spin_lock": 2, "tail_call": 1, "atomic": 3, "sign_extend": 2,
           "jmp32_mixed": 2, "packet_varoff": 2, "global_func": 2}
# Most programs get the default rate of mistakes; some get few (mostly accepted, long) or many.
MUTATION_RATES = (0.05, 0.12, 0.12, 0.25)


def generate(seed: int, *, mutation_rate: float | None = None, prog_type: BpfProgType | None = None) -> FuzzProgram:
    """The program for ``seed``: 1-5 fragments of one program type, some of them mutated."""
    rng = random.Random(seed)
    chosen = prog_type if prog_type is not None else rng.choice(PROG_TYPES)
    profile = PROFILES[chosen]
    rate = rng.choice(MUTATION_RATES) if mutation_rate is None else mutation_rate
    b = Builder(rng, profile, rate)
    b.emit("r6 = r1")
    names = list(FRAGMENTS)
    picked = rng.choices(names, weights=[WEIGHTS[n] for n in names], k=rng.randint(1, 5))
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
    value_btf = "; ".join(f"{index}: {MAP_VALUE_BTF[name]}" for index, name in enumerate(b.maps)
                          if name in MAP_VALUE_BTF)
    return FuzzProgram(seed, chosen, tuple(MAP_SHAPES[name] for name in b.maps), tuple(b.maps), asm,
                       tuple(picked), tuple(b.mutations), value_btf, b.func_info, "; ".join(b.global_funcs))
