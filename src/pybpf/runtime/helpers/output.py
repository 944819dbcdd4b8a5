"""Ring buffer and perf event output helpers.

Flag checks and the -errno results are done here, as in kernel/bpf/ringbuf.c and
kernel/trace/bpf_trace.c; storage is the map's (pybpf.runtime.maps): ring buffer maps provide
``reserve(size)`` (sample address or 0), ``submit(address)``, ``discard(address)`` and
``query(flags)``; perf event arrays provide ``output(data, flags, cpu)`` (0 or -errno).
Samples a run reserved are remembered on its :class:`RunState`, so submit/discard, which only
get the sample pointer, find their map; a sample the JIT's native reserve made (which Python
never saw) is found by address among the run's ring buffers. Submit and discard pass their
flags (BPF_RB_NO_WAKEUP, BPF_RB_FORCE_WAKEUP) to the ring, which counts the wake-ups; the kernel
ignores other bits there.

The JIT serves reserve, submit, discard and output in native code with the ring's protocol
(:mod:`pybpf.vm.jit.natives.ringbuf_ir`) when a program calls these very functions.
"""

# Every helper takes (env, r1..r5): the helper ABI fixes six positional parameters.
# ruff: noqa: PLR0917

from __future__ import annotations

from collections.abc import Callable
from typing import cast

from pybpf.errors import HelperError
from pybpf.platform.uapi_generated import BpfRingbufFlag, HelperId
from pybpf.runtime.helpers._common import E2BIG, EAGAIN, EFAULT, EINVAL, U64, find_map, read, require, write
from pybpf.runtime.helpers.services import RunState, run_state
from pybpf.vm.execution import ExecutionContext, HelperFn

_WAKEUP_FLAGS = int(BpfRingbufFlag.NO_WAKEUP | BpfRingbufFlag.FORCE_WAKEUP)
BPF_F_INDEX_MASK = 0xFFFFFFFF
BPF_F_CURRENT_CPU = BPF_F_INDEX_MASK
BPF_F_CTXLEN_MASK = 0xFFFFF << 32


def ringbuf_reserve(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    state, found = find_map(env, r1)
    if r3:
        return 0  # any flag makes the reservation fail (NULL)
    reserve = cast(Callable[[int], int], require(env, found, "reserve"))
    address = reserve(r2 & U64)
    if address:
        state.reserved[address] = found
    return address & U64


def commit_sample(env: ExecutionContext, sample: int, flags: int, discard: bool) -> int:
    """Submit or discard the ring buffer record at ``sample`` (whichever ring holds it)."""
    state = run_state(env)
    found = state.reserved.pop(sample, None)
    if found is None:
        found = _ring_holding(state, sample)
    if found is None:
        raise HelperError(f"{sample:#x} is not a ring buffer sample reserved by this run", env.helper_pc)
    commit = cast(Callable[[int, int], None], require(env, found, "discard" if discard else "submit"))
    commit(sample, flags)
    return 0


def _ring_holding(state: RunState, sample: int) -> object | None:
    """The ring buffer whose records hold ``sample`` (reserved by native code, so not in ``reserved``)."""
    return next((ring for ring in state.services.maps.rings() if ring.owns(sample)), None)


def ringbuf_submit(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    return commit_sample(env, r1, r2 & U64, False)


def ringbuf_discard(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    return commit_sample(env, r1, r2 & U64, True)


def ringbuf_output(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    _, found = find_map(env, r1)
    if r4 & ~_WAKEUP_FLAGS:
        return EINVAL
    data = read(env, r2, r3 & U64)
    reserve = cast(Callable[[int], int], require(env, found, "reserve"))
    address = reserve(len(data))
    if not address:
        return EAGAIN
    write(env, address, data)
    submit = cast(Callable[[int, int], None], require(env, found, "submit"))
    submit(address, r4 & U64)
    return 0


def ringbuf_query(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    _, found = find_map(env, r1)
    query = cast(Callable[[int], int], require(env, found, "query"))
    return query(r2 & U64) & U64


def perf_event_output(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    """perf_event_output(ctx, map, flags, data, size); skb/xdp contexts may append packet bytes.

    ``flags``: the low 32 bits are the index (BPF_F_CURRENT_CPU = this CPU) and, for packet
    programs, bits 32-51 how many packet bytes to append after ``data`` (-EFAULT past the end).
    """
    state, found = find_map(env, r2)
    flags = r3 & U64
    packet = state.packet
    allowed = BPF_F_INDEX_MASK | (BPF_F_CTXLEN_MASK if packet is not None else 0)
    if flags & ~allowed:
        return EINVAL
    index = flags & BPF_F_INDEX_MASK
    if index == BPF_F_CURRENT_CPU:
        index = state.current_cpu
    if index >= getattr(found, "max_entries", 0):
        return E2BIG
    sample = read(env, r4, r5 & U64)
    ctx_len = (flags & BPF_F_CTXLEN_MASK) >> 32
    if ctx_len and packet is not None:
        if ctx_len > packet.length:
            return EFAULT
        sample += packet.read(0, ctx_len)
    output = cast(Callable[[bytes, int, int], int], require(env, found, "output"))
    return output(sample, index, state.current_cpu) & U64


OUTPUT_HELPERS: dict[HelperId, HelperFn] = {
    HelperId.RINGBUF_RESERVE: ringbuf_reserve,
    HelperId.RINGBUF_SUBMIT: ringbuf_submit,
    HelperId.RINGBUF_DISCARD: ringbuf_discard,
    HelperId.RINGBUF_OUTPUT: ringbuf_output,
    HelperId.RINGBUF_QUERY: ringbuf_query,
    HelperId.PERF_EVENT_OUTPUT: perf_event_output,
}
