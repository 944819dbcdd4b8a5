"""Dynptr kfuncs (kernel/bpf/helpers.c, net/core/filter.c), by kernel name: :data:`DYNPTR_KFUNC_IMPLS`.

They work on the same 16 bytes as the dynptr helpers (:mod:`pybpf.runtime.helpers.dynptr`).
A packet dynptr (``bpf_dynptr_from_skb``/``_xdp``) holds the context pointer, as the kernel's
holds the ``sk_buff``/``xdp_buff``: its bytes are the run's packet, and our packets are linear,
so a slice of one points straight into the packet.
"""

# Every kfunc takes (env, r1..r5): the helper ABI fixes six positional parameters.
# ruff: noqa: PLR0917

from __future__ import annotations

from pybpf.platform.dynptr import DYNPTR_SIZE, DynptrType, DynptrValue, decode_dynptr, encode_dynptr
from pybpf.runtime.helpers._common import EINVAL, ERANGE, U64, read, write
from pybpf.runtime.helpers.packet_context import packet_of
from pybpf.vm.execution import ExecutionContext, HelperFn

_NULL = bytes(DYNPTR_SIZE)
_MEMORY_KINDS = (DynptrType.LOCAL, DynptrType.RINGBUF)


def _load(env: ExecutionContext, address: int) -> DynptrValue:
    return decode_dynptr(read(env, address, DYNPTR_SIZE))


def _store(env: ExecutionContext, address: int, value: DynptrValue) -> None:
    write(env, address, encode_dynptr(value))


def _from_packet(env: ExecutionContext, ctx: int, flags: int, target: int, kind: DynptrType) -> int:
    if flags:
        write(env, target, _NULL)
        return EINVAL
    _store(env, target, DynptrValue(ctx & U64, packet_of(env, ctx).length, kind))
    return 0


def dynptr_from_skb(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    """bpf_dynptr_from_skb(skb, flags, ptr__uninit)."""
    return _from_packet(env, r1, r2, r3, DynptrType.SKB)


def dynptr_from_xdp(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    """bpf_dynptr_from_xdp(xdp, flags, ptr__uninit)."""
    return _from_packet(env, r1, r2, r3, DynptrType.XDP)


def dynptr_adjust(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    """bpf_dynptr_adjust(p, start, end): the view becomes [start, end) of the current one."""
    value = _load(env, r1)
    start, end = r2 & 0xFFFFFFFF, r3 & 0xFFFFFFFF
    if value.is_null or start > end:
        return EINVAL
    if start > value.size or end > value.size:
        return ERANGE
    _store(env, r1, DynptrValue(value.data, end - start, value.type, value.offset + start, value.rdonly))
    return 0


def dynptr_is_null(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    return int(_load(env, r1).is_null)


def dynptr_is_rdonly(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    value = _load(env, r1)
    return int(not value.is_null and value.rdonly)


def dynptr_size(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    value = _load(env, r1)
    return EINVAL if value.is_null else value.size


def dynptr_clone(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    """bpf_dynptr_clone(p, clone__uninit): the same view (a ring buffer clone shares the record)."""
    raw = read(env, r1, DYNPTR_SIZE)
    if decode_dynptr(raw).is_null:
        write(env, r2, _NULL)
        return EINVAL
    write(env, r2, raw)
    return 0


def _slice(env: ExecutionContext, value: DynptrValue, offset: int, length: int) -> int:
    """The address of ``length`` bytes at ``offset`` of the view, or 0 (NULL)."""
    if value.is_null or length > value.size or offset > value.size - length:
        return 0
    at = value.offset + offset
    if value.type in _MEMORY_KINDS:
        return (value.data + at) & U64
    packet = packet_of(env, value.data)
    if at + length > packet.length:
        return 0
    # skb_header_pointer / bpf_xdp_pointer on a linear packet: the bytes in place (the
    # buffer__opt copy is never needed).
    return (packet.data + at) & U64


def dynptr_slice(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    """bpf_dynptr_slice(p, offset, buffer__opt, buffer__szk): read-only bytes, or NULL."""
    return _slice(env, _load(env, r1), r2 & 0xFFFFFFFF, r4 & U64)


def dynptr_slice_rdwr(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    """bpf_dynptr_slice_rdwr: as bpf_dynptr_slice, NULL for a read-only dynptr."""
    value = _load(env, r1)
    if value.rdonly:
        return 0
    return _slice(env, value, r2 & 0xFFFFFFFF, r4 & U64)


DYNPTR_KFUNC_IMPLS: dict[str, HelperFn] = {
    "bpf_dynptr_from_skb": dynptr_from_skb,
    "bpf_dynptr_from_xdp": dynptr_from_xdp,
    "bpf_dynptr_adjust": dynptr_adjust,
    "bpf_dynptr_is_null": dynptr_is_null,
    "bpf_dynptr_is_rdonly": dynptr_is_rdonly,
    "bpf_dynptr_size": dynptr_size,
    "bpf_dynptr_clone": dynptr_clone,
    "bpf_dynptr_slice": dynptr_slice,
    "bpf_dynptr_slice_rdwr": dynptr_slice_rdwr,
}
"""Implementations by kernel name, for the kfunc table (:mod:`pybpf.runtime.helpers.kfuncs`)."""

__all__ = ["DYNPTR_KFUNC_IMPLS"]
