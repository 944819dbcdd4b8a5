"""Tracing and cgroup attachment against fake system calls, a fake sysfs and a fake tracefs.

By policy nothing here touches this machine's kprobes, uprobes, tracepoints or cgroups: the
fakes record the exact perf_event_attr, perf_event_open arguments, ioctls and bpf attrs each
kind of attachment passes, and hand out /dev/null descriptors so ownership can be checked.
"""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pybpf import errors
from pybpf.kernel import BpfAttachType, BpfCmd, BpfProgType, Fd, KernelProgram
from pybpf.kernel.attrs import LinkCreateAttr
from pybpf.kernel.perf_event import (
    PerfEventAttr,
    PerfEventIoc,
    PerfEventSystem,
    PerfFlag,
    PerfType,
    perf_event_syscall_number,
    pmu_retprobe_bit,
    tracepoint_id,
)
from pybpf.kernel.trace_attach import (
    PerfEventLink,
    RawTracepointOpenAttr,
    TracingLink,
    attach_cgroup,
    attach_kprobe,
    attach_raw_tracepoint,
    attach_tracepoint,
    attach_uprobe,
    syscall_function_name,
)

KPROBE_TYPE, UPROBE_TYPE = 6, 7


@dataclass
class PerfOpen:
    type: int
    size: int
    config: int
    config1_string: bytes | None
    probe_offset: int
    pid: int
    cpu: int
    group_fd: int
    flags: int
    fd: int


@dataclass
class Fakes:
    """Every fake the attachment code calls, with what each was asked."""

    root: Path
    opened: list[int] = field(default_factory=list)
    perf_opens: list[PerfOpen] = field(default_factory=list)
    ioctls: list[tuple[int, int, int]] = field(default_factory=list)
    bpf_calls: list[tuple[BpfCmd, dict[str, object]]] = field(default_factory=list)
    perf_result: int | None = None  # -errno to fail perf_event_open
    bpf_results: dict[BpfCmd, int] = field(default_factory=dict)  # -errno per command
    ioctl_result: int = 0

    def new_fd(self) -> int:
        fd = os.open(os.devnull, os.O_RDONLY)
        self.opened.append(fd)
        return fd

    def perf_event_open(self, attr: PerfEventAttr, pid: int, cpu: int, group_fd: int, flags: int) -> int:
        if self.perf_result is not None:
            return self.perf_result
        fd = self.new_fd()
        pointer = int(attr.config1)
        self.perf_opens.append(
            PerfOpen(
                int(attr.type),
                int(attr.size),
                int(attr.config),
                ctypes.string_at(pointer) if pointer else None,
                int(attr.probe_offset),
                pid,
                cpu,
                group_fd,
                flags,
                fd,
            )
        )
        return fd

    def ioctl(self, fd: int, request: int, arg: int) -> int:
        self.ioctls.append((fd, request, arg))
        return self.ioctl_result

    def syscall(self, cmd: BpfCmd, attr: ctypes.Structure) -> int:
        seen: dict[str, object] = {}
        if isinstance(attr, LinkCreateAttr):
            seen = {
                "prog_fd": int(attr.prog_fd),
                "target_fd": int(attr.target_fd),
                "attach_type": int(attr.attach_type),
                "flags": int(attr.flags),
                "bpf_cookie": int(attr.perf_event.bpf_cookie),
                # what the target descriptor is, read while it is still open
                "target": os.readlink(f"/proc/self/fd/{int(attr.target_fd)}"),
            }
        elif isinstance(attr, RawTracepointOpenAttr):
            seen = {"name": ctypes.string_at(int(attr.name)), "prog_fd": int(attr.prog_fd), "cookie": int(attr.cookie)}
        self.bpf_calls.append((cmd, seen))
        result = self.bpf_results.get(cmd)
        if result is not None:
            return result
        return self.new_fd() if cmd in {BpfCmd.LINK_CREATE, BpfCmd.RAW_TRACEPOINT_OPEN} else 0

    @property
    def system(self) -> PerfEventSystem:
        return PerfEventSystem(
            perf_event_open=self.perf_event_open,
            ioctl=self.ioctl,
            sysfs_root=self.root / "sys",
            tracefs_roots=(self.root / "tracing", self.root / "debug" / "tracing"),
        )


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")


@pytest.fixture
def fakes(tmp_path: Path) -> Iterator[Fakes]:
    devices = tmp_path / "sys" / "bus" / "event_source" / "devices"
    _write(devices / "kprobe" / "type", str(KPROBE_TYPE))
    # A retprobe bit other than the usual 0, so a hard-coded bit would show.
    _write(devices / "kprobe" / "format" / "retprobe", "config:3")
    _write(devices / "uprobe" / "type", str(UPROBE_TYPE))
    _write(devices / "uprobe" / "format" / "retprobe", "config:0")
    _write(tmp_path / "tracing" / "events" / "sched" / "sched_switch" / "id", "316")
    found = Fakes(tmp_path)
    yield found
    leaked = []
    for fd in found.opened:
        try:
            os.fstat(fd)
        except OSError:
            continue
        leaked.append(fd)
        os.close(fd)
    assert leaked == [], "descriptors not closed by their owners"


@pytest.fixture
def prog_fd(fakes: Fakes) -> Iterator[Fd]:
    with Fd(fakes.new_fd()) as fd:
        yield fd


def _is_closed(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return True
    return False


# --- kprobes ----------------------------------------------------------------------------


def test_kprobe_perf_event_and_link(fakes: Fakes, prog_fd: Fd) -> None:
    link = attach_kprobe(prog_fd, "do_unlinkat", syscall=fakes.syscall, system=fakes.system)
    (opened,) = fakes.perf_opens
    assert opened.type == KPROBE_TYPE
    assert opened.size == ctypes.sizeof(PerfEventAttr) == 128
    assert opened.config == 0
    assert opened.config1_string == b"do_unlinkat"
    assert opened.probe_offset == 0
    assert (opened.pid, opened.cpu, opened.group_fd) == (-1, 0, -1)
    assert opened.flags == PerfFlag.PERF_FLAG_FD_CLOEXEC
    ((cmd, seen),) = fakes.bpf_calls
    assert cmd == BpfCmd.LINK_CREATE
    assert seen["attach_type"] == int(BpfAttachType.PERF_EVENT) == 41
    assert seen["target_fd"] == opened.fd
    assert seen["prog_fd"] == prog_fd.fileno()
    assert seen["flags"] == 0
    assert isinstance(link, TracingLink)
    assert fakes.ioctls == []
    link_number = link.fd.fileno()
    link.close()
    assert _is_closed(link_number)
    assert _is_closed(opened.fd), "the link owns the perf event"


def test_kretprobe_sets_the_bit_from_sysfs(fakes: Fakes, prog_fd: Fd) -> None:
    with attach_kprobe(prog_fd, "vfs_read", retprobe=True, syscall=fakes.syscall, system=fakes.system):
        pass
    assert fakes.perf_opens[0].config == 1 << 3
    assert fakes.perf_opens[0].config1_string == b"vfs_read"


def test_kprobe_offset_and_cookie(fakes: Fakes, prog_fd: Fd) -> None:
    link = attach_kprobe(prog_fd, "tcp_v4_connect", offset=0x10, cookie=77, syscall=fakes.syscall, system=fakes.system)
    link.close()
    assert fakes.perf_opens[0].probe_offset == 0x10
    assert fakes.bpf_calls[0][1]["bpf_cookie"] == 77
    assert "tcp_v4_connect+0x10" in link.description


@pytest.mark.parametrize(
    ("function", "offset", "retprobe"),
    [("", 0, False), ("two words", 0, False), ("f", -1, False), ("f", 8, True)],
    ids=["empty", "space", "negative", "kretprobe-offset"],
)
def test_kprobe_refuses_bad_arguments(fakes: Fakes, prog_fd: Fd, function: str, offset: int, retprobe: bool) -> None:
    with pytest.raises(errors.InvalidArgumentError):
        attach_kprobe(prog_fd, function, offset=offset, retprobe=retprobe, syscall=fakes.syscall, system=fakes.system)
    assert fakes.perf_opens == []


def test_no_kprobe_pmu_is_not_supported(fakes: Fakes, prog_fd: Fd) -> None:
    (fakes.root / "sys" / "bus" / "event_source" / "devices" / "kprobe" / "type").unlink()
    with pytest.raises(errors.NotSupportedError, match="kprobe PMU"):
        attach_kprobe(prog_fd, "f", syscall=fakes.syscall, system=fakes.system)


@pytest.mark.parametrize("text", ["config:", "config:64", "config:0-63", "format:1"])
def test_malformed_retprobe_format(fakes: Fakes, text: str) -> None:
    _write(fakes.root / "sys" / "bus" / "event_source" / "devices" / "kprobe" / "format" / "retprobe", text)
    with pytest.raises(errors.NotSupportedError):
        pmu_retprobe_bit("kprobe", system=fakes.system)


def test_ksyscall_function_names() -> None:
    assert syscall_function_name("openat", "x86_64") == "__x64_sys_openat"
    assert syscall_function_name("openat", "aarch64") == "__arm64_sys_openat"
    with pytest.raises(errors.NotSupportedError):
        syscall_function_name("openat", "riscv64")


# --- uprobes ----------------------------------------------------------------------------


def test_uprobe_by_offset_with_pid(fakes: Fakes, prog_fd: Fd, tmp_path: Path) -> None:
    binary = tmp_path / "prog"
    binary.write_bytes(b"\x7fELF")
    relative = os.path.relpath(binary)
    with attach_uprobe(prog_fd, relative, 0x1234, pid=4321, syscall=fakes.syscall, system=fakes.system) as link:
        assert "pid 4321" in link.description
    (opened,) = fakes.perf_opens
    assert opened.type == UPROBE_TYPE
    assert opened.config == 0
    assert opened.config1_string == os.fsencode(binary.resolve())  # made absolute
    assert opened.probe_offset == 0x1234
    assert (opened.pid, opened.cpu) == (4321, -1)
    assert fakes.bpf_calls[0][1]["target_fd"] == opened.fd


def test_uretprobe_every_process(fakes: Fakes, prog_fd: Fd, tmp_path: Path) -> None:
    binary = tmp_path / "prog"
    binary.write_bytes(b"")
    with attach_uprobe(prog_fd, binary, 16, retprobe=True, syscall=fakes.syscall, system=fakes.system):
        pass
    (opened,) = fakes.perf_opens
    assert opened.config == 1 << 0
    assert (opened.pid, opened.cpu) == (-1, 0)


def test_uprobe_missing_binary(fakes: Fakes, prog_fd: Fd, tmp_path: Path) -> None:
    with pytest.raises(errors.ObjectNotFoundError):
        attach_uprobe(prog_fd, tmp_path / "nope", 0, syscall=fakes.syscall, system=fakes.system)
    assert fakes.perf_opens == []


# --- tracepoints ------------------------------------------------------------------------


def test_tracepoint_id_and_attr(fakes: Fakes, prog_fd: Fd) -> None:
    with attach_tracepoint(prog_fd, "sched", "sched_switch", syscall=fakes.syscall, system=fakes.system):
        pass
    (opened,) = fakes.perf_opens
    assert opened.type == PerfType.PERF_TYPE_TRACEPOINT
    assert opened.config == 316
    assert opened.config1_string is None
    assert (opened.pid, opened.cpu, opened.group_fd) == (-1, 0, -1)
    assert fakes.bpf_calls[0][1]["attach_type"] == BpfAttachType.PERF_EVENT


def test_tracepoint_id_falls_back_to_debugfs(fakes: Fakes) -> None:
    _write(fakes.root / "debug" / "tracing" / "events" / "syscalls" / "sys_enter_openat" / "id", "612")
    (fakes.root / "tracing" / "events" / "sched" / "sched_switch" / "id").unlink()
    (fakes.root / "tracing" / "events" / "sched" / "sched_switch").rmdir()
    (fakes.root / "tracing" / "events" / "sched").rmdir()
    (fakes.root / "tracing" / "events").rmdir()  # tracefs "not mounted" at the first root
    assert tracepoint_id("syscalls", "sys_enter_openat", system=fakes.system) == 612


def test_tracepoint_unknown_and_tracefs_missing(fakes: Fakes, tmp_path: Path) -> None:
    with pytest.raises(errors.ObjectNotFoundError, match="sched:nope"):
        tracepoint_id("sched", "nope", system=fakes.system)
    with pytest.raises(errors.InvalidArgumentError):
        tracepoint_id("..", "x", system=fakes.system)
    nothing = PerfEventSystem(tracefs_roots=(tmp_path / "a", tmp_path / "b"))
    with pytest.raises(errors.NotSupportedError, match="tracefs"):
        tracepoint_id("sched", "sched_switch", system=nothing)


# --- the ioctl fallback -----------------------------------------------------------------


@pytest.mark.parametrize("code", [errno.EINVAL, errno.EOPNOTSUPP])
def test_no_perf_link_falls_back_to_ioctls(fakes: Fakes, prog_fd: Fd, code: int) -> None:
    fakes.bpf_results[BpfCmd.LINK_CREATE] = -code
    link = attach_tracepoint(prog_fd, "sched", "sched_switch", syscall=fakes.syscall, system=fakes.system)
    perf_fd = fakes.perf_opens[0].fd
    assert isinstance(link, PerfEventLink)
    assert link.fd.fileno() == perf_fd
    assert fakes.ioctls == [
        (perf_fd, PerfEventIoc.PERF_EVENT_IOC_SET_BPF, prog_fd.fileno()),
        (perf_fd, PerfEventIoc.PERF_EVENT_IOC_ENABLE, 0),
    ]
    with pytest.raises(errors.NotSupportedError):
        link.pin("/sys/fs/bpf/never")
    link.detach()
    assert fakes.ioctls[-1] == (perf_fd, PerfEventIoc.PERF_EVENT_IOC_DISABLE, 0)
    assert _is_closed(perf_fd)


def test_fallback_failure_reports_both_and_closes_the_event(fakes: Fakes, prog_fd: Fd) -> None:
    fakes.bpf_results[BpfCmd.LINK_CREATE] = -errno.EINVAL
    fakes.ioctl_result = -errno.EINVAL
    with pytest.raises(errors.InvalidArgumentError) as caught:
        attach_kprobe(prog_fd, "f", syscall=fakes.syscall, system=fakes.system)
    assert caught.value.command == "PERF_EVENT_IOC_SET_BPF"
    assert any("BPF_LINK_CREATE" in note for note in caught.value.__notes__)
    assert _is_closed(fakes.perf_opens[0].fd)


def test_link_create_eperm_does_not_fall_back(fakes: Fakes, prog_fd: Fd) -> None:
    fakes.bpf_results[BpfCmd.LINK_CREATE] = -errno.EPERM
    with pytest.raises(errors.PermissionDeniedError):
        attach_kprobe(prog_fd, "f", syscall=fakes.syscall, system=fakes.system)
    assert fakes.ioctls == []
    assert _is_closed(fakes.perf_opens[0].fd)


def test_cookie_is_not_dropped_by_the_fallback(fakes: Fakes, prog_fd: Fd) -> None:
    fakes.bpf_results[BpfCmd.LINK_CREATE] = -errno.EINVAL
    with pytest.raises(errors.InvalidArgumentError):
        attach_kprobe(prog_fd, "f", cookie=5, syscall=fakes.syscall, system=fakes.system)
    assert fakes.ioctls == []


# --- perf_event_open errors -------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "cls", "hint"),
    [
        (errno.ENOENT, errors.ObjectNotFoundError, "no such function"),
        (errno.EACCES, errors.PermissionDeniedError, "CAP_PERFMON"),
        (errno.EPERM, errors.PermissionDeniedError, "perf_event_paranoid"),
        (errno.EINVAL, errors.InvalidArgumentError, "EINVAL"),
        (errno.EOPNOTSUPP, errors.KernelNotSupportedError, "not supported"),
        (errno.EMFILE, errors.BpfCommandError, "EMFILE"),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_perf_event_open_errno_mapping(
    fakes: Fakes, prog_fd: Fd, code: int, cls: type[errors.BpfCommandError], hint: str
) -> None:
    fakes.perf_result = -code
    with pytest.raises(cls) as caught:
        attach_kprobe(prog_fd, "do_nothing", syscall=fakes.syscall, system=fakes.system)
    error = caught.value
    assert error.errno == code
    assert error.command == "perf_event_open"
    assert hint in str(error)
    assert "kprobe do_nothing" in str(error)
    assert fakes.bpf_calls == []


def test_perf_event_syscall_numbers() -> None:
    assert perf_event_syscall_number("linux", "x86_64") == 298
    assert perf_event_syscall_number("linux", "aarch64") == 241
    with pytest.raises(errors.NotSupportedError):
        perf_event_syscall_number("linux", "mips")
    with pytest.raises(errors.NotSupportedError):
        perf_event_syscall_number("darwin", "x86_64")


# --- raw tracepoints --------------------------------------------------------------------


def test_raw_tracepoint_open(fakes: Fakes, prog_fd: Fd) -> None:
    link = attach_raw_tracepoint(prog_fd, "sched_switch", syscall=fakes.syscall)
    ((cmd, seen),) = fakes.bpf_calls
    assert cmd == BpfCmd.RAW_TRACEPOINT_OPEN
    assert seen == {"name": b"sched_switch", "prog_fd": prog_fd.fileno(), "cookie": 0}
    assert fakes.perf_opens == []
    # Raw tracepoint links have no BPF_LINK_DETACH: detach() closes the link instead.
    fakes.bpf_results[BpfCmd.LINK_DETACH] = -errno.EOPNOTSUPP
    link.detach()
    assert link.fd.closed


def test_raw_tracepoint_errors(fakes: Fakes, prog_fd: Fd) -> None:
    fakes.bpf_results[BpfCmd.RAW_TRACEPOINT_OPEN] = -errno.ENOENT
    with pytest.raises(errors.ObjectNotFoundError) as caught:
        attach_raw_tracepoint(prog_fd, "no_such_tp", syscall=fakes.syscall)
    assert caught.value.command == "BPF_RAW_TRACEPOINT_OPEN"
    with pytest.raises(errors.InvalidArgumentError):
        attach_raw_tracepoint(prog_fd, "", syscall=fakes.syscall)


# --- cgroups ----------------------------------------------------------------------------


def test_cgroup_link_on_the_directory_fd(fakes: Fakes, prog_fd: Fd, tmp_path: Path) -> None:
    cgroup = tmp_path / "fake-cgroup"
    cgroup.mkdir()
    with attach_cgroup(prog_fd, cgroup, BpfAttachType.CGROUP_INET_INGRESS, syscall=fakes.syscall) as link:
        ((cmd, seen),) = fakes.bpf_calls
        assert cmd == BpfCmd.LINK_CREATE
        assert seen["attach_type"] == BpfAttachType.CGROUP_INET_INGRESS
        assert seen["target"] == str(cgroup)
        assert seen["prog_fd"] == prog_fd.fileno()
        assert _is_closed(int(str(seen["target_fd"]))), "the directory descriptor is not kept"
        link.detach()
    assert fakes.bpf_calls[-1][0] == BpfCmd.LINK_DETACH


def test_cgroup_not_a_directory(fakes: Fakes, prog_fd: Fd, tmp_path: Path) -> None:
    plain = tmp_path / "file"
    plain.write_text("")
    with pytest.raises(errors.ObjectNotFoundError) as caught:
        attach_cgroup(prog_fd, plain, BpfAttachType.CGROUP_INET_INGRESS, syscall=fakes.syscall)
    assert caught.value.errno == errno.ENOTDIR
    assert fakes.bpf_calls == []


# --- KernelProgram methods --------------------------------------------------------------


def _program(fakes: Fakes, prog_type: BpfProgType = BpfProgType.KPROBE) -> KernelProgram:
    return KernelProgram(
        None, Fd(fakes.new_fd()), prog_type=prog_type, kernel_name="p", syscall=fakes.syscall, perf=fakes.system
    )


def test_kernel_program_methods(fakes: Fakes, tmp_path: Path) -> None:
    program = _program(fakes)
    binary = tmp_path / "bin"
    binary.write_bytes(b"")
    with (
        program.attach_kprobe("do_sys_openat2", retprobe=True),
        program.attach_uprobe(binary, 0x40, True),
        program.attach_tracepoint("sched", "sched_switch"),
        program.attach_raw_tracepoint("sched_switch"),
        program.attach_cgroup(tmp_path, BpfAttachType.CGROUP_SOCK_OPS),
    ):
        pass
    kinds = [(opened.type, opened.config) for opened in fakes.perf_opens]
    assert kinds == [(KPROBE_TYPE, 1 << 3), (UPROBE_TYPE, 1), (PerfType.PERF_TYPE_TRACEPOINT, 316)]
    commands = [cmd for cmd, _ in fakes.bpf_calls]
    assert commands == [BpfCmd.LINK_CREATE] * 3 + [BpfCmd.RAW_TRACEPOINT_OPEN, BpfCmd.LINK_CREATE]
    assert fakes.bpf_calls[-1][1]["attach_type"] == BpfAttachType.CGROUP_SOCK_OPS
    with pytest.raises(errors.InvalidArgumentError, match="attach type"):
        program.attach_cgroup(tmp_path)  # no section to take it from
    with pytest.raises(errors.NotSupportedError, match="pin"):
        program.attach()
    program.close()
