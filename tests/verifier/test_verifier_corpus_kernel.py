"""Differential: every corpus program is loaded into the kernel too, and the verdicts must agree.

Maps named in a case are created for real and their fds patched into the ``lddw`` pseudo
instructions. A case may say ``kernel: <reason>`` when we disagree on purpose (an allow-list with
reasons), and ``kernel-message: <reason>`` when the verdict agrees but the kernel words it otherwise.
"""

from __future__ import annotations

import pytest

from pybpf.kernel.probe import available

from .corpus import CorpusCase, assemble_case, load_corpus, verify_case
from .kernel_load import kernel_load

_AVAILABLE, _REASON = available()
pytestmark = [pytest.mark.kernel, pytest.mark.skipif(not _AVAILABLE, reason=_REASON or "bpf() unavailable")]

CASES = load_corpus()


def kernel_verdict(case: CorpusCase) -> str | None:
    """None when the kernel accepts the program, else its whole verifier log.

    A case's BTF (value layouts, func_info) is loaded first; its maps are created with their
    key and value types, the program with its func_info records, its kfunc calls resolved by name."""
    loaded = kernel_load(case.prog_type, assemble_case(case), case.maps, license=case.license, btf=case.btf)
    return None if loaded.accepted else loaded.log


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_corpus_agrees_with_kernel(case: CorpusCase) -> None:
    if not case.privileged:
        pytest.skip("unprivileged rules: the kernel here refuses unprivileged bpf() (unprivileged_bpf_disabled)")
    ours = verify_case(case)
    kernel_log = kernel_verdict(case)
    if case.kernel_differs is not None:
        pytest.skip(f"intentional difference: {case.kernel_differs}")
    if kernel_log is None:
        assert ours.accepted, f"the kernel accepts; we said {ours.summary()}"
        return
    assert not ours.accepted, f"the kernel rejects; we accepted. Kernel log:\n{kernel_log}"
    if case.kernel_message_differs is None:
        assert ours.reason is not None
        assert ours.reason in kernel_log, f"we said {ours.reason!r}; kernel log:\n{kernel_log}"
