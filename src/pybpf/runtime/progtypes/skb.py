"""Socket-buffer test runs (``bpf_prog_test_run_skb``): socket filters, tc, cgroup_skb, lwt.

The kernel builds an skb from ``data_in`` (at least an Ethernet header), runs
``eth_type_trans()`` on it (which fills ``protocol`` and ``pkt_type`` and pulls the Ethernet
header), and pushes the header back before the run only for tc programs (``is_l2``). So tc
programs see the frame from its MAC header, every other type from its network header. After the
run a non-L2 program's output gets a zeroed Ethernet header in front.

``ctx_in`` may set only mark, priority, ingress_ifindex, ifindex, cb, tstamp, wire_len,
gso_segs, gso_size and hwtstamp (``convert___skb_to_skb``); ``ctx_out`` reports those back.
"""

from __future__ import annotations

from pybpf.errors import TestRunError
from pybpf.platform.context import Conversion
from pybpf.platform.packet_layout import ETH_HLEN, LOOPBACK_IFINDEX
from pybpf.runtime.context import ContextImage, InternalLayout
from pybpf.runtime.helpers.packet_context import PacketContext, PacketKind, SkbFields
from pybpf.runtime.progtypes._base import (
    ImageFields,
    PreparedRun,
    RunKind,
    check_ctx_size,
    image_fields,
    new_image,
)
from pybpf.vm.memory import AddressSpace, Region, RegionKind

ETH_P_802_3_MIN = 0x0600
ETH_P_802_3 = 0x0001
ETH_P_802_2 = 0x0004
ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD
IPV4_HLEN = 20
IPV6_HLEN = 40
AF_INET = 2
AF_INET6 = 10
PACKET_HOST, PACKET_BROADCAST, PACKET_MULTICAST, PACKET_OTHERHOST = 0, 1, 2, 3
GSO_MAX_SEGS = 65535
GSO_LEGACY_MAX_SIZE = 65536

# __sk_buff fields a caller may set in ctx_in (everything else must be zero).
CTX_IN_FIELDS = (
    "mark", "priority", "ingress_ifindex", "ifindex", "cb", "tstamp", "wire_len", "gso_segs",
    "gso_size", "hwtstamp",
)
# What convert_skb_to___skb() copies back into ctx_out.
CTX_OUT_FIELDS = (
    "mark", "priority", "ingress_ifindex", "ifindex", "tstamp", "cb", "wire_len", "gso_segs",
    "hwtstamp",
)


def eth_type_trans(frame: bytes) -> tuple[int, int]:
    """``(protocol, pkt_type)`` as eth_type_trans() derives them on the loopback device
    (whose address is all zeroes)."""
    dest = frame[:6]
    if dest == bytes(6):
        pkt_type = PACKET_HOST
    elif dest[0] & 1:
        pkt_type = PACKET_BROADCAST if dest == b"\xff" * 6 else PACKET_MULTICAST
    else:
        pkt_type = PACKET_OTHERHOST
    proto = int.from_bytes(frame[12:14], "big")
    if proto < ETH_P_802_3_MIN:
        proto = ETH_P_802_3 if frame[ETH_HLEN : ETH_HLEN + 2] == b"\xff\xff" else ETH_P_802_2
    return proto, pkt_type


def sync_skb(image: ContextImage, packet: PacketContext, offsets: ImageFields | None = None) -> None:
    """Copy what helpers may change (data pointers, len, protocol, vlan, hash) into the image."""
    at = image_fields(image.layout) if offsets is None else offsets
    at.set_pointer(image, Conversion.PACKET_DATA, packet.data)
    at.set_pointer(image, Conversion.PACKET_META, packet.data_meta)
    at.set_pointer(image, Conversion.PACKET_END, packet.data_end)
    fields = packet.skb
    at.set(image, "len", packet.length)
    at.set(image, "protocol", _net16(fields.protocol))
    at.set(image, "pkt_type", fields.pkt_type)
    at.set(image, "vlan_present", int(fields.vlan_present))
    at.set(image, "vlan_tci", fields.vlan_tci)
    at.set(image, "vlan_proto", _net16(fields.vlan_proto))
    at.set(image, "hash", fields.hash)


def _net16(value: int) -> int:
    """A 16-bit value in network order, as a little-endian load of the field reads it."""
    return ((value & 0xFF) << 8) | ((value >> 8) & 0xFF)


def packet_view(packet: PacketContext) -> Region:
    """An unmapped region over exactly [data, data_end): what LD_ABS/LD_IND index from."""
    view = packet.region.view[packet.start : packet.end]
    if len(view) == 0:
        view = packet.region.view[packet.start : packet.start + 1]
    return Region(RegionKind.PACKET, "skb data (LD_ABS view)", view)



def check_frame(frame: bytes) -> None:
    """The kernel's checks of an skb test run's ``data_in`` (TestRunError naming what is short)."""
    if len(frame) < ETH_HLEN:
        raise TestRunError(f"data_in of {len(frame)} bytes: an skb run needs at least an Ethernet header")
    proto = eth_type_trans(frame)[0]
    l3 = len(frame) - ETH_HLEN
    # The kernel refuses an IP frame too short for its network header (pskb_may_pull).
    if (proto == ETH_P_IP and l3 < IPV4_HLEN) or (proto == ETH_P_IPV6 and l3 < IPV6_HLEN):
        raise TestRunError(f"ethertype {proto:#06x} frame of {len(frame)} bytes is too short for its IP header")


def set_frame_fields(image: ContextImage, frame: bytes) -> tuple[int, int]:
    """Check ``frame`` and set the ``__sk_buff`` fields it decides: protocol, pkt_type, the loopback
    ifindex (unless ctx_in gave one), and the test socket's family and addresses (net/bpf/test_run.c).
    Returns ``(protocol, pkt_type)``."""
    check_frame(frame)
    proto, pkt_type = eth_type_trans(frame)
    at = image_fields(image.layout)
    at.set(image, "protocol", _net16(proto))
    at.set(image, "pkt_type", pkt_type)
    if not at.get(image, "ifindex"):
        at.set(image, "ifindex", LOOPBACK_IFINDEX)
    view = image.region.view
    if proto == ETH_P_IP:
        at.set(image, "family", AF_INET)
        # The addresses as they sit in the packet (network order), byte for byte.
        _copy(view, at.spans["local_ip4"], frame, ETH_HLEN + 12)
        _copy(view, at.spans["remote_ip4"], frame, ETH_HLEN + 16)
    elif proto == ETH_P_IPV6:
        at.set(image, "family", AF_INET6)
        _copy(view, at.spans["local_ip6"], frame, ETH_HLEN + 8)
        _copy(view, at.spans["remote_ip6"], frame, ETH_HLEN + 24)
    return proto, pkt_type


def _copy(view: memoryview, span: tuple[int, int], frame: bytes, start: int) -> None:
    offset, end = span
    view[offset:end] = frame[start : start + end - offset]


class SkbRun(PreparedRun):
    def __init__(self, memory: AddressSpace, image: ContextImage, packet: PacketContext, *, is_l2: bool) -> None:
        super().__init__(memory)
        self.image = image
        self.is_l2 = is_l2
        self.packet_state: PacketContext = packet
        self.context = self.map(image.region)

    def packet_region(self) -> Region | None:
        return packet_view(self.packet_state)

    def close(self) -> None:
        self.packet_state.release()
        super().close()

    def finish(self) -> tuple[bytes, bytes | None]:
        data = self.packet_state.packet_bytes()
        if not self.is_l2:
            data = bytes(ETH_HLEN) + data  # the kernel pushes a zeroed header back
        out = bytearray(self.image.layout.uapi.size)
        view = self.image.region.view
        spans = image_fields(self.image.layout).spans
        for name in CTX_OUT_FIELDS:
            offset, end = spans[name]
            out[offset:end] = view[offset:end]
        return data, bytes(out)


class SkbKind(RunKind):
    """``is_l2``: tc programs see the MAC header; the others start at the network header."""

    def __init__(self, *, is_l2: bool) -> None:
        self.is_l2 = is_l2

    def prepare(
        self, memory: AddressSpace, layout: InternalLayout, data_in: bytes, ctx_in: bytes | None
    ) -> PreparedRun:
        check_frame(data_in)
        check_ctx_size(ctx_in, layout)
        image = new_image(layout, None)
        uapi = layout.uapi
        given = bytearray(ctx_in[: uapi.size].ljust(uapi.size, b"\0")) if ctx_in is not None else None
        if given is not None:
            allowed = bytearray(uapi.size)
            for name in CTX_IN_FIELDS:
                field = uapi.field(name)
                allowed[field.offset : field.end] = given[field.offset : field.end]
            if allowed != given:
                accepted = ", ".join(CTX_IN_FIELDS)
                raise TestRunError(f"__sk_buff in ctx_in may only set {accepted}")
            image.load_uapi(bytes(given))
        proto, pkt_type = set_frame_fields(image, data_in)
        l3 = data_in[ETH_HLEN:]
        data = data_in if self.is_l2 else l3
        if given is not None:
            wire_len = image.get("wire_len")
            if wire_len == 0:
                image.set("wire_len", len(data))
            elif wire_len < len(data) or wire_len > GSO_LEGACY_MAX_SIZE:
                raise TestRunError(f"__sk_buff.wire_len {wire_len} is below the packet length or too large")
            if image.get("gso_segs") > GSO_MAX_SEGS:
                raise TestRunError(f"__sk_buff.gso_segs must be at most {GSO_MAX_SEGS}")
        at = image_fields(layout)
        cb_start, cb_end = at.spans["cb"]
        fields = SkbFields(
            protocol=proto,
            mark=at.get(image, "mark"),
            priority=at.get(image, "priority"),
            ifindex=at.get(image, "ifindex"),
            ingress_ifindex=at.get(image, "ingress_ifindex"),
            pkt_type=pkt_type,
            network_offset=ETH_HLEN if self.is_l2 else 0,
            cb=bytearray(image.region.view[cb_start:cb_end]),
        )
        packet = PacketContext(memory, data, kind=PacketKind.SKB, skb=fields, name="skb data")
        packet.add_listener(lambda changed: sync_skb(image, changed, at))
        sync_skb(image, packet, at)
        return SkbRun(memory, image, packet, is_l2=self.is_l2)
