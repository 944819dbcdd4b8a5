"""Checksums: bit-exact against an independent RFC 1071 implementation and the kernel's incremental rules."""

from __future__ import annotations

import struct

from helper_harness import U64, Harness, make_harness, neg
from hypothesis import given, settings
from hypothesis import strategies as st

from pybpf.platform import HelperId
from pybpf.runtime.helpers import PacketContext, PacketKind, default_helpers
from pybpf.runtime.helpers.csum import (
    BPF_F_MARK_MANGLED_0,
    BPF_F_PSEUDO_HDR,
    csum_diff,
    csum_fold,
    csum_partial,
)

HELPERS = default_helpers()


def rfc1071(data: bytes) -> int:
    """The Internet checksum of ``data`` (RFC 1071): ~ of the one's-complement sum of big-endian 16-bit words."""
    if len(data) % 2:
        data += b"\0"
    total = 0
    for (word,) in struct.iter_unpack("!H", data):
        total += word
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ones_sum16(data: bytes) -> int:
    """The folded (not complemented) one's-complement sum, big-endian."""
    return ~rfc1071(data) & 0xFFFF


def stored(value16: int) -> int:
    """A __sum16 as the host reads it from the packet, for a big-endian checksum value."""
    return int.from_bytes(value16.to_bytes(2, "big"), "little")


@given(st.binary(max_size=200), st.integers(0, 0xFFFFFFFF))
@settings(max_examples=300, deadline=None)
def test_csum_partial_folds_to_rfc1071(data: bytes, seed: int) -> None:
    # The seed is a partial sum in host order: its folded value adds into the 16-bit sum.
    seed_bytes = seed.to_bytes(4, "little")
    expected = rfc1071(data + bytes(len(data) % 2) + seed_bytes)
    assert csum_fold(csum_partial(data, seed)) == stored(expected)


_WORDS = st.binary(max_size=64).map(lambda b: b[: len(b) // 4 * 4])


@given(_WORDS, _WORDS)
@settings(max_examples=300, deadline=None)
def test_csum_diff_updates_a_partial_sum_like_recomputing_it(old: bytes, new: bytes) -> None:
    prefix = b"\x45\x00\x00\x54\x12\x34\x00\x00"
    diff = csum_diff(old, new, csum_partial(prefix + old, 0))
    # One's-complement values are equal modulo 0xffff (0 and 0xffff are the same number).
    assert diff % 0xFFFF == stored(ones_sum16(prefix + new)) % 0xFFFF


def test_csum_diff_known_values_from_linux_6_18() -> None:
    # Values observed from BPF_PROG_TEST_RUN on Linux 6.18 (see test_helpers_kernel for the live check).
    assert csum_diff(b"", struct.pack("<II", 0xDEADBEEF, 0xDEADBEEF), 0) == 0x3B3B
    assert csum_diff(struct.pack("<I", 1), b"", 0) == 0xFFFE
    assert csum_diff(b"", b"", 0x12345) == 0x2346
    assert csum_diff(struct.pack("<I", 0x11112222), b"", 0xFFFFFFFF) == 0xCCCC


def ipv4_header(ttl: int = 64, check: int | None = None) -> bytearray:
    header = bytearray(
        struct.pack("!BBHHHBBH4s4s", 0x45, 0, 84, 0x1234, 0, ttl, 1, 0, b"\x0a\0\0\x01", b"\x0a\0\0\x02")
    )
    value = rfc1071(bytes(header)) if check is None else check
    header[10:12] = value.to_bytes(2, "big")
    return header


def run_packet(data: bytes) -> tuple[Harness, PacketContext]:
    harness = make_harness()
    packet = PacketContext(harness.memory, data, kind=PacketKind.SKB)
    harness.state.packet = packet
    return harness, packet


def test_l3_csum_replace_2_and_4_match_a_full_recompute() -> None:
    frame = bytes(14) + bytes(ipv4_header())
    harness, packet = run_packet(frame)
    env = harness.env
    # Change TTL 64 -> 63 (16-bit word TTL|proto at IP offset 8) with a size-2 replace.
    old_word = int.from_bytes(packet.read(14 + 8, 2), "little")
    packet.write(14 + 8, bytes([63, 1]))
    new_word = int.from_bytes(packet.read(14 + 8, 2), "little")
    assert HELPERS[HelperId.L3_CSUM_REPLACE](env, 0, 14 + 10, old_word, new_word, 2) == 0
    ip = packet.read(14, 20)
    assert rfc1071(ip) == 0
    # Change the destination address with a size-4 replace.
    old_addr = int.from_bytes(packet.read(14 + 16, 4), "little")
    packet.write(14 + 16, bytes([192, 168, 7, 9]))
    new_addr = int.from_bytes(packet.read(14 + 16, 4), "little")
    assert HELPERS[HelperId.L3_CSUM_REPLACE](env, 0, 14 + 10, old_addr, new_addr, 4) == 0
    assert rfc1071(packet.read(14, 20)) == 0


def test_l3_csum_replace_by_diff_and_errors() -> None:
    frame = bytes(14) + bytes(ipv4_header())
    harness, packet = run_packet(frame)
    env = harness.env
    old = packet.read(14 + 12, 4)
    new = bytes([172, 16, 0, 1])
    packet.write(14 + 12, new)
    diff = csum_diff(old, new, 0)
    assert HELPERS[HelperId.L3_CSUM_REPLACE](env, 0, 14 + 10, 0, diff, 0) == 0
    assert rfc1071(packet.read(14, 20)) == 0
    assert HELPERS[HelperId.L3_CSUM_REPLACE](env, 0, 14 + 10, 1, diff, 0) == neg(22)  # from must be 0
    assert HELPERS[HelperId.L3_CSUM_REPLACE](env, 0, 14 + 10, 0, 0, 3) == neg(22)  # bad size
    assert HELPERS[HelperId.L3_CSUM_REPLACE](env, 0, 15, 0, 0, 2) == neg(14)  # odd offset
    assert HELPERS[HelperId.L3_CSUM_REPLACE](env, 0, len(frame) - 1 & ~1, 0, 0, 2 | 0x100) == neg(22)
    assert HELPERS[HelperId.L3_CSUM_REPLACE](env, 0, len(frame), 0, 0, 2) == neg(14)  # past the end


def test_l4_csum_replace_pseudo_header_and_mangled_zero() -> None:
    udp = bytearray(struct.pack("!HHHH", 1000, 53, 12, 0) + b"abcd")
    pseudo = b"\x0a\0\0\x01" + b"\x0a\0\0\x02" + b"\x00\x11" + (12).to_bytes(2, "big")
    udp[6:8] = rfc1071(pseudo + bytes(udp)).to_bytes(2, "big")
    frame = bytes(14) + bytes(ipv4_header()) + bytes(udp)
    harness, packet = run_packet(frame)
    env = harness.env
    check_at = 14 + 20 + 6
    old_addr = int.from_bytes(packet.read(14 + 12, 4), "little")
    packet.write(14 + 12, bytes([10, 9, 8, 7]))
    new_addr = int.from_bytes(packet.read(14 + 12, 4), "little")
    result = HELPERS[HelperId.L4_CSUM_REPLACE](env, 0, check_at, old_addr, new_addr, 4 | BPF_F_PSEUDO_HDR)
    assert result == 0
    new_pseudo = bytes([10, 9, 8, 7]) + pseudo[4:]
    assert rfc1071(new_pseudo + packet.read(14 + 20, 12)) == 0
    # A zero UDP checksum means "none": MARK_MANGLED_0 leaves it alone.
    packet.write(check_at, b"\0\0")
    assert HELPERS[HelperId.L4_CSUM_REPLACE](env, 0, check_at, 1, 2, 2 | BPF_F_MARK_MANGLED_0) == 0
    assert packet.read(check_at, 2) == b"\0\0"
    assert HELPERS[HelperId.L4_CSUM_REPLACE](env, 0, check_at, 0, 0, 1 << 9) == neg(22)


def test_csum_diff_helper_reads_memory_and_accepts_null() -> None:
    harness = make_harness()
    region = harness.region(struct.pack("<II", 0xDEADBEEF, 0xDEADBEEF))
    helper = HELPERS[HelperId.CSUM_DIFF]
    assert helper(harness.env, 0, 0, region.address, 8, 0) == 0x3B3B
    assert helper(harness.env, 0, 0, 0, 0, 0x12345) == 0x2346
    assert helper(harness.env, region.address, 8, region.address, 8, 0) == 0xFFFF
    assert 0 <= helper(harness.env, region.address, 4, 0, 0, U64) <= 0xFFFF
