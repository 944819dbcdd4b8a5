"""Ring buffer, perf event array, prog array, maps of maps, redirect maps, queue/stack/bloom
program side, LRU eviction and LPM lookups."""

from __future__ import annotations

import errno

import pytest
from maps_oracle import KERNEL_OK, KERNEL_REASON, Pair

from pybpf.errors import (
    MapFullError,
    MapInvalidArgumentError,
    MapKeyExistsError,
    MapKeyNotFoundError,
    MapOperationNotSupportedError,
)
from pybpf.platform.uapi_generated import BpfMapFlag, BpfMapType, BpfRingbufFlag, BpfRingbufQuery
from pybpf.runtime.maps import (
    ArrayOfMapsMap,
    BloomFilterMap,
    CpuMap,
    DevMap,
    DevMapHash,
    HashOfMapsMap,
    LpmTrieMap,
    LruHashMap,
    Map,
    MapDef,
    PerfBuffer,
    PerfEventArrayMap,
    ProgArrayMap,
    QueueMap,
    RingBufferConsumer,
    RingBufMap,
    XskMap,
    create_map,
)
from pybpf.vm.memory import AddressSpace

U32 = [i.to_bytes(4, "little") for i in range(512)]


def make(definition: MapDef, space: AddressSpace | None = None, ncpus: int = 1) -> Map:
    return create_map(definition, space or AddressSpace(), ncpus)


# -- ring buffer ----------------------------------------------------------------------------------


def test_ringbuf_reserve_submit_discard_and_poll() -> None:
    space = AddressSpace()
    ring = make(MapDef(BpfMapType.RINGBUF, 0, 0, 4096), space)
    assert isinstance(ring, RingBufMap)
    first = ring.reserve(5)
    second = ring.reserve(3)
    assert first and second and second - first == 16  # 8-byte header, 8-byte aligned records
    space.write_bytes(first, b"hello")
    space.write_bytes(second, b"bye")
    received: list[bytes] = []
    consumer = RingBufferConsumer()
    consumer.add(ring, received.append)
    # Nothing is consumed while the first record is still reserved.
    ring.submit(second)
    assert consumer.poll() == 0
    ring.discard(first)
    assert consumer.poll() == 1
    assert received == [b"bye"]
    assert ring.output(b"abc", 0) == 0
    assert ring.query(BpfRingbufQuery.AVAIL_DATA) == 16
    assert consumer.poll() == 1
    assert received[-1] == b"abc"
    assert ring.query(BpfRingbufQuery.CONS_POS) == ring.query(BpfRingbufQuery.PROD_POS) == 48
    assert ring.query(BpfRingbufQuery.RING_SIZE) == 4096


def test_ringbuf_full_and_wraparound() -> None:
    space = AddressSpace()
    ring = make(MapDef(BpfMapType.RINGBUF, 0, 0, 4096), space)
    assert isinstance(ring, RingBufMap)
    assert ring.reserve(4096) == 0  # header included, it cannot fit
    assert ring.reserve(8, flags=1) == 0
    assert ring.output(b"x", flags=4) == -errno.EINVAL
    records = 0
    while ring.output(bytes([records % 256]) * 1000, 0) == 0:
        records += 1
    assert records == 4  # 4 * 1008 bytes fit below the 4095-byte limit, a fifth does not
    assert ring.output(b"y" * 1000, 0) == -errno.EAGAIN
    received: list[bytes] = []
    assert ring.consume(received.append) == 4
    # Now records wrap past the end of the ring and still come back whole.
    for index in range(10):
        assert ring.output(bytes([index]) * 1000, 0) == 0
        got: list[bytes] = []
        ring.consume(got.append)
        assert got == [bytes([index]) * 1000]


def test_ringbuf_wakeups_and_negative_callback() -> None:
    ring = make(MapDef(BpfMapType.RINGBUF, 0, 0, 4096))
    assert isinstance(ring, RingBufMap)
    ring.output(b"a", 0)
    ring.output(b"b", 0)  # the consumer is behind the first record: no new wakeup
    ring.output(b"c", BpfRingbufFlag.FORCE_WAKEUP)
    assert ring.wakeups == 2
    assert ring.consume(lambda data: -7) == -7
    assert ring.query(BpfRingbufQuery.AVAIL_DATA) == 32  # the failing record is consumed
    with pytest.raises(MapInvalidArgumentError):
        ring.submit(ring.region.address + 8)  # not reserved


@pytest.mark.parametrize("size", [0, 1000, 4096 * 3])
def test_ringbuf_size_must_be_page_aligned_power_of_two(size: int) -> None:
    with pytest.raises(MapInvalidArgumentError):
        make(MapDef(BpfMapType.RINGBUF, 0, 0, size))


# -- perf event array -----------------------------------------------------------------------------


def test_perf_event_output_and_reader() -> None:
    events = make(MapDef(BpfMapType.PERF_EVENT_ARRAY, 4, 4, 2), ncpus=2)
    assert isinstance(events, PerfEventArrayMap)
    samples: list[tuple[int, bytes]] = []
    lost: list[tuple[int, int]] = []
    reader = PerfBuffer(
        events, lambda cpu, data: samples.append((cpu, data)), lambda cpu, n: lost.append((cpu, n)), page_count=1
    )
    current = 0xFFFFFFFF
    assert events.output(b"abc", current, cpu=1) == 0
    assert events.output(b"12345678", 0, cpu=0) == 0
    assert events.output(b"x", 1, cpu=0) == -errno.EOPNOTSUPP  # slot 1 belongs to CPU 1
    assert events.output(b"x", 2, cpu=0) == -errno.E2BIG
    assert events.output(b"x", 1 << 60, cpu=0) == -errno.EINVAL
    assert reader.poll() == 2
    # Raw samples are zero-padded so that the u32 size plus the data fills 8-byte words.
    assert samples == [(0, b"12345678\0\0\0\0"), (1, b"abc\0")]
    results = [events.output(b"z" * 100, current, cpu=0) for _ in range(40)]
    failures = results.count(-errno.ENOSPC)
    assert results.count(0) + failures == 40
    assert 0 < failures < 40
    assert reader.poll() == 40 - failures
    assert lost == [(0, failures)]
    events.delete(0)
    assert events.output(b"x", current, cpu=0) == -errno.ENOENT


# -- prog array and maps of maps ------------------------------------------------------------------


def test_prog_array_slots() -> None:
    progs = make(MapDef(BpfMapType.PROG_ARRAY, 4, 4, 4))
    assert isinstance(progs, ProgArrayMap)
    target = object()
    progs[1] = target
    assert progs.program_at(1) is target
    assert progs.program_at(2) is None and progs.program_at(99) is None
    assert progs[1] is target
    assert dict(progs.items()) == {1: target}
    with pytest.raises(MapInvalidArgumentError):
        progs.update(2, target, 1)  # only BPF_ANY
    with pytest.raises(MapFullError):
        progs[4] = target
    with pytest.raises(MapKeyNotFoundError):
        progs.delete(2)
    with pytest.raises(MapKeyNotFoundError):
        progs.lookup(2)
    del progs[1]
    assert progs.program_at(1) is None
    assert list(progs.keys()) == [b"\0\0\0\0", U32[1], U32[2], U32[3]]


def test_array_of_maps_checks_the_template() -> None:
    space = AddressSpace()
    template = MapDef(BpfMapType.HASH, 4, 8, 16)
    outer = make(MapDef(BpfMapType.ARRAY_OF_MAPS, 4, 4, 2, inner=template), space)
    assert isinstance(outer, ArrayOfMapsMap)
    inner = make(template, space)
    outer[0] = inner
    assert outer.lookup_address(U32[0]) == inner.address
    assert outer.lookup_inner(U32[0]) is inner
    assert outer.lookup_address(U32[1]) == 0
    with pytest.raises(MapInvalidArgumentError):
        outer[1] = make(MapDef(BpfMapType.HASH, 4, 8, 32), space)  # max_entries differs
    flexible = make(
        MapDef(
            BpfMapType.ARRAY_OF_MAPS, 4, 4, 2, inner=MapDef(BpfMapType.HASH, 4, 8, 16, map_flags=BpfMapFlag.INNER_MAP)
        ),
        space,
    )
    flexible[1] = make(MapDef(BpfMapType.HASH, 4, 8, 32), space)  # BPF_F_INNER_MAP: any size
    with pytest.raises(MapInvalidArgumentError):
        make(MapDef(BpfMapType.ARRAY_OF_MAPS, 4, 4, 2))  # no template


def test_hash_of_maps() -> None:
    template = MapDef(BpfMapType.ARRAY, 4, 4, 1)
    outer = make(MapDef(BpfMapType.HASH_OF_MAPS, 8, 4, 2, inner=template))
    assert isinstance(outer, HashOfMapsMap)
    first, second, third = (make(template) for _ in range(3))
    outer.update(b"a" * 8, first)
    outer.update(b"b" * 8, second)
    with pytest.raises(MapFullError):
        outer.update(b"c" * 8, third)
    with pytest.raises(MapKeyExistsError):
        outer.update(b"a" * 8, third, 1)
    outer.update(b"a" * 8, third, 2)
    assert outer.lookup_inner(b"a" * 8) is third
    assert outer.lookup_address(b"b" * 8) == second.address
    assert list(outer) == [b"a" * 8, b"b" * 8]
    assert outer.get_next_key(b"a" * 8) == b"b" * 8 and outer.get_next_key(b"b" * 8) is None
    del outer[b"a" * 8]
    with pytest.raises(MapKeyNotFoundError):
        del outer[b"a" * 8]


# -- redirect maps --------------------------------------------------------------------------------


def test_devmap_and_devmap_hash() -> None:
    devs = make(MapDef(BpfMapType.DEVMAP, 4, 4, 4))
    assert isinstance(devs, DevMap)
    devs[1] = 7
    assert devs.redirect_target(1) == U32[7] and devs.redirect_target(0) is None
    assert devs.lookup_address(U32[1]) != 0 and devs.lookup_address(U32[0]) == 0
    with pytest.raises(MapKeyNotFoundError):
        devs.lookup(0)
    with pytest.raises(MapKeyExistsError):
        devs.update(0, 7, 1)
    devs.delete(1)
    devs.delete(1)  # deleting an empty devmap slot is fine, as in the kernel
    hashed = make(MapDef(BpfMapType.DEVMAP_HASH, 4, 8, 2))
    assert isinstance(hashed, DevMapHash)
    hashed[100] = U32[7] + U32[0]
    hashed.update(200, U32[8] + U32[0], 2)  # the kernel does not check BPF_EXIST here
    with pytest.raises(MapFullError):
        hashed[300] = U32[9] + U32[0]
    with pytest.raises(MapInvalidArgumentError):
        hashed[100] = bytes(8)
    assert list(hashed) == [U32[100], U32[200]]
    del hashed[100]
    with pytest.raises(MapKeyNotFoundError):
        del hashed[100]


def test_cpumap_and_xskmap() -> None:
    cpus = make(MapDef(BpfMapType.CPUMAP, 4, 4, 4), ncpus=2)
    assert isinstance(cpus, CpuMap)
    cpus[1] = 64
    assert cpus.redirect_target(1) == (64).to_bytes(4, "little")
    assert cpus.lookup_address(U32[1]) == 0  # programs cannot look cpumap up
    with pytest.raises(MapOperationNotSupportedError):
        cpus[3] = 64  # CPU 3 is not possible with 2 CPUs
    cpus[1] = 0  # queue size 0 removes it
    assert cpus.redirect_target(1) is None
    sockets = make(MapDef(BpfMapType.XSKMAP, 4, 4, 2))
    assert isinstance(sockets, XskMap)
    sock = object()
    with pytest.raises(MapKeyNotFoundError):
        sockets.update(0, sock, 2)
    sockets[0] = sock
    assert sockets.socket_at(0) is sock and sockets.lookup_address(U32[0]) != 0
    with pytest.raises(MapOperationNotSupportedError):
        sockets.lookup(0)
    del sockets[0]
    assert sockets.socket_at(0) is None and sockets.lookup_address(U32[0]) == 0


# -- queue, stack, bloom from programs ------------------------------------------------------------


def test_queue_and_stack_program_side() -> None:
    queue = make(MapDef(BpfMapType.QUEUE, 0, 4, 2))
    stack = make(MapDef(BpfMapType.STACK, 0, 4, 2))
    out = memoryview(bytearray(4))
    for m in (queue, stack):
        assert m.prog_pop(out) == -errno.ENOENT
        assert m.prog_push(U32[1]) == 0 and m.prog_push(U32[2]) == 0
        assert m.prog_push(U32[3]) == -errno.E2BIG
        assert m.prog_push(U32[3], 1) == -errno.EINVAL
        assert m.prog_push(U32[3], 2) == 0  # BPF_EXIST drops the oldest
        assert m.prog_peek(out) == 0
    assert isinstance(queue, QueueMap)
    assert queue.pop() == U32[2] and queue.pop() == U32[3]
    assert stack.prog_pop(out) == 0 and bytes(out) == U32[3]
    assert stack.prog_pop(out) == 0 and bytes(out) == U32[2]


def test_bloom_filter_has_no_false_negatives() -> None:
    bloom = make(MapDef(BpfMapType.BLOOM_FILTER, 0, 8, 100))
    assert isinstance(bloom, BloomFilterMap)
    values = [i.to_bytes(8, "little") for i in range(0, 1000, 10)]
    for value in values:
        assert bloom.prog_push(value) == 0
    assert all(bloom.prog_peek(memoryview(bytearray(value))) == 0 for value in values)
    assert all(value in bloom for value in values)
    absent = [i.to_bytes(8, "little") for i in range(1, 1000, 10)]
    false_positives = sum(value in bloom for value in absent)
    assert false_positives < len(absent) // 4
    assert bloom.prog_push(values[0], 1) == -errno.EINVAL
    assert bloom.prog_pop(memoryview(bytearray(8))) == -errno.EOPNOTSUPP


# -- LRU ------------------------------------------------------------------------------------------


def test_lru_evicts_least_recently_used() -> None:
    lru = make(MapDef(BpfMapType.LRU_HASH, 4, 8, 3))
    assert isinstance(lru, LruHashMap)
    for i in range(3):
        lru.update_raw(U32[i], bytes(8))
    assert lru.lookup_address(U32[0])  # a program touches key 0: key 1 is now the oldest
    lru.lookup_raw(U32[1])  # a user-space lookup does not count as a use
    lru.update_raw(U32[3], bytes(8))
    assert set(lru.raw_keys()) == {U32[0], U32[2], U32[3]}
    lru.update_raw(U32[2], b"x" * 8)  # an update is a use
    lru.update_raw(U32[4], bytes(8))
    assert set(lru.raw_keys()) == {U32[2], U32[3], U32[4]}
    assert lru.prog_update(U32[5], bytes(8), 0) == 0  # programs never see E2BIG
    assert len(lru) == 3


@pytest.mark.kernel
@pytest.mark.skipif(not KERNEL_OK, reason=f"bpf() unavailable: {KERNEL_REASON}")
def test_lru_eviction_invariants_match_kernel() -> None:
    # Which element the kernel evicts is not deterministic; what is: an update succeeds, the key just
    # written is present with its value, and the map never holds more than max_entries.
    pair = Pair(MapDef(BpfMapType.LRU_HASH, 4, 8, 8))
    try:
        for i in range(40):
            key, value = U32[i % 37], i.to_bytes(8, "little")
            ours, kernel = pair.update(key, value, 0)
            assert ours == kernel == ("ok", None)
            ours, kernel = pair.lookup(key)
            assert ours == kernel == ("ok", value)
            mine, theirs = pair.key_sets()
            assert len(mine) <= 8 and len(theirs) <= 8
        ours, kernel = pair.update(U32[0], bytes(8), 8)
        assert ours == kernel
    finally:
        pair.close()


# -- LPM ------------------------------------------------------------------------------------------


def lpm_key(prefixlen: int, *octets: int) -> bytes:
    return prefixlen.to_bytes(4, "little") + bytes(octets)


def test_lpm_longest_prefix_wins() -> None:
    space = AddressSpace()
    trie = make(MapDef(BpfMapType.LPM_TRIE, 8, 4, 8, map_flags=BpfMapFlag.NO_PREALLOC), space)
    assert isinstance(trie, LpmTrieMap)
    trie.update_raw(lpm_key(8, 10, 0, 0, 0), b"/8\0\0")
    trie.update_raw(lpm_key(24, 10, 1, 2, 0), b"/24\0")
    trie.update_raw(lpm_key(0, 0, 0, 0, 0), b"/0\0\0")
    assert trie.lookup_raw(lpm_key(32, 10, 1, 2, 3)) == b"/24\0"
    assert trie.lookup_raw(lpm_key(32, 10, 9, 9, 9)) == b"/8\0\0"
    assert trie.lookup_raw(lpm_key(32, 11, 0, 0, 0)) == b"/0\0\0"
    assert trie.lookup_raw(lpm_key(16, 10, 1, 2, 3)) == b"/8\0\0"  # the key's own length caps the match
    address = trie.lookup_address(lpm_key(32, 10, 1, 2, 200))
    assert space.read_bytes(address, 4) == b"/24\0"
    # Postorder: more specific prefixes first.
    assert list(trie.raw_keys()) == [lpm_key(24, 10, 1, 2, 0), lpm_key(8, 10, 0, 0, 0), lpm_key(0, 0, 0, 0, 0)]
    trie.delete_raw(lpm_key(8, 10, 0, 0, 0))
    assert trie.lookup_raw(lpm_key(32, 10, 9, 9, 9)) == b"/0\0\0"
    with pytest.raises(MapInvalidArgumentError):
        trie.update_raw(lpm_key(33, 1, 2, 3, 4), bytes(4))
