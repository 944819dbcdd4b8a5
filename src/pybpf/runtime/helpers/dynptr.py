"""Dynptr helpers (kernel/bpf/helpers.c, kernel/bpf/ringbuf.c): dynptrs in the shared address space.

A dynptr is 16 bytes of the program's memory in the kernel's ``struct bpf_dynptr_kern`` layout
(:mod:`pybpf.platform.dynptr`); these helpers read and write those bytes through the run's
:class:`~pybpf.vm.memory.AddressSpace`, so a dynptr built by the interpreter or by native JIT
code (which calls these helpers through its Python trampoline) is the same object. Every check
and ``-errno`` is the kernel's, including a failed constructor leaving a NULL dynptr (all zero)
that the other helpers refuse (or, for submit/discard, ignore).

``bpf_user_ringbuf_drain`` hands its callback a pointer to a dynptr the helper keeps on its own
(kernel) stack: here, 16 bytes in a region mapped for the duration of the drain.
"""

# Every helper takes (env, r1..r5): the helper ABI fixes six positional parameters.
# ruff: noqa: PLR0917

from __future__ import annotations

import errno as errno_codes

from pybpf.errors import HelperError
from pybpf.platform.dynptr import DYNPTR_MAX_SIZE, DYNPTR_SIZE, DynptrType, DynptrValue, decode_dynptr, encode_dynptr
from pybpf.platform.uapi_generated import BpfRingbufFlag, HelperId
from pybpf.runtime.helpers._common import E2BIG, EBUSY, EFAULT, EINVAL, U64, find_map, neg, read, write
from pybpf.runtime.helpers.output import commit_sample
from pybpf.runtime.helpers.packet import skb_store_bytes
from pybpf.runtime.helpers.packet_context import packet_of
from pybpf.runtime.maps.ringbuf import RingBufMap
from pybpf.runtime.maps.user_ringbuf import BPF_MAX_USER_RINGBUF_SAMPLES, UserRingBufMap
from pybpf.vm.execution import ExecutionContext, HelperFn
from pybpf.vm.memory import Region, RegionKind

_NULL = bytes(DYNPTR_SIZE)
_WAKEUP_FLAGS = int(BpfRingbufFlag.NO_WAKEUP | BpfRingbufFlag.FORCE_WAKEUP)
_MEMORY_KINDS = (DynptrType.LOCAL, DynptrType.RINGBUF)
_PACKET_KINDS = (DynptrType.SKB, DynptrType.XDP)


def _load(env: ExecutionContext, address: int) -> DynptrValue:
    return decode_dynptr(read(env, address, DYNPTR_SIZE))


def _store(env: ExecutionContext, address: int, value: DynptrValue) -> None:
    write(env, address, encode_dynptr(value))


def _fail(env: ExecutionContext, address: int, result: int) -> int:
    """``bpf_dynptr_set_null`` then the error: the dynptr is initialised, but NULL."""
    write(env, address, _NULL)
    return result


def _out_of_range(value: DynptrValue, offset: int, length: int) -> bool:
    """``bpf_dynptr_check_off_len``."""
    return length > value.size or offset > value.size - length


def _packet_kind(env: ExecutionContext, value: DynptrValue) -> bool:
    """Whether the dynptr views the run's packet (skb/xdp, made by a kfunc), not plain memory."""
    if value.type in _MEMORY_KINDS:
        return False
    if value.type in _PACKET_KINDS:
        return True
    raise HelperError(f"dynptr of unknown type {value.type}", env.helper_pc)


def _packet_read(env: ExecutionContext, value: DynptrValue, offset: int, length: int) -> bytes | int:
    """``__bpf_skb_load_bytes`` / ``__bpf_xdp_load_bytes``: the bytes, or the -errno."""
    packet = packet_of(env, value.data)
    if offset + length > packet.length:
        return EFAULT if value.type == DynptrType.SKB else EINVAL
    return packet.read(offset, length)


def _packet_write(env: ExecutionContext, value: DynptrValue, offset: int, source: int, length: int,
                  flags: int) -> int:
    """``__bpf_skb_store_bytes`` (bpf_skb_store_bytes' body) / ``__bpf_xdp_store_bytes``."""
    if value.type == DynptrType.SKB:
        return skb_store_bytes(env, value.data, offset, source, length, flags)
    if flags:
        return EINVAL
    packet = packet_of(env, value.data)
    if offset + length > packet.length:
        return EINVAL
    packet.write(offset, read(env, source, length))
    return 0


def dynptr_from_mem(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    """bpf_dynptr_from_mem(data, size, flags, ptr)."""
    size = r2 & U64
    if size > DYNPTR_MAX_SIZE:
        return _fail(env, r4, E2BIG)
    if r3:
        return _fail(env, r4, EINVAL)
    _store(env, r4, DynptrValue(r1 & U64, size, DynptrType.LOCAL))
    return 0


def dynptr_read(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    """bpf_dynptr_read(dst, len, src, offset, flags)."""
    source = _load(env, r3)
    length, offset = r2 & U64, r4 & U64
    if source.is_null or r5:
        return EINVAL
    if _out_of_range(source, offset, length):
        return E2BIG
    if _packet_kind(env, source):
        found = _packet_read(env, source, source.offset + offset, length)
        if isinstance(found, int):
            return found
        write(env, r1, found)
        return 0
    # memmove: source and destination may overlap (two dynptrs over one map value).
    write(env, r1, read(env, source.data + source.offset + offset, length))
    return 0


def dynptr_write(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    """bpf_dynptr_write(dst, offset, src, len, flags)."""
    target = _load(env, r1)
    offset, length = r2 & U64, r4 & U64
    if target.is_null or target.rdonly:
        return EINVAL
    if _out_of_range(target, offset, length):
        return E2BIG
    if _packet_kind(env, target):
        return _packet_write(env, target, target.offset + offset, r3, length, r5 & U64)
    if r5:
        return EINVAL
    write(env, target.data + target.offset + offset, read(env, r3, length))
    return 0


def dynptr_data(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    """bpf_dynptr_data(ptr, offset, len): the address of the bytes, or 0 (NULL)."""
    value = _load(env, r1)
    offset, length = r2 & U64, r3 & U64
    if value.is_null or _out_of_range(value, offset, length) or value.rdonly:
        return 0
    if value.type not in _MEMORY_KINDS:
        return 0
    return (value.data + value.offset + offset) & U64


def ringbuf_reserve_dynptr(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    """bpf_ringbuf_reserve_dynptr(ringbuf, size, flags, ptr): 0, or -errno and a NULL dynptr."""
    state, found = find_map(env, r1)
    size = r2 & 0xFFFFFFFF  # a u32 in the kernel's prototype
    if r3:
        return _fail(env, r4, EINVAL)
    if size > DYNPTR_MAX_SIZE:
        return _fail(env, r4, E2BIG)
    if not isinstance(found, RingBufMap):
        raise HelperError(f"map {type(found).__name__} is not a ring buffer", env.helper_pc)
    address = found.reserve(size)
    if not address:
        return _fail(env, r4, EINVAL)
    state.reserved[address] = found
    _store(env, r4, DynptrValue(address, size, DynptrType.RINGBUF))
    return 0


def _commit_dynptr(env: ExecutionContext, address: int, flags: int, discard: bool) -> int:
    value = _load(env, address)
    if value.is_null:
        return 0  # a failed reservation: nothing to publish
    commit_sample(env, value.data, flags & U64, discard)
    write(env, address, _NULL)
    return 0


def ringbuf_submit_dynptr(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    return _commit_dynptr(env, r1, r2, discard=False)


def ringbuf_discard_dynptr(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    return _commit_dynptr(env, r1, r2, discard=True)


def user_ringbuf_drain(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    """bpf_user_ringbuf_drain(map, callback, ctx, flags): callback(dynptr, ctx) per sample until
    it returns nonzero; the number of samples handed over (discarded ones not counted)."""
    _, found = find_map(env, r1)
    if r4 & ~_WAKEUP_FLAGS:
        return EINVAL
    if not isinstance(found, UserRingBufMap):
        raise HelperError(f"map {type(found).__name__} is not a user ring buffer", env.helper_pc)
    ring = found
    if ring.busy:
        return EBUSY
    holder = env.memory.add(Region.zeroed(RegionKind.HELPER_MEM, "user ringbuf dynptr", DYNPTR_SIZE))
    ring.busy = True
    samples = discarded = 0
    result = 0
    try:
        while samples < BPF_MAX_USER_RINGBUF_SAMPLES and result == 0:
            peeked = ring.peek()
            if peeked.error == errno_codes.ENOSPC:
                break
            if peeked.error == errno_codes.EAGAIN:
                discarded += 1
                samples += 1
                continue
            if peeked.error:
                return neg(peeked.error)
            holder.view[:] = encode_dynptr(DynptrValue(peeked.address, peeked.size, DynptrType.LOCAL))
            result = env.call_function(r2, holder.address, r3)
            ring.release(peeked.size)
            samples += 1
    finally:
        ring.busy = False
        env.memory.remove(holder)
    if r4 & BpfRingbufFlag.FORCE_WAKEUP or (not r4 & BpfRingbufFlag.NO_WAKEUP and samples > 0):
        ring.wakeups += 1
    return (samples - discarded) & U64


DYNPTR_HELPERS: dict[HelperId, HelperFn] = {
    HelperId.DYNPTR_FROM_MEM: dynptr_from_mem,
    HelperId.DYNPTR_READ: dynptr_read,
    HelperId.DYNPTR_WRITE: dynptr_write,
    HelperId.DYNPTR_DATA: dynptr_data,
    HelperId.RINGBUF_RESERVE_DYNPTR: ringbuf_reserve_dynptr,
    HelperId.RINGBUF_SUBMIT_DYNPTR: ringbuf_submit_dynptr,
    HelperId.RINGBUF_DISCARD_DYNPTR: ringbuf_discard_dynptr,
    HelperId.USER_RINGBUF_DRAIN: user_ringbuf_drain,
}
