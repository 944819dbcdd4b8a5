"""BPF_MAP_TYPE_USER_RINGBUF: a ring buffer user space produces into and programs drain.

The record format is the kernel ring buffer's (see :mod:`pybpf.runtime.maps.ringbuf`): an
8-byte header ``u32 len`` (BUSY bit 31 while the producer fills it, DISCARD bit 30) and a pad
word, then the data, records 8-byte aligned, positions only growing. The roles are swapped:

* the **producer** is user space, as libbpf's ``user_ring_buffer``: :meth:`UserRingBufMap.reserve`
  claims room (the header says BUSY and the producer position moves past the record),
  :meth:`UserRingBufMap.submit` or :meth:`UserRingBufMap.discard` publish it; :meth:`push` does
  the three with a copy;
* the **consumer** is ``bpf_user_ringbuf_drain`` (kernel/bpf/ringbuf.c): :meth:`peek` finds the
  next record (skipping discarded ones, stopping at a BUSY one), :meth:`release` consumes it.

As in the kernel ring, the data region is twice the ring's size, and a record is written and
read at its starting offset, so one that wraps past the end stays contiguous.
"""

from __future__ import annotations

import errno as errno_codes
from dataclasses import dataclass
from typing import ClassVar

from pybpf.errors import MapErrnoError, MapInvalidArgumentError
from pybpf.platform.dynptr import DYNPTR_MAX_SIZE
from pybpf.platform.uapi_generated import BpfMapFlag, BpfMapType
from pybpf.runtime.maps.base import Map
from pybpf.runtime.maps.definition import MapDef, check_flags, invalid
from pybpf.runtime.maps.ringbuf import BPF_RINGBUF_BUSY_BIT, BPF_RINGBUF_DISCARD_BIT, BPF_RINGBUF_HDR_SZ, PAGE_SIZE
from pybpf.vm.memory import AddressSpace, Region, RegionKind

__all__ = ["BPF_MAX_USER_RINGBUF_SAMPLES", "UserRingBufMap", "UserRingSample"]

BPF_MAX_USER_RINGBUF_SAMPLES = 128 * 1024
"""Samples one ``bpf_user_ringbuf_drain`` call hands to its callback at most."""
_WORD = 4


@dataclass(frozen=True, slots=True)
class UserRingSample:
    """A record user space reserved: write its ``size`` bytes through :attr:`data`, then submit."""

    offset: int  # of the header, in the ring's region
    size: int
    data: memoryview


@dataclass(frozen=True, slots=True)
class Peeked:
    """What :meth:`UserRingBufMap.peek` found: a record (address, size), or why there is none."""

    error: int  # 0, or a positive errno: ENOSPC (nothing ready), EAGAIN (skipped a discard), E2BIG, EINVAL
    address: int = 0
    size: int = 0


class UserRingBufMap(Map):
    """A single-producer (user space), single-consumer (program) ring of variable-length records."""

    MAP_TYPES: ClassVar[tuple[BpfMapType, ...]] = (BpfMapType.USER_RINGBUF,)
    HAS_KEYS = False

    def __init__(self, definition: MapDef, address_space: AddressSpace, ncpus: int = 1) -> None:
        super().__init__(definition, address_space, ncpus)
        self.size = self.max_entries
        self.mask = self.size - 1
        self.region = address_space.add(
            Region.zeroed(RegionKind.RINGBUF, f"{self.name or 'user_ringbuf'} data", 2 * self.size)
        )
        self._words = self.region.view.cast("I")
        self.consumer_pos = 0
        self.producer_pos = 0
        self.busy = False  # a drain in progress (the kernel's rb->busy): a nested one gets -EBUSY
        self.wakeups = 0  # how many times a drain would have woken the producer (irq_work)

    def validate(self) -> None:
        definition = self.definition
        size = definition.max_entries
        if definition.key_size or definition.value_size or size <= 0 or size & (size - 1) or size % PAGE_SIZE:
            raise invalid(definition, "needs key_size 0, value_size 0 and a power-of-two, page-aligned max_entries")
        check_flags(definition, BpfMapFlag(0))

    def close(self) -> None:
        if self.region in self.address_space:
            self.address_space.remove(self.region)

    # -- producer (user space) ------------------------------------------------------------------

    def reserve(self, size: int) -> UserRingSample:
        """Room for ``size`` bytes (``user_ring_buffer__reserve``); MapErrnoError E2BIG or ENOSPC."""
        total = (size + BPF_RINGBUF_HDR_SZ + 7) & ~7
        if size < 0 or size > DYNPTR_MAX_SIZE or total > self.size:
            raise MapErrnoError(f"{self.label}: a sample of {size} bytes cannot fit", errno_codes.E2BIG, "E2BIG")
        if total > self.size - (self.producer_pos - self.consumer_pos):
            raise MapErrnoError(f"{self.label}: no room for {size} bytes", errno_codes.ENOSPC, "ENOSPC")
        offset = self.producer_pos & self.mask
        self._words[offset // _WORD] = size | BPF_RINGBUF_BUSY_BIT
        self._words[offset // _WORD + 1] = 0
        self.producer_pos += total
        start = offset + BPF_RINGBUF_HDR_SZ
        return UserRingSample(offset, size, self.region.view[start : start + size])

    def _commit(self, sample: UserRingSample, discard: bool) -> None:
        header = self._words[sample.offset // _WORD]
        if not header & BPF_RINGBUF_BUSY_BIT:
            raise MapInvalidArgumentError(f"{self.label}: the sample at offset {sample.offset} is not reserved")
        self._words[sample.offset // _WORD] = sample.size | (BPF_RINGBUF_DISCARD_BIT if discard else 0)

    def submit(self, sample: UserRingSample) -> None:
        """Publish a reserved sample (``user_ring_buffer__submit``)."""
        self._commit(sample, discard=False)

    def discard(self, sample: UserRingSample) -> None:
        """Drop a reserved sample; the drain skips it (``user_ring_buffer__discard``)."""
        self._commit(sample, discard=True)

    def push(self, data: bytes) -> None:
        """Reserve, fill and submit one sample holding ``data``."""
        sample = self.reserve(len(data))
        sample.data[:] = data
        self.submit(sample)

    # -- consumer (bpf_user_ringbuf_drain) ------------------------------------------------------

    def peek(self) -> Peeked:
        """``__bpf_user_ringbuf_peek``: the next record's address and size, or why there is none."""
        producer_pos, consumer_pos = self.producer_pos, self.consumer_pos
        if producer_pos % 8:
            return Peeked(errno_codes.EINVAL)
        if consumer_pos >= producer_pos:
            return Peeked(errno_codes.ENOSPC)
        offset = consumer_pos & self.mask
        header = self._words[offset // _WORD]
        flags = header & (BPF_RINGBUF_BUSY_BIT | BPF_RINGBUF_DISCARD_BIT)
        size = header & ~flags
        total = (size + BPF_RINGBUF_HDR_SZ + 7) & ~7
        if total > producer_pos - consumer_pos:
            return Peeked(errno_codes.EINVAL)
        if total > self.size or size > DYNPTR_MAX_SIZE:
            return Peeked(errno_codes.E2BIG)
        if flags & BPF_RINGBUF_DISCARD_BIT:
            self.consumer_pos = consumer_pos + total
            return Peeked(errno_codes.EAGAIN)
        if flags & BPF_RINGBUF_BUSY_BIT:
            return Peeked(errno_codes.ENOSPC)
        return Peeked(0, self.region.address + offset + BPF_RINGBUF_HDR_SZ, size)

    def release(self, size: int) -> None:
        """``__bpf_user_ringbuf_sample_release``: the record of ``size`` bytes is consumed."""
        self.consumer_pos += (size + BPF_RINGBUF_HDR_SZ + 7) & ~7
