"""The verifier-verdict differential fuzzer: our verdict against the kernel's, per generated program.

Each program from :mod:`.fuzz_gen` is verified by us (privileged rules) and loaded into the kernel
(its maps created for real, their fds patched into the ``lddw`` pseudo instructions). The two
verdicts must agree; when both accept, our processed-instruction count should stay within
:data:`MAX_PROCESSED_RATIO` times the kernel's. A disagreement is shrunk (lines removed while the
same disagreement persists) into a small program that can go into the corpus as it is.

Run from the repository root (``tests`` on the path, as pytest has it)::

    PYTHONPATH=src:tests python -m verifier.fuzz_oracle campaign            # PYBPF_VFUZZ_SEEDS seeds
    PYTHONPATH=src:tests python -m verifier.fuzz_oracle replay SEED         # one seed, shrunk

``PYBPF_VFUZZ_SEEDS`` is a count or ``first:stop`` (default 2000). The campaign prints the
disagreements grouped by our reason and the kernel's message, soundness ones (we accept, the
kernel rejects) first.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from enum import Enum
from typing import TextIO

from pybpf.asm import Syntax, assemble
from pybpf.errors import PybpfError
from pybpf.isa.insn import LabeledInsn
from pybpf.kernel.logbuf import summarize_log

from .corpus import CorpusCase, resolve_kfunc_names, verify_case, with_btf
from .fuzz_gen import FuzzProgram, generate
from .kernel_load import kernel_load

MAX_PROCESSED_RATIO = 10.0
"""Our processed-instruction count may be at most this many times the kernel's."""

MESSAGE_GROUPS = 12
"""How many groups of differently worded rejections the campaign report lists."""

DEFAULT_TIMEOUT = 20.0
"""Seconds our verifier may take on one program before the comparison says TIMEOUT."""



class Kind(Enum):
    """How one program's verdicts compare."""

    AGREE_ACCEPT = "both accept"
    AGREE_REJECT = "both reject"
    UNSOUND = "we accept, the kernel rejects"
    STRICT = "we reject, the kernel accepts"
    CRASH = "our verifier raised"
    TIMEOUT = "our verifier took too long"
    INVALID = "the program does not assemble"


@dataclass(frozen=True, slots=True)
class Verdict:
    accepted: bool
    message: str  # our reason / the kernel's cause line; "" when accepted
    processed: int
    context: str = ""  # the kernel's last log lines (its reason may span several)


@dataclass(frozen=True, slots=True)
class Comparison:
    program: FuzzProgram
    kind: Kind
    ours: Verdict | None
    kernel: Verdict | None

    @property
    def ratio(self) -> float | None:
        """Our processed count over the kernel's, when both accept."""
        if self.kind is not Kind.AGREE_ACCEPT or self.ours is None or self.kernel is None:
            return None
        return self.ours.processed / max(self.kernel.processed, 1)

    @property
    def messages_differ(self) -> bool:
        """Both reject, but our reason is not in the kernel's message (informational only)."""
        return (self.kind is Kind.AGREE_REJECT and self.ours is not None and self.kernel is not None
                and self.ours.message not in self.kernel.context)


def as_case(program: FuzzProgram) -> CorpusCase:
    """The program as the corpus would read it: maps with their value BTF, func_info when asked."""
    asm = resolve_kfunc_names(program.asm)
    maps, btf = with_btf(program.maps, program.value_btf, program.func_info, asm,
                         global_funcs=program.global_funcs, prog_type=program.prog_type)
    return CorpusCase(name=f"fuzz-{program.seed}", file="fuzz.txt", prog_type=program.prog_type, maps=maps,
                      license="GPL", expected=None, kernel_differs=None, kernel_message_differs=None,
                      asm=asm, btf=btf)


def our_verdict(case: CorpusCase) -> Verdict:
    report = verify_case(case)
    return Verdict(report.accepted, report.reason or "", report.processed_insns)


def kernel_verdict(case: CorpusCase, insns: Sequence[LabeledInsn]) -> Verdict:
    """The kernel's verdict: the cause line of its log when it rejects, the processed count."""
    loaded = kernel_load(case.prog_type, insns, case.maps, btf=case.btf)
    if loaded.accepted or not loaded.verifier:
        return Verdict(loaded.accepted, "" if loaded.accepted else loaded.log, loaded.processed)
    summary = summarize_log(loaded.log, tail_lines=3)
    return Verdict(False, summary.cause, loaded.processed, "\n".join(summary.tail))


class _OutOfTime(BaseException):
    """Raised by the timer inside our verifier (a BaseException: nothing there may catch it)."""


def _out_of_time(_signum: int, _frame: object) -> None:
    raise _OutOfTime


def compare(program: FuzzProgram, *, timeout: float = DEFAULT_TIMEOUT) -> Comparison:
    """Both verdicts for ``program``; our verifier gets ``timeout`` seconds (the kernel's own
    budget is 1M processed instructions, a few seconds at most)."""
    try:
        insns = assemble(resolve_kfunc_names(program.asm), Syntax.LLVM)
    except PybpfError:
        return Comparison(program, Kind.INVALID, None, None)
    case = as_case(program)
    kernel = kernel_verdict(case, insns)
    previous = signal.signal(signal.SIGALRM, _out_of_time)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        ours = our_verdict(case)
    except _OutOfTime:
        return Comparison(program, Kind.TIMEOUT, Verdict(False, f"more than {timeout:g}s", 0), kernel)
    except Exception as error:  # a crash is a finding, reported with the kernel's verdict
        return Comparison(program, Kind.CRASH, Verdict(False, f"{type(error).__name__}: {error}", 0), kernel)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    if ours.accepted and kernel.accepted:
        kind = Kind.AGREE_ACCEPT
    elif not ours.accepted and not kernel.accepted:
        kind = Kind.AGREE_REJECT
    else:
        kind = Kind.UNSOUND if ours.accepted else Kind.STRICT
    return Comparison(program, kind, ours, kernel)


def is_disagreement(comparison: Comparison) -> bool:
    return comparison.kind in (Kind.UNSOUND, Kind.STRICT, Kind.CRASH, Kind.TIMEOUT)


def shrink(program: FuzzProgram, keep: Callable[[Comparison], bool] | None = None) -> FuzzProgram:
    """The program with as many lines removed as possible while ``keep`` (by default: the same
    kind of disagreement) still holds. Labels stay; a line whose removal breaks assembly stays."""
    want = compare(program).kind
    predicate = keep or (lambda comparison: comparison.kind is want)
    lines = program.asm.splitlines()
    changed = True
    while changed:
        changed = False
        for chunk in (8, 4, 2, 1):
            index = 0
            while index < len(lines):
                window = lines[index:index + chunk]
                if any(line.endswith(":") for line in window) or lines[index:index + chunk] == ["exit"]:
                    index += 1
                    continue
                candidate = lines[:index] + lines[index + chunk:]
                trial = replace(program, asm="\n".join(candidate) + "\n")
                if predicate(compare(trial)):
                    lines = candidate
                    changed = True
                else:
                    index += 1
    # Drop labels nothing refers to any more.
    text = "\n".join(lines)
    kept = [line for line in lines
            if not line.endswith(":") or re.search(rf"\b{re.escape(line[:-1])}\b", text.replace(line, ""))]
    shrunk = replace(program, asm="\n".join(kept) + "\n")
    return shrunk if predicate(compare(shrunk)) else replace(program, asm="\n".join(lines) + "\n")


def normalise(message: str) -> str:
    """A message with its numbers and register names blurred, to group similar ones."""
    text = re.sub(r"0x[0-9a-f]+|-?\d+", "N", message)
    text = re.sub(r"\b[Rr]N\b", "R?", text)
    return text[:110]


def corpus_block(comparison: Comparison, name: str) -> str:
    """The program as a corpus case (tests/verifier/corpus.py) with the kernel's verdict."""
    program = comparison.program
    kernel = comparison.kernel
    lines = [f"### {name}", f"# fuzz seed {program.seed}: {comparison.kind.value}"]
    if program.prog_type.name != "SOCKET_FILTER":
        lines.append(f"type: {program.prog_type.name.lower()}")
    if program.maps:
        spec = []
        for info in program.maps:
            text = f"{info.type.name.lower()}:{info.key_size}:{info.value_size}:{info.max_entries}"
            spec.append(text + (":rdonly" if info.readonly else ""))
        lines.append("maps: " + " ".join(spec))
    if program.value_btf:
        lines.append(f"value-btf: {program.value_btf}")
    if program.func_info:
        lines.append("func-info: yes")
    if program.global_funcs:
        lines.append(f"global-funcs: {program.global_funcs}")
    lines.append("expect: accept" if kernel is None or kernel.accepted else f"expect: reject {kernel.message}")
    lines.append("---")
    return "\n".join(lines) + "\n" + program.asm


@dataclass
class Campaign:
    """Every seed's comparison, and the summary of a run."""

    comparisons: list[Comparison]
    seconds: float

    def counts(self) -> Counter[Kind]:
        return Counter(comparison.kind for comparison in self.comparisons)

    def agreement(self) -> float:
        counts = self.counts()
        judged = len(self.comparisons) - counts[Kind.INVALID]
        return (counts[Kind.AGREE_ACCEPT] + counts[Kind.AGREE_REJECT]) / max(judged, 1)

    def report(self, out: TextIO) -> None:
        counts = self.counts()
        total = len(self.comparisons)
        out.write(f"{total} programs in {self.seconds:.1f}s; agreement {self.agreement():.2%}\n")
        for kind in Kind:
            out.write(f"  {kind.value:32} {counts[kind]}\n")
        groups: dict[tuple[Kind, str, str], list[int]] = defaultdict(list)
        for comparison in self.comparisons:
            if is_disagreement(comparison):
                ours = normalise(comparison.ours.message) if comparison.ours else ""
                kernel = normalise(comparison.kernel.message) if comparison.kernel else ""
                groups[(comparison.kind, ours, kernel)].append(comparison.program.seed)
        order = {Kind.UNSOUND: 0, Kind.CRASH: 1, Kind.STRICT: 2, Kind.TIMEOUT: 3}
        for (kind, ours, kernel), seeds in sorted(groups.items(), key=lambda item: (order[item[0][0]],
                                                                                    -len(item[1]))):
            out.write(f"\n[{kind.value}] x{len(seeds)}  seeds {seeds[:8]}\n    ours:   {ours or '(accepted)'}\n"
                      f"    kernel: {kernel or '(accepted)'}\n")
        ratios = sorted((c.ratio, c.program.seed) for c in self.comparisons if c.ratio is not None)
        if ratios:
            worst, seed = ratios[-1]
            over = sum(1 for ratio, _ in ratios if ratio > MAX_PROCESSED_RATIO)
            out.write(f"\nprocessed-insns ratio (ours/kernel) over {len(ratios)} accepted: median "
                      f"{ratios[len(ratios) // 2][0]:.2f}, max {worst:.2f} (seed {seed}), over "
                      f"{MAX_PROCESSED_RATIO:g}x: {over}\n")
        differing: dict[tuple[str, str], list[int]] = defaultdict(list)
        for c in self.comparisons:
            if c.messages_differ and c.ours is not None and c.kernel is not None:
                differing[(normalise(c.ours.message), normalise(c.kernel.message))].append(c.program.seed)
        out.write(f"both reject but our reason is not in the kernel's message: "
                  f"{sum(map(len, differing.values()))}\n")
        for (ours, kernel), seeds in sorted(differing.items(), key=lambda item: -len(item[1]))[:MESSAGE_GROUPS]:
            out.write(f"  x{len(seeds)}  seeds {seeds[:4]}\n    ours:   {ours}\n    kernel: {kernel}\n")


def run_campaign(seeds: Sequence[int], *, progress: TextIO | None = None,
                 timeout: float = DEFAULT_TIMEOUT) -> Campaign:
    start = time.monotonic()
    comparisons = []
    for index, seed in enumerate(seeds):
        comparisons.append(compare(generate(seed), timeout=timeout))
        if progress is not None and index % 500 == 499:
            progress.write(f"... {index + 1} programs\n")
            progress.flush()
    return Campaign(comparisons, time.monotonic() - start)


def seed_range(spec: str) -> range:
    """``N`` (seeds 0..N-1) or ``first:stop``."""
    first, _, stop = spec.rpartition(":")
    return range(int(first or 0), int(stop))


def main(argv: Sequence[str] | None = None, out: TextIO = sys.stdout) -> int:
    parser = argparse.ArgumentParser(prog="python -m verifier.fuzz_oracle", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("campaign", help="compare many seeds and summarise the disagreements")
    run.add_argument("--seeds", default=os.environ.get("PYBPF_VFUZZ_SEEDS", "2000"))
    run.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds our verifier may take per program")
    replay = commands.add_parser("replay", help="one seed: its program, both verdicts, and shrunk when they differ")
    replay.add_argument("seed", type=int)
    replay.add_argument("--no-shrink", action="store_true")
    args = parser.parse_args(argv)
    if args.command == "campaign":
        campaign = run_campaign(seed_range(args.seeds), progress=sys.stderr, timeout=args.timeout)
        campaign.report(out)
        return 1 if campaign.counts()[Kind.UNSOUND] or campaign.counts()[Kind.CRASH] else 0
    program = generate(args.seed)
    comparison = compare(program)
    out.write(f"seed {program.seed}: {program.prog_type.name} fragments={list(program.fragments)} "
              f"mutations={list(program.mutations)}\n{program.asm}\n")
    out.write(f"{comparison.kind.value}\n  ours:   {comparison.ours}\n  kernel: {comparison.kernel}\n")
    if is_disagreement(comparison) and not args.no_shrink:
        shrunk = shrink(program)
        out.write("\nshrunk, as a corpus case:\n\n" + corpus_block(compare(shrunk), f"fuzz-{program.seed}") + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
