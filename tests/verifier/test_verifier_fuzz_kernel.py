"""Verdict-differential fuzzing: a seeded sample of generated programs, our verdict against the kernel's.

The generator (:mod:`.fuzz_gen`) and the oracle (:mod:`.fuzz_oracle`) are described there; this
runs a small sample in the suite. Longer campaigns and one-seed replays (shrunk into a corpus
case) are commands, see the README's "Benchmarks and long campaigns".
"""

from __future__ import annotations

from collections import Counter

import pytest

from pybpf.kernel.probe import available

from .corpus import verify_case
from .fuzz_gen import FRAGMENTS, PROG_TYPES, generate
from .fuzz_oracle import MAX_PROCESSED_RATIO, Comparison, Kind, as_case, compare, is_disagreement, shrink

_AVAILABLE, _REASON = available()
needs_kernel = pytest.mark.skipif(not _AVAILABLE, reason=f"bpf() unavailable: {_REASON}")

SAMPLE = range(250)

# Disagreements we keep on purpose: (kind, a fragment of our reason, of the kernel's message, why).
# Every other disagreement the campaigns found was our bug, and is fixed (tests/verifier/corpus/fuzz.txt).
INTENDED: tuple[tuple[Kind, str, str, str], ...] = (
    (Kind.STRICT, "invalid bpf_context access off=-", "",
     "tp_prog_is_valid_access compares a negative offset with sizeof(void *) as unsigned: the kernel "
     "lets tracepoints read before their record, we refuse"),
)


def _intended(comparison: Comparison) -> bool:
    ours = comparison.ours.message if comparison.ours else ""
    kernel = comparison.kernel.message if comparison.kernel else ""
    return any(kind is comparison.kind and a in ours and b in kernel for kind, a, b, _ in INTENDED)


def test_generator_is_deterministic_and_varied() -> None:
    """Same seed, same program; the sample covers every program type and fragment, and our
    verifier both accepts and rejects (else the comparison would test little)."""
    assert generate(7) == generate(7)
    programs = [generate(seed) for seed in SAMPLE]
    assert {p.prog_type for p in programs} == set(PROG_TYPES)
    assert {name for p in programs for name in p.fragments} == set(FRAGMENTS)
    verdicts = Counter(verify_case(as_case(p)).accepted for p in programs[:80])
    assert verdicts[True] >= 15 and verdicts[False] >= 15, verdicts


@pytest.mark.kernel
@needs_kernel
def test_verdicts_agree_with_the_kernel() -> None:
    comparisons = [compare(generate(seed)) for seed in SAMPLE]
    counts = Counter(c.kind for c in comparisons)
    assert counts[Kind.INVALID] == 0
    wrong = [c for c in comparisons if is_disagreement(c) and not _intended(c)]
    details = "\n".join(f"seed {c.program.seed}: {c.kind.value}: ours {c.ours}, kernel {c.kernel}" for c in wrong)
    assert not wrong, f"{len(wrong)} disagreements (replay: python -m verifier.fuzz_oracle replay SEED):\n{details}"
    ratios = [c.ratio for c in comparisons if c.ratio is not None]
    assert max(ratios) <= MAX_PROCESSED_RATIO


@pytest.mark.kernel
@needs_kernel
def test_shrink_keeps_the_property() -> None:
    """The shrinker removes lines while the property holds, and the result still has it."""
    program = next(p for p in map(generate, range(100, 400)) if compare(p).kind is Kind.AGREE_REJECT
                   and len(p.asm.splitlines()) > 15)

    def rejected(comparison: Comparison) -> bool:
        return comparison.kind is Kind.AGREE_REJECT

    small = shrink(program, rejected)
    assert rejected(compare(small))
    assert len(small.asm.splitlines()) < len(program.asm.splitlines())
