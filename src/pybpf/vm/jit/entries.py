"""The batch and repeat entry points: many runs of the main function inside one native call.

A Python-to-native call costs a few hundred nanoseconds, so BPF_PROG_TEST_RUN's ``repeat`` loop
and runs over many packets are loops in native code around the main function: ``bpf_repeat``
runs it ``count`` times on the same inputs, ``bpf_batch`` once per packet of a contiguous buffer.
Both give every run a full loop budget and stop at the first event (a status other than
RUNNING), which Python then handles as after a single run. Only the last run of a repeat stores
its final registers (what ``run_repeated`` reports); the runs before it and every run of a batch
call the main function with its ``report`` flag off (see ``_ModuleBuilder.call_main``).

A batch run sets, before each packet, everything that differs between packets and that native
code reads: the packet bytes at ``data``, the context's data_end, the run-state block's packet
slots (what the native packet helpers and LD_ABS read), and, for context types with per-packet
fields (``__sk_buff``'s len, protocol...), a whole context image from a precomputed array. After
a packet that ran to completion it can copy the packet out, from data_meta to data_end as the
program left them (what BPF_PROG_TEST_RUN's data_out reports), into an output array.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Protocol

from pybpf.vm.execution import MAX_LOOPS
from pybpf.vm.jit.alu_ir import constant
from pybpf.vm.jit.state import Slot, Status

REPEAT_NAME = "bpf_repeat"
"""``i64 bpf_repeat(i64* state, i64 count)``: the main function ``count`` times on the same inputs."""
BATCH_NAME = "bpf_batch"
"""``i64 bpf_batch(i64* state, i64* batch)``: the main function once per packet (see :class:`BatchField`)."""


class BatchField(IntEnum):
    """Slots of the batch descriptor ``bpf_batch`` reads (all 64-bit).

    Packet ``i`` is ``LENGTHS[i]`` bytes at ``BUFFER + OFFSETS[i]``; it is copied to ``DATA``,
    ``DATA + length`` is stored at ``DATA_END_SLOT`` (the context's data_end), the program runs
    with r1 = ``CONTEXT`` and its r0 goes to ``RETVALS[i]``. ``bpf_batch`` returns how many
    packets ran to completion (fewer than ``COUNT`` when one ended in an event).

    ``CONTEXTS`` (when not 0) holds one ``CONTEXT_SIZE``-byte context image per packet, copied
    to ``CONTEXT`` before the run; ``LD_ABS`` (0 or 1) points LD_ABS/LD_IND at the packet;
    ``OUTPUT`` (when not 0) receives packet ``i`` after its run at ``OUTPUT + i * OUTPUT_STRIDE``
    (``OUTPUT_LENGTHS[i]`` bytes, from ``Slot.PACKET_META`` to ``Slot.PACKET_END``);
    ``CLEAR_HEAD`` (when not 0) zeroes ``[CLEAR_HEAD, DATA)`` before each run, the headroom an
    xdp_adjust_head/meta may expose, as a fresh test run's frame has it. Before each run the
    context's data and data_meta pointers (``Slot.CONTEXT_DATA_SLOT``/``CONTEXT_META_SLOT``, when
    set) are reset to ``DATA``.
    """

    BUFFER = 0
    OFFSETS = 1
    LENGTHS = 2
    COUNT = 3
    RETVALS = 4
    DATA = 5
    DATA_END_SLOT = 6
    CONTEXT = 7
    CONTEXTS = 8
    CONTEXT_SIZE = 9
    LD_ABS = 10
    OUTPUT = 11
    OUTPUT_STRIDE = 12
    OUTPUT_LENGTHS = 13
    CLEAR_HEAD = 14


BATCH_FIELDS = len(BatchField)


@dataclass(frozen=True, slots=True)
class BatchOutput:
    """Where a batch copies every packet after its run: ``stride`` bytes each, their lengths in ``lengths``."""

    buffer: Any
    """A ctypes byte array of ``count * stride`` bytes."""
    stride: int
    lengths: Any
    """A ctypes ``c_uint64`` array of ``count`` lengths."""

    @classmethod
    def for_packets(cls, count: int, stride: int) -> BatchOutput:
        stride = max(stride, 1)
        return cls((ctypes.c_uint8 * (count * stride or 1))(), stride, (ctypes.c_uint64 * (count or 1))())

    def packet(self, index: int) -> bytes:
        start = index * self.stride
        return bytes(memoryview(self.buffer)[start : start + int(self.lengths[index])])

    def store(self, index: int, address: int, size: int) -> None:
        """Copy ``size`` bytes at native ``address`` in as packet ``index`` (one the native loop did not)."""
        size = min(size, self.stride)
        ctypes.memmove(ctypes.addressof(self.buffer) + index * self.stride, address, size)
        self.lengths[index] = size


class ModuleParts(Protocol):
    """What the entry builders need of :class:`~pybpf.vm.jit.codegen._ModuleBuilder`."""

    ir: Any
    i64: Any
    module: Any
    state_type: Any
    functions: dict[int, Any]
    inline_main: bool

    def call_main(self, builder: Any, arguments: list[Any], *, report: bool = True) -> Any: ...


def _reset_run_budgets(ir: Any, builder: Any, state: Any, budget: Any) -> None:
    """What every run of a repeat or batch starts with, as a fresh run would: loop budgets, a zero count."""
    builder.store(budget, builder.gep(state, [constant(ir, 64, Slot.BUDGET)]))
    builder.store(constant(ir, 64, MAX_LOOPS), builder.gep(state, [constant(ir, 64, Slot.MAY_GOTO_LEFT)]))
    builder.store(constant(ir, 64, 0), builder.gep(state, [constant(ir, 64, Slot.INSTRUCTIONS)]))


def build_repeat(module: ModuleParts) -> None:
    """``bpf_repeat``: BPF_PROG_TEST_RUN's loop in native code; stops at the first event."""
    ir, i64 = module.ir, module.i64
    function = ir.Function(module.module, ir.FunctionType(i64, [module.state_type, i64]), name=REPEAT_NAME)
    state, count = function.args
    entry, loop, body, done = (function.append_basic_block(name) for name in ("entry", "loop", "body", "done"))
    builder = ir.IRBuilder(entry)
    budget = builder.load(builder.gep(state, [constant(ir, 64, Slot.BUDGET)]))
    builder.branch(loop)
    builder.position_at_end(loop)
    index = builder.phi(i64)
    last = builder.phi(i64)
    index.add_incoming(constant(ir, 64, 0), entry)
    last.add_incoming(constant(ir, 64, 0), entry)
    builder.cbranch(builder.icmp_unsigned("<", index, count), body, done)
    builder.position_at_end(body)
    _reset_run_budgets(ir, builder, state, budget)
    # A compiler barrier, then the inputs read again: without it LLVM may prove the runs
    # identical and hoist the program out of the loop (measuring nothing), which the kernel's
    # loop never does.
    barrier = ir.InlineAsm(ir.FunctionType(ir.VoidType(), []), "", "~{memory}", side_effect=True)
    builder.call(barrier, [])
    registers = [
        builder.load(builder.gep(state, [constant(ir, 64, Slot.INITIAL_REGS + number)])) for number in range(10)
    ]
    arguments = [state, constant(ir, 64, 0), *registers]
    # Only the last run's registers are reported: the runs before it skip storing them (which
    # frees LLVM to vectorise loops that exit to the end). The last run calls the standalone
    # main function, not inlined: one run in ``count`` does not need it, and a second inlined
    # copy of the program would double the optimiser's work for the repeat entry.
    quiet_block, last_block, joined = (function.append_basic_block(name) for name in ("quiet", "last", "joined"))
    is_last = builder.icmp_unsigned("==", builder.add(index, constant(ir, 64, 1)), count)
    builder.cbranch(is_last, last_block, quiet_block)
    builder.position_at_end(quiet_block)
    quiet = module.call_main(builder, arguments, report=False)
    if module.inline_main:  # the loop this entry exists for: worth one more copy of a small program
        quiet.attributes.add("alwaysinline")
    builder.branch(joined)
    builder.position_at_end(last_block)
    full = module.call_main(builder, arguments)
    full.attributes.add("noinline")
    builder.branch(joined)
    builder.position_at_end(joined)
    returned = builder.phi(i64)
    returned.add_incoming(quiet, quiet_block)
    returned.add_incoming(full, last_block)
    # A run that stopped early (LD_ABS past the packet, a helper's env.stop) ended normally with
    # STOP_R0 for the kernel's loop, which goes on with the next run; other events end the loop.
    status_slot = builder.gep(state, [constant(ir, 64, Slot.STATUS)])
    status = builder.load(status_slot)
    stopped = builder.icmp_unsigned("==", status, constant(ir, 64, Status.STOPPED))
    r0 = builder.select(stopped, builder.load(builder.gep(state, [constant(ir, 64, Slot.STOP_R0)])), returned)
    status = builder.select(stopped, constant(ir, 64, Status.RUNNING), status)
    builder.store(status, status_slot)
    index.add_incoming(builder.add(index, constant(ir, 64, 1)), joined)
    last.add_incoming(r0, joined)
    builder.cbranch(builder.icmp_unsigned("==", status, constant(ir, 64, 0)), loop, done)
    builder.position_at_end(done)
    result = builder.phi(i64)
    result.add_incoming(last, loop)
    result.add_incoming(r0, joined)
    builder.ret(result)


def build_batch(module: ModuleParts) -> None:
    """``bpf_batch``: one run per packet of a contiguous buffer, all inside one native call."""
    ir, i64 = module.ir, module.i64
    i8p = ir.IntType(8).as_pointer()
    function = ir.Function(module.module, ir.FunctionType(i64, [module.state_type, module.state_type]), name=BATCH_NAME)
    state, batch = function.args
    entry, loop, body, done = (function.append_basic_block(name) for name in ("entry", "loop", "body", "done"))
    builder = ir.IRBuilder(entry)

    def field(name: BatchField) -> Any:
        return builder.load(builder.gep(batch, [constant(ir, 64, name)]))

    buffer, count, data, context, contexts, context_size, ld_abs, output, stride, clear_head = (
        field(name)
        for name in (
            BatchField.BUFFER,
            BatchField.COUNT,
            BatchField.DATA,
            BatchField.CONTEXT,
            BatchField.CONTEXTS,
            BatchField.CONTEXT_SIZE,
            BatchField.LD_ABS,
            BatchField.OUTPUT,
            BatchField.OUTPUT_STRIDE,
            BatchField.CLEAR_HEAD,
        )
    )
    offsets, lengths, retvals, data_end_slot, output_lengths = (
        builder.inttoptr(field(name), module.state_type)
        for name in (
            BatchField.OFFSETS,
            BatchField.LENGTHS,
            BatchField.RETVALS,
            BatchField.DATA_END_SLOT,
            BatchField.OUTPUT_LENGTHS,
        )
    )
    budget = builder.load(builder.gep(state, [constant(ir, 64, Slot.BUDGET)]))
    memcpy = module.module.declare_intrinsic("llvm.memcpy", [i8p, i8p, i64])
    zero = constant(ir, 64, 0)
    builder.branch(loop)
    builder.position_at_end(loop)
    index = builder.phi(i64)
    index.add_incoming(zero, entry)
    builder.cbranch(builder.icmp_unsigned("<", index, count), body, done)
    builder.position_at_end(body)
    length = builder.load(builder.gep(lengths, [index]))
    source = builder.inttoptr(builder.add(buffer, builder.load(builder.gep(offsets, [index]))), i8p)
    no_volatile = ir.Constant(ir.IntType(1), 0)
    builder.call(memcpy, [builder.inttoptr(data, i8p), source, length, no_volatile])
    with builder.if_then(builder.icmp_unsigned("!=", contexts, zero)):
        image = builder.inttoptr(builder.add(contexts, builder.mul(index, context_size)), i8p)
        builder.call(memcpy, [builder.inttoptr(context, i8p), image, context_size, no_volatile])
    data_end = builder.add(data, length)
    builder.store(data_end, data_end_slot)
    for slot, value in ((Slot.PACKET_DATA, data), (Slot.PACKET_END, data_end), (Slot.PACKET_META, data)):
        builder.store(value, builder.gep(state, [constant(ir, 64, slot)]))
    for slot in (Slot.CONTEXT_DATA_SLOT, Slot.CONTEXT_META_SLOT):  # set by batches with native xdp_adjust_*
        pointer = builder.load(builder.gep(state, [constant(ir, 64, slot)]))
        with builder.if_then(builder.icmp_unsigned("!=", pointer, zero)):
            builder.store(data, builder.inttoptr(pointer, module.state_type))
    with builder.if_then(builder.icmp_unsigned("!=", clear_head, zero)):
        memset = module.module.declare_intrinsic("llvm.memset", [i8p, i64])
        head = [builder.inttoptr(clear_head, i8p), ir.Constant(ir.IntType(8), 0), builder.sub(data, clear_head)]
        builder.call(memset, [*head, no_volatile])
    with builder.if_then(builder.icmp_unsigned("!=", ld_abs, zero)):
        # The LD_ABS view of an empty skb is one byte long, as packet_view() makes it.
        one = constant(ir, 64, 1)
        view_size = builder.select(builder.icmp_unsigned("==", length, zero), one, length)
        builder.store(data, builder.gep(state, [constant(ir, 64, Slot.PACKET_ADDRESS)]))
        builder.store(view_size, builder.gep(state, [constant(ir, 64, Slot.PACKET_SIZE)]))
    _reset_run_budgets(ir, builder, state, budget)
    # A batch reports r0 alone: no run stores its final registers. LLVM decides whether to
    # inline (a forced copy here would cost compile time for every packet program).
    r0 = module.call_main(builder, [state, zero, zero, context, *([zero] * 8)], report=False)
    status = builder.load(builder.gep(state, [constant(ir, 64, Slot.STATUS)]))
    builder.store(r0, builder.gep(retvals, [index]))
    following = builder.add(index, constant(ir, 64, 1))
    completed = builder.icmp_unsigned("==", status, zero)
    with builder.if_then(builder.and_(completed, builder.icmp_unsigned("!=", output, zero))):
        meta = builder.load(builder.gep(state, [constant(ir, 64, Slot.PACKET_META)]))
        size = builder.sub(builder.load(builder.gep(state, [constant(ir, 64, Slot.PACKET_END)])), meta)
        size = builder.select(builder.icmp_unsigned(">", size, stride), stride, size)  # never past the slot
        target = builder.inttoptr(builder.add(output, builder.mul(index, stride)), i8p)
        builder.call(memcpy, [target, builder.inttoptr(meta, i8p), size, no_volatile])
        builder.store(size, builder.gep(output_lengths, [index]))
    after = builder.block
    index.add_incoming(following, after)
    builder.cbranch(completed, loop, done)
    builder.position_at_end(done)
    processed = builder.phi(i64)
    processed.add_incoming(index, loop)
    processed.add_incoming(index, after)  # the packet that ended in an event did not complete
    builder.ret(processed)
