"""Differential: our structural verdict against the kernel's on the hand-built programs."""

from __future__ import annotations

import pytest

from pybpf.errors import VerifierError, VerifierRejectedError
from pybpf.isa.codec import encode_program
from pybpf.kernel.probe import available
from pybpf.kernel.progs import prog_load
from pybpf.kernel.uapi import BpfProgType
from pybpf.verifier.structure import check_structure

from .programs import CASES, Case, label

_AVAILABLE, _REASON = available()
pytestmark = [pytest.mark.kernel, pytest.mark.skipif(not _AVAILABLE, reason=_REASON or "bpf() unavailable")]


def _kernel_verdict(case: Case) -> str | None:
    """None when the kernel loads the program, else its log's last statement."""
    try:
        with prog_load(BpfProgType.SOCKET_FILTER, encode_program(case.insns), log_level=1):
            return None
    except VerifierRejectedError as error:
        return error.log


def _our_verdict(case: Case) -> str | None:
    try:
        check_structure(label(case.insns))
    except VerifierError as error:
        return error.reason
    return None


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_structure_agrees_with_kernel(case: Case) -> None:
    kernel_log = _kernel_verdict(case)
    ours = _our_verdict(case)
    if kernel_log is None:
        assert ours is None
        return
    assert ours is not None, f"kernel rejected, we accepted; log:\n{kernel_log}"
    assert ours in kernel_log.splitlines(), f"we said {ours!r}; kernel log:\n{kernel_log}"
