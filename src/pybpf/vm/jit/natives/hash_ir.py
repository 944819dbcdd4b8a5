"""Index probing in IR: :func:`native_hash`'s steps, key comparison, the linear probe.

Each is an internal function of the module, made once (on first use) and called from the map
helpers' code: ``bpf_native_hash(key, whole, tail_mask, seed)`` hashes ``whole`` bytes at
``key`` plus, when ``tail_mask`` is not 0, the next byte with only those bits;
``bpf_native_key_equal`` compares the same bytes; ``bpf_native_probe(table, hash, key, whole,
tail_mask, tag)`` returns the value address of the entry that matches, 0 when there is none, or
:data:`SLOW` when the probe walked the whole table (never, while Python keeps its load limit).
"""

from __future__ import annotations

from typing import Any

from pybpf.vm.jit.alu_ir import constant
from pybpf.vm.native_maps.hashing import (
    FINAL_C1,
    FINAL_C2,
    FINAL_SHIFTS,
    SEED_MULTIPLIER,
    WORD_BYTES,
    WORD_MULTIPLIER,
    WORD_MULTIPLIER_2,
    WORD_ROTATE,
)
from pybpf.vm.native_maps.index import EMPTY, HEADER_FIELDS, TOMBSTONE, EntryField, IndexHeader

SLOW = (1 << 64) - 1
"""What the native map functions return when Python must do the operation (no address is 2**64 - 1)."""
HASH_NAME = "bpf_native_hash"
KEY_EQUAL_NAME = "bpf_native_key_equal"
PROBE_NAME = "bpf_native_probe"


class Emitter:
    """A builder inside one internal function, with the small arithmetic pieces."""

    def __init__(self, module_builder: Any, name: str, result: Any, arguments: list[Any]) -> None:
        ir = module_builder.ir
        self.ir: Any = ir
        self.parent = module_builder
        self.i64: Any = module_builder.i64
        self.function: Any = ir.Function(module_builder.module, ir.FunctionType(result, arguments), name=name)
        self.function.linkage = "internal"
        self.builder: Any = ir.IRBuilder(self.function.append_basic_block("entry"))

    def const(self, value: int) -> Any:
        return constant(self.ir, 64, value)

    def block(self, name: str) -> Any:
        return self.function.append_basic_block(name)

    def rotl(self, value: Any, shift: int) -> Any:
        builder = self.builder
        return builder.or_(builder.shl(value, self.const(shift)), builder.lshr(value, self.const(64 - shift)))

    def load(self, address: Any, width: int, kind: str) -> Any:
        """A ``width``-bit load at the integer ``address``, zero-extended to 64 bits."""
        builder = self.builder
        pointer = builder.inttoptr(address, self.ir.IntType(width).as_pointer())
        value = self.parent.tag(builder.load(pointer, align=1), kind)
        return value if width == 64 else builder.zext(value, self.i64)

    def word(self, table: Any, index: Any) -> Any:
        """``table[index]`` of a u64 table at an integer address (index tables, descriptors)."""
        builder = self.builder
        pointer = builder.inttoptr(table, self.i64.as_pointer())
        return self.parent.tag(builder.load(builder.gep(pointer, [index])), "tables")


def existing(module_builder: Any, name: str) -> Any:
    return module_builder.module.globals.get(name)


def hash_function(module_builder: Any) -> Any:
    """``i64 bpf_native_hash(i64 key, i64 whole, i64 tail_mask, i64 seed)``."""
    found = existing(module_builder, HASH_NAME)
    if found is not None:
        return found
    e = Emitter(module_builder, HASH_NAME, module_builder.i64, [module_builder.i64] * 4)
    builder, i64 = e.builder, e.i64
    key, whole, mask, seed = e.function.args
    entry = builder.block
    has_tail = builder.icmp_unsigned("!=", mask, e.const(0))
    length = builder.add(whole, builder.zext(has_tail, i64))
    start = builder.xor(builder.mul(seed, e.const(SEED_MULTIPLIER)), length)

    def mix(state: Any, word: Any) -> Any:
        mixed = e.rotl(builder.mul(builder.xor(state, word), e.const(WORD_MULTIPLIER)), WORD_ROTATE)
        return builder.mul(mixed, e.const(WORD_MULTIPLIER_2))

    words_head, words_body, tail_start, tail_four, tail_head, tail_body, tail_end, add_tail, finish = (
        e.block(name)
        for name in ("words", "word", "tail_start", "tail_4", "tail", "tail_byte", "tail_end", "masked", "finish")
    )
    builder.branch(words_head)
    builder.position_at_end(words_head)
    offset = builder.phi(i64)
    state = builder.phi(i64)
    offset.add_incoming(e.const(0), entry)
    state.add_incoming(start, entry)
    fits = builder.icmp_unsigned("<=", builder.add(offset, e.const(WORD_BYTES)), whole)
    builder.cbranch(fits, words_body, tail_start)
    builder.position_at_end(words_body)
    mixed = mix(state, e.load(builder.add(key, offset), 64, "memory"))
    offset.add_incoming(builder.add(offset, e.const(WORD_BYTES)), words_body)
    state.add_incoming(mixed, words_body)
    builder.branch(words_head)

    # The last word: 4 bytes at once when there are as many (an IPv4 address), then byte by byte.
    builder.position_at_end(tail_start)
    four = builder.icmp_unsigned("<=", builder.add(offset, e.const(4)), whole)
    builder.cbranch(four, tail_four, tail_head)
    builder.position_at_end(tail_four)
    low_half = e.load(builder.add(key, offset), 32, "memory")
    builder.branch(tail_head)

    builder.position_at_end(tail_head)
    count = builder.phi(i64)
    word = builder.phi(i64)
    count.add_incoming(e.const(0), tail_start)
    word.add_incoming(e.const(0), tail_start)
    count.add_incoming(e.const(4), tail_four)
    word.add_incoming(low_half, tail_four)
    position = builder.add(offset, count)
    builder.cbranch(builder.icmp_unsigned("<", position, whole), tail_body, tail_end)
    builder.position_at_end(tail_body)
    byte = e.load(builder.add(key, position), 8, "memory")
    count.add_incoming(builder.add(count, e.const(1)), tail_body)
    word.add_incoming(builder.or_(word, builder.shl(byte, builder.mul(count, e.const(8)))), tail_body)
    builder.branch(tail_head)

    builder.position_at_end(tail_end)
    builder.cbranch(has_tail, add_tail, finish)
    builder.position_at_end(add_tail)
    masked = builder.and_(e.load(builder.add(key, whole), 8, "memory"), mask)
    with_byte = builder.or_(word, builder.shl(masked, builder.mul(count, e.const(8))))
    one_more = builder.add(count, e.const(1))
    builder.branch(finish)

    builder.position_at_end(finish)
    last = builder.phi(i64)
    last.add_incoming(word, tail_end)
    last.add_incoming(with_byte, add_tail)
    bytes_left = builder.phi(i64)
    bytes_left.add_incoming(count, tail_end)
    bytes_left.add_incoming(one_more, add_tail)
    result = builder.select(builder.icmp_unsigned("!=", bytes_left, e.const(0)), mix(state, last), state)
    result = builder.xor(result, length)
    first, second, third = FINAL_SHIFTS
    for shift, multiplier in ((first, FINAL_C1), (second, FINAL_C2)):
        result = builder.mul(builder.xor(result, builder.lshr(result, e.const(shift))), e.const(multiplier))
    builder.ret(builder.xor(result, builder.lshr(result, e.const(third))))
    return e.function


def key_equal_function(module_builder: Any) -> Any:
    """``i1 bpf_native_key_equal(i64 a, i64 b, i64 whole, i64 tail_mask)``: the bytes a hash covers agree."""
    found = existing(module_builder, KEY_EQUAL_NAME)
    if found is not None:
        return found
    ir = module_builder.ir
    e = Emitter(module_builder, KEY_EQUAL_NAME, ir.IntType(1), [module_builder.i64] * 4)
    builder, i64 = e.builder, e.i64
    first, second, whole, mask = e.function.args
    entry = builder.block
    words_head, words_body, four_check, four, bytes_head, bytes_body, tail, differ, same = (
        e.block(name) for name in ("words", "word", "four_check", "four", "bytes", "byte", "tail", "differ", "same")
    )
    builder.branch(words_head)
    builder.position_at_end(words_head)
    offset = builder.phi(i64)
    offset.add_incoming(e.const(0), entry)
    fits = builder.icmp_unsigned("<=", builder.add(offset, e.const(WORD_BYTES)), whole)
    builder.cbranch(fits, words_body, four_check)
    builder.position_at_end(words_body)
    equal = builder.icmp_unsigned(
        "==", e.load(builder.add(first, offset), 64, "memory"), e.load(builder.add(second, offset), 64, "memory")
    )
    offset.add_incoming(builder.add(offset, e.const(WORD_BYTES)), words_body)
    builder.cbranch(equal, words_head, differ)

    builder.position_at_end(four_check)
    after_four = builder.add(offset, e.const(4))
    builder.cbranch(builder.icmp_unsigned("<=", after_four, whole), four, bytes_head)
    builder.position_at_end(four)
    equal = builder.icmp_unsigned(
        "==", e.load(builder.add(first, offset), 32, "memory"), e.load(builder.add(second, offset), 32, "memory")
    )
    builder.cbranch(equal, bytes_head, differ)

    builder.position_at_end(bytes_head)
    at = builder.phi(i64)
    at.add_incoming(offset, four_check)
    at.add_incoming(after_four, four)
    builder.cbranch(builder.icmp_unsigned("<", at, whole), bytes_body, tail)
    builder.position_at_end(bytes_body)
    equal = builder.icmp_unsigned(
        "==", e.load(builder.add(first, at), 8, "memory"), e.load(builder.add(second, at), 8, "memory")
    )
    at.add_incoming(builder.add(at, e.const(1)), bytes_body)
    builder.cbranch(equal, bytes_head, differ)

    builder.position_at_end(tail)
    masked = e.block("masked")
    builder.cbranch(builder.icmp_unsigned("==", mask, e.const(0)), same, masked)
    builder.position_at_end(masked)
    left = builder.and_(e.load(builder.add(first, whole), 8, "memory"), mask)
    right = builder.and_(e.load(builder.add(second, whole), 8, "memory"), mask)
    builder.ret(builder.icmp_unsigned("==", left, right))
    builder.position_at_end(differ)
    builder.ret(ir.Constant(ir.IntType(1), 0))
    builder.position_at_end(same)
    builder.ret(ir.Constant(ir.IntType(1), 1))
    return e.function


def probe_function(module_builder: Any) -> Any:
    """``i64 bpf_native_probe(i64 table, i64 hash, i64 key, i64 whole, i64 tail_mask, i64 tag)``."""
    found = existing(module_builder, PROBE_NAME)
    if found is not None:
        return found
    key_equal = key_equal_function(module_builder)
    e = Emitter(module_builder, PROBE_NAME, module_builder.i64, [module_builder.i64] * 6)
    builder, i64 = e.builder, e.i64
    table, hashed, key, whole, mask, tag = e.function.args
    entry = builder.block
    capacity_mask = e.word(table, e.const(IndexHeader.MASK))
    first = builder.and_(hashed, capacity_mask)
    loop, check, compare, hit, step, missing, exhausted = (
        e.block(name) for name in ("loop", "check", "compare", "hit", "step", "missing", "exhausted")
    )
    builder.branch(loop)
    builder.position_at_end(loop)
    position = builder.phi(i64)
    steps = builder.phi(i64)
    position.add_incoming(first, entry)
    steps.add_incoming(e.const(0), entry)
    base = builder.add(builder.mul(position, e.const(len(EntryField))), e.const(HEADER_FIELDS))

    def field(which: EntryField) -> Any:
        return e.word(table, builder.add(base, e.const(which)))

    value = field(EntryField.VALUE)
    builder.cbranch(builder.icmp_unsigned("==", value, e.const(EMPTY)), missing, check)
    builder.position_at_end(check)
    candidate = builder.and_(
        builder.and_(
            builder.icmp_unsigned("!=", value, e.const(TOMBSTONE)),
            builder.icmp_unsigned("==", field(EntryField.HASH), hashed),
        ),
        builder.icmp_unsigned("==", field(EntryField.TAG), tag),
    )
    builder.cbranch(candidate, compare, step)
    builder.position_at_end(compare)
    same = builder.call(key_equal, [field(EntryField.KEY), key, whole, mask])
    builder.cbranch(same, hit, step)
    builder.position_at_end(hit)
    builder.ret(value)
    builder.position_at_end(step)
    position.add_incoming(builder.and_(builder.add(position, e.const(1)), capacity_mask), step)
    next_steps = builder.add(steps, e.const(1))
    steps.add_incoming(next_steps, step)
    builder.cbranch(builder.icmp_unsigned(">", next_steps, capacity_mask), exhausted, loop)
    builder.position_at_end(missing)
    builder.ret(e.const(0))
    builder.position_at_end(exhausted)
    builder.ret(e.const(SLOW))
    return e.function
