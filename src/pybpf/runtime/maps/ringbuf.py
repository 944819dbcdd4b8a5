"""BPF_MAP_TYPE_RINGBUF (the kernel's ringbuf.c) and a consumer like libbpf's ``ring_buffer``.

Producers (programs) reserve a record, fill it through the returned pointer, then submit or
discard it; ``output`` does all three with a copy. Each record starts with an 8-byte header,
``u32 len`` (with the BUSY bit 31 while reserved and the DISCARD bit 30) and ``u32 pg_off``, and
records are 8-byte aligned. Positions only grow; a record sits at ``position & (size - 1)``.

The kernel maps the data pages twice in a row so a record that wraps past the end is still
contiguous. We get the same effect with a region of twice the ring's size: a record is always
written, and read back, at its starting offset, so its tail may run into the second half.

The consumer (:class:`RingBufferConsumer`) is polled from the same thread: ``poll()`` hands every
committed record to its callback, skips discarded ones and stops at a record still being
written, exactly as libbpf's ``ring_buffer__poll`` (without the epoll wait).
"""

from __future__ import annotations

import errno as errno_codes
import struct
from collections.abc import Callable
from typing import ClassVar

from pybpf.errors import MapInvalidArgumentError
from pybpf.platform.uapi_generated import BpfMapFlag, BpfMapType, BpfRingbufFlag, BpfRingbufQuery
from pybpf.runtime.maps.base import Map
from pybpf.runtime.maps.definition import MapDef, check_flags, invalid
from pybpf.vm.memory import AddressSpace, Region, RegionKind

PAGE_SIZE = 4096
BPF_RINGBUF_BUSY_BIT = 1 << 31
BPF_RINGBUF_DISCARD_BIT = 1 << 30
BPF_RINGBUF_HDR_SZ = 8
RINGBUF_MAX_RECORD_SZ = 0xFFFFFFFF // 4
_HEADER = struct.Struct("<II")
_POSITION = struct.Struct("<Q")
_CONSUMER_POS = 0
_PRODUCER_POS = 8
_POSITIONS_SIZE = 16
POSITIONS_SIZE = _POSITIONS_SIZE
"""Bytes of a ring's shared positions: u64 consumer_pos, then u64 producer_pos."""

RingBufferCallback = Callable[[bytes], "int | None"]
"""Called with each record's bytes; a negative return stops the poll and is returned from it."""


class RingBufMap(Map):
    """A multi-producer, single-consumer ring of variable-length records."""

    MAP_TYPES: ClassVar[tuple[BpfMapType, ...]] = (BpfMapType.RINGBUF,)
    HAS_KEYS = False

    def __init__(self, definition: MapDef, address_space: AddressSpace, ncpus: int = 1) -> None:
        super().__init__(definition, address_space, ncpus)
        self.size = self.max_entries
        self.mask = self.size - 1
        self.region = address_space.add(
            Region.zeroed(RegionKind.RINGBUF, f"{self.name or 'ringbuf'} data", 2 * self.size)
        )
        # The positions live in a buffer (the kernel's consumer and producer pages) so that they
        # can move into memory shared with another process (move_storage), with the data.
        self._positions: memoryview = memoryview(bytearray(_POSITIONS_SIZE))
        self.wakeups = 0
        """How many times a commit would have woken the consumer (the kernel's irq_work)."""

    @property
    def consumer_pos(self) -> int:
        value: int = _POSITION.unpack_from(self._positions, _CONSUMER_POS)[0]
        return value

    @consumer_pos.setter
    def consumer_pos(self, value: int) -> None:
        _POSITION.pack_into(self._positions, _CONSUMER_POS, value)

    @property
    def producer_pos(self) -> int:
        value: int = _POSITION.unpack_from(self._positions, _PRODUCER_POS)[0]
        return value

    @producer_pos.setter
    def producer_pos(self, value: int) -> None:
        _POSITION.pack_into(self._positions, _PRODUCER_POS, value)

    def move_storage(self, data: object, positions: memoryview, *, copy: bool = True) -> None:
        """Keep the records in ``data`` (``2 * size`` bytes) and the positions in ``positions``
        (:data:`POSITIONS_SIZE` bytes) from now on, e.g. a file shared with a consumer process.

        With ``copy`` the current contents move there; without it the storage is adopted as it
        is (a consumer opening a ring another process produces into). Between runs only.
        """
        region = Region(RegionKind.RINGBUF, self.region.name, data)
        if region.size < 2 * self.size or len(positions) < _POSITIONS_SIZE:
            raise MapInvalidArgumentError(f"{self.label}: storage too small for a ring of {self.size} bytes")
        if copy:
            region.view[: 2 * self.size] = self.region.view
            positions[:_POSITIONS_SIZE] = self._positions
        self.address_space.add(region)
        if self.region in self.address_space:
            self.address_space.remove(self.region)
        self.region = region
        self._positions = positions

    def validate(self) -> None:
        definition = self.definition
        size = definition.max_entries
        if definition.key_size or definition.value_size or size <= 0 or size & (size - 1) or size % PAGE_SIZE:
            raise invalid(definition, "needs key_size 0, value_size 0 and a power-of-two, page-aligned max_entries")
        check_flags(definition, BpfMapFlag.NUMA_NODE)

    def close(self) -> None:
        if self.region in self.address_space:
            self.address_space.remove(self.region)

    def owns(self, address: int) -> bool:
        """Whether ``address`` points into this ring (to find the ring of a submitted record)."""
        return self.region.address <= address < self.region.end

    # -- producer (program side) ------------------------------------------------------------------

    def reserve(self, size: int, flags: int = 0) -> int:
        """bpf_ringbuf_reserve: the address of ``size`` writable bytes, or 0 (bad flags, too big, full)."""
        if flags or size > RINGBUF_MAX_RECORD_SZ or size < 0:
            return 0
        length = (size + BPF_RINGBUF_HDR_SZ + 7) & ~7
        if length > self.size:
            return 0
        new_producer_pos = self.producer_pos + length
        # The producer may run at most size - 1 bytes ahead of the consumer.
        if new_producer_pos - self.consumer_pos > self.mask:
            return 0
        offset = self.producer_pos & self.mask
        _HEADER.pack_into(self.region.view, offset, size | BPF_RINGBUF_BUSY_BIT, offset // PAGE_SIZE)
        self.producer_pos = new_producer_pos
        return self.region.address + offset + BPF_RINGBUF_HDR_SZ

    def _commit(self, address: int, flags: int, discard: bool) -> None:
        offset = address - BPF_RINGBUF_HDR_SZ - self.region.address
        if not 0 <= offset < self.size:
            raise MapInvalidArgumentError(f"{self.label}: {address:#x} is not a record of this ring buffer")
        length, page_offset = _HEADER.unpack_from(self.region.view, offset)
        if not length & BPF_RINGBUF_BUSY_BIT:
            raise MapInvalidArgumentError(f"{self.label}: the record at {address:#x} is not reserved")
        length &= ~BPF_RINGBUF_BUSY_BIT
        if discard:
            length |= BPF_RINGBUF_DISCARD_BIT
        _HEADER.pack_into(self.region.view, offset, length, page_offset)
        # The kernel wakes the consumer when it has caught up with this record, unless told otherwise.
        at_consumer = (self.consumer_pos & self.mask) == offset
        if flags & BpfRingbufFlag.FORCE_WAKEUP or (at_consumer and not flags & BpfRingbufFlag.NO_WAKEUP):
            self.wakeups += 1

    def submit(self, address: int, flags: int = 0) -> None:
        """bpf_ringbuf_submit: publish the record reserved at ``address``."""
        self._commit(address, flags, discard=False)

    def discard(self, address: int, flags: int = 0) -> None:
        """bpf_ringbuf_discard: drop the record reserved at ``address`` (the consumer skips it)."""
        self._commit(address, flags, discard=True)

    def output(self, data: bytes, flags: int = 0) -> int:
        """bpf_ringbuf_output: 0, -EINVAL for bad flags, -EAGAIN when there is no room."""
        if flags & ~int(BpfRingbufFlag.NO_WAKEUP | BpfRingbufFlag.FORCE_WAKEUP):
            return -errno_codes.EINVAL
        address = self.reserve(len(data))
        if not address:
            return -errno_codes.EAGAIN
        start = address - self.region.address
        self.region.view[start : start + len(data)] = data
        self.submit(address, flags)
        return 0

    def query(self, flags: int) -> int:
        """bpf_ringbuf_query."""
        match flags:
            case BpfRingbufQuery.AVAIL_DATA:
                return self.producer_pos - self.consumer_pos
            case BpfRingbufQuery.RING_SIZE:
                return self.size
            case BpfRingbufQuery.CONS_POS:
                return self.consumer_pos
            case BpfRingbufQuery.PROD_POS:
                return self.producer_pos
        return 0

    # -- consumer ---------------------------------------------------------------------------------

    def consume(self, callback: RingBufferCallback, limit: int | None = None) -> int:
        """Hand committed records to ``callback`` in order; the count handed over, or its negative return."""
        count = 0
        view = self.region.view
        while self.consumer_pos < self.producer_pos and (limit is None or count < limit):
            offset = self.consumer_pos & self.mask
            length, _ = _HEADER.unpack_from(view, offset)
            if length & BPF_RINGBUF_BUSY_BIT:
                break
            data_length = length & ~BPF_RINGBUF_DISCARD_BIT
            self.consumer_pos += (data_length + BPF_RINGBUF_HDR_SZ + 7) & ~7
            if length & BPF_RINGBUF_DISCARD_BIT:
                continue
            start = offset + BPF_RINGBUF_HDR_SZ
            result = callback(bytes(view[start : start + data_length]))
            count += 1
            if result is not None and result < 0:
                return result
        return count


class RingBufferConsumer:
    """libbpf's ``struct ring_buffer``: callbacks for one or more ring buffer maps, polled together."""

    def __init__(self) -> None:
        self._rings: list[tuple[RingBufMap, RingBufferCallback]] = []

    def add(self, ring: RingBufMap, callback: RingBufferCallback) -> None:
        self._rings.append((ring, callback))

    def poll(self) -> int:
        """Consume everything available in every ring; the number of records, or a callback's negative return."""
        total = 0
        for ring, callback in self._rings:
            result = ring.consume(callback)
            if result < 0:
                return result
            total += result
        return total

    consume = poll
