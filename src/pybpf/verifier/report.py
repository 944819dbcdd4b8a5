"""What the verifier tells its caller: a verdict, statistics and diagnostics that explain it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from pybpf.verifier.state import RegType

# (a fragment of the kernel's reason, what it means for the C programmer)
HINTS: tuple[tuple[str, str], ...] = (
    ("_or_null", "the pointer may be NULL here: compare it with 0 (if (!p) return ...;) before using it"),
    ("!read_ok", "the register is read before anything was written to it on this path "
                 "(calls clobber r1-r5; a function's r0 must be set before it returns)"),
    ("outside of the packet", "compare data + offset + size against data_end before this access, "
                              "on the same pointer (or a copy made before the comparison)"),
    ("Unreleased reference", "every path must submit or discard what bpf_ringbuf_reserve returned "
                             "(or release the object a helper acquired), including early returns"),
    ("infinite loop", "nothing changes on the way around this loop, so it can never exit"),
    ("too large. Processed", "the verifier gave up exploring paths: simplify loops or bound them more tightly"),
    ("min value is negative", "the index may be negative: use an unsigned type or check index >= 0"),
    ("unbounded", "bound the value first (if (i < N) or i &= MASK) on the register used for the access"),
    ("max value is outside", "the index may run past the end: check it against the size (if (i < N))"),
    ("invalid access to map value", "the access runs past the end of the map's value"),
    ("invalid access to memory", "the access runs past the end of the reserved or returned memory"),
    ("bpf_context access", "this context field does not exist, or cannot be accessed with this size or in "
                           "this direction, in this program type"),
    ("cannot use helper", "this helper is not available to this program type"),
    ("GPL-restricted", 'declare a GPL-compatible license: char LICENSE[] SEC("license") = "GPL";'),
    ("stack R", "the stack is the 512 bytes below r10, accessed in naturally aligned pieces"),
    ("misaligned stack", "the stack is accessed in naturally aligned pieces"),
    ("frame pointer is read only", "r10 is the frame pointer: copy it to another register to compute addresses"),
    ("should have been in", "this program type only allows these return values"),
    ("back-edge", "loops need a privileged loader"),
    ("pointer arithmetic", "only adding or subtracting a bounded number to a pointer is allowed"),
    ("prohibited", "this operation on a pointer is not allowed"),
    ("expected=", "the helper's argument has the wrong kind of value (see the helper's prototype)"),
)


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """Why a program was rejected: where (pc, the instruction, the C line), why (the kernel's
    wording where it has one), and how execution got there (branch decisions from the entry)."""

    pc: int | None
    insn: str | None
    reason: str
    source: str | None = None
    path: tuple[tuple[int, bool], ...] = ()

    @property
    def hint(self) -> str | None:
        """What the reason usually means at the C level, when we know."""
        for fragment, text in HINTS:
            if fragment in self.reason:
                return text
        return None

    def describe(self) -> str:
        """A multi-line explanation for people."""
        lines: list[str] = []
        where = f"instruction {self.pc}" if self.pc is not None else "program"
        if self.insn:
            where += f" ({self.insn})"
        lines.append(f"{where}: {self.reason.splitlines()[-1]}")
        if self.source:
            lines.append(f"  source: {self.source}")
        if self.hint:
            lines.append(f"  hint: {self.hint}")
        if self.path:
            steps = ", ".join(f"{pc}:{'taken' if taken else 'not taken'}" for pc, taken in self.path)
            lines.append(f"  path: {steps}")
        return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class Barrier:
    """A speculation barrier (``nospec``) the kernel inserts into an unprivileged program (see
    :mod:`pybpf.verifier.spectre`): before ``pc`` when a mispredicted path would fail there,
    after it when the store at ``pc`` needs one (Spectre v4). A no-op for a user-space VM."""

    pc: int
    after: bool
    reason: str

    def describe(self) -> str:
        if self.after:
            return f"speculation barrier inserted after insn {self.pc} because {self.reason}"
        return (f"speculation barrier inserted before insn {self.pc} because a mispredicted branch "
                f"reaches it and there: {self.reason}")


@dataclass(frozen=True, slots=True)
class VerifierReport:
    """The outcome of :func:`pybpf.verifier.verify`."""

    accepted: bool
    processed_insns: int
    peak_states: int
    diagnostics: tuple[Diagnostic, ...] = ()
    log: tuple[str, ...] = field(default=())
    stack_depth: tuple[int, ...] = ()
    # The pcs some explored path reached; the rest is dead code (pybpf.verifier.rewrite).
    seen: frozenset[int] = frozenset()
    # The pointer type each reached load, store or atomic accessed, by pc (aux->ptr_type): the
    # runtime converts exactly the PTR_TO_CTX ones (pybpf.runtime.context).
    ptr_types: Mapping[int, RegType] = field(default_factory=dict, compare=False)
    # Unprivileged loads: where the kernel would insert speculation barriers, in pc order.
    barriers: tuple[Barrier, ...] = ()
    # 64-bit ALU instructions on arena pointers, which run on 32 bits (pybpf.verifier.arena).
    arena_alu32: frozenset[int] = frozenset()
    # The rest of the kernel's statistics line (pybpf.verifier.states): states stored in all,
    # and the most listed at one prune point.
    total_states: int = 0
    max_states_per_insn: int = 0

    @property
    def error(self) -> Diagnostic | None:
        return self.diagnostics[0] if self.diagnostics else None

    @property
    def reason(self) -> str | None:
        """The last line of the first diagnostic (the line the kernel's log would end with)."""
        return self.diagnostics[0].reason.splitlines()[-1] if self.diagnostics else None

    def summary(self) -> str:
        if self.accepted:
            lines = [f"accepted: processed {self.processed_insns} insns, {self.peak_states} states"]
            lines.extend(f"  {barrier.describe()}" for barrier in self.barriers)
            return "\n".join(lines)
        return "rejected: " + "\n".join(d.describe() for d in self.diagnostics)
