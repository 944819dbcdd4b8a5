"""What the verifier tells its caller: a verdict, statistics and diagnostics that explain it."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """Why a program was rejected: where (pc, the instruction, the C line), why (the kernel's
    wording where it has one), and how execution got there (branch decisions from the entry)."""

    pc: int | None
    insn: str | None
    reason: str
    source: str | None = None
    path: tuple[tuple[int, bool], ...] = ()

    def describe(self) -> str:
        """A multi-line explanation for people."""
        lines: list[str] = []
        where = f"instruction {self.pc}" if self.pc is not None else "program"
        if self.insn:
            where += f" ({self.insn})"
        lines.append(f"{where}: {self.reason.splitlines()[-1]}")
        if self.source:
            lines.append(f"  source: {self.source}")
        if self.path:
            steps = ", ".join(f"{pc}:{'taken' if taken else 'not taken'}" for pc, taken in self.path)
            lines.append(f"  path: {steps}")
        return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class VerifierReport:
    """The outcome of :func:`pybpf.verifier.verify`."""

    accepted: bool
    processed_insns: int
    peak_states: int
    diagnostics: tuple[Diagnostic, ...] = ()
    log: tuple[str, ...] = field(default=())
    stack_depth: tuple[int, ...] = ()

    @property
    def error(self) -> Diagnostic | None:
        return self.diagnostics[0] if self.diagnostics else None

    @property
    def reason(self) -> str | None:
        """The last line of the first diagnostic (the line the kernel's log would end with)."""
        return self.diagnostics[0].reason.splitlines()[-1] if self.diagnostics else None

    def summary(self) -> str:
        if self.accepted:
            return f"accepted: processed {self.processed_insns} insns, {self.peak_states} states"
        return "rejected: " + "\n".join(d.describe() for d in self.diagnostics)
