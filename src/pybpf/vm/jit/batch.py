"""The Python side of a native batch (:meth:`JitProgram.run_batch`): the descriptor, chunks, early stops.

The loop itself is native (:func:`pybpf.vm.jit.entries.build_batch`); this fills the descriptor
it reads, starts it through the program's session (which maps the stacks and fills the
run-state block: the program's internals, this module being its batch half), and handles what
it returns: the number of packets that ran to completion.
A packet whose run stopped early (a helper's ``env.stop``) gets its stop value and output here,
and the loop resumes after it; any other event raises, as after a single run.
"""

from __future__ import annotations

import ctypes
import sys
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate
from typing import TYPE_CHECKING, Any

from pybpf.errors import NotSupportedError, VmError
from pybpf.vm.jit.entries import BATCH_FIELDS, BatchField, BatchOutput
from pybpf.vm.jit.native_packet import PacketNative, frame_bits
from pybpf.vm.jit.native_xdp import PacketFrame
from pybpf.vm.jit.state import Slot
from pybpf.vm.memory import Region

if TYPE_CHECKING:
    from pybpf.vm.jit.program import JitProgram

_LOW_HALF = 0 if sys.byteorder == "little" else 1
"""Which of a native u64's two u32 halves is its low one: retvals are read as u32 pairs."""


@dataclass(frozen=True, slots=True)
class NativeBatch:
    """What one batch runs over (see :meth:`JitProgram.run_batch` for each field)."""

    buffer: Any
    lengths: Sequence[int]
    data: int
    data_end_slot: int
    contexts: Any = None
    ld_abs: bool = False
    output: BatchOutput | None = None
    frame: PacketFrame | None = None


def run_native_batch(
    program: JitProgram,
    context: Region,
    batch: NativeBatch,
    *,
    user: object = None,
    instruction_limit: int | None = None,
) -> tuple[array[int], int]:
    """Every packet of ``batch`` through ``program``'s native loop: (r0 per packet, an ``array('Q')``; native ns)."""
    if program.may_tail_call:
        raise NotSupportedError("run_batch: a program that may tail call runs packet by packet (test_run)")
    lengths, output, frame = batch.lengths, batch.output, batch.frame
    count = len(lengths)
    # Whole-batch conversions in C (array, accumulate, from_buffer): no Python work per packet.
    lengths_q = lengths if isinstance(lengths, array) and lengths.typecode == "Q" else array("Q", lengths)
    offsets_q = array("Q", accumulate(lengths_q, initial=0))  # count + 1: the last is the total
    position = offsets_q[-1]
    if not count:
        lengths_q, offsets_q = array("Q", [0]), array("Q", [0])
    offsets = (ctypes.c_uint64 * len(offsets_q)).from_buffer(offsets_q)
    lengths_array = (ctypes.c_uint64 * len(lengths_q)).from_buffer(lengths_q)
    retvals = (ctypes.c_uint64 * (count or 1))()
    if ctypes.sizeof(batch.buffer) < position:
        raise VmError(
            f"run_batch: the buffer holds {ctypes.sizeof(batch.buffer)} bytes, the lengths add up to {position}"
        )
    descriptor = _descriptor(context, batch, count)
    adjust_bits = frame_bits(program.helpers, program._packet_helpers) if frame is not None else 0
    start, total, word = 0, 0, ctypes.sizeof(ctypes.c_uint64)
    processed, stopped_at = [0], [(0, 0)]

    def invoke(key: int) -> int:
        state = program._runs[key].state
        # The batch sets the packet slots for every packet: Python's packet object is stale.
        state[Slot.PACKET_NATIVE] |= PacketNative.PER_PACKET | adjust_bits
        if frame is not None:
            frame.fill(state)
        processed[0] = int(program._batch(key, ctypes.addressof(descriptor)))
        stopped_at[0] = (int(state[Slot.PACKET_META]), int(state[Slot.PACKET_END]))
        return 0

    registers = {1: context.address}
    while start < count:
        descriptor[BatchField.OFFSETS] = ctypes.addressof(offsets) + start * word
        descriptor[BatchField.LENGTHS] = ctypes.addressof(lengths_array) + start * word
        descriptor[BatchField.RETVALS] = ctypes.addressof(retvals) + start * word
        descriptor[BatchField.COUNT] = count - start
        if output is not None:
            descriptor[BatchField.OUTPUT] = ctypes.addressof(output.buffer) + start * output.stride
            descriptor[BatchField.OUTPUT_LENGTHS] = ctypes.addressof(output.lengths) + start * word
        result, elapsed = program._session(None, None, registers, instruction_limit, user, False, invoke)
        total += elapsed
        start += processed[0]
        if start < count:  # packet ``start`` stopped early (errors raised in the session)
            retvals[start] = result.r0
            if output is not None:
                meta, end = stopped_at[0]
                output.store(start, meta, end - meta)
            start += 1
    r0 = array("Q")
    r0.frombytes(memoryview(retvals).cast("B")[: count * word])
    return r0, total


def low_words(values: array[int]) -> array[int]:
    """The low 32 bits of every u64 in ``values`` (an ``array('Q')``), as one ``array('I')`` copy."""
    result = array("I")
    result.frombytes(memoryview(values).cast("B").cast("I")[_LOW_HALF::2].tobytes())
    return result


def _descriptor(context: Region, batch: NativeBatch, count: int) -> Any:
    """The fields that stay the same for the whole batch."""
    descriptor = (ctypes.c_uint64 * BATCH_FIELDS)()
    descriptor[BatchField.BUFFER] = ctypes.addressof(batch.buffer)
    descriptor[BatchField.DATA] = batch.data
    descriptor[BatchField.DATA_END_SLOT] = batch.data_end_slot
    descriptor[BatchField.CONTEXT] = context.address
    if batch.contexts is not None:
        if ctypes.sizeof(batch.contexts) < count * context.size:
            raise VmError(f"run_batch: {count} context images of {context.size} bytes do not fit the buffer")
        descriptor[BatchField.CONTEXTS] = ctypes.addressof(batch.contexts)
        descriptor[BatchField.CONTEXT_SIZE] = context.size
    descriptor[BatchField.LD_ABS] = int(batch.ld_abs)
    if batch.output is not None:
        descriptor[BatchField.OUTPUT_STRIDE] = batch.output.stride
    descriptor[BatchField.CLEAR_HEAD] = batch.frame.start if batch.frame is not None else 0
    return descriptor
