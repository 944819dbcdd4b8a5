"""BPF_MAP_TYPE_USER_RINGBUF in user space: the producer API and the drain's consumer protocol."""

from __future__ import annotations

import errno

import pytest

from pybpf.errors import MapErrnoError, MapInvalidArgumentError
from pybpf.platform.uapi_generated import BpfMapType
from pybpf.runtime.maps import MapDef, UserRingBufMap, create_map
from pybpf.vm.memory import AddressSpace


def _ring(size: int = 4096) -> UserRingBufMap:
    ring = create_map(MapDef(BpfMapType.USER_RINGBUF, 0, 0, size), AddressSpace())
    assert isinstance(ring, UserRingBufMap)
    return ring


def _drain_one(ring: UserRingBufMap) -> bytes | int:
    peeked = ring.peek()
    if peeked.error:
        return peeked.error
    data = ring.address_space.read_bytes(peeked.address, peeked.size)
    ring.release(peeked.size)
    return data


def test_definition_rules() -> None:
    with pytest.raises(MapInvalidArgumentError):
        create_map(MapDef(BpfMapType.USER_RINGBUF, 0, 0, 3000), AddressSpace())
    with pytest.raises(MapInvalidArgumentError):
        create_map(MapDef(BpfMapType.USER_RINGBUF, 4, 0, 4096), AddressSpace())


def test_samples_come_out_in_order_across_many_wrap_arounds() -> None:
    ring = _ring()
    for round_number in range(300):
        payload = bytes([round_number % 256]) * (13 + round_number % 40)
        ring.push(payload)
        assert _drain_one(ring) == payload
    assert _drain_one(ring) == errno.ENOSPC  # nothing left


def test_a_full_ring_refuses_and_a_drained_one_takes_more() -> None:
    ring = _ring()
    ring.push(bytes(2000))
    ring.push(bytes(2000))
    with pytest.raises(MapErrnoError) as raised:
        ring.push(bytes(100))
    assert raised.value.errno == errno.ENOSPC
    _drain_one(ring)
    ring.push(bytes(100))


def test_busy_samples_stop_the_drain_and_discarded_ones_are_skipped() -> None:
    ring = _ring()
    pending = ring.reserve(8)
    assert _drain_one(ring) == errno.ENOSPC  # still being written
    ring.discard(pending)
    ring.push(b"next")
    assert _drain_one(ring) == errno.EAGAIN  # the discarded one, consumed
    assert _drain_one(ring) == b"next"


def test_a_sample_larger_than_the_ring_is_refused() -> None:
    with pytest.raises(MapErrnoError) as raised:
        _ring().reserve(4096)
    assert raised.value.errno == errno.E2BIG
