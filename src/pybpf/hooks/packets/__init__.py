"""Packet hooks: XDP, tc, socket filter and cgroup_skb programs run on real frames.

- :func:`replay` runs a program on every frame of a capture (:func:`read_capture` reads pcap and
  pcapng) and returns a :class:`ReplayReport` (verdicts, output frames, throughput, maps).
- :func:`attach_xdp` / :func:`attach_tc` run it on every frame an interface receives, through an
  AF_PACKET socket, and return a :class:`PacketLink` (in user space we observe a copy of each
  frame; the kernel's stack still sees it, whatever the verdict).
"""

from __future__ import annotations

from pybpf.hooks.packets.capture import (
    CapturedPacket,
    CaptureError,
    CaptureFormat,
    read_capture,
    write_capture,
)
from pybpf.hooks.packets.live import LinkCounters, PacketLink, attach_tc, attach_xdp
from pybpf.hooks.packets.replay import (
    MapSnapshot,
    OutputPacket,
    RefusedPacket,
    ReplayError,
    ReplayReport,
    batch_blocker,
    replay,
)
from pybpf.hooks.packets.runner import PacketAction, PacketResult, PacketRunner

__all__ = [
    "CaptureError",
    "CaptureFormat",
    "CapturedPacket",
    "LinkCounters",
    "MapSnapshot",
    "OutputPacket",
    "PacketAction",
    "PacketLink",
    "PacketResult",
    "PacketRunner",
    "RefusedPacket",
    "ReplayError",
    "ReplayReport",
    "attach_tc",
    "attach_xdp",
    "batch_blocker",
    "read_capture",
    "replay",
    "write_capture",
]
