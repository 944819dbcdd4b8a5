"""Differential: every corpus program is loaded into the kernel too, and the verdicts must agree.

Maps named in a case are created for real and their fds patched into the ``lddw`` pseudo
instructions. A case may say ``kernel: <reason>`` when we disagree on purpose (an allow-list with
reasons), and ``kernel-message: <reason>`` when the verdict agrees but the kernel words it otherwise.
"""

from __future__ import annotations

import struct
from contextlib import ExitStack
from dataclasses import replace

import pytest

from pybpf.errors import BpfCommandError, VerifierRejectedError
from pybpf.isa.codec import encode_program
from pybpf.isa.insn import LoadImm64
from pybpf.isa.opcodes import PseudoSrc
from pybpf.kernel import btf_load
from pybpf.kernel.maps import map_create
from pybpf.kernel.probe import available
from pybpf.kernel.progs import prog_load

from .corpus import CorpusCase, assemble_case, load_corpus, verify_case

_AVAILABLE, _REASON = available()
pytestmark = [pytest.mark.kernel, pytest.mark.skipif(not _AVAILABLE, reason=_REASON or "bpf() unavailable")]

CASES = load_corpus()
_MAP_SOURCES = (PseudoSrc.MAP_FD, PseudoSrc.MAP_VALUE)
_FUNC_INFO = struct.Struct("<II")  # struct bpf_func_info: insn_off (in instructions), type_id


def kernel_verdict(case: CorpusCase) -> str | None:
    """None when the kernel accepts the program, else its whole verifier log.

    A case's BTF (value layouts, func_info) is loaded first; its maps are created with their
    key and value types, the program with its func_info records."""
    insns = assemble_case(case)
    with ExitStack() as stack:
        btf_fd = stack.enter_context(btf_load(case.btf.blob)) if case.btf is not None else None
        fds = []
        for index, info in enumerate(case.maps):
            key_type, value_type = case.btf.map_types.get(index, (0, 0)) if case.btf is not None else (0, 0)
            fd = stack.enter_context(map_create(info.type, info.key_size, info.value_size, info.max_entries,
                                                map_flags=info.flags, btf_fd=btf_fd if value_type else None,
                                                btf_key_type_id=key_type, btf_value_type_id=value_type))
            fds.append(int(fd))
        patched = [
            replace(labeled, insn=replace(labeled.insn, imm=fds[labeled.insn.imm]))
            if isinstance(labeled.insn, LoadImm64) and labeled.insn.src in _MAP_SOURCES else labeled
            for labeled in insns
        ]
        try:
            funcs = case.btf.funcs if case.btf is not None else ()
            func_info = b"".join(_FUNC_INFO.pack(pc, type_id) for pc, type_id in funcs)
            fd = prog_load(case.prog_type, encode_program(patched), case.license, log_level=1,
                           btf_fd=btf_fd if func_info else None, func_info=func_info)
        except VerifierRejectedError as error:
            return error.log or str(error)
        except BpfCommandError as error:
            return f"{type(error).__name__}: {error}"
        fd.close()
        return None


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
