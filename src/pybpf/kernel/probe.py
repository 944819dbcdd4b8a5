"""Whether bpf(2) works here, asked of the kernel itself.

:func:`available` loads the smallest valid program, ``r0 = 0; exit``, as a socket filter (the
program type every bpf-enabled kernel has). Nothing is cached: callers that ask often keep
the answer in their own objects.
"""

from __future__ import annotations

import errno as errno_codes

from pybpf.errors import BpfCommandError, NotSupportedError
from pybpf.kernel.progs import prog_load
from pybpf.kernel.syscall import RawSyscall, bpf_syscall_number, errno_name
from pybpf.kernel.uapi import BpfProgType

# r0 = 0 (BPF_ALU64 | BPF_MOV | BPF_K); exit (BPF_JMP | BPF_EXIT).
TRIVIAL_PROGRAM = bytes.fromhex("b7000000000000009500000000000000")

_REASONS = {
    errno_codes.EPERM: "bpf() is not permitted: needs CAP_BPF or root",
    errno_codes.EACCES: "bpf() is not permitted: needs CAP_BPF or root",
    errno_codes.ENOSYS: "the kernel has no bpf() syscall (CONFIG_BPF_SYSCALL is off)",
}


def available(*, syscall: RawSyscall | None = None) -> tuple[bool, str]:
    """``(True, "")`` when programs can be loaded here, else ``(False, reason)``."""
    try:
        if syscall is None:
            bpf_syscall_number()
        with prog_load(BpfProgType.SOCKET_FILTER, TRIVIAL_PROGRAM, syscall=syscall):
            pass
    except NotSupportedError as error:
        if not isinstance(error, BpfCommandError):
            return False, str(error)
        return False, _REASONS.get(error.errno, str(error))
    except BpfCommandError as error:
        reason = _REASONS.get(error.errno)
        return False, reason or f"loading a trivial program failed ({errno_name(error.errno)}): {error}"
    except OSError as error:
        # ctypes could not reach libc's syscall() at all.
        return False, f"cannot call bpf(): {error}"
    return True, ""
