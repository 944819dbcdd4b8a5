"""Load a raw verifier test program into the kernel for its verdict (the corpus and the fuzzer share it).

A program here is what a corpus case describes (:class:`~.corpus.CorpusCase`): instructions with
``map[fd:N]`` naming the Nth map, the maps, optional BTF (value layouts, func_info) and kfunc calls
whose ``imm`` is pybpf's kfunc id (:data:`pybpf.platform.KFUNC_PROTOS`). The kernel gets the same
program with real map fds, the BTF loaded and each kfunc call resolved by name in the running
kernel's BTF (``/sys/kernel/btf/vmlinux``), as libbpf resolves an object's ``__ksym`` externs.
"""

from __future__ import annotations

import functools
import re
import struct
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, replace

from pybpf.btf import Btf
from pybpf.btf.types import BtfKind
from pybpf.errors import BpfCommandError, VerifierRejectedError
from pybpf.isa.codec import encode_program
from pybpf.isa.insn import CallKfunc, LabeledInsn, LoadImm64
from pybpf.isa.opcodes import PseudoSrc
from pybpf.kernel import btf_load
from pybpf.kernel.arena import KernelArena
from pybpf.kernel.loader import VMLINUX_BTF
from pybpf.kernel.maps import map_create
from pybpf.kernel.progs import prog_load_with_log
from pybpf.platform import KFUNC_PROTOS, BpfMapType, BpfProgType
from pybpf.verifier import MapInfo

from .corpus import CaseBtf

_MAP_SOURCES = (PseudoSrc.MAP_FD, PseudoSrc.MAP_VALUE)
_FUNC_INFO = struct.Struct("<II")  # struct bpf_func_info: insn_off (in instructions), type_id
_PROCESSED = re.compile(r"processed (\d+) insns")


@dataclass(frozen=True, slots=True)
class KernelLoad:
    """The kernel's verdict: accepted or not, its whole log (log_level as asked), processed insns."""

    accepted: bool
    log: str
    processed: int
    verifier: bool = True  # False: refused before the verifier ran (the log is the errno's error)


@functools.cache
def _vmlinux() -> Btf:
    # Parsed once per process: a few seconds, and every kfunc-calling program needs it.
    return Btf.from_bytes(VMLINUX_BTF.read_bytes())


def _resolve_kfunc(insn: CallKfunc) -> CallKfunc:
    proto = KFUNC_PROTOS.get(insn.btf_id) if insn.module == 0 else None
    if proto is None:
        return insn  # not a kfunc pybpf knows: let the kernel refuse the id as it is
    btf_id = _vmlinux().find(proto.name, BtfKind.FUNC)
    return insn if btf_id is None else CallKfunc(btf_id, 0)


def kernel_load(prog_type: BpfProgType, insns: Sequence[LabeledInsn], maps: Sequence[MapInfo], *,
                license: str = "GPL", btf: CaseBtf | None = None, log_level: int = 1) -> KernelLoad:
    """Create the maps (with their value BTF), patch fds and kfunc ids, and BPF_PROG_LOAD."""
    with ExitStack() as stack:
        btf_fd = stack.enter_context(btf_load(btf.blob)) if btf is not None else None
        fds = []
        for index, info in enumerate(maps):
            key_type, value_type = btf.map_types.get(index, (0, 0)) if btf is not None else (0, 0)
            fd = stack.enter_context(map_create(info.type, info.key_size, info.value_size, info.max_entries,
                                                map_flags=info.flags, btf_fd=btf_fd if value_type else None,
                                                btf_key_type_id=key_type, btf_value_type_id=value_type))
            fds.append(int(fd))
            if info.type == BpfMapType.ARENA:
                # The kernel loads no program using an arena before user space mapped it.
                stack.callback(KernelArena(fd, info.max_entries).close)
        patched = []
        for labeled in insns:
            insn = labeled.insn
            if isinstance(insn, LoadImm64) and insn.src in _MAP_SOURCES:
                labeled = replace(labeled, insn=replace(insn, imm=fds[insn.imm]))
            elif isinstance(insn, CallKfunc):
                labeled = replace(labeled, insn=_resolve_kfunc(insn))
            patched.append(labeled)
        funcs = btf.funcs if btf is not None else ()
        func_info = b"".join(_FUNC_INFO.pack(pc, type_id) for pc, type_id in funcs)
        try:
            loaded = prog_load_with_log(prog_type, encode_program(patched), license, log_level=log_level,
                                        btf_fd=btf_fd if func_info else None, func_info=func_info)
        except VerifierRejectedError as error:
            log = error.log or str(error)
            return KernelLoad(False, log, _processed(log))
        except BpfCommandError as error:
            return KernelLoad(False, f"{type(error).__name__}: {error}", 0, verifier=False)
        loaded.fd.close()
        return KernelLoad(True, loaded.log, _processed(loaded.log))


def _processed(log: str) -> int:
    match = _PROCESSED.search(log)
    return int(match[1]) if match else 0
