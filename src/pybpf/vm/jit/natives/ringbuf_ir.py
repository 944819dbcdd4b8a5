"""bpf_ringbuf_reserve/submit/discard/output in native code, with the Python ring's protocol.

The protocol is :mod:`pybpf.runtime.maps.ringbuf`'s (and the kernel's ``kernel/bpf/ringbuf.c``),
on the ring's :class:`~pybpf.vm.native_ringbuf.NativeRing` descriptor:

* reserve: take the producers' spin word (compare-and-swap 0 -> 1, acquire; Python producers take
  it too), read the producer position and (acquire) the consumer position; refuse (NULL) when the
  record would bring the producer ``size`` bytes or more ahead of the consumer; write the header
  (length with BUSY, then pg_off, one aligned word store each), publish the new producer position
  with a release store (so a consumer that sees it sees the header), free the spin word (release).
  Flags, a size above RINGBUF_MAX_RECORD_SZ or a record larger than the ring: NULL at once.
* submit/discard: one release store of the length word clears BUSY (and sets DISCARD), after the
  program's writes to the record; then the wake-up rule: BPF_RB_FORCE_WAKEUP, or the consumer
  has caught up with this record and BPF_RB_NO_WAKEUP is not given. A wake-up is an atomic add to
  the descriptor's count (consumers poll: nothing needs Python after the run).
* output: -EINVAL for flags other than the two wake-up bits, the source checked like a program
  read, reserve (-EAGAIN when refused), copy, submit with the flags.

Which ring: the run's ring table (``Slot.RING_TABLE``: map pointer, descriptor address) names the
rings of the program's map pointers that the runtime lets native code produce into; reserve and
output look ``r1`` up there, submit and discard find the ring whose records hold the sample. A
pointer or sample not found there, or a sample whose header is not BUSY (the Python helper then
raises its error), goes through the trampoline, as does every call when the ``Slot.NATIVE`` bit
is clear (a helper that is not the runtime's own).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pybpf.vm.jit.state import Slot
from pybpf.vm.native_ringbuf import CONSUMER_POS_OFFSET, PRODUCER_POS_OFFSET, RingField

if TYPE_CHECKING:
    from pybpf.vm.jit.codegen import _FunctionEmitter

U64 = (1 << 64) - 1
EINVAL = -22 & U64
EAGAIN = -11 & U64
BPF_RINGBUF_BUSY_BIT = 1 << 31
BPF_RINGBUF_DISCARD_BIT = 1 << 30
BPF_RINGBUF_HDR_SZ = 8
RINGBUF_MAX_RECORD_SZ = 0xFFFFFFFF // 4
BPF_RB_NO_WAKEUP = 1
BPF_RB_FORCE_WAKEUP = 2
PAGE_SHIFT = 12
RING_TABLE_FIELDS = 2
"""Slots per ring-table entry: the map pointer, the descriptor's address."""
RESERVE_NAME = "pybpf_ringbuf_reserve"
COMMIT_NAME = "pybpf_ringbuf_commit"
BY_MAP_NAME = "pybpf_ringbuf_by_map"
BY_SAMPLE_NAME = "pybpf_ringbuf_by_sample"


class _Functions:
    """Builds (once per module) the internal functions the call sites use."""

    def __init__(self, fb: _FunctionEmitter) -> None:
        parent = fb.parent
        self.parent = parent
        self.module: Any = parent.module
        self.ir: Any = parent.ir
        self.i64: Any = parent.i64
        self.state_type: Any = parent.state_type

    def const(self, value: int, bits: int = 64) -> Any:
        return self.ir.Constant(self.ir.IntType(bits), value)

    def _existing(self, name: str) -> Any:
        try:
            return self.module.get_global(name)
        except KeyError:
            return None

    def field(self, builder: Any, descriptor: Any, field: RingField) -> Any:
        pointer = builder.inttoptr(builder.add(descriptor, self.const(field * 8)), self.i64.as_pointer())
        return pointer

    def word(self, builder: Any, address: Any, bits: int) -> Any:
        return builder.inttoptr(address, self.ir.IntType(bits).as_pointer())

    # -- finding the ring ---------------------------------------------------------------------------

    def lookup(self, by_sample: bool) -> Any:
        """``i64 (i64* state, i64 key)``: the descriptor of the ring table entry ``key`` names, or 0.

        By map pointer (reserve, output) or by a sample's address (submit, discard): the entry
        whose records start at most ``size`` bytes before the sample's header, 8-byte aligned.
        """
        name = BY_SAMPLE_NAME if by_sample else BY_MAP_NAME
        found = self._existing(name)
        if found is not None:
            return found
        ir, i64 = self.ir, self.i64
        function = ir.Function(self.module, ir.FunctionType(i64, [self.state_type, i64]), name=name)
        function.linkage = "internal"
        state, key = function.args
        entry, loop, body, hit, miss = (
            function.append_basic_block(what) for what in ("entry", "loop", "body", "hit", "miss")
        )
        builder = ir.IRBuilder(entry)
        count = self.parent.tag(builder.load(builder.gep(state, [self.const(Slot.RING_COUNT)])), "state")
        table_address = self.parent.tag(builder.load(builder.gep(state, [self.const(Slot.RING_TABLE)])), "state")
        table = builder.inttoptr(table_address, self.state_type)
        builder.branch(loop)
        builder.position_at_end(loop)
        index = builder.phi(i64)
        index.add_incoming(self.const(0), entry)
        builder.cbranch(builder.icmp_unsigned("<", index, count), body, miss)
        builder.position_at_end(body)
        base = builder.mul(index, self.const(RING_TABLE_FIELDS))
        pointer = self.parent.tag(builder.load(builder.gep(table, [base])), "tables")
        descriptor = self.parent.tag(builder.load(builder.gep(table, [builder.add(base, self.const(1))])), "tables")
        if by_sample:
            data = builder.load(self.field(builder, descriptor, RingField.DATA))
            mask = builder.load(self.field(builder, descriptor, RingField.MASK))
            offset = builder.sub(builder.sub(key, self.const(BPF_RINGBUF_HDR_SZ)), data)
            aligned = builder.icmp_unsigned("==", builder.and_(offset, self.const(7)), self.const(0))
            matches = builder.and_(builder.icmp_unsigned("<=", offset, mask), aligned)
        else:
            matches = builder.icmp_unsigned("==", pointer, key)
        following = builder.add(index, self.const(1))
        index.add_incoming(following, body)
        builder.cbranch(matches, hit, loop)
        builder.position_at_end(hit)
        builder.ret(descriptor)
        builder.position_at_end(miss)
        builder.ret(self.const(0))
        return function

    # -- reserve and commit -------------------------------------------------------------------------

    def reserve(self) -> Any:
        """``i64 (i64 descriptor, i64 size)``: the record's data address, or 0 (no room, too big)."""
        found = self._existing(RESERVE_NAME)
        if found is not None:
            return found
        ir, i64 = self.ir, self.i64
        function = ir.Function(self.module, ir.FunctionType(i64, [i64, i64]), name=RESERVE_NAME)
        function.linkage = "internal"
        descriptor, size = function.args
        entry, spin, locked, room, refuse, fail = (
            function.append_basic_block(what) for what in ("entry", "spin", "locked", "room", "refuse", "fail")
        )
        builder = ir.IRBuilder(entry)
        const = self.const
        length = builder.and_(builder.add(size, const(BPF_RINGBUF_HDR_SZ + 7)), const(~7 & U64))
        mask = builder.load(self.field(builder, descriptor, RingField.MASK))
        too_big = builder.or_(
            builder.icmp_unsigned(">", size, const(RINGBUF_MAX_RECORD_SZ)),
            builder.icmp_unsigned(">", length, builder.add(mask, const(1))),
        )
        builder.cbranch(too_big, fail, spin)
        builder.position_at_end(spin)
        lock = self.field(builder, descriptor, RingField.LOCK)
        pair = builder.cmpxchg(lock, const(0), const(1), "acquire", "monotonic")
        builder.cbranch(builder.extract_value(pair, 1), locked, spin)
        builder.position_at_end(locked)
        positions = builder.load(self.field(builder, descriptor, RingField.POSITIONS))
        data = builder.load(self.field(builder, descriptor, RingField.DATA))
        producer_word = self.word(builder, builder.add(positions, const(PRODUCER_POS_OFFSET)), 64)
        consumer_word = self.word(builder, builder.add(positions, const(CONSUMER_POS_OFFSET)), 64)
        producer = builder.load_atomic(producer_word, "monotonic", 8)
        consumer = builder.load_atomic(consumer_word, "acquire", 8)
        new_producer = builder.add(producer, length)
        full = builder.icmp_unsigned(">", builder.sub(new_producer, consumer), mask)
        builder.cbranch(full, refuse, room)
        builder.position_at_end(room)
        offset = builder.and_(producer, mask)
        header = builder.add(data, offset)
        i32 = ir.IntType(32)
        busy = builder.trunc(builder.or_(size, const(BPF_RINGBUF_BUSY_BIT)), i32)
        builder.store_atomic(busy, self.word(builder, header, 32), "monotonic", 4)
        page = builder.trunc(builder.lshr(offset, const(PAGE_SHIFT)), i32)
        builder.store_atomic(page, self.word(builder, builder.add(header, const(4)), 32), "monotonic", 4)
        builder.store_atomic(new_producer, producer_word, "release", 8)  # after the header: it exposes it
        builder.store_atomic(const(0), lock, "release", 8)
        builder.ret(builder.add(header, const(BPF_RINGBUF_HDR_SZ)))
        builder.position_at_end(refuse)
        builder.store_atomic(const(0), lock, "release", 8)
        builder.branch(fail)
        builder.position_at_end(fail)
        builder.ret(const(0))
        return function

    def commit(self) -> Any:
        """``i64 (i64 descriptor, i64 sample, i64 flags, i64 discard_bit)``: 0, or 1 when the record is not reserved."""
        found = self._existing(COMMIT_NAME)
        if found is not None:
            return found
        ir, i64 = self.ir, self.i64
        function = ir.Function(self.module, ir.FunctionType(i64, [i64, i64, i64, i64]), name=COMMIT_NAME)
        function.linkage = "internal"
        descriptor, sample, flags, discard_bit = function.args
        entry, busy, wake, done, not_reserved = (
            function.append_basic_block(what) for what in ("entry", "busy", "wake", "done", "not_reserved")
        )
        builder = ir.IRBuilder(entry)
        const = self.const
        i32 = ir.IntType(32)
        header = builder.sub(sample, const(BPF_RINGBUF_HDR_SZ))
        length_word = self.word(builder, header, 32)
        length = builder.load_atomic(length_word, "monotonic", 4)
        reserved = builder.icmp_unsigned("!=", builder.and_(length, const(BPF_RINGBUF_BUSY_BIT, 32)), const(0, 32))
        builder.cbranch(reserved, busy, not_reserved)
        builder.position_at_end(busy)
        kept = builder.and_(length, const(~BPF_RINGBUF_BUSY_BIT & 0xFFFF_FFFF, 32))
        cleared = builder.or_(kept, builder.trunc(discard_bit, i32))
        builder.store_atomic(cleared, length_word, "release", 4)  # after the program's writes to the record
        positions = builder.load(self.field(builder, descriptor, RingField.POSITIONS))
        data = builder.load(self.field(builder, descriptor, RingField.DATA))
        mask = builder.load(self.field(builder, descriptor, RingField.MASK))
        consumer_word = self.word(builder, builder.add(positions, const(CONSUMER_POS_OFFSET)), 64)
        consumer = builder.load_atomic(consumer_word, "acquire", 8)
        caught_up = builder.icmp_unsigned("==", builder.and_(consumer, mask), builder.sub(header, data))
        quiet = builder.icmp_unsigned("!=", builder.and_(flags, const(BPF_RB_NO_WAKEUP)), const(0))
        forced = builder.icmp_unsigned("!=", builder.and_(flags, const(BPF_RB_FORCE_WAKEUP)), const(0))
        builder.cbranch(builder.or_(forced, builder.and_(caught_up, builder.not_(quiet))), wake, done)
        builder.position_at_end(wake)
        builder.atomic_rmw("add", self.field(builder, descriptor, RingField.WAKEUPS), const(1), "monotonic")
        builder.branch(done)
        builder.position_at_end(done)
        builder.ret(const(0))
        builder.position_at_end(not_reserved)
        builder.ret(const(1))
        return function


# -- call sites -------------------------------------------------------------------------------------


def emit_ringbuf_reserve(fb: _FunctionEmitter, native: Any, slow: Any, done: Any) -> None:
    """r0 = reserve(ring of r1, r2) or NULL for any flag (r3); the trampoline for an unknown ring."""
    functions = _Functions(fb)
    builder = fb.builder
    descriptor = builder.call(functions.lookup(by_sample=False), [fb.state, fb._get(1)])
    found, unflagged = fb._new_block(f"{native.name}_found"), fb._new_block(f"{native.name}_unflagged")
    builder.cbranch(builder.icmp_unsigned("!=", descriptor, fb._const(0)), found, slow)
    builder.position_at_end(found)
    fb._set(0, fb._const(0))  # any flag makes the reservation fail, before the ring is touched
    builder.cbranch(builder.icmp_unsigned("!=", fb._get(3), fb._const(0)), done, unflagged)
    builder.position_at_end(unflagged)
    fb._set(0, builder.call(functions.reserve(), [descriptor, fb._get(2)]))
    builder.branch(done)


def emit_ringbuf_commit(fb: _FunctionEmitter, native: Any, slow: Any, done: Any, *, discard: bool) -> None:
    """submit/discard(r1 = sample, r2 = flags): 0; the trampoline for a sample native code cannot place."""
    functions = _Functions(fb)
    builder = fb.builder
    sample = fb._get(1)
    descriptor = builder.call(functions.lookup(by_sample=True), [fb.state, sample])
    found = fb._new_block(f"{native.name}_found")
    builder.cbranch(builder.icmp_unsigned("!=", descriptor, fb._const(0)), found, slow)
    builder.position_at_end(found)
    discard_bit = fb._const(BPF_RINGBUF_DISCARD_BIT if discard else 0)
    outcome = builder.call(functions.commit(), [descriptor, sample, fb._get(2), discard_bit])
    committed = fb._new_block(f"{native.name}_committed")
    builder.cbranch(builder.icmp_unsigned("==", outcome, fb._const(0)), committed, slow)
    builder.position_at_end(committed)
    fb._set(0, fb._const(0))
    builder.branch(done)


def emit_ringbuf_output(fb: _FunctionEmitter, pc: int, native: Any, slow: Any, done: Any) -> None:
    """output(r1 = ring, r2 = data, r3 = size, r4 = flags): 0, -EINVAL, -EAGAIN; unknown ring: trampoline."""
    from pybpf.vm.jit.native_packet import _Emit  # native_packet imports the emitters of this package

    functions = _Functions(fb)
    ir, builder = fb.ir, fb.builder
    descriptor = builder.call(functions.lookup(by_sample=False), [fb.state, fb._get(1)])
    found, valid, room = (fb._new_block(f"{native.name}_{what}") for what in ("found", "valid", "room"))
    builder.cbranch(builder.icmp_unsigned("!=", descriptor, fb._const(0)), found, slow)
    builder.position_at_end(found)
    flags = fb._get(4)
    fb._set(0, fb._const(EINVAL))
    known = BPF_RB_NO_WAKEUP | BPF_RB_FORCE_WAKEUP
    bad_flags = builder.icmp_unsigned("!=", builder.and_(flags, fb._const(~known & U64)), fb._const(0))
    builder.cbranch(bad_flags, done, valid)
    builder.position_at_end(valid)
    source, size = fb._get(2), fb._get(3)
    _Emit(fb, pc).check_range(source, size, False)  # read before reserving, as the Python helper does
    record = builder.call(functions.reserve(), [descriptor, size])
    fb._set(0, fb._const(EAGAIN))
    builder.cbranch(builder.icmp_unsigned("!=", record, fb._const(0)), room, done)
    builder.position_at_end(room)
    i8p = ir.IntType(8).as_pointer()
    memcpy = fb.parent.module.declare_intrinsic("llvm.memcpy", [i8p, i8p, fb.i64])
    no_volatile = ir.Constant(ir.IntType(1), 0)
    builder.call(memcpy, [builder.inttoptr(record, i8p), builder.inttoptr(source, i8p), size, no_volatile])
    builder.call(functions.commit(), [descriptor, record, flags, fb._const(0)])
    fb._set(0, fb._const(0))
    builder.branch(done)
