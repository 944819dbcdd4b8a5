"""The one place in pybpf that enters the kernel: ``bpf(2)`` through ctypes.

Every command goes through :func:`bpf`, which takes the command number and its attr struct
(one of the ctypes structures in :mod:`pybpf.kernel.attrs`) and returns the kernel's result
or raises a :class:`~pybpf.errors.BpfCommandError` subclass chosen by errno.

The raw system call is a parameter (aya's ``override_syscall``, without the global): any
callable ``(cmd, attr) -> int`` that returns the result, or ``-errno`` on failure, can stand
in for the kernel, so unit tests run without root. :func:`libc_syscall` is the real one.
"""

from __future__ import annotations

import ctypes
import errno as errno_codes
import functools
import os
import platform
import sys
from collections.abc import Callable

from pybpf.errors import (
    AlreadyExistsError,
    ArgumentTooBigError,
    BpfCommandError,
    InvalidArgumentError,
    KernelNotSupportedError,
    NoSpaceError,
    NotSupportedError,
    ObjectNotFoundError,
    PermissionDeniedError,
    ResourceBusyError,
)
from pybpf.kernel.uapi import BpfCmd

__all__ = [
    "ENOTSUPP",
    "BpfCmd",
    "RawSyscall",
    "bpf",
    "bpf_syscall_number",
    "command_name",
    "errno_class",
    "errno_name",
    "error_for",
    "libc_syscall",
]


def command_name(cmd: BpfCmd) -> str:
    """The command's name as bpf.h spells it, e.g. ``BPF_MAP_CREATE``."""
    return f"BPF_{cmd.name}"


RawSyscall = Callable[[BpfCmd, ctypes.Structure], int]
"""The replaceable system call: ``(cmd, attr) -> result``, or ``-errno`` on failure.

``attr`` is the ctypes structure itself; the real implementation passes its address and
``ctypes.sizeof(attr)`` to the kernel, a fake may read and write its fields directly.
"""

# Syscall numbers of bpf(2) per architecture (arch/*/include/uapi/asm/unistd*.h):
# x86_64 has its own table, aarch64 uses the generic asm-generic/unistd.h table.
_BPF_SYSCALL_NUMBERS = {
    "x86_64": 321,
    "amd64": 321,
    "aarch64": 280,
    "arm64": 280,
}

# The kernel's internal ENOTSUPP (include/linux/errno.h): not in userspace errno tables,
# but bpf(2) returns it for program and map types a kernel build does not support.
ENOTSUPP = 524


def bpf_syscall_number(system: str | None = None, machine: str | None = None) -> int:
    """The bpf(2) syscall number here; NotSupportedError off Linux or on another arch."""
    system = sys.platform if system is None else system
    if not system.startswith("linux"):
        raise NotSupportedError(f"bpf(2) exists only on Linux, not on {system!r}")
    machine = platform.machine() if machine is None else machine
    number = _BPF_SYSCALL_NUMBERS.get(machine.lower())
    if number is None:
        raise NotSupportedError(f"bpf(2) syscall number unknown for architecture {machine!r} (known: x86_64, aarch64)")
    return number


@functools.cache
def _libc_syscall_function() -> tuple[Callable[..., int], int]:
    # Cached because loading libc and resolving the number never change within a process;
    # this is a read-only handle, not state.
    number = bpf_syscall_number()
    libc = ctypes.CDLL(None, use_errno=True)
    function = libc.syscall
    function.restype = ctypes.c_long
    function.argtypes = [ctypes.c_long, ctypes.c_int, ctypes.c_void_p, ctypes.c_uint]
    return function, number


def libc_syscall(cmd: BpfCmd, attr: ctypes.Structure) -> int:
    """The real bpf(2), through libc's ``syscall()``; returns ``-errno`` on failure."""
    function, number = _libc_syscall_function()
    while True:
        result = int(function(number, int(cmd), ctypes.addressof(attr), ctypes.sizeof(attr)))
        if result >= 0:
            return result
        code = ctypes.get_errno()
        # EINTR means a signal arrived before the command took effect, so repeating it is
        # safe (the verifier's own signal check returns EAGAIN instead: see prog_load).
        if code != errno_codes.EINTR:
            return -code


_ERRNO_CLASSES: dict[int, type[BpfCommandError]] = {
    errno_codes.EPERM: PermissionDeniedError,
    errno_codes.EACCES: PermissionDeniedError,
    errno_codes.ENOENT: ObjectNotFoundError,
    errno_codes.E2BIG: ArgumentTooBigError,
    errno_codes.EINVAL: InvalidArgumentError,
    errno_codes.ENOSPC: NoSpaceError,
    errno_codes.EEXIST: AlreadyExistsError,
    errno_codes.EBUSY: ResourceBusyError,
    errno_codes.ENOSYS: KernelNotSupportedError,
    errno_codes.EOPNOTSUPP: KernelNotSupportedError,
    ENOTSUPP: KernelNotSupportedError,
}

_ERRNO_HINTS: dict[int, str] = {
    errno_codes.EPERM: "needs CAP_BPF or root",
    errno_codes.EACCES: "needs CAP_BPF or root",
    errno_codes.ENOSYS: "the kernel has no bpf() syscall (CONFIG_BPF_SYSCALL off?)",
    ENOTSUPP: "not supported by this kernel",
}


_MAP_WRITE_COMMANDS = frozenset(
    {
        BpfCmd.MAP_UPDATE_ELEM,
        BpfCmd.MAP_DELETE_ELEM,
        BpfCmd.MAP_UPDATE_BATCH,
        BpfCmd.MAP_DELETE_BATCH,
        BpfCmd.MAP_LOOKUP_AND_DELETE_ELEM,
        BpfCmd.MAP_LOOKUP_AND_DELETE_BATCH,
    }
)


def errno_name(code: int) -> str:
    """``errno.errorcode`` name for ``code`` (``ENOTSUPP`` for the kernel-internal 524)."""
    if code == ENOTSUPP:
        return "ENOTSUPP"
    return errno_codes.errorcode.get(code, f"errno {code}")


def errno_class(code: int) -> type[BpfCommandError]:
    """The BpfCommandError subclass for errno ``code`` (shared with perf_event_open errors)."""
    return _ERRNO_CLASSES.get(code, BpfCommandError)


def error_for(cmd: BpfCmd, code: int, *, detail: str = "", log: str = "") -> BpfCommandError:
    """The exception for ``cmd`` failing with errno ``code`` (not raised, returned)."""
    cls = errno_class(code)
    reason = os.strerror(code) if code != ENOTSUPP else "Operation not supported"
    parts = [f"{command_name(cmd)} failed: {reason} ({errno_name(code)})"]
    hint = _ERRNO_HINTS.get(code)
    if code == errno_codes.EPERM and cmd in _MAP_WRITE_COMMANDS:
        # Writing a frozen or read-only map is refused with EPERM too, even as root.
        hint = "needs CAP_BPF or root, or the map is frozen or read-only"
    if hint and code in (errno_codes.EPERM, errno_codes.EACCES) and os.geteuid() == 0:
        # Root is refused too by a kernel lockdown or an LSM policy, and some kernels refuse
        # whole program types (e.g. fentry/lsm where BPF trampolines are unavailable).
        hint += (" (this process is root: a kernel lockdown, an LSM policy or a program type this"
                 " kernel refuses may be why)")
    if hint:
        parts.append(hint)
    if detail:
        parts.append(detail)
    return cls(": ".join(parts), code, log, command_name(cmd))


def bpf(cmd: BpfCmd, attr: ctypes.Structure, *, syscall: RawSyscall | None = None) -> int:
    """Run one bpf(2) command; return its non-negative result or raise by errno.

    ``syscall`` defaults to :func:`libc_syscall`; tests pass a fake.
    """
    raw = libc_syscall if syscall is None else syscall
    result = raw(cmd, attr)
    if result < 0:
        raise error_for(cmd, -result)
    return result
