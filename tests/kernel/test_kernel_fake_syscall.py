"""The kernel layer against fake system calls: no root, no kernel, deterministic.

A fake is any ``(cmd, attr) -> result | -errno``; the fakes below read and write the attr
structures and the user buffers they point to, as the kernel would.
"""

from __future__ import annotations

import ctypes
import errno
import gc
import os
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from pybpf import errors
from pybpf.kernel import (
    BpfCmd,
    BpfMapType,
    BpfProgType,
    BpfUpdateFlag,
    Fd,
    RawSyscall,
    available,
    map_create,
    map_delete,
    map_get_next_key,
    map_keys,
    map_lookup,
    map_update,
    prog_load,
    prog_load_with_log,
    prog_test_run,
)
from pybpf.kernel.fd import BadFdError, ClosedFdError, fd_number
from pybpf.kernel.logbuf import summarize_log
from pybpf.kernel.syscall import ENOTSUPP, bpf, bpf_syscall_number, error_for

R0_42_EXIT = b"\xb7\x00\x00\x00\x2a\x00\x00\x00" + b"\x95" + bytes(7)


@pytest.fixture
def devnull_fds() -> Iterator[list[int]]:
    """Real descriptors for fakes to hand out, so Fd can close them; leaks are caught."""
    opened: list[int] = []
    yield opened
    leaked = []
    for fd in opened:
        try:
            os.fstat(fd)
        except OSError:
            continue
        leaked.append(fd)
        os.close(fd)
    assert leaked == [], "descriptors not closed by their Fd"


def _failing(code: int) -> RawSyscall:
    def fake(cmd: BpfCmd, attr: ctypes.Structure) -> int:
        return -code

    return fake


# --- errno -> exception -----------------------------------------------------------------


def test_eperm_says_needs_cap_bpf_or_root() -> None:
    with pytest.raises(errors.PermissionDeniedError) as caught:
        map_create(BpfMapType.HASH, 4, 4, 1, syscall=_failing(errno.EPERM))
    error = caught.value
    assert "needs CAP_BPF or root" in str(error)
    assert error.errno == errno.EPERM
    assert error.command == "BPF_MAP_CREATE"
    assert isinstance(error, errors.KernelError)


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        (errno.EPERM, errors.PermissionDeniedError),
        (errno.EACCES, errors.PermissionDeniedError),
        (errno.ENOENT, errors.ObjectNotFoundError),
        (errno.E2BIG, errors.ArgumentTooBigError),
        (errno.EINVAL, errors.InvalidArgumentError),
        (errno.ENOSPC, errors.NoSpaceError),
        (errno.EEXIST, errors.AlreadyExistsError),
        (errno.EBUSY, errors.ResourceBusyError),
        (errno.ENOSYS, errors.KernelNotSupportedError),
        (errno.EOPNOTSUPP, errors.KernelNotSupportedError),
        (ENOTSUPP, errors.KernelNotSupportedError),
        (errno.EFAULT, errors.BpfCommandError),
    ],
    ids=lambda value: errno.errorcode.get(value, str(value)) if isinstance(value, int) else value.__name__,
)
def test_errno_maps_to_its_class(code: int, cls: type[errors.BpfCommandError]) -> None:
    error = error_for(BpfCmd.MAP_LOOKUP_ELEM, code)
    assert type(error) is cls
    assert error.errno == code
    assert "BPF_MAP_LOOKUP_ELEM" in str(error)


def test_not_supported_errors_are_also_not_supported_error() -> None:
    assert isinstance(error_for(BpfCmd.PROG_LOAD, errno.ENOSYS), errors.NotSupportedError)


def test_eperm_on_map_write_mentions_frozen_maps() -> None:
    assert "frozen" in str(error_for(BpfCmd.MAP_UPDATE_ELEM, errno.EPERM))
    assert "frozen" not in str(error_for(BpfCmd.MAP_CREATE, errno.EPERM))


def test_bpf_returns_the_result_and_passes_cmd_and_attr() -> None:
    seen: list[tuple[BpfCmd, ctypes.Structure]] = []

    class Attr(ctypes.Structure):
        _fields_ = [("x", ctypes.c_uint32)]

    def fake(cmd: BpfCmd, given: ctypes.Structure) -> int:
        seen.append((cmd, given))
        return 7

    instance = Attr(x=1)
    assert bpf(BpfCmd.MAP_FREEZE, instance, syscall=fake) == 7
    assert seen == [(BpfCmd.MAP_FREEZE, instance)]


def test_syscall_number_by_architecture() -> None:
    assert bpf_syscall_number("linux", "x86_64") == 321
    assert bpf_syscall_number("linux", "aarch64") == 280
    with pytest.raises(errors.NotSupportedError, match="riscv64"):
        bpf_syscall_number("linux", "riscv64")
    with pytest.raises(errors.NotSupportedError, match="Linux"):
        bpf_syscall_number("darwin", "x86_64")


# --- Fd ---------------------------------------------------------------------------------


def test_fd_closes_exactly_once() -> None:
    closed: list[int] = []
    fd = Fd(5, closer=closed.append)
    assert fd.fileno() == 5 and not fd.closed
    fd.close()
    fd.close()
    assert closed == [5]
    assert fd.closed
    with pytest.raises(ClosedFdError):
        fd.fileno()


def test_fd_context_manager_closes_and_finalizer_does_not_close_again() -> None:
    closed: list[int] = []
    with Fd(6, closer=closed.append) as fd:
        assert fd_number(fd) == 6
    assert closed == [6]
    del fd
    gc.collect()
    assert closed == [6]


def test_fd_finalizer_closes_when_collected() -> None:
    closed: list[int] = []
    fd = Fd(7, closer=closed.append)
    del fd
    gc.collect()
    assert closed == [7]


def test_fd_detach_gives_up_ownership() -> None:
    closed: list[int] = []
    fd = Fd(8, closer=closed.append)
    assert fd.detach() == 8
    fd.close()
    del fd
    gc.collect()
    assert closed == []


def test_negative_fd_is_rejected() -> None:
    with pytest.raises(BadFdError):
        Fd(-1, closer=lambda _: None)
    with pytest.raises(BadFdError):
        fd_number(-3)


# --- verifier log capture ---------------------------------------------------------------

FULL_LOG = "\n".join(
    [f"{pc}: R1=ctx() R10=fp0 ; some verifier state line number {pc}" for pc in range(9000)]
    + ["9000: (95) exit", "R0 !read_ok", "processed 9001 insns (limit 1000000) max_states_per_insn 0"]
)


@dataclass
class VerifierFake:
    """PROG_LOAD that always rejects, writing FULL_LOG like the kernel's rolling log."""

    report_true_size: bool
    fds: list[int]
    accept: bool = False
    calls: list[tuple[int, int]] = field(default_factory=list)

    def __call__(self, cmd: BpfCmd, attr: ctypes.Structure) -> int:
        assert cmd == BpfCmd.PROG_LOAD
        self.calls.append((int(attr.log_level), int(attr.log_size)))
        if attr.log_level == 0:
            if self.accept:
                fd = os.open(os.devnull, os.O_RDONLY)
                self.fds.append(fd)
                return fd
            return -errno.EACCES
        payload = FULL_LOG.encode() + b"\0"
        size = int(attr.log_size)
        if self.report_true_size:
            attr.log_true_size = len(payload)
        if len(payload) > size:
            # Rolling mode: keep the end of the log, NUL-terminated.
            kept = payload[-(size - 1) - 1 : -1] + b"\0"
            ctypes.memmove(attr.log_buf, kept, len(kept))
            return -errno.ENOSPC
        ctypes.memmove(attr.log_buf, payload, len(payload))
        return -errno.EACCES


@pytest.mark.parametrize("report_true_size", [False, True], ids=["pre-6.4", "log_true_size"])
def test_log_buffer_grows_on_enospc_until_the_whole_log_fits(report_true_size: bool, devnull_fds: list[int]) -> None:
    fake = VerifierFake(report_true_size, devnull_fds)
    with pytest.raises(errors.VerifierRejectedError) as caught:
        prog_load(BpfProgType.SOCKET_FILTER, R0_42_EXIT, syscall=fake)
    error = caught.value
    assert error.log == FULL_LOG
    assert error.errno == errno.EACCES
    assert fake.calls[0] == (0, 0)
    logged = fake.calls[1:]
    assert all(level == 1 for level, _ in logged)
    sizes = [size for _, size in logged]
    assert sizes == sorted(sizes) and len(set(sizes)) == len(sizes)
    assert sizes[-1] >= len(FULL_LOG) + 1
    if report_true_size:
        assert sizes[-1] == len(FULL_LOG) + 1
        assert len(logged) == 2


def test_verifier_error_message_shows_cause_and_last_lines(devnull_fds: list[int]) -> None:
    with pytest.raises(errors.VerifierRejectedError) as caught:
        prog_load(BpfProgType.SOCKET_FILTER, R0_42_EXIT, syscall=VerifierFake(True, devnull_fds))
    text = str(caught.value)
    first = text.splitlines()[0]
    assert "R0 !read_ok" in first and "EACCES" in first
    assert "9000: (95) exit" in text
    assert "processed" not in text
    assert "line(s) omitted" in text
    assert len(text.splitlines()) < 12


def test_log_capped_reports_truncation(devnull_fds: list[int]) -> None:
    fake = VerifierFake(False, devnull_fds)
    with pytest.raises(errors.VerifierRejectedError) as caught:
        prog_load(BpfProgType.SOCKET_FILTER, R0_42_EXIT, log_cap=4096, syscall=fake)
    assert "truncated" in str(caught.value)
    assert max(size for _, size in fake.calls) == 4096
    assert caught.value.log.endswith("max_states_per_insn 0")


def test_requested_log_that_cannot_fit_still_loads_without_it(devnull_fds: list[int]) -> None:
    fake = VerifierFake(False, devnull_fds, accept=True)
    loaded = prog_load_with_log(BpfProgType.SOCKET_FILTER, R0_42_EXIT, log_level=1, log_cap=1024, syscall=fake)
    with loaded.fd:
        assert fake.calls[-1] == (0, 0)
        assert loaded.log.endswith("max_states_per_insn 0")


def test_load_failure_without_log_raises_the_errno_error(devnull_fds: list[int]) -> None:
    with pytest.raises(errors.PermissionDeniedError, match="needs CAP_BPF or root"):
        prog_load(BpfProgType.SOCKET_FILTER, R0_42_EXIT, syscall=_failing(errno.EPERM))


def test_prog_load_fills_the_attr(devnull_fds: list[int]) -> None:
    seen: dict[str, object] = {}

    def fake(cmd: BpfCmd, attr: ctypes.Structure) -> int:
        seen.update(
            prog_type=attr.prog_type,
            insn_cnt=attr.insn_cnt,
            insns=ctypes.string_at(attr.insns, attr.insn_cnt * 8),
            license=ctypes.string_at(attr.license),
            name=attr.prog_name,
            expected=attr.expected_attach_type,
            func_info_cnt=attr.func_info_cnt,
            func_info_rec_size=attr.func_info_rec_size,
        )
        fd = os.open(os.devnull, os.O_RDONLY)
        devnull_fds.append(fd)
        return fd

    with prog_load(
        BpfProgType.XDP,
        R0_42_EXIT,
        "Dual BSD/GPL",
        name="xdp_prog",
        expected_attach_type=37,
        func_info=bytes(16),
        syscall=fake,
    ):
        pass
    assert seen == {
        "prog_type": 6,
        "insn_cnt": 2,
        "insns": R0_42_EXIT,
        "license": b"Dual BSD/GPL",
        "name": b"xdp_prog",
        "expected": 37,
        "func_info_cnt": 2,
        "func_info_rec_size": 8,
    }


@pytest.mark.parametrize("bad", [b"", b"\x95" * 7, b"\x00" * 12])
def test_prog_load_rejects_partial_instructions(bad: bytes) -> None:
    with pytest.raises(errors.InvalidArgumentError):
        prog_load(BpfProgType.SOCKET_FILTER, bad, syscall=_failing(errno.EINVAL))


@pytest.mark.parametrize("name", ["a-b", "x" * 16, "spa ce"])
def test_invalid_object_names_are_rejected_before_the_call(name: str) -> None:
    with pytest.raises(errors.InvalidArgumentError, match="name"):
        map_create(BpfMapType.HASH, 4, 4, 1, name=name, syscall=_failing(errno.EINVAL))


def test_summarize_log_skips_statistics() -> None:
    summary = summarize_log("a\nb\nc\nR0 !read_ok\nprocessed 1 insns\nverification time 5 usec\n", 2)
    assert summary.cause == "R0 !read_ok"
    assert summary.tail == ("c", "R0 !read_ok")
    assert summary.omitted == 2
    assert summarize_log("").cause == "(empty verifier log)"


# --- a dict-backed fake hash map --------------------------------------------------------


@dataclass
class HashMapFake:
    key_size: int
    value_size: int
    fds: list[int]
    data: dict[bytes, bytes] = field(default_factory=dict)

    def __call__(self, cmd: BpfCmd, attr: ctypes.Structure) -> int:
        if cmd == BpfCmd.MAP_CREATE:
            assert (attr.key_size, attr.value_size) == (self.key_size, self.value_size)
            fd = os.open(os.devnull, os.O_RDONLY)
            self.fds.append(fd)
            return fd
        key = ctypes.string_at(attr.key, self.key_size) if attr.key else None
        if cmd == BpfCmd.MAP_UPDATE_ELEM:
            assert key is not None
            if attr.flags == BpfUpdateFlag.NOEXIST and key in self.data:
                return -errno.EEXIST
            self.data[key] = ctypes.string_at(attr.value, self.value_size)
            return 0
        if cmd == BpfCmd.MAP_LOOKUP_ELEM:
            if key not in self.data:
                return -errno.ENOENT
            ctypes.memmove(attr.value, self.data[key], self.value_size)
            return 0
        if cmd == BpfCmd.MAP_DELETE_ELEM:
            if key not in self.data:
                return -errno.ENOENT
            del self.data[key]
            return 0
        if cmd == BpfCmd.MAP_GET_NEXT_KEY:
            keys = sorted(self.data)
            later = keys if key is None or key not in keys else keys[keys.index(key) + 1 :]
            if not later:
                return -errno.ENOENT
            ctypes.memmove(attr.next_key, later[0], self.key_size)
            return 0
        return -errno.EINVAL


def test_map_element_commands_pass_keys_and_values_through_buffers(
    devnull_fds: list[int],
) -> None:
    fake = HashMapFake(4, 8, devnull_fds)
    with map_create(BpfMapType.HASH, 4, 8, 16, syscall=fake) as fd:
        for i in (3, 1, 2):
            map_update(fd, i.to_bytes(4, "little"), (i * 11).to_bytes(8, "little"), syscall=fake)
        assert map_lookup(fd, (2).to_bytes(4, "little"), 8, syscall=fake) == (22).to_bytes(8, "little")
        assert list(map_keys(fd, 4, syscall=fake)) == [i.to_bytes(4, "little") for i in (1, 2, 3)]
        assert map_get_next_key(fd, (3).to_bytes(4, "little"), 4, syscall=fake) is None
        with pytest.raises(errors.AlreadyExistsError):
            map_update(fd, (1).to_bytes(4, "little"), bytes(8), BpfUpdateFlag.NOEXIST, syscall=fake)
        map_delete(fd, (1).to_bytes(4, "little"), syscall=fake)
        with pytest.raises(errors.ObjectNotFoundError):
            map_lookup(fd, (1).to_bytes(4, "little"), 8, syscall=fake)
        with pytest.raises(errors.ObjectNotFoundError):
            map_delete(fd, (1).to_bytes(4, "little"), syscall=fake)


# --- test run, probe --------------------------------------------------------------------


def test_prog_test_run_reads_outputs() -> None:
    def fake(cmd: BpfCmd, attr: ctypes.Structure) -> int:
        assert cmd == BpfCmd.PROG_TEST_RUN
        data = ctypes.string_at(attr.data_in, attr.data_size_in)
        ctypes.memmove(attr.data_out, data[::-1], len(data))
        attr.data_size_out = len(data)
        attr.retval = attr.repeat * 10
        attr.duration = 99
        return 0

    run = prog_test_run(3, b"abc", repeat=4, syscall=fake)
    assert (run.retval, run.data_out, run.ctx_out, run.duration_ns) == (40, b"cba", b"", 99)


def test_prog_test_run_enospc_says_what_size_is_needed() -> None:
    def fake(cmd: BpfCmd, attr: ctypes.Structure) -> int:
        attr.data_size_out = 5000
        return -errno.ENOSPC

    with pytest.raises(errors.NoSpaceError) as caught:
        prog_test_run(3, b"abc", data_size_out=4, syscall=fake)
    assert any("data_size_out=5000" in note for note in caught.value.__notes__)


@pytest.mark.parametrize("euid", [0, 1000])
def test_eperm_as_root_says_what_else_refuses_root(euid: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: euid)
    message = str(error_for(BpfCmd.PROG_LOAD, errno.EPERM))
    assert "needs CAP_BPF or root" in message
    assert ("this process is root" in message) == (euid == 0)
    assert "this process is root" not in str(error_for(BpfCmd.PROG_LOAD, errno.EINVAL))


@pytest.mark.parametrize(
    ("code", "phrase"),
    [(errno.EPERM, "needs CAP_BPF or root"), (errno.ENOSYS, "no bpf() syscall"), (errno.EINVAL, "EINVAL")],
)
def test_available_reports_why_not(code: int, phrase: str) -> None:
    ok, reason = available(syscall=_failing(code))
    assert not ok
    assert phrase in reason


def test_available_true_when_the_trivial_program_loads(devnull_fds: list[int]) -> None:
    loaded: list[bytes] = []

    def fake(cmd: BpfCmd, attr: ctypes.Structure) -> int:
        loaded.append(ctypes.string_at(attr.insns, attr.insn_cnt * 8))
        fd = os.open(os.devnull, os.O_RDONLY)
        devnull_fds.append(fd)
        return fd

    assert available(syscall=fake) == (True, "")
    assert loaded == [bytes.fromhex("b700000000000000 9500000000000000")]
