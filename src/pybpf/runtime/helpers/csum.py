"""Internet checksum arithmetic, bit-exact with the kernel on x86-64, and the checksum helpers.

Values are kept as the kernel holds them on a little-endian host: a ``__wsum`` is a 32-bit
one's-complement partial sum of the data read as little-endian words, a ``__sum16`` is the 16
bits stored in the packet read little-endian. ``csum_partial`` on x86-64 accumulates 64-bit
words with end-around carry and folds to 32 bits, so its result is the sum modulo 2**32 - 1,
represented in [1, 2**32 - 1] unless every addend is zero; :func:`csum_partial` computes
exactly that representative.

bpf_csum_diff follows Linux >= 6.12 (checked against 6.18 by the differential tests): it no
longer rejects sizes, and returns the partial sum folded to 16 bits (``csum_from32to16``).
"""

# Every helper takes (env, r1..r5): the helper ABI fixes six positional parameters.
# ruff: noqa: PLR0917

from __future__ import annotations

from pybpf.platform.uapi_generated import HelperId
from pybpf.runtime.helpers._common import EFAULT, EINVAL, ENOTSUPP_RET, U16, U32, read
from pybpf.runtime.helpers.packet_context import CHECKSUM_COMPLETE, CHECKSUM_PARTIAL, packet_of
from pybpf.vm.execution import ExecutionContext, HelperFn

BPF_F_HDR_FIELD_MASK = 0xF
BPF_F_PSEUDO_HDR = 1 << 4
BPF_F_MARK_MANGLED_0 = 1 << 5
BPF_F_MARK_ENFORCE = 1 << 6
BPF_F_IPV6 = 1 << 7
CSUM_MANGLED_0 = 0xFFFF
_L4_FLAGS = BPF_F_MARK_MANGLED_0 | BPF_F_MARK_ENFORCE | BPF_F_PSEUDO_HDR | BPF_F_HDR_FIELD_MASK | BPF_F_IPV6


def _representative(total: int) -> int:
    """The end-around-carry 32-bit result of adding up ``total``'s addends (0 only for 0)."""
    return 0 if total == 0 else (total - 1) % U32 + 1


def csum_partial(data: bytes | bytearray | memoryview, seed: int = 0) -> int:
    """csum_partial(buf, len, seed): a 32-bit partial sum of little-endian words plus ``seed``."""
    raw = bytes(data)
    raw += bytes(-len(raw) % 4)
    total = seed & U32
    for index in range(0, len(raw), 4):
        total += int.from_bytes(raw[index : index + 4], "little")
    return _representative(total)


def csum_add(csum: int, addend: int) -> int:
    """32-bit one's-complement addition (end-around carry)."""
    total = (csum & U32) + (addend & U32)
    return (total & U32) + (total >> 32)


def csum_sub(csum: int, addend: int) -> int:
    return csum_add(csum, ~addend & U32)


def csum_fold(csum: int) -> int:
    """Fold a __wsum to 16 bits and complement it (the __sum16 to store)."""
    return ~csum_from32to16(csum) & U16


def csum_from32to16(csum: int) -> int:
    """Fold a 32-bit partial sum to 16 bits with end-around carry (not complemented)."""
    csum &= U32
    total = (csum & U16) + (csum >> 16)
    return (total & U16) + (total >> 16)


def csum16_add(csum: int, addend: int) -> int:
    total = (csum & U16) + (addend & U16)
    return (total & U16) + (total >> 16)


def csum_replace2(check: int, old: int, new: int) -> int:
    """The new __sum16 after a 16-bit field changed from ``old`` to ``new`` (RFC 1624)."""
    return ~csum16_add(csum16_add(~check & U16, ~old & U16), new) & U16


def csum_replace4(check: int, old: int, new: int) -> int:
    """The new __sum16 after a 32-bit field changed; ~csum_unfold(sum) complements all 32 bits."""
    return csum_fold(csum_add(csum_sub(~(check & U16) & U32, old), new))


def csum_replace_by_diff(check: int, diff: int) -> int:
    return csum_fold(csum_add(diff, ~(check & U16) & U32))


def csum_diff(from_data: bytes, to_data: bytes, seed: int) -> int:
    """bpf_csum_diff's result for the two buffers (Linux >= 6.12 semantics, see the module doc)."""
    seed &= U32
    if from_data and to_data:
        total = csum_sub(csum_partial(to_data, seed), csum_partial(from_data, 0))
    elif to_data:
        total = csum_partial(to_data, seed)
    elif from_data:
        total = ~csum_partial(from_data, ~seed & U32) & U32
    else:
        total = seed
    return csum_from32to16(total)


def csum_diff_helper(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    from_size = r2 & U32
    to_size = r4 & U32
    from_data = read(env, r1, from_size) if from_size else b""
    to_data = read(env, r3, to_size) if to_size else b""
    return csum_diff(from_data, to_data, r5)


def _check_offset(offset: int) -> bool:
    return offset <= 0xFFFF and not offset & 1


def l3_csum_replace(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    """Update the 16-bit checksum at ``offset`` for a field changing from ``from`` to ``to``.

    flags' low 4 bits give the field size: 2 or 4, or 0 when ``to`` is a csum_diff result
    (``from`` must be 0 then).
    """
    packet = packet_of(env, r1)
    offset, old, new, flags = r2 & U32, r3, r4, r5
    if flags & ~BPF_F_HDR_FIELD_MASK:
        return EINVAL
    if not _check_offset(offset) or not packet.make_writable(offset + 2):
        return EFAULT
    check = packet.load16(offset)
    match flags & BPF_F_HDR_FIELD_MASK:
        case 0:
            if old:
                return EINVAL
            check = csum_replace_by_diff(check, new & U32)
        case 2:
            check = csum_replace2(check, old & U16, new & U16)
        case 4:
            check = csum_replace4(check, old & U32, new & U32)
        case _:
            return EINVAL
    packet.store16(offset, check)
    return 0


def _proto_replace(
    packet_summed: int, check: int, diff: tuple[int, ...], pseudo: bool, skb_csum: int
) -> tuple[int, int]:
    """inet_proto_csum_replace4/by_diff: the new check and skb->csum for the words in ``diff``."""
    data = b"".join(word.to_bytes(4, "little") for word in diff)
    if packet_summed != CHECKSUM_PARTIAL:
        check = csum_fold(csum_partial(data, ~(check & U16) & U32))
        if packet_summed == CHECKSUM_COMPLETE and pseudo:
            skb_csum = ~csum_partial(data, ~skb_csum & U32) & U32
    elif pseudo:
        check = ~csum_fold(csum_partial(data, check & U16)) & U16
    return check, skb_csum


def l4_csum_replace(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    """As l3_csum_replace for a TCP/UDP checksum; BPF_F_PSEUDO_HDR when the field is in the pseudo
    header, BPF_F_MARK_MANGLED_0 to keep a zero UDP checksum zero (and write 0xffff for a result of 0)."""
    packet = packet_of(env, r1)
    offset, old, new, flags = r2 & U32, r3, r4, r5
    pseudo = bool(flags & BPF_F_PSEUDO_HDR)
    mangled_zero = bool(flags & BPF_F_MARK_MANGLED_0)
    enforce = bool(flags & BPF_F_MARK_ENFORCE)
    if flags & ~_L4_FLAGS:
        return EINVAL
    if not _check_offset(offset) or not packet.make_writable(offset + 2):
        return EFAULT
    check = packet.load16(offset)
    if mangled_zero and not enforce and not check:
        return 0
    skb = packet.skb
    match flags & BPF_F_HDR_FIELD_MASK:
        case 0:
            if old:
                return EINVAL
            diff = new & U32
            if skb.ip_summed != CHECKSUM_PARTIAL:
                check = csum_fold(csum_add(diff, ~(check & U16) & U32))
                # BPF_F_IPV6: the pseudo-header change is already in skb->csum for IPv6 (6.16+).
                if skb.ip_summed == CHECKSUM_COMPLETE and pseudo and not flags & BPF_F_IPV6:
                    skb.csum = ~csum_add(diff, ~skb.csum & U32) & U32
            elif pseudo:
                check = ~csum_fold(csum_add(diff, check & U16)) & U16
        case 2:
            words = (~(old & U16) & U32, new & U16)
            check, skb.csum = _proto_replace(skb.ip_summed, check, words, pseudo, skb.csum)
        case 4:
            words = (~old & U32, new & U32)
            check, skb.csum = _proto_replace(skb.ip_summed, check, words, pseudo, skb.csum)
        case _:
            return EINVAL
    if mangled_zero and not check:
        check = CSUM_MANGLED_0
    packet.store16(offset, check)
    return 0


def csum_update(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    """Add ``csum`` to skb->csum when the skb is CHECKSUM_COMPLETE; -ENOTSUPP otherwise."""
    packet = packet_of(env, r1)
    skb = packet.skb
    if skb.ip_summed == CHECKSUM_COMPLETE:
        skb.csum = csum_add(skb.csum, r2 & U32)
        return skb.csum
    return ENOTSUPP_RET


CSUM_HELPERS: dict[HelperId, HelperFn] = {
    HelperId.CSUM_DIFF: csum_diff_helper,
    HelperId.L3_CSUM_REPLACE: l3_csum_replace,
    HelperId.L4_CSUM_REPLACE: l4_csum_replace,
    HelperId.CSUM_UPDATE: csum_update,
}
