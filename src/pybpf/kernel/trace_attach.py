"""Attaching tracing and cgroup programs through links: kprobes, uprobes, tracepoints, raw
tracepoints and cgroups.

kprobes, uprobes and tracepoints first become perf events (:mod:`pybpf.kernel.perf_event`), the
modern way: the kprobe/uprobe PMU's dynamic type from ``/sys/bus/event_source/devices``, the
function name or binary path in ``config1`` and the offset in ``config2``, the return-probe bit
in ``config``; tracepoints by their tracefs id with ``PERF_TYPE_TRACEPOINT``. The program then
goes on the event through BPF_LINK_CREATE (``BPF_PERF_EVENT``, Linux 5.15+), or, on kernels
without perf links, through the ``PERF_EVENT_IOC_SET_BPF`` and ``PERF_EVENT_IOC_ENABLE``
ioctls. Raw tracepoints use BPF_RAW_TRACEPOINT_OPEN; cgroup programs BPF_LINK_CREATE on the
cgroup directory's descriptor.

Testing policy: pybpf's tests never attach to this machine's kprobes, uprobes, tracepoints or
cgroups. Everything here is tested against fake system calls (the exact attrs and arguments
each kind passes) and a fake sysfs/tracefs; live attachment tests exist only for XDP and tcx,
on veth pairs inside a network namespace the test creates.
"""

from __future__ import annotations

import ctypes
import errno as errno_codes
import os
import platform

from pybpf.errors import (
    BpfCommandError,
    InvalidArgumentError,
    KernelNotSupportedError,
    NotSupportedError,
    ObjectNotFoundError,
)
from pybpf.kernel.attrs import LinkCreateAttr
from pybpf.kernel.fd import Fd, FdLike, fd_number
from pybpf.kernel.link import Link
from pybpf.kernel.objects import link_create, link_detach
from pybpf.kernel.perf_event import (
    PerfEventAttr,
    PerfEventIoc,
    PerfEventSystem,
    PerfType,
    perf_event_ioctl,
    perf_event_open,
    pmu_retprobe_bit,
    pmu_type,
    tracepoint_id,
)
from pybpf.kernel.syscall import BpfCmd, RawSyscall, bpf
from pybpf.kernel.uapi import BpfAttachType
from pybpf.kernel.uprobe_symbols import symbol_file_offset

__all__ = [
    "PerfEventLink",
    "RawTracepointOpenAttr",
    "TracingLink",
    "attach_cgroup",
    "attach_kprobe",
    "attach_perf_event",
    "attach_raw_tracepoint",
    "attach_tracepoint",
    "attach_uprobe",
    "syscall_function_name",
]

u32 = ctypes.c_uint32
u64 = ctypes.c_uint64


class RawTracepointOpenAttr(ctypes.Structure):
    """BPF_RAW_TRACEPOINT_OPEN (``raw_tracepoint``); ``name`` points at a NUL-terminated string."""

    _fields_ = [
        ("name", u64),
        ("prog_fd", u32),
        ("_pad", u32),
        # 6.10+: what bpf_get_attach_cookie() returns; zero is accepted by older kernels too.
        ("cookie", u64),
    ]


class TracingLink(Link):
    """A perf-event or raw-tracepoint link.

    Those link types have no BPF_LINK_DETACH (the kernel answers EOPNOTSUPP), so ``detach()``
    falls back to closing the link, which takes the program off once no pin holds it.
    """

    def detach(self) -> None:
        try:
            link_detach(self.fd, syscall=self._syscall)
        except KernelNotSupportedError:
            self.close()


class PerfEventLink(Link):
    """The fallback attachment for kernels without perf links: the perf event fd itself, with the
    program set on it by ioctl. It cannot be pinned; ``detach()`` disables the event and closes it.
    """

    def __init__(self, fd: Fd, *, description: str = "", system: PerfEventSystem | None = None) -> None:
        super().__init__(fd, description=description)
        self._system = system

    def detach(self) -> None:
        if self.fd.closed:
            return
        try:
            perf_event_ioctl(self.fd.fileno(), PerfEventIoc.PERF_EVENT_IOC_DISABLE, system=self._system)
        finally:
            # Closing releases the event and the program with it, even if DISABLE failed.
            self.close()

    def pin(self, path: str | os.PathLike[str]) -> None:
        raise NotSupportedError("a perf event attached by ioctl (no perf link in this kernel) cannot be pinned")


def _perf_link_create(prog_fd: FdLike, perf_fd: Fd, cookie: int, syscall: RawSyscall | None) -> Fd:
    attr = LinkCreateAttr(
        prog_fd=fd_number(prog_fd),
        target_fd=perf_fd.fileno(),
        attach_type=int(BpfAttachType.PERF_EVENT),
    )
    attr.perf_event.bpf_cookie = cookie
    return Fd(bpf(BpfCmd.LINK_CREATE, attr, syscall=syscall))


def attach_perf_event(
    prog_fd: FdLike,
    perf_fd: Fd,
    *,
    description: str,
    cookie: int = 0,
    syscall: RawSyscall | None = None,
    system: PerfEventSystem | None = None,
) -> Link:
    """Put the program on an open perf event, which the returned link then owns.

    BPF_LINK_CREATE with ``BPF_PERF_EVENT`` first; a kernel that does not know that attach type
    (before 5.15: EINVAL, or EOPNOTSUPP) gets the ioctl pair instead. ``perf_fd`` is closed when
    both fail.
    """
    try:
        try:
            link_fd = _perf_link_create(prog_fd, perf_fd, cookie, syscall)
        except (InvalidArgumentError, KernelNotSupportedError) as link_error:
            if cookie:
                raise  # the ioctl path has no cookie to give the program
            event = perf_fd.fileno()
            try:
                perf_event_ioctl(event, PerfEventIoc.PERF_EVENT_IOC_SET_BPF, fd_number(prog_fd), system=system)
                perf_event_ioctl(event, PerfEventIoc.PERF_EVENT_IOC_ENABLE, system=system)
            except BpfCommandError as ioctl_error:
                ioctl_error.add_note(f"tried first: {link_error}")
                raise
            return PerfEventLink(perf_fd, description=f"{description} (ioctl)", system=system)
    except BaseException:
        perf_fd.close()
        raise
    return TracingLink(link_fd, description=description, syscall=syscall, owned=(perf_fd,))


def _check_name(value: str, what: str) -> bytes:
    encoded = value.encode()
    if not value or b"\0" in encoded or any(character.isspace() for character in value):
        raise InvalidArgumentError(f"invalid {what} {value!r}", errno_codes.EINVAL)
    return encoded


def _probe_config(pmu: str, retprobe: bool, system: PerfEventSystem) -> int:
    return 1 << pmu_retprobe_bit(pmu, system=system) if retprobe else 0


def _pid_and_cpu(pid: int | None) -> tuple[int, int]:
    # perf_event_open wants a task or a CPU: every task (pid -1) needs a CPU, and for a
    # system-wide probe CPU 0 is as good as any, since probe events fire on every CPU anyway.
    if pid is None or pid < 0:
        return -1, 0
    return pid, -1


def attach_kprobe(
    prog_fd: FdLike,
    function: str,
    *,
    offset: int = 0,
    retprobe: bool = False,
    cookie: int = 0,
    syscall: RawSyscall | None = None,
    system: PerfEventSystem | None = None,
) -> Link:
    """Attach a KPROBE program to kernel function ``function`` (+ ``offset`` bytes), or to its
    return when ``retprobe``."""
    system = PerfEventSystem() if system is None else system
    name = _check_name(function, "kernel function name")
    if offset < 0 or (retprobe and offset):
        reason = f"kprobe offset must be >= 0, and 0 for a kretprobe; got {offset}"
        raise InvalidArgumentError(reason, errno_codes.EINVAL)
    kind = "kretprobe" if retprobe else "kprobe"
    buffer = ctypes.create_string_buffer(name)
    attr = PerfEventAttr(type=pmu_type("kprobe", system=system), config=_probe_config("kprobe", retprobe, system))
    attr.size = ctypes.sizeof(attr)
    attr.kprobe_func = ctypes.addressof(buffer)
    attr.probe_offset = offset
    pid, cpu = _pid_and_cpu(None)
    description = f"{kind} {function}+{offset:#x}" if offset else f"{kind} {function}"
    perf_fd = Fd(perf_event_open(attr, pid=pid, cpu=cpu, system=system, detail=description))
    return attach_perf_event(prog_fd, perf_fd, description=description, cookie=cookie, syscall=syscall, system=system)


def syscall_function_name(syscall_name: str, machine: str | None = None) -> str:
    """The kernel function behind system call ``syscall_name`` (``__x64_sys_openat`` on x86_64,
    ``__arm64_sys_openat`` on aarch64): what ``SEC("ksyscall/openat")`` probes."""
    machine = (platform.machine() if machine is None else machine).lower()
    prefixes = {"x86_64": "__x64_sys_", "amd64": "__x64_sys_", "aarch64": "__arm64_sys_", "arm64": "__arm64_sys_"}
    prefix = prefixes.get(machine)
    if prefix is None:
        raise NotSupportedError(f"system call wrapper prefix unknown for architecture {machine!r}")
    return prefix + syscall_name


def attach_uprobe(
    prog_fd: FdLike,
    binary: str | os.PathLike[str],
    offset: int | str,
    *,
    retprobe: bool = False,
    pid: int | None = None,
    cookie: int = 0,
    syscall: RawSyscall | None = None,
    system: PerfEventSystem | None = None,
) -> Link:
    """Attach a KPROBE-type program to a user-space location: ``binary`` at file ``offset``, or
    at the function symbol ``offset`` names (resolved through the ELF symbol tables). ``pid``
    limits it to one process (None: every process running the binary)."""
    system = PerfEventSystem() if system is None else system
    path = os.path.abspath(os.fsdecode(binary))  # the kernel resolves relative paths from its caller's cwd
    if not os.path.exists(path):
        raise ObjectNotFoundError(f"uprobe binary {path} does not exist", errno_codes.ENOENT, "", "uprobe")
    if isinstance(offset, str):
        where = offset
        file_offset = symbol_file_offset(path, offset)
    else:
        if offset < 0:
            raise InvalidArgumentError(f"uprobe offset must be >= 0, got {offset}", errno_codes.EINVAL)
        where, file_offset = f"{offset:#x}", offset
    kind = "uretprobe" if retprobe else "uprobe"
    buffer = ctypes.create_string_buffer(os.fsencode(path))
    attr = PerfEventAttr(type=pmu_type("uprobe", system=system), config=_probe_config("uprobe", retprobe, system))
    attr.size = ctypes.sizeof(attr)
    attr.uprobe_path = ctypes.addressof(buffer)
    attr.probe_offset = file_offset
    task, cpu = _pid_and_cpu(pid)
    description = f"{kind} {path}:{where}" + (f" pid {task}" if task >= 0 else "")
    perf_fd = Fd(perf_event_open(attr, pid=task, cpu=cpu, system=system, detail=description))
    return attach_perf_event(prog_fd, perf_fd, description=description, cookie=cookie, syscall=syscall, system=system)


def attach_tracepoint(
    prog_fd: FdLike,
    category: str,
    name: str,
    *,
    cookie: int = 0,
    syscall: RawSyscall | None = None,
    system: PerfEventSystem | None = None,
) -> Link:
    """Attach a TRACEPOINT program to tracepoint ``category:name`` (``syscalls``,
    ``sys_enter_openat``)."""
    system = PerfEventSystem() if system is None else system
    attr = PerfEventAttr(type=PerfType.PERF_TYPE_TRACEPOINT, config=tracepoint_id(category, name, system=system))
    attr.size = ctypes.sizeof(attr)
    pid, cpu = _pid_and_cpu(None)
    description = f"tracepoint {category}:{name}"
    perf_fd = Fd(perf_event_open(attr, pid=pid, cpu=cpu, system=system, detail=description))
    return attach_perf_event(prog_fd, perf_fd, description=description, cookie=cookie, syscall=syscall, system=system)


def attach_raw_tracepoint(prog_fd: FdLike, name: str, *, cookie: int = 0, syscall: RawSyscall | None = None) -> Link:
    """Attach a RAW_TRACEPOINT program to raw tracepoint ``name`` (``sched_switch``) through
    BPF_RAW_TRACEPOINT_OPEN."""
    buffer = ctypes.create_string_buffer(_check_name(name, "raw tracepoint name"))
    attr = RawTracepointOpenAttr(name=ctypes.addressof(buffer), prog_fd=fd_number(prog_fd), cookie=cookie)
    fd = Fd(bpf(BpfCmd.RAW_TRACEPOINT_OPEN, attr, syscall=syscall))
    return TracingLink(fd, description=f"raw_tracepoint {name}", syscall=syscall)


def attach_cgroup(
    prog_fd: FdLike,
    cgroup: str | os.PathLike[str],
    attach_type: BpfAttachType | int,
    *,
    syscall: RawSyscall | None = None,
) -> Link:
    """Attach a cgroup program to the cgroup v2 directory ``cgroup`` for hook ``attach_type``
    (``CGROUP_INET_INGRESS``...) through BPF_LINK_CREATE on the directory's descriptor."""
    path = os.fsdecode(cgroup)
    try:
        directory = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as error:
        raise ObjectNotFoundError(
            f"cgroup directory {path}: {error.strerror}", error.errno or errno_codes.ENOENT, "", "cgroup"
        ) from error
    try:
        # The link holds the cgroup itself, so the directory descriptor is not needed afterwards.
        fd = link_create(prog_fd, directory, attach_type, syscall=syscall)
    finally:
        os.close(directory)
    type_name = attach_type.name if isinstance(attach_type, BpfAttachType) else str(attach_type)
    return Link(fd, description=f"cgroup {path} ({type_name})", syscall=syscall)
