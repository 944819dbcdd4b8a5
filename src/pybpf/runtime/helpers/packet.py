"""Packet helpers: XDP head/tail/meta adjustment, redirects, skb byte access and reshaping, VLANs, hash.

Each follows net/core/filter.c for a linear packet; results are the kernel's (-EINVAL for a move
out of bounds, -ENOTSUPP = -524 where the kernel returns its internal ENOTSUPP...).
"""

# Every helper takes (env, r1..r5): the helper ABI fixes six positional parameters.
# ruff: noqa: PLR0917

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import cast

from pybpf.platform.packet_layout import ETH_HLEN, XDP_FRAME_STRUCT, XDP_METADATA_MAX
from pybpf.platform.uapi_generated import HelperId, TcAct, XdpAction
from pybpf.runtime.helpers._common import (
    EACCES,
    EFAULT,
    EINVAL,
    ENOMEM,
    ENOTSUPP_RET,
    U16,
    U32,
    find_map,
    read,
    s32,
    write,
)
from pybpf.runtime.helpers.csum import csum_add, csum_partial, csum_sub
from pybpf.runtime.helpers.packet_context import CHECKSUM_COMPLETE, PacketKind, packet_of
from pybpf.runtime.helpers.services import Redirect, run_state
from pybpf.vm.execution import ExecutionContext, HelperFn

INT_MAX = 0x7FFFFFFF
BPF_F_RECOMPUTE_CSUM = 1
BPF_F_INVALIDATE_HASH = 2
BPF_F_INGRESS = 1
BPF_F_BROADCAST = 1 << 3
BPF_F_EXCLUDE_INGRESS = 1 << 4
XDP_ACTION_MASK = 3  # the fallback action in redirect_map's low flag bits (ABORTED..TX)
BPF_ADJ_ROOM_NET = 0
BPF_ADJ_ROOM_MAC = 1
BPF_F_ADJ_ROOM_MASK = 0x1FF | (0xFF << 56)  # FIXED_GSO..DECAP_L3_IPV6 and the ENCAP_L2 length
BPF_F_ADJ_ROOM_NO_CSUM_RESET = 1 << 5
ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD
ETH_P_8021Q = 0x8100
ETH_P_8021AD = 0x88A8
VLAN_HLEN = 4
_VLAN_TYPES = (ETH_P_8021Q, ETH_P_8021AD)


# -- XDP ------------------------------------------------------------------------------------------


def xdp_adjust_head(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    packet = packet_of(env, r1)
    delta = s32(r2)
    metalen = packet.start - packet.meta if packet.meta_supported else 0
    new_start = packet.start + delta
    if new_start < XDP_FRAME_STRUCT + metalen or new_start > packet.end - ETH_HLEN:
        return EINVAL
    if metalen:
        view = packet.region.view
        view[packet.meta + delta : packet.meta + delta + metalen] = bytes(view[packet.meta : packet.start])
    packet.meta += delta
    packet.start = new_start
    packet.changed()
    return 0


def xdp_adjust_meta(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    packet = packet_of(env, r1)
    if not packet.meta_supported:
        return ENOTSUPP_RET
    meta = packet.meta + s32(r2)
    if meta < XDP_FRAME_STRUCT or meta > packet.start:
        return EINVAL
    metalen = packet.start - meta
    if metalen & 3 or metalen > XDP_METADATA_MAX:
        return EACCES
    packet.meta = meta
    packet.changed()
    return 0


def xdp_adjust_tail(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    packet = packet_of(env, r1)
    delta = s32(r2)
    new_end = packet.end + delta
    if new_end > packet.hard_end or new_end < packet.start + ETH_HLEN:
        return EINVAL
    if delta > 0:  # the kernel clears grown tail room (it could hold stale data)
        packet.region.view[packet.end : new_end] = bytes(delta)
    packet.end = new_end
    packet.changed()
    return 0


# -- redirects ------------------------------------------------------------------------------------


def redirect(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    """bpf_redirect(ifindex, flags): XDP_REDIRECT / TC_ACT_REDIRECT, recorded on the run."""
    state = run_state(env)
    ifindex, flags = r1 & U32, r2
    xdp = state.packet is None or state.packet.kind is PacketKind.XDP
    if xdp:
        if flags:
            return int(XdpAction.ABORTED)
        state.redirect = Redirect(ifindex=ifindex, flags=0)
        return int(XdpAction.REDIRECT)
    if flags & ~BPF_F_INGRESS:
        return int(TcAct.SHOT)
    state.redirect = Redirect(ifindex=ifindex, flags=flags)
    return int(TcAct.REDIRECT)


def redirect_map(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    """bpf_redirect_map(map, key, flags): XDP_REDIRECT if the key is present, else flags' fallback action."""
    state, found = find_map(env, r1)
    key, flags = r2 & U32, r3
    if flags & ~(XDP_ACTION_MASK | BPF_F_BROADCAST | BPF_F_EXCLUDE_INGRESS):
        return int(XdpAction.ABORTED)
    lookup = cast(Callable[[bytes, int], int], getattr(found, "lookup_address", None))
    present = bool(flags & BPF_F_BROADCAST) or (lookup is not None and lookup(key.to_bytes(4, "little"), 0) != 0)
    if not present:
        return flags & XDP_ACTION_MASK
    state.redirect = Redirect(map=found, key=key, flags=flags)
    return int(XdpAction.REDIRECT)


# -- skb bytes ------------------------------------------------------------------------------------


def skb_load_bytes(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    packet = packet_of(env, r1)
    offset, size = r2 & U32, r4 & U32
    if offset > INT_MAX or offset + size > packet.length:
        write(env, r3, bytes(size))
        return EFAULT
    write(env, r3, packet.read(offset, size))
    return 0


def skb_store_bytes(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    packet = packet_of(env, r1)
    offset, size, flags = r2 & U32, r4 & U32, r5
    if flags & ~(BPF_F_RECOMPUTE_CSUM | BPF_F_INVALIDATE_HASH):
        return EINVAL
    if offset > INT_MAX:
        return EFAULT
    if not packet.make_writable(offset + size):
        return ENOMEM  # skb_ensure_writable: pskb_may_pull fails
    data = read(env, r3, size)
    skb = packet.skb
    recompute = flags & BPF_F_RECOMPUTE_CSUM and skb.ip_summed == CHECKSUM_COMPLETE
    if recompute:
        skb.csum = csum_sub(skb.csum, csum_partial(packet.read(offset, size), 0))
    packet.write(offset, data)
    if recompute:
        skb.csum = csum_add(skb.csum, csum_partial(data, 0))
    if flags & BPF_F_INVALIDATE_HASH:
        skb.hash = 0
        skb.hash_valid = False
    return 0


def skb_pull_data(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    """Our packets are linear: pulling succeeds for any length within the packet."""
    packet = packet_of(env, r1)
    return 0 if (r2 & U32) <= packet.length else ENOMEM


# -- skb reshaping --------------------------------------------------------------------------------


def skb_change_head(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    """Prepend ``head_room`` zero bytes; the MAC header moves to the new start."""
    packet = packet_of(env, r1)
    room, flags = r2 & U32, r3
    new_len = packet.length + room
    if flags or new_len > packet.skb.max_len:
        return EINVAL
    packet.push_head(room)
    packet.write(0, bytes(room))
    packet.skb.network_offset += room
    if packet.skb.transport_offset is not None:
        packet.skb.transport_offset += room
    packet.changed()
    return 0


def _min_len(packet_offsets: tuple[int, int | None]) -> int:
    network, transport = packet_offsets
    return transport if transport is not None else network


def skb_change_tail(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    packet = packet_of(env, r1)
    new_len, flags = r2 & U32, r3
    skb = packet.skb
    if flags or new_len > skb.max_len or new_len < _min_len((skb.network_offset, skb.transport_offset)):
        return EINVAL
    if skb.encapsulation:
        return ENOTSUPP_RET
    packet.set_tail(new_len)
    packet.changed()
    return 0


def _net_base_len(protocol: int) -> int:
    return 20 if protocol == ETH_P_IP else 40


def skb_adjust_room(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    """Grow or shrink room after the MAC header (MAC mode) or after the L3 base header (NET mode).

    Encapsulation flags are accepted and validated as flags only: the inner-header bookkeeping
    the kernel keeps for GSO has no user-space counterpart.
    """
    packet = packet_of(env, r1)
    len_diff, mode, flags = s32(r2), r3 & U32, r4
    skb = packet.skb
    if flags & ~(BPF_F_ADJ_ROOM_MASK | BPF_F_ADJ_ROOM_NO_CSUM_RESET) & ((1 << 64) - 1):
        return EINVAL
    if abs(len_diff) > 0xFFFFFFF:
        return EFAULT
    if skb.protocol not in (ETH_P_IP, ETH_P_IPV6):
        return ENOTSUPP_RET
    offset = skb.network_offset
    if mode == BPF_ADJ_ROOM_NET:
        offset += _net_base_len(skb.protocol)
    elif mode != BPF_ADJ_ROOM_MAC:
        return ENOTSUPP_RET
    shrink = len_diff < 0
    size = abs(len_diff)
    len_cur = packet.length - skb.network_offset
    len_min = _net_base_len(skb.protocol)
    if shrink and (size >= len_cur or len_cur - size < len_min):
        return ENOTSUPP_RET
    if not shrink and packet.length + size > skb.max_len:
        return ENOTSUPP_RET
    if shrink:
        packet.remove(offset, size)
    else:
        packet.insert(offset, size)
    if mode == BPF_ADJ_ROOM_NET and skb.transport_offset is not None:
        skb.transport_offset += len_diff
    packet.changed()
    return 0


# -- VLAN -----------------------------------------------------------------------------------------


def skb_vlan_push(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    """Set the (hardware-accelerated) VLAN tag; a tag already set moves into the packet first."""
    packet = packet_of(env, r1)
    proto = int.from_bytes((r2 & U16).to_bytes(2, "little"), "big")  # vlan_proto is __be16
    tci = r3 & U16
    if proto not in _VLAN_TYPES:
        proto = ETH_P_8021Q
    skb = packet.skb
    if skb.vlan_present:
        if packet.length < 2 * 6:
            return EINVAL
        packet.insert(12, VLAN_HLEN)
        packet.write(12, skb.vlan_proto.to_bytes(2, "big") + skb.vlan_tci.to_bytes(2, "big"))
        skb.protocol = skb.vlan_proto
        skb.network_offset += VLAN_HLEN
        packet.changed()
    skb.vlan_present, skb.vlan_proto, skb.vlan_tci = True, proto, tci
    return 0


def skb_vlan_pop(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    """Clear the accelerated tag, or pop a tag from the packet; a further in-packet tag becomes the accelerated one."""
    packet = packet_of(env, r1)
    skb = packet.skb

    def pop_from_packet() -> int | None:
        if packet.length < ETH_HLEN + VLAN_HLEN:
            return None
        tag = packet.read(12, VLAN_HLEN)
        packet.remove(12, VLAN_HLEN)
        skb.protocol = int.from_bytes(packet.read(12, 2), "big")
        skb.network_offset -= VLAN_HLEN
        packet.changed()
        return int.from_bytes(bytes(tag)[2:4], "big")

    if skb.vlan_present:
        skb.vlan_present, skb.vlan_tci, skb.vlan_proto = False, 0, 0
    else:
        if skb.protocol not in _VLAN_TYPES:
            return 0
        if pop_from_packet() is None:
            return EINVAL
    if skb.protocol not in _VLAN_TYPES:
        return 0
    proto = skb.protocol
    tci = pop_from_packet()
    if tci is None:
        return EINVAL
    skb.vlan_present, skb.vlan_proto, skb.vlan_tci = True, proto, tci
    return 0


# -- hash and fields ------------------------------------------------------------------------------


def get_hash_recalc(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    """skb->hash, computed when not valid. Not the kernel's flow-dissector jhash: a CRC32 of the
    headers up to the transport ports stands in (deterministic, nonzero, same flow -> same hash)."""
    packet = packet_of(env, r1)
    skb = packet.skb
    if not skb.hash_valid:
        end = skb.network_offset + (_net_base_len(skb.protocol) if skb.protocol in (ETH_P_IP, ETH_P_IPV6) else 0) + 4
        digest = zlib.crc32(packet.read(skb.network_offset, max(0, min(end, packet.length) - skb.network_offset)))
        skb.hash = digest or 1
        skb.hash_valid = True
    return skb.hash & U32


def set_hash(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    skb = packet_of(env, r1).skb
    skb.hash, skb.hash_valid = r2 & U32, True
    return 0


def skb_change_type(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    """Only PACKET_HOST..PACKET_OTHERHOST (0-3), from and to, may be set."""
    skb = packet_of(env, r1).skb
    new_type = r2 & U32
    if skb.pkt_type > 3 or new_type > 3:
        return EINVAL
    skb.pkt_type = new_type
    return 0


PACKET_HELPERS: dict[HelperId, HelperFn] = {
    HelperId.XDP_ADJUST_HEAD: xdp_adjust_head,
    HelperId.XDP_ADJUST_META: xdp_adjust_meta,
    HelperId.XDP_ADJUST_TAIL: xdp_adjust_tail,
    HelperId.REDIRECT: redirect,
    HelperId.REDIRECT_MAP: redirect_map,
    HelperId.SKB_LOAD_BYTES: skb_load_bytes,
    HelperId.SKB_STORE_BYTES: skb_store_bytes,
    HelperId.SKB_PULL_DATA: skb_pull_data,
    HelperId.SKB_CHANGE_HEAD: skb_change_head,
    HelperId.SKB_CHANGE_TAIL: skb_change_tail,
    HelperId.SKB_ADJUST_ROOM: skb_adjust_room,
    HelperId.SKB_VLAN_PUSH: skb_vlan_push,
    HelperId.SKB_VLAN_POP: skb_vlan_pop,
    HelperId.GET_HASH_RECALC: get_hash_recalc,
    HelperId.SET_HASH: set_hash,
    HelperId.SKB_CHANGE_TYPE: skb_change_type,
}
