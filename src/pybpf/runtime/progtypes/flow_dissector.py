"""Flow dissector test runs (``bpf_prog_test_run_flow_dissector``).

The program sees the whole frame (``data`` at the MAC header) and a zeroed ``bpf_flow_keys``
with ``n_proto`` from the Ethernet header and ``nhoff = thoff = ETH_HLEN``. After the run the
kernel clamps ``nhoff`` and ``thoff`` into the packet, and ``data_out`` is the flow keys.
``ctx_in``, when given, is a ``bpf_flow_keys`` of which only ``flags`` may be set.
"""

from __future__ import annotations

import struct

from pybpf.errors import TestRunError
from pybpf.platform import contexts
from pybpf.platform.context import Conversion
from pybpf.platform.packet_layout import ETH_HLEN
from pybpf.runtime.context import ContextImage, InternalLayout
from pybpf.runtime.progtypes._base import PreparedRun, RunKind, new_image
from pybpf.vm.memory import AddressSpace, Region, RegionKind

FLOW_KEYS = contexts.BPF_FLOW_KEYS
_FLAGS = FLOW_KEYS.field("flags")


class FlowDissectorRun(PreparedRun):
    def __init__(self, memory: AddressSpace, image: ContextImage, frame: bytes, flags: int) -> None:
        super().__init__(memory)
        self.image = image
        self.context = self.map(image.region)
        self.frame = self.map(Region.from_bytes(RegionKind.PACKET, "flow dissector packet", frame))
        self.size = len(frame)
        self.keys = self.map(Region.zeroed(RegionKind.OTHER, "bpf_flow_keys", FLOW_KEYS.size))
        view = self.keys.view
        struct.pack_into("<HH", view, 0, ETH_HLEN, ETH_HLEN)  # nhoff, thoff
        view[FLOW_KEYS.field("n_proto").offset : FLOW_KEYS.field("n_proto").offset + 2] = frame[12:14]
        struct.pack_into("<I", view, _FLAGS.offset, flags)
        image.set_pointer(Conversion.PACKET_DATA, self.frame.address)
        image.set_pointer(Conversion.PACKET_END, self.frame.address + len(frame))
        image.set_pointer(Conversion.FLOW_KEYS, self.keys.address)
        self.packet = self.frame
        self.packet_state = None

    def finish(self) -> tuple[bytes, bytes | None]:
        view = self.keys.view
        nhoff, thoff = struct.unpack_from("<HH", view, 0)
        nhoff = min(max(nhoff, ETH_HLEN), self.size)
        thoff = min(max(thoff, nhoff), self.size)
        struct.pack_into("<HH", view, 0, nhoff, thoff)
        return bytes(view), None


class FlowDissectorKind(RunKind):
    def prepare(
        self, memory: AddressSpace, layout: InternalLayout, data_in: bytes, ctx_in: bytes | None
    ) -> PreparedRun:
        if len(data_in) < ETH_HLEN:
            raise TestRunError(f"data_in of {len(data_in)} bytes: a flow dissector run needs an Ethernet header")
        flags = 0
        if ctx_in is not None:
            keys = ctx_in.ljust(FLOW_KEYS.size, b"\0")
            if len(ctx_in) > FLOW_KEYS.size and any(ctx_in[FLOW_KEYS.size :]):
                raise TestRunError("ctx_in is longer than bpf_flow_keys")
            if any(keys[: _FLAGS.offset]) or any(keys[_FLAGS.end : FLOW_KEYS.size]):
                raise TestRunError("bpf_flow_keys in ctx_in may only set flags")
            flags = struct.unpack_from("<I", keys, _FLAGS.offset)[0]
        return FlowDissectorRun(memory, new_image(layout, None), data_in, flags)
