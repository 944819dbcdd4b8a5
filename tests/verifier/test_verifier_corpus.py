"""Every corpus program gets the verdict (and, for rejections, the reason) written next to it."""

from __future__ import annotations

import pytest

from .corpus import CorpusCase, load_corpus, verify_case

CASES = load_corpus()


def test_corpus_is_large_and_balanced() -> None:
    accepted = [case for case in CASES if case.expected is None]
    rejected = [case for case in CASES if case.expected is not None]
    assert len(CASES) >= 100
    assert len(accepted) >= 30 and len(rejected) >= 50


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_corpus_case(case: CorpusCase) -> None:
    report = verify_case(case)
    if case.expected is None:
        assert report.accepted, report.summary()
        assert report.processed_insns > 0
    else:
        assert not report.accepted, f"accepted, expected {case.expected!r}"
        assert report.reason == case.expected, report.summary()
        error = report.error
        assert error is not None
        # A diagnostic at an instruction shows that instruction's text.
        assert error.pc is None or error.insn is not None
