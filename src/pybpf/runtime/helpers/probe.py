"""probe_read* helpers: copy from any mapped region; a fault is -EFAULT with the destination zeroed.

In user space there is no kernel/user split: the ``_kernel``/``_user`` variants and the legacy
ones all read the run's address space. ``probe_write_user`` writes to it (writable regions only).
"""

# Every helper takes (env, r1..r5): the helper ABI fixes six positional parameters.
# ruff: noqa: PLR0917

from __future__ import annotations

from pybpf.platform.uapi_generated import HelperId
from pybpf.runtime.helpers._common import EFAULT, EINVAL, U32, read, read_cstring, try_read, write
from pybpf.vm.execution import ExecutionContext, HelperFn


def probe_read(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    """copy_from_kernel_nofault(dst, src, size): 0, or -EFAULT with dst zeroed."""
    size = r2 & U32
    data = try_read(env, r3, size)
    if data is None:
        write(env, r1, bytes(size))
        return EFAULT
    write(env, r1, data)
    return 0


def probe_read_str(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    """strncpy_from_kernel_nofault: the length copied including the NUL; a full buffer ends in NUL.

    On a fault the whole destination is zeroed and the result is -EFAULT.
    """
    size = r2 & U32
    if size == 0:
        return 0
    text = read_cstring(env, r3, size)
    if text is None:
        write(env, r1, bytes(size))
        return EFAULT
    if len(text) >= size:  # no NUL within size bytes: keep size - 1 and terminate
        write(env, r1, text[: size - 1] + b"\0")
        return size
    write(env, r1, text + b"\0")
    return len(text) + 1


def probe_write_user(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    """Write size bytes from src to dst; -EFAULT when dst is not writable memory."""
    size = r3 & U32
    data = read(env, r2, size)
    region = env.memory.find(r1, size) if size else None
    if size and (region is None or not region.writable):
        return EFAULT
    if not size:
        return EINVAL  # ARG_CONST_SIZE: never 0 after verification
    write(env, r1, data)
    return 0


PROBE_HELPERS: dict[HelperId, HelperFn] = {
    HelperId.PROBE_READ: probe_read,
    HelperId.PROBE_READ_KERNEL: probe_read,
    HelperId.PROBE_READ_USER: probe_read,
    HelperId.COPY_FROM_USER: probe_read,
    HelperId.PROBE_READ_STR: probe_read_str,
    HelperId.PROBE_READ_KERNEL_STR: probe_read_str,
    HelperId.PROBE_READ_USER_STR: probe_read_str,
    HelperId.PROBE_WRITE_USER: probe_write_user,
}
