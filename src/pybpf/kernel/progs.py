"""Program commands: BPF_PROG_LOAD with the verifier log, and BPF_PROG_TEST_RUN.

Loading first runs without a log (the fast path, and no buffer to size). When the kernel
refuses the program, it loads again with ``log_level`` 1 and a buffer that grows on ENOSPC
until the whole log fits, and raises :class:`~pybpf.errors.VerifierRejectedError` with it.
"""

from __future__ import annotations

import ctypes
import errno as errno_codes
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypedDict, Unpack

from pybpf.errors import BpfCommandError, InvalidArgumentError, VerifierRejectedError
from pybpf.kernel.attrs import ProgLoadAttr, TestRunAttr
from pybpf.kernel.fd import Fd, FdLike, fd_number
from pybpf.kernel.logbuf import LogCapture, load_with_log, summarize_log
from pybpf.kernel.maps import encode_obj_name
from pybpf.kernel.syscall import BpfCmd, RawSyscall, bpf, command_name, errno_name, error_for, libc_syscall
from pybpf.kernel.uapi import BpfAttachType, BpfProgType

INSN_SIZE = 8
"""Bytes per instruction slot."""

BPF_FUNC_INFO_REC_SIZE = 8
"""``sizeof(struct bpf_func_info)``: insn_off, type_id."""

BPF_LINE_INFO_REC_SIZE = 16
"""``sizeof(struct bpf_line_info)``: insn_off, file_name_off, line_off, line_col."""

DEFAULT_LOG_CAP = 64 << 20
"""Largest verifier log buffer we grow to (64 MiB)."""

# The verifier returns EAGAIN when a signal interrupts it; libbpf retries a few times too.
_EAGAIN_RETRIES = 5


@dataclass(frozen=True, slots=True)
class LoadedProgram:
    """A program in the kernel, with the verifier log of its load (empty at log_level 0)."""

    fd: Fd
    log: str


@dataclass(frozen=True, slots=True)
class KernelTestRun:
    """What BPF_PROG_TEST_RUN reports.

    ``duration_ns`` is the kernel's average time per run over ``repeat`` runs.
    """

    retval: int
    data_out: bytes
    ctx_out: bytes
    duration_ns: int


def _record_count(what: str, data: bytes, rec_size: int) -> int:
    if rec_size <= 0 or len(data) % rec_size:
        raise InvalidArgumentError(
            f"BPF_PROG_LOAD: {what} is {len(data)} bytes, not a multiple of its record size {rec_size}",
            errno_codes.EINVAL,
            command=command_name(BpfCmd.PROG_LOAD),
        )
    return len(data) // rec_size


def prog_load_with_log(
    prog_type: BpfProgType | int,
    insns: bytes,
    license: str = "GPL",
    *,
    log_level: int = 0,
    expected_attach_type: BpfAttachType | int | None = None,
    btf_fd: FdLike | None = None,
    func_info: bytes = b"",
    func_info_rec_size: int = BPF_FUNC_INFO_REC_SIZE,
    line_info: bytes = b"",
    line_info_rec_size: int = BPF_LINE_INFO_REC_SIZE,
    name: str = "",
    prog_flags: int = 0,
    kern_version: int = 0,
    attach_btf_id: int = 0,
    attach_prog_fd: FdLike | None = None,
    fd_array: Sequence[int] | None = None,
    log_cap: int = DEFAULT_LOG_CAP,
    syscall: RawSyscall | None = None,
) -> LoadedProgram:
    """BPF_PROG_LOAD; returns the program and, when ``log_level`` > 0, the verifier's log.

    ``insns`` is the encoded program (8 bytes per slot); ``func_info`` and ``line_info`` are
    the packed ``bpf_func_info``/``bpf_line_info`` records for ``btf_fd``. On rejection raises
    VerifierRejectedError (``.log`` is the whole log), or the errno's error when the kernel
    wrote no log (PermissionDeniedError without CAP_BPF, for instance).
    """
    if not insns or len(insns) % INSN_SIZE:
        raise InvalidArgumentError(
            f"BPF_PROG_LOAD: program is {len(insns)} bytes, not a positive multiple of {INSN_SIZE}",
            errno_codes.EINVAL,
            command=command_name(BpfCmd.PROG_LOAD),
        )
    raw = libc_syscall if syscall is None else syscall
    insns_buffer = ctypes.create_string_buffer(insns, len(insns))
    license_buffer = ctypes.create_string_buffer(license.encode("ascii"))
    func_info_buffer = ctypes.create_string_buffer(func_info, max(len(func_info), 1))
    line_info_buffer = ctypes.create_string_buffer(line_info, max(len(line_info), 1))
    fd_array_buffer = (ctypes.c_int32 * max(len(fd_array or ()), 1))(*(fd_array or ()))

    attr = ProgLoadAttr(
        prog_type=int(prog_type),
        insn_cnt=len(insns) // INSN_SIZE,
        insns=ctypes.addressof(insns_buffer),
        license=ctypes.addressof(license_buffer),
        kern_version=kern_version,
        prog_flags=prog_flags,
        prog_name=encode_obj_name(name, BpfCmd.PROG_LOAD),
        attach_btf_id=attach_btf_id,
    )
    if expected_attach_type is not None:
        attr.expected_attach_type = int(expected_attach_type)
    if btf_fd is not None:
        attr.prog_btf_fd = fd_number(btf_fd)
    if func_info:
        attr.func_info_rec_size = func_info_rec_size
        attr.func_info = ctypes.addressof(func_info_buffer)
        attr.func_info_cnt = _record_count("func_info", func_info, func_info_rec_size)
    if line_info:
        attr.line_info_rec_size = line_info_rec_size
        attr.line_info = ctypes.addressof(line_info_buffer)
        attr.line_info_cnt = _record_count("line_info", line_info, line_info_rec_size)
    if attach_prog_fd is not None:
        attr.attach_prog_fd = fd_number(attach_prog_fd)
    if fd_array:
        attr.fd_array = ctypes.addressof(fd_array_buffer)

    def attempt(capture: LogCapture | None) -> int:
        if capture is None:
            attr.log_level, attr.log_size, attr.log_buf = 0, 0, 0
        else:
            attr.log_level = capture.level
            attr.log_size = capture.size
            attr.log_buf = capture.address
        attr.log_true_size = 0
        for _ in range(_EAGAIN_RETRIES):
            result = raw(BpfCmd.PROG_LOAD, attr)
            if result != -errno_codes.EAGAIN:
                break
        if capture is not None:
            capture.true_size = int(attr.log_true_size)
        return result

    outcome = load_with_log(attempt, log_level=log_level, log_cap=log_cap)
    if outcome.result >= 0:
        return LoadedProgram(Fd(outcome.result), outcome.log)
    code = -outcome.result
    if not outcome.log.strip():
        raise error_for(BpfCmd.PROG_LOAD, code)
    raise verifier_error(code, outcome.log, truncated=outcome.truncated)


def verifier_error(code: int, log: str, *, truncated: bool = False) -> VerifierRejectedError:
    """VerifierRejectedError for a load that failed with ``code`` and wrote ``log``.

    Its message names the cause (the log's last statement before the statistics line) and
    quotes the last lines, in the manner of cilium's VerifierError; ``.log`` keeps it all.
    """
    summary = summarize_log(log)
    lines = [f"BPF_PROG_LOAD: the verifier rejected the program ({errno_name(code)}): {summary.cause}"]
    if summary.omitted:
        lines.append(f"  ({summary.omitted} line(s) omitted)")
    lines.extend(f"  {line}" for line in summary.tail)
    if truncated:
        lines.append("  (log truncated: it outgrew the log buffer cap)")
    return VerifierRejectedError("\n".join(lines), code, log, command_name(BpfCmd.PROG_LOAD))


class ProgLoadOptions(TypedDict, total=False):
    """The keyword options :func:`prog_load` passes on to :func:`prog_load_with_log`."""

    log_level: int
    expected_attach_type: BpfAttachType | int | None
    btf_fd: FdLike | None
    func_info: bytes
    func_info_rec_size: int
    line_info: bytes
    line_info_rec_size: int
    name: str
    prog_flags: int
    kern_version: int
    attach_btf_id: int
    attach_prog_fd: FdLike | None
    fd_array: Sequence[int] | None
    log_cap: int
    syscall: RawSyscall | None


def prog_load(
    prog_type: BpfProgType | int, insns: bytes, license: str = "GPL", **options: Unpack[ProgLoadOptions]
) -> Fd:
    """BPF_PROG_LOAD: :func:`prog_load_with_log` without the log of a successful load."""
    return prog_load_with_log(prog_type, insns, license, **options).fd


# Room for a program to grow its packet (XDP headroom is 256 bytes, bpf_xdp_adjust_tail and
# skb helpers can add more) without the kernel failing the run with ENOSPC.
_DATA_OUT_SLACK = 4096


def prog_test_run(
    fd: FdLike,
    data_in: bytes = b"",
    *,
    ctx_in: bytes | None = None,
    data_size_out: int | None = None,
    ctx_size_out: int | None = None,
    repeat: int = 1,
    flags: int = 0,
    cpu: int = 0,
    batch_size: int = 0,
    syscall: RawSyscall | None = None,
) -> KernelTestRun:
    """BPF_PROG_TEST_RUN: run the program ``repeat`` times on ``data_in`` (and ``ctx_in``).

    ``data_size_out`` defaults to ``len(data_in)`` plus room to grow (none when there is no
    data); ``ctx_size_out`` to ``len(ctx_in)``. A too-small output buffer makes the kernel
    fail with ENOSPC, raised as NoSpaceError with the size it needed.
    """
    if data_size_out is None:
        data_size_out = len(data_in) + _DATA_OUT_SLACK if data_in else 0
    if ctx_size_out is None:
        ctx_size_out = len(ctx_in) if ctx_in else 0
    data_in_buffer = ctypes.create_string_buffer(data_in, max(len(data_in), 1))
    data_out_buffer = ctypes.create_string_buffer(max(data_size_out, 1))
    ctx = ctx_in or b""
    ctx_in_buffer = ctypes.create_string_buffer(ctx, max(len(ctx), 1))
    ctx_out_buffer = ctypes.create_string_buffer(max(ctx_size_out, 1))
    attr = TestRunAttr(
        prog_fd=fd_number(fd),
        data_size_in=len(data_in),
        data_size_out=data_size_out,
        repeat=repeat,
        ctx_size_in=len(ctx),
        ctx_size_out=ctx_size_out,
        flags=flags,
        cpu=cpu,
        batch_size=batch_size,
    )
    if data_in:
        attr.data_in = ctypes.addressof(data_in_buffer)
    if data_size_out:
        attr.data_out = ctypes.addressof(data_out_buffer)
    if ctx:
        attr.ctx_in = ctypes.addressof(ctx_in_buffer)
    if ctx_size_out:
        attr.ctx_out = ctypes.addressof(ctx_out_buffer)
    try:
        bpf(BpfCmd.PROG_TEST_RUN, attr, syscall=syscall)
    except BpfCommandError as error:
        if error.errno == errno_codes.ENOSPC:
            error.add_note(f"output needs data_size_out={attr.data_size_out}, ctx_size_out={attr.ctx_size_out}")
        raise
    data_len = min(int(attr.data_size_out), data_size_out)
    ctx_len = min(int(attr.ctx_size_out), ctx_size_out)
    return KernelTestRun(
        retval=int(attr.retval),
        data_out=data_out_buffer.raw[:data_len],
        ctx_out=ctx_out_buffer.raw[:ctx_len],
        duration_ns=int(attr.duration),
    )
