"""Packet captures on disk: pcap and pcapng, read and written through dpkt.

Only Ethernet captures (LINKTYPE_ETHERNET) are accepted: XDP and tc programs see frames from
their MAC header, so a capture of another link type (Linux cooked, raw IP) would hand them
bytes they cannot parse. The format is detected from the file's magic number when reading and
chosen from the suffix (``.pcapng``) or ``capture_format`` when writing.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import BinaryIO

import dpkt

from pybpf.errors import PybpfError

LINKTYPE_ETHERNET = 1
DEFAULT_SNAPLEN = 65535
_PCAP_MAGICS = frozenset(
    {
        b"\xd4\xc3\xb2\xa1",  # microsecond, little-endian
        b"\xa1\xb2\xc3\xd4",  # microsecond, big-endian
        b"\x4d\x3c\xb2\xa1",  # nanosecond, little-endian
        b"\xa1\xb2\x3c\x4d",  # nanosecond, big-endian
    }
)
_PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"  # the section header block type


class CaptureError(PybpfError):
    """A capture file that cannot be read or written (unknown format, link type, truncated)."""


class CaptureFormat(Enum):
    PCAP = "pcap"
    PCAPNG = "pcapng"


@dataclass(frozen=True, slots=True)
class CapturedPacket:
    """One frame of a capture: when it was seen (seconds since the epoch) and its bytes."""

    timestamp: float
    data: bytes


def detect_format(head: bytes) -> CaptureFormat:
    """The format of a capture from its first four bytes."""
    if head[:4] in _PCAP_MAGICS:
        return CaptureFormat.PCAP
    if head[:4] == _PCAPNG_MAGIC:
        return CaptureFormat.PCAPNG
    raise CaptureError(f"not a pcap or pcapng capture (magic {head[:4].hex() or 'missing'})")


def read_capture(source: str | os.PathLike[str] | BinaryIO) -> Iterator[CapturedPacket]:
    """Every frame of a pcap or pcapng capture (a path or a binary stream), in file order."""
    if isinstance(source, str | os.PathLike):
        with Path(source).open("rb") as stream:
            yield from _read_stream(stream)
    else:
        yield from _read_stream(source)


def _read_stream(stream: BinaryIO) -> Iterator[CapturedPacket]:
    head = stream.read(4)
    capture_format = detect_format(head)
    stream.seek(-len(head), os.SEEK_CUR)
    reader_class = dpkt.pcap.Reader if capture_format is CaptureFormat.PCAP else dpkt.pcapng.Reader
    try:
        reader = reader_class(stream)
        linktype = reader.datalink()
    except (ValueError, dpkt.Error) as error:
        raise CaptureError(f"unreadable {capture_format.value} header: {error}") from error
    if linktype != LINKTYPE_ETHERNET:
        raise CaptureError(
            f"link type {linktype} is not Ethernet ({LINKTYPE_ETHERNET}): packet programs need L2 frames"
        )
    try:
        for timestamp, data in reader:
            yield CapturedPacket(float(timestamp), bytes(data))
    except (ValueError, dpkt.Error) as error:
        raise CaptureError(f"truncated or corrupt {capture_format.value} capture: {error}") from error


def format_for_path(path: str | os.PathLike[str]) -> CaptureFormat:
    """pcapng for a ``.pcapng`` suffix, pcap otherwise."""
    return CaptureFormat.PCAPNG if Path(path).suffix.lower() == ".pcapng" else CaptureFormat.PCAP


def write_capture(
    destination: str | os.PathLike[str] | BinaryIO,
    packets: Iterable[CapturedPacket | bytes],
    *,
    capture_format: CaptureFormat | None = None,
    snaplen: int = DEFAULT_SNAPLEN,
) -> int:
    """Write Ethernet frames to a capture; bare bytes get timestamp 0. Returns the number written."""
    if isinstance(destination, str | os.PathLike):
        chosen = capture_format if capture_format is not None else format_for_path(destination)
        with Path(destination).open("wb") as stream:
            return _write_stream(stream, packets, chosen, snaplen)
    return _write_stream(destination, packets, capture_format or CaptureFormat.PCAP, snaplen)


def _write_stream(
    stream: BinaryIO, packets: Iterable[CapturedPacket | bytes], capture_format: CaptureFormat, snaplen: int
) -> int:
    writer_class = dpkt.pcap.Writer if capture_format is CaptureFormat.PCAP else dpkt.pcapng.Writer
    writer = writer_class(stream, snaplen=snaplen, linktype=LINKTYPE_ETHERNET)
    written = 0
    for packet in packets:
        if isinstance(packet, CapturedPacket):
            writer.writepkt(packet.data, ts=packet.timestamp)
        else:
            writer.writepkt(bytes(packet), ts=0.0)
        written += 1
    stream.flush()
    return written
