"""``perf_event_open(2)`` through ctypes: the perf events that kprobes, uprobes and tracepoints
hang BPF programs on.

:class:`PerfEventAttr` mirrors ``struct perf_event_attr`` of include/uapi/linux/perf_event.h
up to ``sig_data`` (``PERF_ATTR_SIZE_VER7``, 128 bytes; the kernel takes any published size and
zero-fills the rest). The one bitfield word of the header is the plain ``flags`` field here,
its bits named by :class:`PerfEventAttrFlag`.

Like :mod:`pybpf.kernel.syscall`, every entry into the kernel is replaceable: a
:class:`PerfEventSystem` bundles the perf_event_open call, the ioctl call and the sysfs and
tracefs roots the probe types and tracepoint ids are read from, so unit tests run against
fakes and a temporary directory, with no root and no probe on the machine.

By policy pybpf's tests open real perf events only as software counters on their own thread;
they never attach anything to this machine's kprobes, uprobes, tracepoints or cgroups (live
attachment tests exist only for XDP and tcx, in a private network namespace).
"""

from __future__ import annotations

import ctypes
import errno as errno_codes
import functools
import os
import platform
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum, IntFlag
from pathlib import Path

from pybpf.errors import BpfCommandError, InvalidArgumentError, NotSupportedError, ObjectNotFoundError
from pybpf.kernel.syscall import ENOTSUPP, errno_class, errno_name

__all__ = [
    "PERF_ATTR_SIZE_VER7",
    "PerfEventAttr",
    "PerfEventAttrFlag",
    "PerfEventIoc",
    "PerfEventOpen",
    "PerfEventSystem",
    "PerfFlag",
    "PerfIoctl",
    "PerfType",
    "libc_ioctl",
    "libc_perf_event_open",
    "perf_error_for",
    "perf_event_ioctl",
    "perf_event_open",
    "perf_event_syscall_number",
    "pmu_retprobe_bit",
    "pmu_type",
    "tracepoint_id",
]

u16 = ctypes.c_uint16
u32 = ctypes.c_uint32
s32 = ctypes.c_int32
u64 = ctypes.c_uint64

PERF_ATTR_SIZE_VER7 = 128
"""``sizeof(struct perf_event_attr)`` up to ``sig_data``: the size :class:`PerfEventAttr` has."""


class PerfType(IntEnum):
    """``enum perf_type_id``; kprobe and uprobe PMUs have dynamic types read from sysfs."""

    PERF_TYPE_HARDWARE = 0
    PERF_TYPE_SOFTWARE = 1
    PERF_TYPE_TRACEPOINT = 2
    PERF_TYPE_HW_CACHE = 3
    PERF_TYPE_RAW = 4
    PERF_TYPE_BREAKPOINT = 5


class PerfFlag(IntFlag):
    """``PERF_FLAG_*``: the last argument of perf_event_open(2)."""

    PERF_FLAG_FD_NO_GROUP = 1 << 0
    PERF_FLAG_FD_OUTPUT = 1 << 1
    PERF_FLAG_PID_CGROUP = 1 << 2
    PERF_FLAG_FD_CLOEXEC = 1 << 3


class PerfEventAttrFlag(IntFlag):
    """Bits of the bitfield word at offset 40 of ``struct perf_event_attr`` (first ones only)."""

    disabled = 1 << 0
    inherit = 1 << 1
    pinned = 1 << 2
    exclusive = 1 << 3
    exclude_user = 1 << 4
    exclude_kernel = 1 << 5
    exclude_hv = 1 << 6
    exclude_idle = 1 << 7
    mmap = 1 << 8
    comm = 1 << 9
    freq = 1 << 10
    inherit_stat = 1 << 11
    enable_on_exec = 1 << 12
    task = 1 << 13
    watermark = 1 << 14
    # bits 15-16 are precise_ip, a 2-bit number, not a flag.
    mmap_data = 1 << 17
    sample_id_all = 1 << 18


class _SamplePeriod(ctypes.Union):
    _fields_ = [("sample_period", u64), ("sample_freq", u64)]


class _WakeupEvents(ctypes.Union):
    _fields_ = [("wakeup_events", u32), ("wakeup_watermark", u32)]


class _Config1(ctypes.Union):
    # kprobe_func / uprobe_path hold a user-space address of a NUL-terminated string.
    _fields_ = [("bp_addr", u64), ("kprobe_func", u64), ("uprobe_path", u64), ("config1", u64)]


class _Config2(ctypes.Union):
    _fields_ = [("bp_len", u64), ("kprobe_addr", u64), ("probe_offset", u64), ("config2", u64)]


class PerfEventAttr(ctypes.Structure):
    """``struct perf_event_attr`` (PERF_ATTR_SIZE_VER7); ``flags`` is the bitfield word."""

    _anonymous_ = ("_sample", "_wakeup", "_config1", "_config2")
    _fields_ = [
        ("type", u32),
        ("size", u32),
        ("config", u64),
        ("_sample", _SamplePeriod),
        ("sample_type", u64),
        ("read_format", u64),
        ("flags", u64),
        ("_wakeup", _WakeupEvents),
        ("bp_type", u32),
        ("_config1", _Config1),
        ("_config2", _Config2),
        ("branch_sample_type", u64),
        ("sample_regs_user", u64),
        ("sample_stack_user", u32),
        ("clockid", s32),
        ("sample_regs_intr", u64),
        ("aux_watermark", u32),
        ("sample_max_stack", u16),
        ("_reserved_2", u16),
        ("aux_sample_size", u32),
        ("_reserved_3", u32),
        ("sig_data", u64),
    ]


def _ioc(direction: int, kind: int, number: int, size: int) -> int:
    # asm-generic/ioctl.h encoding, shared by x86_64 and aarch64: dir:2 size:14 type:8 nr:8.
    return (direction << 30) | (size << 16) | (kind << 8) | number


_IOC_WRITE = 1
_PERF_IOC_TYPE = ord("$")


class PerfEventIoc(IntEnum):
    """The ``PERF_EVENT_IOC_*`` requests the attachment fallback uses."""

    PERF_EVENT_IOC_ENABLE = _ioc(0, _PERF_IOC_TYPE, 0, 0)
    PERF_EVENT_IOC_DISABLE = _ioc(0, _PERF_IOC_TYPE, 1, 0)
    PERF_EVENT_IOC_SET_BPF = _ioc(_IOC_WRITE, _PERF_IOC_TYPE, 8, ctypes.sizeof(u32))


PerfEventOpen = Callable[[PerfEventAttr, int, int, int, int], int]
"""The replaceable perf_event_open(2): ``(attr, pid, cpu, group_fd, flags) -> fd | -errno``."""

PerfIoctl = Callable[[int, int, int], int]
"""The replaceable ioctl(2) on a perf event fd: ``(fd, request, arg) -> result | -errno``."""

# __NR_perf_event_open per architecture (x86_64 table; aarch64 uses asm-generic/unistd.h).
_PERF_EVENT_OPEN_NUMBERS = {"x86_64": 298, "amd64": 298, "aarch64": 241, "arm64": 241}


def perf_event_syscall_number(system: str | None = None, machine: str | None = None) -> int:
    """The perf_event_open(2) syscall number here; NotSupportedError off Linux or on another arch."""
    system = sys.platform if system is None else system
    if not system.startswith("linux"):
        raise NotSupportedError(f"perf_event_open(2) exists only on Linux, not on {system!r}")
    machine = platform.machine() if machine is None else machine
    number = _PERF_EVENT_OPEN_NUMBERS.get(machine.lower())
    if number is None:
        raise NotSupportedError(
            f"perf_event_open(2) syscall number unknown for architecture {machine!r} (known: x86_64, aarch64)"
        )
    return number


@functools.cache
def _libc_functions() -> tuple[Callable[..., int], Callable[..., int]]:
    # Read-only handles (libc's syscall() and ioctl()), cached because loading libc and setting
    # the return types never change within a process.
    libc = ctypes.CDLL(None, use_errno=True)
    syscall, ioctl = libc.syscall, libc.ioctl
    syscall.restype = ctypes.c_long
    ioctl.restype = ctypes.c_int
    return syscall, ioctl


def libc_perf_event_open(attr: PerfEventAttr, pid: int, cpu: int, group_fd: int, flags: int) -> int:
    """The real perf_event_open(2) through libc's ``syscall()``; returns ``-errno`` on failure."""
    number = perf_event_syscall_number()
    function = _libc_functions()[0]
    while True:
        # syscall() is variadic and reads every argument as a long: pass longs, so that -1 is
        # -1 in the whole register.
        result = int(
            function(
                ctypes.c_long(number),
                ctypes.c_void_p(ctypes.addressof(attr)),
                ctypes.c_long(pid),
                ctypes.c_long(cpu),
                ctypes.c_long(group_fd),
                ctypes.c_ulong(flags),
            )
        )
        if result >= 0:
            return result
        code = ctypes.get_errno()
        if code != errno_codes.EINTR:  # a signal before the event existed: safe to repeat
            return -code


def libc_ioctl(fd: int, request: int, arg: int) -> int:
    """The real ioctl(2) with an integer argument; returns ``-errno`` on failure."""
    function = _libc_functions()[1]
    result = int(function(ctypes.c_int(fd), ctypes.c_ulong(request), ctypes.c_ulong(arg)))
    return result if result >= 0 else -ctypes.get_errno()


_ERRNO_HINTS: dict[int, str] = {
    errno_codes.EPERM: "needs CAP_PERFMON (or root), or kernel.perf_event_paranoid forbids it",
    errno_codes.EACCES: "needs CAP_PERFMON (or root), or kernel.perf_event_paranoid forbids it",
    errno_codes.ENOENT: "no such function, symbol or event",
    errno_codes.ENOSYS: "the kernel has no perf_event_open() (CONFIG_PERF_EVENTS off?)",
    errno_codes.EOPNOTSUPP: "this probe type is not supported by the kernel",
    errno_codes.EBADF: "not a perf event or program descriptor",
}


def perf_error_for(call: str, code: int, *, detail: str = "") -> BpfCommandError:
    """The exception for ``call`` (``perf_event_open``, ``PERF_EVENT_IOC_SET_BPF``...) failing
    with errno ``code``; the classes are :func:`pybpf.kernel.syscall.error_for`'s."""
    # bpf(2)'s errno -> class table, so callers catch the same exceptions; EPERM from perf is
    # about perf permissions, not CAP_BPF, hence the own hints.
    cls = errno_class(code)
    reason = os.strerror(code) if code != ENOTSUPP else "Operation not supported"
    parts = [f"{call} failed: {reason} ({errno_name(code)})"]
    hint = _ERRNO_HINTS.get(code)
    if hint:
        parts.append(hint)
    if detail:
        parts.append(detail)
    return cls(": ".join(parts), code, "", call)


def _default_tracefs_roots() -> tuple[Path, ...]:
    return (Path("/sys/kernel/tracing"), Path("/sys/kernel/debug/tracing"))


@dataclass(frozen=True, slots=True)
class PerfEventSystem:
    """Where perf events come from: the calls and the filesystems, all replaceable by tests."""

    perf_event_open: PerfEventOpen = libc_perf_event_open
    ioctl: PerfIoctl = libc_ioctl
    sysfs_root: Path = Path("/sys")
    tracefs_roots: tuple[Path, ...] = field(default_factory=_default_tracefs_roots)


def perf_event_open(
    attr: PerfEventAttr,
    *,
    pid: int = -1,
    cpu: int = 0,
    group_fd: int = -1,
    flags: int = PerfFlag.PERF_FLAG_FD_CLOEXEC,
    system: PerfEventSystem | None = None,
    detail: str = "",
) -> int:
    """perf_event_open(2): a new perf event descriptor (a plain int the caller must own) or an
    error by errno. ``attr.size`` is filled in when left 0."""
    system = PerfEventSystem() if system is None else system
    if attr.size == 0:
        attr.size = ctypes.sizeof(attr)
    result = system.perf_event_open(attr, pid, cpu, group_fd, int(flags))
    if result < 0:
        raise perf_error_for("perf_event_open", -result, detail=detail)
    return result


def perf_event_ioctl(fd: int, request: PerfEventIoc, arg: int = 0, *, system: PerfEventSystem | None = None) -> int:
    """One ``PERF_EVENT_IOC_*`` request on a perf event descriptor; raises by errno."""
    system = PerfEventSystem() if system is None else system
    result = system.ioctl(fd, int(request), arg)
    if result < 0:
        raise perf_error_for(request.name, -result)
    return result


def _read_text(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="ascii").strip()
    except FileNotFoundError as error:
        raise NotSupportedError(f"{what}: {path} does not exist") from error
    except OSError as error:
        raise NotSupportedError(f"{what}: cannot read {path}: {error}") from error


def pmu_type(pmu: str, *, system: PerfEventSystem | None = None) -> int:
    """The dynamic perf type of PMU ``pmu`` (``kprobe``, ``uprobe``) from
    ``/sys/bus/event_source/devices/<pmu>/type``; NotSupportedError when the kernel lacks it."""
    system = PerfEventSystem() if system is None else system
    path = system.sysfs_root / "bus" / "event_source" / "devices" / pmu / "type"
    text = _read_text(path, f"no {pmu} PMU (kernel without perf {pmu} support)")
    try:
        return int(text)
    except ValueError as error:
        raise NotSupportedError(f"{path}: not a PMU type number: {text!r}") from error


def pmu_retprobe_bit(pmu: str, *, system: PerfEventSystem | None = None) -> int:
    """The ``config`` bit that makes a ``pmu`` probe a return probe, from
    ``.../devices/<pmu>/format/retprobe`` (which reads ``config:<bit>``)."""
    system = PerfEventSystem() if system is None else system
    path = system.sysfs_root / "bus" / "event_source" / "devices" / pmu / "format" / "retprobe"
    text = _read_text(path, f"no return probes for the {pmu} PMU")
    prefix = "config:"
    bit_text = text.removeprefix(prefix)
    if not text.startswith(prefix) or not bit_text.isdigit() or int(bit_text) > 63:
        raise NotSupportedError(f"{path}: expected 'config:<bit>', got {text!r}")
    return int(bit_text)


def tracepoint_id(category: str, name: str, *, system: PerfEventSystem | None = None) -> int:
    """The id of tracepoint ``category:name`` from tracefs (``events/<cat>/<name>/id``), trying
    each tracefs root in turn (/sys/kernel/tracing, then /sys/kernel/debug/tracing)."""
    system = PerfEventSystem() if system is None else system
    for part, label in ((category, "category"), (name, "name")):
        # The two parts become path components: keep them to one component each.
        if not part or "/" in part or part in {".", ".."}:
            raise InvalidArgumentError(f"invalid tracepoint {label} {part!r}", errno_codes.EINVAL)
    tried: list[str] = []
    for root in system.tracefs_roots:
        if not (root / "events").is_dir():
            tried.append(f"{root} (not mounted)")
            continue
        path = root / "events" / category / name / "id"
        try:
            text = path.read_text(encoding="ascii").strip()
        except FileNotFoundError:
            raise ObjectNotFoundError(
                f"no tracepoint {category}:{name} ({path} does not exist)", errno_codes.ENOENT, "", "tracefs"
            ) from None
        except OSError as error:
            tried.append(f"{path} ({error.strerror})")
            continue
        try:
            return int(text)
        except ValueError as error:
            raise NotSupportedError(f"{path}: not a tracepoint id: {text!r}") from error
    raise NotSupportedError(f"tracefs not available to read {category}:{name}: tried {', '.join(tried) or 'nothing'}")
