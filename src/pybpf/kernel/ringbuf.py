"""Reading a kernel BPF_MAP_TYPE_RINGBUF from user space: mmap and epoll, as libbpf's ``ring_buffer``.

The map's fd maps in two parts (kernel/bpf/ringbuf.c): at offset 0 one writable page holding the
consumer position; at offset ``PAGE_SIZE`` the read-only producer position page followed by the
data pages, which the kernel maps twice in a row so that a record wrapping past the end reads
contiguously. Records are 8-byte aligned and start with ``u32 len`` (BUSY bit 31 while reserved,
DISCARD bit 30) and ``u32 pg_off``. The reader hands committed records to a callback in order,
skips discarded ones, stops at one still being written, and publishes its position after each.

The callbacks and return values are those of the runtime's ring buffer (``consume``/``poll``).
"""

from __future__ import annotations

import mmap
import select
import struct
from collections.abc import Callable

from pybpf.errors import MapInvalidArgumentError
from pybpf.kernel.fd import Fd

BPF_RINGBUF_BUSY_BIT = 1 << 31
BPF_RINGBUF_DISCARD_BIT = 1 << 30
BPF_RINGBUF_HDR_SZ = 8
_HEADER = struct.Struct("<II")
_POSITION = struct.Struct("<Q")

RingBufferCallback = Callable[[bytes], "int | None"]
"""Called with each record's bytes; a negative return stops the consumption and is returned."""


class RingBufferReader:
    """The user-space side of one kernel ring buffer map (its fd stays owned by the map)."""

    def __init__(self, fd: Fd, max_entries: int) -> None:
        if max_entries <= 0 or max_entries & (max_entries - 1):
            raise MapInvalidArgumentError(f"ring buffer size {max_entries} is not a power of two")
        page = mmap.PAGESIZE
        number = fd.fileno()
        self._consumer = mmap.mmap(number, page, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE, offset=0)
        self._producer = mmap.mmap(number, page + 2 * max_entries, mmap.MAP_SHARED, mmap.PROT_READ, offset=page)
        self._data = page
        self.mask = max_entries - 1
        self._fd = number
        self._epoll = select.epoll()
        self._epoll.register(number, select.EPOLLIN)

    @property
    def consumer_pos(self) -> int:
        return int(_POSITION.unpack_from(self._consumer, 0)[0])

    @property
    def producer_pos(self) -> int:
        return int(_POSITION.unpack_from(self._producer, 0)[0])

    def available(self) -> int:
        """Bytes the producer has written (committed or not) that the consumer has not passed."""
        return self.producer_pos - self.consumer_pos

    def consume(self, callback: RingBufferCallback, limit: int | None = None) -> int:
        """Hand committed records to ``callback``; the count handed over, or its negative return."""
        count = 0
        position = self.consumer_pos
        producer = self.producer_pos
        while position < producer and (limit is None or count < limit):
            offset = self._data + (position & self.mask)
            length, _ = _HEADER.unpack_from(self._producer, offset)
            if length & BPF_RINGBUF_BUSY_BIT:
                break
            data_length = length & ~BPF_RINGBUF_DISCARD_BIT
            position += (data_length + BPF_RINGBUF_HDR_SZ + 7) & ~7
            if not length & BPF_RINGBUF_DISCARD_BIT:
                start = offset + BPF_RINGBUF_HDR_SZ
                record = bytes(self._producer[start : start + data_length])
                # Publish before the callback, so a record is never handed over twice.
                _POSITION.pack_into(self._consumer, 0, position)
                count += 1
                result = callback(record)
                if result is not None and result < 0:
                    return result
            else:
                _POSITION.pack_into(self._consumer, 0, position)
            producer = self.producer_pos
        return count

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the kernel signals data (epoll), at most ``timeout`` seconds; whether it did."""
        return bool(self._epoll.poll(-1 if timeout is None else timeout))

    def close(self) -> None:
        self._epoll.close()
        self._consumer.close()
        self._producer.close()


class KernelRingBufferConsumer:
    """libbpf's ``struct ring_buffer`` over kernel maps: callbacks for several rings, one epoll."""

    def __init__(self) -> None:
        self._rings: list[tuple[RingBufferReader, RingBufferCallback]] = []
        self._epoll = select.epoll()

    def add(self, reader: RingBufferReader, callback: RingBufferCallback) -> None:
        self._rings.append((reader, callback))
        self._epoll.register(reader._fd, select.EPOLLIN)

    def consume(self) -> int:
        """Consume everything available in every ring; the record count, or a callback's negative return."""
        total = 0
        for reader, callback in self._rings:
            result = reader.consume(callback)
            if result < 0:
                return result
            total += result
        return total

    def poll(self, timeout: float | None = 0) -> int:
        """Wait up to ``timeout`` seconds (None: forever) for data, then :meth:`consume`."""
        self._epoll.poll(-1 if timeout is None else timeout)
        return self.consume()

    def close(self) -> None:
        self._epoll.close()


class UserRingBufferWriter:
    """The producer side of a kernel BPF_MAP_TYPE_USER_RINGBUF, as libbpf's ``user_ring_buffer``.

    The fd maps at offset 0 the read-only consumer position page and at ``PAGE_SIZE`` the
    writable producer position page followed by the data pages (mapped twice, so a sample that
    wraps is contiguous). A sample is reserved with its header saying BUSY and the producer
    position moved past it, then published by clearing BUSY (or setting DISCARD) in one store.
    One process, one thread: the stores are plain aligned words, as the runtime's ring.
    """

    def __init__(self, fd: Fd, max_entries: int) -> None:
        if max_entries <= 0 or max_entries & (max_entries - 1):
            raise MapInvalidArgumentError(f"ring buffer size {max_entries} is not a power of two")
        page = mmap.PAGESIZE
        number = fd.fileno()
        self._consumer = mmap.mmap(number, page, mmap.MAP_SHARED, mmap.PROT_READ, offset=0)
        self._producer = mmap.mmap(number, page + 2 * max_entries, mmap.MAP_SHARED,
                                   mmap.PROT_READ | mmap.PROT_WRITE, offset=page)
        self._data = page
        self.size = max_entries
        self.mask = max_entries - 1

    def push(self, data: bytes) -> bool:
        """Reserve, fill and submit one sample; False when there is no room for it."""
        total = (len(data) + BPF_RINGBUF_HDR_SZ + 7) & ~7
        consumer = int(_POSITION.unpack_from(self._consumer, 0)[0])
        producer = int(_POSITION.unpack_from(self._producer, 0)[0])
        if total > self.size - (producer - consumer):
            return False
        header = self._data + (producer & self.mask)
        _HEADER.pack_into(self._producer, header, len(data) | BPF_RINGBUF_BUSY_BIT, 0)
        _POSITION.pack_into(self._producer, 0, producer + total)
        start = header + BPF_RINGBUF_HDR_SZ
        self._producer[start : start + len(data)] = data
        struct.pack_into("<I", self._producer, header, len(data))  # BUSY cleared: published
        return True

    def close(self) -> None:
        self._consumer.close()
        self._producer.close()
