"""``bpf_map_lookup_elem`` and ``bpf_map_update_elem`` through native map descriptors.

Before a run Python writes the run's map table (``Slot.MAP_TABLE``, :data:`MAP_FIELDS` words per
map): for every map pointer of the program whose map has a native descriptor, the pointer, the
descriptor's address and this run's CPU offset (see :mod:`pybpf.vm.native_maps`). A call site
finds r1 in that table (``bpf_native_find``); a map not there, a helper native code may not
stand in for this run (``Slot.NATIVE``), or a function answering :data:`SLOW` takes the
trampoline, which does exactly what the interpreter does.

* Lookups: an ARRAY value is computed inline at the call site (an index check and a multiply);
  HASH and LPM_TRIE go through ``bpf_native_value``, which probes the map's index table.
* Updates (``bpf_native_update``): only of an element that exists, with flags BPF_ANY or
  BPF_EXIST, in a map whose descriptor says UPDATABLE: the value is copied in place (memmove),
  as the Python map does; a new key, an index past the array, other flags, BPF_F_LOCK, read-only
  maps all take the trampoline and its errno.

Keys and values are read only after the range check the program's accesses use (unless the
program was compiled without bounds checks): an address the table does not cover is left to
the trampoline, whose read raises the interpreter's MemoryAccessError.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pybpf.platform.uapi_generated import BpfUpdateFlag, HelperId
from pybpf.vm.jit.natives.hash_ir import SLOW, Emitter, existing, hash_function, probe_function
from pybpf.vm.jit.state import MAP_FIELDS, NativeHelper, Slot
from pybpf.vm.native_maps import DescriptorField, NativeMapFlag, NativeMapKind
from pybpf.vm.native_maps.index import IndexHeader

if TYPE_CHECKING:
    from pybpf.vm.jit.codegen import _FunctionEmitter

FIND_NAME = "bpf_native_find"
VALUE_NAME = "bpf_native_value"
UPDATE_NAME = "bpf_native_update"
PREFIXLEN_BYTES = 4
"""struct bpf_lpm_trie_key's u32 prefixlen, before the data."""
ARRAY_KEY_BYTES = 4
_NATIVE_FLAGS = (int(BpfUpdateFlag.ANY), int(BpfUpdateFlag.EXIST))


def _readable(e: Emitter, state: Any, address: Any, size: Any, slow: Any) -> None:
    """Go on when ``size`` bytes at ``address`` lie in the run's hot range or range table, else to ``slow``."""
    parent, builder = e.parent, e.builder
    if not parent.bounds_checks:
        return

    def slot(which: Slot) -> Any:
        return parent.tag(builder.load(builder.gep(state, [e.const(which)])), "state")

    hot = builder.and_(
        builder.icmp_unsigned(">=", address, slot(Slot.HOT_START)),
        builder.icmp_unsigned("<=", address, builder.sub(slot(Slot.HOT_END), size)),
    )
    scan, fine = e.block("scan"), e.block("readable")
    builder.cbranch(hot, fine, scan)
    builder.position_at_end(scan)
    allowed = builder.call(parent.in_ranges, [state, address, size, e.const(0)])
    builder.cbranch(allowed, fine, slow)
    builder.position_at_end(fine)


def find_function(module_builder: Any) -> Any:
    """``i64 bpf_native_find(i64* state, i64 pointer)``: the address of r1's run-table entry, or 0."""
    found = existing(module_builder, FIND_NAME)
    if found is not None:
        return found
    i64 = module_builder.i64
    e = Emitter(module_builder, FIND_NAME, i64, [module_builder.state_type, i64])
    builder = e.builder
    state, pointer = e.function.args
    entry = builder.block
    count = module_builder.tag(builder.load(builder.gep(state, [e.const(Slot.MAP_COUNT)])), "state")
    table = module_builder.tag(builder.load(builder.gep(state, [e.const(Slot.MAP_TABLE)])), "state")
    head, check, step, hit, missing = (e.block(name) for name in ("head", "check", "step", "hit", "missing"))
    builder.branch(head)
    builder.position_at_end(head)
    index = builder.phi(i64)
    index.add_incoming(e.const(0), entry)
    builder.cbranch(builder.icmp_unsigned("<", index, count), check, missing)
    builder.position_at_end(check)
    first = builder.mul(index, e.const(MAP_FIELDS))
    builder.cbranch(builder.icmp_unsigned("==", e.word(table, first), pointer), hit, step)
    builder.position_at_end(step)
    index.add_incoming(builder.add(index, e.const(1)), step)
    builder.branch(head)
    builder.position_at_end(hit)
    builder.ret(builder.add(table, builder.mul(first, e.const(8))))
    builder.position_at_end(missing)
    builder.ret(e.const(0))
    return e.function


def value_function(module_builder: Any) -> Any:
    """``i64 bpf_native_value(i64* state, i64 descriptor, i64 cpu_offset, i64 key)``.

    The value's address, 0 when the map has no element for the key, :data:`SLOW` when Python
    must answer (no index now, a key outside the range table, a kind it does not know).
    """
    found = existing(module_builder, VALUE_NAME)
    if found is not None:
        return found
    hashing, probe = hash_function(module_builder), probe_function(module_builder)
    i64 = module_builder.i64
    e = Emitter(module_builder, VALUE_NAME, i64, [module_builder.state_type, i64, i64, i64])
    builder = e.builder
    state, descriptor, cpu_offset, key = e.function.args

    def field(which: DescriptorField) -> Any:
        return e.word(descriptor, e.const(which))

    slow = e.block("slow")
    array, hashed, lpm = e.block("array"), e.block("hash"), e.block("lpm")
    switch = builder.switch(field(DescriptorField.KIND), slow)
    switch.add_case(e.const(NativeMapKind.ARRAY), array)
    switch.add_case(e.const(NativeMapKind.HASH), hashed)
    switch.add_case(e.const(NativeMapKind.LPM_TRIE), lpm)

    builder.position_at_end(array)
    _readable(e, state, key, e.const(ARRAY_KEY_BYTES), slow)
    index = e.load(key, 32, "memory")
    address = builder.add(
        builder.add(field(DescriptorField.BASE), builder.mul(index, field(DescriptorField.SLOT_SIZE))), cpu_offset
    )
    inside = builder.icmp_unsigned("<", index, field(DescriptorField.MAX_ENTRIES))
    builder.ret(builder.select(inside, address, e.const(0)))

    builder.position_at_end(hashed)
    size = field(DescriptorField.KEY_SIZE)
    _readable(e, state, key, size, slow)
    table = field(DescriptorField.BASE)
    ready = e.block("hash_ready")
    builder.cbranch(builder.icmp_unsigned("==", table, e.const(0)), slow, ready)
    builder.position_at_end(ready)
    digest = builder.call(hashing, [key, size, e.const(0), e.const(0)])
    value = builder.call(probe, [table, digest, key, size, e.const(0), e.const(0)])
    found_block, missing = e.block("hash_found"), e.block("hash_missing")
    switch = builder.switch(value, found_block)
    switch.add_case(e.const(SLOW), slow)
    switch.add_case(e.const(0), missing)
    builder.position_at_end(found_block)
    builder.ret(builder.add(value, cpu_offset))
    builder.position_at_end(missing)
    builder.ret(e.const(0))

    builder.position_at_end(lpm)
    _emit_lpm(e, state, key, field, slow=slow, functions=(hashing, probe))

    builder.position_at_end(slow)
    builder.ret(e.const(SLOW))
    return e.function


def _emit_lpm(e: Emitter, state: Any, key: Any, field: Any, *, slow: Any, functions: tuple[Any, Any]) -> None:
    """Longest prefix first: for each prefix length present, no longer than the key's, probe its masked prefix."""
    builder, i64 = e.builder, e.i64
    hashing, probe = functions
    _readable(e, state, key, field(DescriptorField.KEY_SIZE), slow)
    table = field(DescriptorField.BASE)
    ready, missing = e.block("lpm_ready"), e.block("lpm_missing")
    builder.cbranch(builder.icmp_unsigned("==", table, e.const(0)), slow, ready)
    builder.position_at_end(ready)
    prefixlen = e.load(key, 32, "memory")
    start = e.block("lpm_start")
    too_long = builder.icmp_unsigned(">", prefixlen, field(DescriptorField.MAX_PREFIXLEN))
    builder.cbranch(too_long, missing, start)
    builder.position_at_end(start)
    lengths = e.word(table, e.const(IndexHeader.AUX))
    count = e.word(lengths, e.const(0))
    data = builder.add(key, e.const(PREFIXLEN_BYTES))
    head, body, probe_block, step, hit = (e.block(f"lpm_{name}") for name in ("head", "body", "probe", "step", "hit"))
    builder.branch(head)
    builder.position_at_end(head)
    number = builder.phi(i64)
    number.add_incoming(e.const(0), start)
    builder.cbranch(builder.icmp_unsigned("<", number, count), body, missing)
    builder.position_at_end(body)
    length = e.word(lengths, builder.add(number, e.const(1)))
    builder.cbranch(builder.icmp_unsigned(">", length, prefixlen), step, probe_block)
    builder.position_at_end(probe_block)
    whole = builder.lshr(length, e.const(3))
    # The top (length % 8) bits of the next byte; a shift by 8 leaves none, as hashing.tail_mask says.
    tail = builder.and_(
        builder.shl(e.const(0xFF), builder.sub(e.const(8), builder.and_(length, e.const(7)))), e.const(0xFF)
    )
    digest = builder.call(hashing, [data, whole, tail, length])
    value = builder.call(probe, [table, digest, data, whole, tail, length])
    switch = builder.switch(value, hit)
    switch.add_case(e.const(SLOW), slow)
    switch.add_case(e.const(0), step)
    builder.position_at_end(step)
    number.add_incoming(builder.add(number, e.const(1)), step)
    builder.branch(head)
    builder.position_at_end(hit)
    builder.ret(value)
    builder.position_at_end(missing)
    builder.ret(e.const(0))


def update_function(module_builder: Any) -> Any:
    """``i64 bpf_native_update(i64* state, i64 descriptor, i64 cpu_offset, i64 key, i64 value)``: 0 or :data:`SLOW`."""
    found = existing(module_builder, UPDATE_NAME)
    if found is not None:
        return found
    lookup = value_function(module_builder)
    ir, i64 = module_builder.ir, module_builder.i64
    e = Emitter(module_builder, UPDATE_NAME, i64, [module_builder.state_type, i64, i64, i64, i64])
    builder = e.builder
    state, descriptor, cpu_offset, key, value = e.function.args
    slow, allowed, present = e.block("slow"), e.block("allowed"), e.block("present")
    flags = e.word(descriptor, e.const(DescriptorField.FLAGS))
    updatable = builder.and_(flags, e.const(NativeMapFlag.UPDATABLE))
    builder.cbranch(builder.icmp_unsigned("==", updatable, e.const(0)), slow, allowed)
    builder.position_at_end(allowed)
    address = builder.call(lookup, [state, descriptor, cpu_offset, key])
    absent = builder.or_(
        builder.icmp_unsigned("==", address, e.const(0)), builder.icmp_unsigned("==", address, e.const(SLOW))
    )
    builder.cbranch(absent, slow, present)
    builder.position_at_end(present)
    size = e.word(descriptor, e.const(DescriptorField.VALUE_SIZE))
    _readable(e, state, value, size, slow)
    i8_pointer = ir.IntType(8).as_pointer()
    memmove = module_builder.module.declare_intrinsic("llvm.memmove", [i8_pointer, i8_pointer, i64])
    # memmove, not memcpy: the program may pass a pointer into the element itself.
    target, source = builder.inttoptr(address, i8_pointer), builder.inttoptr(value, i8_pointer)
    builder.call(memmove, [target, source, size, ir.Constant(ir.IntType(1), 0)])
    builder.ret(e.const(0))
    builder.position_at_end(slow)
    builder.ret(e.const(SLOW))
    return e.function


def _entry(fb: _FunctionEmitter, bit: NativeHelper, slow: Any) -> tuple[Any, Any]:
    """At a call site: (descriptor, CPU offset) of r1's map, after branching to ``slow`` when it has none."""
    builder = fb.builder
    enabled = builder.and_(fb._load_slot(Slot.NATIVE), fb._const(bit))
    tabled, found = fb._new_block(f"{bit.name.lower()}_find"), fb._new_block(f"{bit.name.lower()}_found")
    builder.cbranch(builder.icmp_unsigned("==", enabled, fb._const(0)), slow, tabled)
    builder.position_at_end(tabled)
    entry = builder.call(find_function(fb.parent), [fb.state, fb._get(1)])
    builder.cbranch(builder.icmp_unsigned("==", entry, fb._const(0)), slow, found)
    builder.position_at_end(found)
    table = builder.inttoptr(entry, fb.parent.state_type)

    def word(number: int) -> Any:
        return fb.parent.tag(builder.load(builder.gep(table, [fb._const(number)])), "tables")

    return word(1), word(2)


def emit_map_lookup(fb: _FunctionEmitter, pc: int) -> None:
    """``call bpf_map_lookup_elem`` at ``pc``: native for a map with a descriptor, else the trampoline."""
    builder = fb.builder
    slow, done = fb._new_block(f"lookup_slow_{pc}"), fb._new_block(f"lookup_done_{pc}")
    descriptor, cpu_offset = _entry(fb, NativeHelper.MAP_LOOKUP_ELEM, slow)
    descriptor_table = builder.inttoptr(descriptor, fb.parent.state_type)

    def field(which: DescriptorField) -> Any:
        return fb.parent.tag(builder.load(builder.gep(descriptor_table, [fb._const(which)])), "tables")

    array, other = fb._new_block(f"lookup_array_{pc}"), fb._new_block(f"lookup_other_{pc}")
    is_array = builder.icmp_unsigned("==", field(DescriptorField.KIND), fb._const(NativeMapKind.ARRAY))
    builder.cbranch(is_array, array, other)
    builder.position_at_end(array)
    # Inline: an array lookup is an index check and a multiply. The key is read as the Python
    # helper reads it, a 4-byte load that faults like any access.
    key_pointer = fb._checked_pointer(pc, fb._get(2), ARRAY_KEY_BYTES, False)
    key = builder.zext(fb.parent.tag(builder.load(key_pointer, align=1), "memory"), fb.i64)
    address = builder.add(
        builder.add(field(DescriptorField.BASE), builder.mul(key, field(DescriptorField.SLOT_SIZE))), cpu_offset
    )
    inside = builder.icmp_unsigned("<", key, field(DescriptorField.MAX_ENTRIES))
    fb._set(0, builder.select(inside, address, fb._const(0)))
    builder.branch(done)
    builder.position_at_end(other)
    value = builder.call(value_function(fb.parent), [fb.state, descriptor, cpu_offset, fb._get(2)])
    answered = fb._new_block(f"lookup_answered_{pc}")
    builder.cbranch(builder.icmp_unsigned("==", value, fb._const(SLOW)), slow, answered)
    builder.position_at_end(answered)
    fb._set(0, value)
    builder.branch(done)
    fb.finish_native_call(pc, HelperId.MAP_LOOKUP_ELEM, slow, done)


def emit_map_update(fb: _FunctionEmitter, pc: int) -> None:
    """``call bpf_map_update_elem`` at ``pc``: an existing element's value copied natively, else the trampoline."""
    builder = fb.builder
    slow, done, flags_ok = (fb._new_block(f"update_{what}_{pc}") for what in ("slow", "done", "flags"))
    flags = fb._get(4)
    plain = builder.or_(
        builder.icmp_unsigned("==", flags, fb._const(_NATIVE_FLAGS[0])),
        builder.icmp_unsigned("==", flags, fb._const(_NATIVE_FLAGS[1])),
    )
    builder.cbranch(plain, flags_ok, slow)
    builder.position_at_end(flags_ok)
    descriptor, cpu_offset = _entry(fb, NativeHelper.MAP_UPDATE_ELEM, slow)
    result = builder.call(update_function(fb.parent), [fb.state, descriptor, cpu_offset, fb._get(2), fb._get(3)])
    copied = fb._new_block(f"update_copied_{pc}")
    builder.cbranch(builder.icmp_unsigned("==", result, fb._const(SLOW)), slow, copied)
    builder.position_at_end(copied)
    fb._set(0, fb._const(0))
    builder.branch(done)
    fb.finish_native_call(pc, HelperId.MAP_UPDATE_ELEM, slow, done)
