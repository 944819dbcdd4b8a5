"""The packet a packet program runs on: buffer, head/tail room, data/data_end/data_meta, skb fields.

The program-type layer creates a :class:`PacketContext` for each run of an XDP or skb program
and builds the program's context (xdp_md, __sk_buff) from it; the packet helpers change it.
The object owns the layout: ``data``, ``data_end`` and ``data_meta`` are native addresses
computed from the current buffer, so after bpf_xdp_adjust_head the new ``data`` is what the
context must report. Listeners registered with :meth:`PacketContext.add_listener` are called
after every layout change (and after the buffer moves, which skb helpers may do when they
need more room: the verifier invalidates packet pointers after such helpers, so moving is
allowed). Offsets in the methods are relative to ``data``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

from pybpf.errors import HelperError
from pybpf.platform.packet_layout import (
    ETH_HLEN,
    SKB_HEADROOM,
    SKB_MAX_ALLOC,
    SKB_SHARED_INFO,
    XDP_FRAME_SIZE,
    XDP_PACKET_HEADROOM,
)
from pybpf.runtime.helpers.services import run_state
from pybpf.vm.execution import ExecutionContext
from pybpf.vm.memory import AddressSpace, Region, RegionKind

CHECKSUM_NONE = 0
CHECKSUM_UNNECESSARY = 1
CHECKSUM_COMPLETE = 2
CHECKSUM_PARTIAL = 3


class PacketKind(Enum):
    XDP = "xdp"
    SKB = "skb"


@dataclass(slots=True)  # mutable: helpers and the program change these as the packet is processed
class SkbFields:
    """The sk_buff state packet helpers read and change besides the bytes (host byte order)."""

    protocol: int = 0  # skb->protocol as the ethertype number (0x0800 for IPv4)
    mark: int = 0
    priority: int = 0
    ifindex: int = 1
    ingress_ifindex: int = 0
    pkt_type: int = 0
    queue_mapping: int = 0
    tc_index: int = 0
    tc_classid: int = 0
    hash: int = 0
    hash_valid: bool = False
    vlan_present: bool = False
    vlan_tci: int = 0
    vlan_proto: int = 0
    ip_summed: int = CHECKSUM_NONE
    csum: int = 0
    network_offset: int = ETH_HLEN  # from data
    transport_offset: int | None = None  # from data, when set
    encapsulation: bool = False
    max_len: int = SKB_MAX_ALLOC
    cb: bytearray = field(default_factory=lambda: bytearray(20))


Listener = Callable[["PacketContext"], None]


class PacketContext:
    """A packet buffer mapped in ``memory``: [hard start | headroom | meta | data | tailroom]."""

    def __init__(
        self,
        memory: AddressSpace,
        data: bytes,
        *,
        kind: PacketKind = PacketKind.XDP,
        headroom: int | None = None,
        frame_size: int = XDP_FRAME_SIZE,
        meta_supported: bool = True,
        skb: SkbFields | None = None,
        name: str = "packet",
    ) -> None:
        self.memory = memory
        self.kind = kind
        self.name = name
        self.meta_supported = meta_supported
        self.skb = skb if skb is not None else SkbFields()
        if kind is PacketKind.SKB and skb is None and len(data) >= ETH_HLEN:
            self.skb.protocol = int.from_bytes(data[12:14], "big")
        room = headroom if headroom is not None else (XDP_PACKET_HEADROOM if kind is PacketKind.XDP else SKB_HEADROOM)
        # XDP's buffer is one frame (hard end = frame - shared info); an skb buffer grows on demand.
        capacity = max(frame_size, room + len(data) + SKB_SHARED_INFO)
        self.frame_size = capacity
        self.region = Region.zeroed(RegionKind.PACKET, name, capacity)
        memory.add(self.region)
        self.start = room
        self.end = room + len(data)
        self.meta = room
        self.region.view[self.start : self.end] = data
        self._listeners: list[Listener] = []

    # -- layout -----------------------------------------------------------------------------------

    @property
    def data(self) -> int:
        return self.region.address + self.start

    @property
    def data_end(self) -> int:
        return self.region.address + self.end

    @property
    def data_meta(self) -> int:
        """Start of the metadata area; data + 1 when the driver has no metadata support (as the kernel)."""
        return self.region.address + (self.meta if self.meta_supported else self.start + 1)

    @property
    def data_hard_start(self) -> int:
        return self.region.address

    @property
    def length(self) -> int:
        return self.end - self.start

    @property
    def headroom(self) -> int:
        return self.start

    @property
    def hard_end(self) -> int:
        """Buffer offset XDP's tail cannot grow past (the frame minus skb_shared_info)."""
        return self.frame_size - SKB_SHARED_INFO

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def changed(self) -> None:
        """Tell listeners (the program-type layer's context) that the layout changed."""
        for listener in self._listeners:
            listener(self)

    def packet_bytes(self) -> bytes:
        return bytes(self.region.view[self.start : self.end])

    def metadata(self) -> bytes:
        return bytes(self.region.view[self.meta : self.start]) if self.meta_supported else b""

    def release(self) -> None:
        if self.region in self.memory:
            self.memory.remove(self.region)

    # -- byte access relative to data -------------------------------------------------------------

    def read(self, offset: int, size: int) -> bytes:
        return bytes(self.region.view[self.start + offset : self.start + offset + size])

    def write(self, offset: int, data: bytes | bytearray) -> None:
        self.region.view[self.start + offset : self.start + offset + len(data)] = data

    def load16(self, offset: int) -> int:
        return int.from_bytes(self.read(offset, 2), "little")

    def store16(self, offset: int, value: int) -> None:
        self.write(offset, (value & 0xFFFF).to_bytes(2, "little"))

    def make_writable(self, length: int) -> bool:
        """skb_ensure_writable: whether the first ``length`` bytes exist (linear packets only)."""
        return 0 <= length <= self.length

    # -- reshaping (the buffer may move) ----------------------------------------------------------

    def _ensure_room(self, head: int, tail: int) -> None:
        """Make at least ``head`` bytes of headroom and ``tail`` bytes after data_end, moving the buffer if needed."""
        if self.start >= head and self.frame_size - SKB_SHARED_INFO - self.end >= tail:
            return
        new_start = max(self.start, head)
        capacity = new_start + self.length + tail + SKB_SHARED_INFO
        region = Region.zeroed(RegionKind.PACKET, self.name, capacity)
        shift = new_start - self.start
        low = min(self.meta, self.start)
        region.view[low + shift : self.end + shift] = self.region.view[low : self.end]
        self.memory.remove(self.region)
        self.memory.add(region)
        self.region = region
        self.frame_size = capacity
        self.start += shift
        self.end += shift
        self.meta += shift

    def push_head(self, size: int) -> None:
        """Grow the packet by ``size`` bytes at the front (contents left as they were in the headroom)."""
        self._ensure_room(size, 0)
        self.start -= size
        self.meta = self.start

    def pull_head(self, size: int) -> None:
        self.start += size
        self.meta = self.start

    def set_tail(self, length: int) -> None:
        """Trim or zero-extend the packet to ``length`` bytes."""
        if length > self.length:
            self._ensure_room(0, length - self.length)
            self.region.view[self.end : self.start + length] = bytes(length - self.length)
        self.end = self.start + length

    def insert(self, offset: int, size: int) -> None:
        """skb_push + memmove of the first ``offset`` bytes: ``size`` bytes open at ``offset``."""
        self.push_head(size)
        view = self.region.view
        view[self.start : self.start + offset] = bytes(view[self.start + size : self.start + size + offset])

    def remove(self, offset: int, size: int) -> None:
        """memmove the first ``offset`` bytes forward by ``size`` then skb_pull: drops [offset, offset+size)."""
        view = self.region.view
        view[self.start + size : self.start + size + offset] = bytes(view[self.start : self.start + offset])
        self.pull_head(size)


def packet_of(env: ExecutionContext, ctx: int) -> PacketContext:
    """The packet of the run a packet helper serves (HelperError when the run has none)."""
    state = run_state(env)
    packet = state.packet
    if packet is None:
        raise HelperError("this helper needs a packet: the run has no PacketContext", env.helper_pc)
    if state.ctx and ctx != state.ctx:
        raise HelperError(f"{ctx:#x} is not the program's context pointer {state.ctx:#x}", env.helper_pc)
    return packet
