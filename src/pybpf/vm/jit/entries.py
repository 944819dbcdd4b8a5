"""The batch and repeat entry points: many runs of the main function inside one native call.

A Python-to-native call costs a few hundred nanoseconds, so BPF_PROG_TEST_RUN's ``repeat`` loop
and runs over many packets are loops in native code around the main function: ``bpf_repeat``
runs it ``count`` times on the same inputs, ``bpf_batch`` once per packet of a contiguous buffer.
Both give every run a full loop budget and stop at the first event (a status other than
RUNNING), which Python then handles as after a single run.
"""

from __future__ import annotations

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
    """

    BUFFER = 0
    OFFSETS = 1
    LENGTHS = 2
    COUNT = 3
    RETVALS = 4
    DATA = 5
    DATA_END_SLOT = 6
    CONTEXT = 7


BATCH_FIELDS = len(BatchField)


class ModuleParts(Protocol):
    """What the entry builders need of :class:`~pybpf.vm.jit.codegen._ModuleBuilder`."""

    ir: Any
    i64: Any
    module: Any
    state_type: Any
    functions: dict[int, Any]


def _reset_run_budgets(ir: Any, builder: Any, state: Any, budget: Any) -> None:
    """What every run of a repeat or batch starts with, as a fresh run would: its loop budgets."""
    builder.store(budget, builder.gep(state, [constant(ir, 64, Slot.BUDGET)]))
    builder.store(constant(ir, 64, MAX_LOOPS), builder.gep(state, [constant(ir, 64, Slot.MAY_GOTO_LEFT)]))


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
    returned = builder.call(module.functions[0], [state, constant(ir, 64, 0), *registers])
    # A run that stopped early (LD_ABS past the packet, a helper's env.stop) ended normally with
    # STOP_R0 for the kernel's loop, which goes on with the next run; other events end the loop.
    status_slot = builder.gep(state, [constant(ir, 64, Slot.STATUS)])
    status = builder.load(status_slot)
    stopped = builder.icmp_unsigned("==", status, constant(ir, 64, Status.STOPPED))
    r0 = builder.select(stopped, builder.load(builder.gep(state, [constant(ir, 64, Slot.STOP_R0)])), returned)
    status = builder.select(stopped, constant(ir, 64, Status.RUNNING), status)
    builder.store(status, status_slot)
    index.add_incoming(builder.add(index, constant(ir, 64, 1)), body)
    last.add_incoming(r0, body)
    builder.cbranch(builder.icmp_unsigned("==", status, constant(ir, 64, 0)), loop, done)
    builder.position_at_end(done)
    result = builder.phi(i64)
    result.add_incoming(last, loop)
    result.add_incoming(r0, body)
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

    buffer, count, data, context = (
        field(name) for name in (BatchField.BUFFER, BatchField.COUNT, BatchField.DATA, BatchField.CONTEXT)
    )
    offsets, lengths, retvals, data_end_slot = (
        builder.inttoptr(field(name), module.state_type)
        for name in (BatchField.OFFSETS, BatchField.LENGTHS, BatchField.RETVALS, BatchField.DATA_END_SLOT)
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
    builder.call(memcpy, [builder.inttoptr(data, i8p), source, length, ir.Constant(ir.IntType(1), 0)])
    builder.store(builder.add(data, length), data_end_slot)
    _reset_run_budgets(ir, builder, state, budget)
    r0 = builder.call(module.functions[0], [state, zero, zero, context, *([zero] * 8)])
    status = builder.load(builder.gep(state, [constant(ir, 64, Slot.STATUS)]))
    builder.store(r0, builder.gep(retvals, [index]))
    following = builder.add(index, constant(ir, 64, 1))
    index.add_incoming(following, body)
    builder.cbranch(builder.icmp_unsigned("==", status, zero), loop, done)
    builder.position_at_end(done)
    processed = builder.phi(i64)
    processed.add_incoming(index, loop)
    processed.add_incoming(index, body)  # the packet that ended in an event did not complete
    builder.ret(processed)
