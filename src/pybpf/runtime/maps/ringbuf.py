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

The records and positions may live in memory shared with a consumer in another process (a
pinned ring), so the protocol is the kernel's, word for word:

- Every position and every record's length word is read and written with **one aligned store or
  load** (through ``memoryview.cast``, which copies a whole machine word). ``struct.pack_into``
  with a ``<`` format writes byte by byte, and a reader in another process then sees a torn
  value: a producer position ahead of any record reserved so far (the consumer read a zeroed
  header as an empty record and lost its alignment) or a consumer position off by a carry (the
  producer overwrote records not yet read, or found a free ring full).
- The producer writes a record's header (length with BUSY) before it publishes the new producer
  position, and clears BUSY (one store of the length word) only after the record's data; the
  consumer reads the producer position, then the header, then the data, and publishes its new
  consumer position only **after** copying the record out (libbpf's order: the callback, then
  ``smp_store_release(consumer_pos)``), so the producer never reuses bytes still being read.
- Stores are seen in program order and loads are not reordered with loads on x86-64 (TSO); with
  aligned words this is the kernel's acquire/release pairing. Weakly ordered CPUs would need
  fences, which Python cannot emit: there a pinned ring is correct only within one process.
- Producers in one process are serialised by a lock (the kernel's ``rb->spinlock``): a hook may
  fire from several threads. Native code (the JIT's ringbuf helpers, which run without the GIL)
  cannot take a Python lock, so the lock has a second half, a spin word in the ring's
  :class:`~pybpf.vm.native_ringbuf.NativeRing` that native producers take with an atomic
  compare-and-swap; Python producers take the ``threading.Lock`` and then, once the ring is
  shared with native code, the spin word. The descriptor also counts native commits' wake-ups.
"""

from __future__ import annotations

import ctypes
import errno as errno_codes
from collections.abc import Callable
from typing import ClassVar

from pybpf.errors import MapInvalidArgumentError
from pybpf.platform.uapi_generated import BpfMapFlag, BpfMapType, BpfRingbufFlag, BpfRingbufQuery
from pybpf.runtime.maps.base import Map
from pybpf.runtime.maps.definition import MapDef, check_flags, invalid
from pybpf.vm.memory import AddressSpace, Region, RegionKind
from pybpf.vm.native_ringbuf import NativeRing, NativeRingMap

PAGE_SIZE = 4096
BPF_RINGBUF_BUSY_BIT = 1 << 31
BPF_RINGBUF_DISCARD_BIT = 1 << 30
BPF_RINGBUF_HDR_SZ = 8
RINGBUF_MAX_RECORD_SZ = 0xFFFFFFFF // 4
_WORD = 4  # the header's length word, then its pg_off word
_CONSUMER_POS = 0  # index of the u64 words in the positions buffer
_PRODUCER_POS = 1
_POSITIONS_SIZE = 16
POSITIONS_SIZE = _POSITIONS_SIZE
"""Bytes of a ring's shared positions: u64 consumer_pos, then u64 producer_pos."""

RingBufferCallback = Callable[[bytes], "int | None"]
"""Called with each record's bytes; a negative return stops the poll and is returned from it."""


class RingBufMap(Map, NativeRingMap):
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
        # Word views: one item access is one aligned load or store (see the module docstring).
        self._position_words = self._positions.cast("Q")
        self._header_words = self.region.view.cast("I")
        self._native = NativeRing(self.mask)
        self._lock = self._native.python_lock
        self._native.set_storage(self.region.address, ctypes_address(self._positions))

    @property
    def wakeups(self) -> int:
        """How many times a commit would have woken the consumer (the kernel's irq_work)."""
        return self._native.wakeups

    def native_ring(self) -> NativeRing | None:
        return self._native

    @property
    def consumer_pos(self) -> int:
        value: int = self._position_words[_CONSUMER_POS]
        return value

    @consumer_pos.setter
    def consumer_pos(self, value: int) -> None:
        self._position_words[_CONSUMER_POS] = value

    @property
    def producer_pos(self) -> int:
        value: int = self._position_words[_PRODUCER_POS]
        return value

    @producer_pos.setter
    def producer_pos(self, value: int) -> None:
        self._position_words[_PRODUCER_POS] = value

    def move_storage(self, data: object, positions: memoryview, *, copy: bool = True) -> None:
        """Keep the records in ``data`` (``2 * size`` bytes) and the positions in ``positions``
        (:data:`POSITIONS_SIZE` bytes) from now on, e.g. a file shared with a consumer process.

        With ``copy`` the current contents move there; without it the storage is adopted as it
        is (a consumer opening a ring another process produces into). Between runs only.
        """
        region = Region(RegionKind.RINGBUF, self.region.name, data)
        if region.size < 2 * self.size or len(positions) < _POSITIONS_SIZE:
            raise MapInvalidArgumentError(f"{self.label}: storage too small for a ring of {self.size} bytes")
        if region.address % 8 or ctypes_address(positions) % 8:
            raise MapInvalidArgumentError(f"{self.label}: ring storage must be 8-byte aligned (word stores)")
        if copy:
            region.view[: 2 * self.size] = self.region.view
            positions[:_POSITIONS_SIZE] = self._positions
        self.address_space.add(region)
        if self.region in self.address_space:
            self.address_space.remove(self.region)
        self._release_words()
        self.region = region
        self._positions = positions
        self._position_words = positions[:_POSITIONS_SIZE].cast("Q")
        self._header_words = region.view[: len(region.view) // _WORD * _WORD].cast("I")
        self._native.set_storage(region.address, ctypes_address(positions))

    def _release_words(self) -> None:
        # The casts export the buffers: release them so an mmap behind them can be closed.
        self._position_words.release()
        self._header_words.release()

    def validate(self) -> None:
        definition = self.definition
        size = definition.max_entries
        if definition.key_size or definition.value_size or size <= 0 or size & (size - 1) or size % PAGE_SIZE:
            raise invalid(definition, "needs key_size 0, value_size 0 and a power-of-two, page-aligned max_entries")
        check_flags(definition, BpfMapFlag.NUMA_NODE)

    def close(self) -> None:
        # The word views stay: the positions can still be read (query) after the map is gone.
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
        native = self._native
        native.acquire()  # the Python lock, and the spin word native producers (no GIL) take too
        try:
            positions = self._position_words
            producer_pos = positions[_PRODUCER_POS]
            new_producer_pos = producer_pos + length
            # The producer may run at most size - 1 bytes ahead of the consumer.
            if new_producer_pos - positions[_CONSUMER_POS] > self.mask:
                return 0
            offset = producer_pos & self.mask
            words = self._header_words
            index = offset // _WORD
            # BUSY first: the header is in place before the position that exposes it moves.
            words[index] = size | BPF_RINGBUF_BUSY_BIT
            words[index + 1] = offset // PAGE_SIZE
            positions[_PRODUCER_POS] = new_producer_pos
        finally:
            native.release()
        return self.region.address + offset + BPF_RINGBUF_HDR_SZ

    def _commit(self, address: int, flags: int, discard: bool) -> None:
        offset = address - BPF_RINGBUF_HDR_SZ - self.region.address
        if not 0 <= offset < self.size or offset % 8:
            raise MapInvalidArgumentError(f"{self.label}: {address:#x} is not a record of this ring buffer")
        words = self._header_words
        length = words[offset // _WORD]
        if not length & BPF_RINGBUF_BUSY_BIT:
            raise MapInvalidArgumentError(f"{self.label}: the record at {address:#x} is not reserved")
        length &= ~BPF_RINGBUF_BUSY_BIT
        if discard:
            length |= BPF_RINGBUF_DISCARD_BIT
        # One store clears BUSY after the data: the consumer sees the whole record or none of it.
        words[offset // _WORD] = length
        # The kernel wakes the consumer when it has caught up with this record, unless told otherwise.
        at_consumer = (self.consumer_pos & self.mask) == offset
        if flags & BpfRingbufFlag.FORCE_WAKEUP or (at_consumer and not flags & BpfRingbufFlag.NO_WAKEUP):
            self._native.count_wakeup()

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
        words = self._header_words
        consumer_pos = self.consumer_pos
        while limit is None or count < limit:
            # The producer position first, then the header it exposes (never a header ahead of it).
            if consumer_pos >= self.producer_pos:
                break
            offset = consumer_pos & self.mask
            length = words[offset // _WORD]
            if length & BPF_RINGBUF_BUSY_BIT:
                break
            data_length = length & ~BPF_RINGBUF_DISCARD_BIT
            consumer_pos += (data_length + BPF_RINGBUF_HDR_SZ + 7) & ~7
            result = None
            if not length & BPF_RINGBUF_DISCARD_BIT:
                start = offset + BPF_RINGBUF_HDR_SZ
                record = bytes(view[start : start + data_length])
                count += 1
                # Published only now that the record is copied out: the room it frees may be reused at once.
                self.consumer_pos = consumer_pos
                result = callback(record)
            else:
                self.consumer_pos = consumer_pos
            if result is not None and result < 0:
                return result
        return count


def ctypes_address(buffer: memoryview) -> int:
    """The native address of a writable buffer's first byte."""
    return ctypes.addressof((ctypes.c_char * len(buffer)).from_buffer(buffer))


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
