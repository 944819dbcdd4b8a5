"""Small pieces every helper family shares: errno returns, masks, guarded memory access, map lookup."""

from __future__ import annotations

import errno as errno_codes

from pybpf.errors import HelperError, MapErrnoError, MapError, MemoryAccessError
from pybpf.runtime.helpers.services import RunState, run_state
from pybpf.vm.execution import ExecutionContext

U8 = 0xFF
U16 = 0xFFFF
U32 = 0xFFFFFFFF
U64 = (1 << 64) - 1
ENOTSUPP = 524
"""The kernel-internal 'not supported' (include/linux/errno.h) several helpers return."""


def neg(code: int) -> int:
    """The helper return value for errno ``code`` (the verifier sees it as a negative s64)."""
    return -code & U64


EINVAL = neg(errno_codes.EINVAL)
EFAULT = neg(errno_codes.EFAULT)
ENOENT = neg(errno_codes.ENOENT)
E2BIG = neg(errno_codes.E2BIG)
ERANGE = neg(errno_codes.ERANGE)
EBUSY = neg(errno_codes.EBUSY)
ENOMEM = neg(errno_codes.ENOMEM)
EAGAIN = neg(errno_codes.EAGAIN)
EOPNOTSUPP = neg(errno_codes.EOPNOTSUPP)
EACCES = neg(errno_codes.EACCES)
EPERM = neg(errno_codes.EPERM)
ENOSPC = neg(errno_codes.ENOSPC)
ENOTSUPP_RET = neg(ENOTSUPP)


def s32(value: int) -> int:
    value &= U32
    return value - (1 << 32) if value & 0x80000000 else value


def s64(value: int) -> int:
    value &= U64
    return value - (1 << 64) if value >> 63 else value


def map_error_return(error: MapError) -> int:
    """The -errno a helper returns for a failed map operation."""
    if isinstance(error, MapErrnoError):
        return neg(error.errno)
    code = getattr(errno_codes, error.errno_name or "", None)
    if isinstance(code, int):
        return neg(code)
    if error.errno_name == "ENOTSUPP":
        return ENOTSUPP_RET
    return EINVAL


def try_read(env: ExecutionContext, address: int, size: int) -> bytes | None:
    """``size`` bytes at ``address``, or None when any of them is unmapped (a fault)."""
    if size == 0:
        return b""
    try:
        return env.memory.read_bytes(address, size, env.helper_pc)
    except MemoryAccessError:
        return None


def read(env: ExecutionContext, address: int, size: int) -> bytes:
    """Bytes the verifier promised are readable: a fault here is a VM error, not a helper result."""
    return env.memory.read_bytes(address, size, env.helper_pc)


def write(env: ExecutionContext, address: int, data: bytes | bytearray | memoryview) -> None:
    """Write memory the verifier promised is writable (faults raise)."""
    env.memory.write_bytes(address, data, env.helper_pc)


def read_cstring(env: ExecutionContext, address: int, limit: int) -> bytes | None:
    """The bytes before the first NUL at ``address`` (at most ``limit``), or None on a fault.

    Stops at the end of the region holding ``address``: a string running into unmapped memory
    faults, as copy_from_kernel_nofault does on an unmapped page.
    """
    region = env.memory.find(address, 1)
    if region is None or limit <= 0:
        return None if region is None else b""
    offset = address - region.address
    window = region.view[offset : offset + limit]
    end = bytes(window).find(b"\0")
    if end >= 0:
        return bytes(window[:end])
    if len(window) < limit:
        return None  # ran off the region before the NUL
    return bytes(window)


def find_map(env: ExecutionContext, address: int) -> tuple[RunState, object]:
    """The run state and the map a map-pointer argument designates (HelperError if none)."""
    state = run_state(env)
    found = state.services.maps.find(address)
    if found is None:
        raise HelperError(f"{address:#x} is not a map pointer (no map is registered there)", env.helper_pc)
    return state, found


def require(env: ExecutionContext, target: object, method: str) -> object:
    """``target.method``; HelperError naming the map type when the map lacks the operation."""
    bound = getattr(target, method, None)
    if bound is None:
        raise HelperError(f"map {type(target).__name__} does not support {method}", env.helper_pc)
    return bound
