"""XDP test runs (``bpf_prog_test_run_xdp``): a page-sized frame with 256 bytes of headroom.

The frame is the packet helpers' :class:`PacketContext`: ``XDP_PACKET_HEADROOM`` bytes of
headroom, the packet (metadata first when ``ctx_in`` says so), then room up to the frame end
minus the ``skb_shared_info`` tailroom, which is what bpf_xdp_adjust_tail may grow into. A
listener keeps the context image's data pointers in step with the helpers' changes. ``data_out`` runs from ``data_meta``
to ``data_end``; ``ctx_out`` reports ``data`` and ``data_end`` relative to ``data_meta``.
"""

from __future__ import annotations

import struct

from pybpf.errors import TestRunError
from pybpf.platform.context import Conversion
from pybpf.platform.packet_layout import (
    LOOPBACK_IFINDEX,
    XDP_FRAME_STRUCT,
    XDP_MAX_LINEAR,
    XDP_METADATA_MAX,
    XDP_PACKET_HEADROOM,
)
from pybpf.runtime.context import ContextImage, InternalLayout
from pybpf.runtime.helpers.packet_context import PacketContext, PacketKind
from pybpf.runtime.progtypes._base import (
    ImageFields,
    PreparedRun,
    RunKind,
    check_ctx_size,
    image_fields,
    new_image,
)
from pybpf.vm.jit.native_xdp import PacketFrame
from pybpf.vm.memory import AddressSpace

_U64 = struct.Struct("<Q")
XDP_POINTERS = (Conversion.PACKET_DATA, Conversion.PACKET_END, Conversion.PACKET_META)
"""The context's packet pointers, in the order :class:`PacketFrame` names their slots."""


def sync_xdp(image: ContextImage, packet: PacketContext, fields: ImageFields | None = None) -> None:
    """Write the packet's data pointers into the context image (a PacketContext listener)."""
    fields = image_fields(image.layout) if fields is None else fields
    slots = fields.xdp_slots
    if slots is not None:  # the usual layout: three packs at known slots
        view, address = image.region.view, packet.region.address
        _U64.pack_into(view, slots[0], address + packet.start)
        _U64.pack_into(view, slots[1], address + packet.end)
        _U64.pack_into(view, slots[2], packet.data_meta)
        return
    fields.set_pointer(image, Conversion.PACKET_DATA, packet.data)
    fields.set_pointer(image, Conversion.PACKET_END, packet.data_end)
    fields.set_pointer(image, Conversion.PACKET_META, packet.data_meta)


def packet_frame(
    layout: InternalLayout, context: int, packet: PacketContext, fields: ImageFields | None = None
) -> PacketFrame | None:
    """Where an XDP run's frame and its context's packet pointers are, for native xdp_adjust_*.

    A single test run passes it as ``JitProgram.run(..., frame=packet_frame(...))`` (with the
    run's context address and PacketContext); None when the layout has no data, data_end and
    data_meta pointers or the packet no metadata (the helpers then stay in Python).
    """
    if packet.kind is not PacketKind.XDP or not packet.meta_supported:
        return None
    slots = (image_fields(layout) if fields is None else fields).xdp_slots  # data, data_end, data_meta
    if slots is None:
        return None
    data_slot, end_slot, meta_slot = context + slots[0], context + slots[1], context + slots[2]
    start = packet.region.address
    return PacketFrame(start, start + packet.hard_end, data_slot, end_slot, meta_slot)


class XdpRun(PreparedRun):
    def __init__(
        self, memory: AddressSpace, image: ContextImage, packet: PacketContext, fields: ImageFields | None = None
    ) -> None:
        super().__init__(memory)
        self.image = image
        self.fields = image_fields(image.layout) if fields is None else fields
        self.packet_state: PacketContext = packet
        self.context = self.map(image.region)

    def native_frame(self) -> PacketFrame | None:
        """What native bpf_xdp_adjust_* need to move this run's packet (None: they stay in Python)."""
        return packet_frame(self.image.layout, self.context.address, self.packet_state, self.fields)

    def close(self) -> None:
        self.packet_state.release()
        super().close()

    def finish(self) -> tuple[bytes, bytes | None]:
        packet = self.packet_state
        # xdp_convert_buff_to_md(): offsets relative to data_meta; data_meta itself reads 0.
        head = bytearray(self.image.uapi_bytes())
        struct.pack_into("<III", head, 0, packet.data - packet.data_meta, packet.data_end - packet.data_meta, 0)
        out = bytearray(packet.metadata())
        out += packet.packet_bytes()
        return bytes(out), bytes(head)


class XdpKind(RunKind):
    def prepare(
        self, memory: AddressSpace, layout: InternalLayout, data_in: bytes, ctx_in: bytes | None
    ) -> PreparedRun:
        check_ctx_size(ctx_in, layout)
        metalen = 0
        ifindex, queue = LOOPBACK_IFINDEX, 0
        if ctx_in is not None:
            md = ctx_in[: layout.uapi.size].ljust(layout.uapi.size, b"\0")
            data, data_end, data_meta, ingress, rx_queue, egress = struct.unpack_from("<6I", md)
            if data_meta or data_end != len(data_in) or data > data_end:
                raise TestRunError("xdp_md in ctx_in: data_meta must be 0, data_end the packet size, data <= data_end")
            # xdp_metalen_invalid(), and the metadata must leave room for struct xdp_frame in the headroom.
            if data % 4 or data > min(XDP_METADATA_MAX, XDP_PACKET_HEADROOM - XDP_FRAME_STRUCT):
                raise TestRunError(
                    f"xdp_md.data (metadata length {data}) must be a multiple of 4, at most "
                    f"{min(XDP_METADATA_MAX, XDP_PACKET_HEADROOM - XDP_FRAME_STRUCT)}"
                )
            if egress:
                raise TestRunError("xdp_md.egress_ifindex must be 0 in ctx_in")
            if not ingress and rx_queue:
                raise TestRunError("xdp_md.rx_queue_index needs an ingress_ifindex")
            metalen = data
            ifindex, queue = (ingress or LOOPBACK_IFINDEX), rx_queue
        if len(data_in) - metalen > XDP_MAX_LINEAR:
            raise TestRunError(
                f"packet of {len(data_in)} bytes: XDP fragments are not supported (max {XDP_MAX_LINEAR})"
            )
        image = new_image(layout, ctx_in)
        fields = image_fields(layout)
        fields.set(image, "ingress_ifindex", ifindex)
        fields.set(image, "rx_queue_index", queue)
        fields.set(image, "egress_ifindex", 0)
        # The metadata sits just below data, at the end of the 256-byte headroom.
        packet = PacketContext(
            memory, data_in, kind=PacketKind.XDP, headroom=XDP_PACKET_HEADROOM - metalen, name="xdp frame"
        )
        packet.start += metalen
        packet.add_listener(lambda changed: sync_xdp(image, changed, fields))
        sync_xdp(image, packet, fields)
        return XdpRun(memory, image, packet, fields)
