"""Run a :class:`~diffgen.DiffProgram` on the kernel and on our interpreter, and compare.

Run as a script to reproduce one seed: ``python tests/differential/diff_harness.py SEED``
prints the program, the input, and both sides' results.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, replace

from diffgen import DATA_REGS, DiffProgram, format_program, generate, insert_after, labeled

from pybpf.errors import VerifierRejectedError
from pybpf.isa import Atomic, AtomicCode, Bin, BinOp, Instruction, Reg, Size, encode_program
from pybpf.isa.insn import slot_count
from pybpf.kernel import BpfProgType, prog_load, prog_test_run
from pybpf.vm import Interpreter, Region, RegionKind


@dataclass(frozen=True, slots=True)
class SideResult:
    """What one side returned: r0 and the packet afterwards."""

    retval: int
    packet: bytes


@dataclass(frozen=True, slots=True)
class KnownDivergence:
    """A kernel behaviour that departs from RFC 9669, recognised by a semantics-preserving rewrite.

    ``rewrite`` changes a program in a way that is a no-op under the RFC but sidesteps the
    kernel's bug. A disagreement is put down to this divergence only when the kernel, running
    the rewritten program, then agrees with our interpreter on the original one.
    """

    name: str
    reason: str
    rewrite: Callable[[DiffProgram], DiffProgram]


def _is_cmpxchg32(insn: Instruction) -> bool:
    return isinstance(insn, Atomic) and insn.op is AtomicCode.CMPXCHG and insn.size is Size.W


def _zext_after_cmpxchg32(program: DiffProgram) -> DiffProgram:
    # RFC 9669: cmpxchg "zero-extends" the old value into r0, so "w0 = w0" right after it is a no-op.
    zext = Bin(BinOp.MOV, Reg.R0, Reg.R0, False)
    return replace(program, blocks=tuple(insert_after(block, _is_cmpxchg32, zext) for block in program.blocks))


KNOWN_DIVERGENCES = (
    KnownDivergence(
        "cmpxchg32-r0-zext",
        "Linux 6.18 (x86-64 JIT): a 32-bit cmpxchg that succeeds leaves r0's upper half unchanged. x86's "
        "cmpxchg does not write eax on success, so the JIT relies on the verifier inserting BPF_ZEXT_REG(r0), "
        "which it does only when it saw a 64-bit read of that r0 on a path it explored; when the path after "
        "the cmpxchg is pruned at a join point (log: '38: safe'), the read is never attributed and the "
        "zero-extension is missing from the xlated program. RFC 9669: r0 always gets the old value zero-extended.",
        _zext_after_cmpxchg32,
    ),
)


@dataclass(frozen=True, slots=True)
class Comparison:
    """The two sides' results for one program; ``kernel`` is None when the verifier refused it.

    ``divergence`` names the :class:`KnownDivergence` that explains a disagreement, if one does.
    """

    program: DiffProgram
    interpreter: SideResult
    kernel: SideResult | None
    verifier_log: str = ""
    divergence: str | None = None

    @property
    def refused(self) -> bool:
        return self.kernel is None

    @property
    def agree(self) -> bool:
        return self.kernel is not None and self.kernel == self.interpreter


def run_interpreter(program: DiffProgram) -> SideResult:
    """Run the interpreter-facing program with r1 = the address of a copy of the input packet."""
    interpreter = Interpreter(labeled(program.interpreter_program()), name=f"diff_{program.seed}")
    packet = Region.from_bytes(RegionKind.PACKET, "packet", program.packet)
    result = interpreter.run(packet)
    return SideResult(result.r0 & 0xFFFFFFFF, bytes(packet.view))


def run_kernel(program: DiffProgram) -> SideResult:
    """Load the kernel-facing program as XDP and test-run it once on the input packet.

    Raises VerifierRejectedError (with the log) when the verifier refuses the program.
    """
    code = encode_program(program.kernel_program())
    with prog_load(BpfProgType.XDP, code, name="pybpf_diff") as fd:
        run = prog_test_run(fd, program.packet)
    return SideResult(run.retval, run.data_out)


def explain(program: DiffProgram, mine: SideResult) -> str | None:
    """The known divergence whose rewrite makes the kernel agree with ``mine``, if any."""
    for divergence in KNOWN_DIVERGENCES:
        rewritten = divergence.rewrite(program)
        if rewritten == program or run_interpreter(rewritten) != mine:
            continue  # not applicable, or not a no-op for us (then it explains nothing)
        try:
            if run_kernel(rewritten) == mine:
                return divergence.name
        except VerifierRejectedError:
            continue
    return None


def compare(program: DiffProgram, *, explain_known: bool = True) -> Comparison:
    mine = run_interpreter(program)
    try:
        theirs = run_kernel(program)
    except VerifierRejectedError as error:
        return Comparison(program, mine, None, error.log)
    divergence = explain(program, mine) if explain_known and theirs != mine else None
    return Comparison(program, mine, theirs, divergence=divergence)


def shrink(program: DiffProgram, still_bad: Callable[[DiffProgram], bool]) -> DiffProgram:
    """Greedily drop body blocks while ``still_bad`` holds (a simple delta-debugging pass)."""
    changed = True
    while changed:
        changed = False
        index = 0
        while index < len(program.blocks):
            candidate = program.without_block(index)
            if still_bad(candidate):
                program, changed = candidate, True
            else:
                index += 1
    return program


def disagrees(program: DiffProgram) -> bool:
    """True when the kernel accepts ``program`` and its result differs from ours."""
    outcome = compare(program, explain_known=False)
    return outcome.kernel is not None and not outcome.agree


# -- reporting ----------------------------------------------------------------------------------


def _words(packet: bytes) -> list[int]:
    return [int.from_bytes(packet[i : i + 8], "little") for i in range(0, len(packet) - len(packet) % 8, 8)]


def describe_state_differences(kernel: SideResult, mine: SideResult, program: DiffProgram) -> list[str]:
    """One line per register or stack slot whose final value differs."""
    lines = []
    if kernel.retval != mine.retval:
        lines.append(f"retval: kernel {kernel.retval:#x}, interpreter {mine.retval:#x}")
    if len(kernel.packet) != len(mine.packet):
        lines.append(f"packet length: kernel {len(kernel.packet)}, interpreter {len(mine.packet)}")
    for index, (theirs, ours) in enumerate(zip(_words(kernel.packet), _words(mine.packet), strict=False)):
        if theirs == ours:
            continue
        if index < len(DATA_REGS):
            where = f"r{index}"
        else:
            where = f"stack fp{program.slot_offset(index - len(DATA_REGS)):+d}"
        lines.append(f"{where}: kernel {theirs:#018x}, interpreter {ours:#018x}")
    return lines


def describe(program: DiffProgram) -> str:
    """The seed, the input and the interpreter-facing listing (the body is shared with the kernel's)."""
    insns = program.interpreter_program()
    body_start = sum(slot_count(insn) for insn in insns[: 2 + len(program.setup())])
    words = _words(program.packet)
    regs_in = ", ".join(f"r{i}={words[i]:#x}" for i in range(len(DATA_REGS)) if program.reg_init[i] is None)
    lines = [
        f"seed {program.seed}; stack window fp{program.window_base:+d}..fp{program.window_top:+d}",
        f"packet inputs: {regs_in}",
        f"stack inputs: {[hex(w) for w in words[len(DATA_REGS) :]]}",
        "program (as run by the interpreter; '>' marks the shared body; the kernel's prologue differs):",
        format_program(insns, body_start=body_start),
    ]
    return "\n".join(lines)


def report_disagreement(outcome: Comparison) -> str:
    """A failure message: what differs, the program, and a shrunk program that still disagrees."""
    program = outcome.program
    if outcome.kernel is None:
        return describe(program) + "\n(refused by the verifier)\n" + outcome.verifier_log[-3000:]
    parts = ["differences:", *describe_state_differences(outcome.kernel, outcome.interpreter, program)]
    if outcome.divergence is not None:
        parts.append(f"(explained by the known kernel divergence {outcome.divergence!r})")
    parts.append(describe(program))
    small = shrink(program, disagrees)
    if small != program:
        smaller = compare(small)
        if smaller.kernel is not None:
            parts.append("shrunk program that still disagrees:")
            parts.extend(describe_state_differences(smaller.kernel, smaller.interpreter, small))
            parts.append(describe(small))
    return "\n".join(parts)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(f"usage: {argv[0]} SEED", file=sys.stderr)
        return 2
    program = generate(int(argv[1]))
    print(describe(program))
    outcome = compare(program)
    print(f"interpreter: retval {outcome.interpreter.retval}, packet {outcome.interpreter.packet.hex()}")
    if outcome.kernel is None:
        print("kernel: refused\n" + outcome.verifier_log)
        return 1
    print(f"kernel:      retval {outcome.kernel.retval}, packet {outcome.kernel.packet.hex()}")
    print("agree" if outcome.agree else report_disagreement(outcome))
    return 0 if outcome.agree else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
