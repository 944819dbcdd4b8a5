"""Sessions: what one native run needs besides its inputs, made once and reused run after run.

A :class:`Session` is a run-state block, the per-frame stacks (mapped in the address space for
as long as the session lives, so helpers reach them through ``env.memory`` as under the
interpreter) and the range and map tables the block points to. A :class:`SessionPool` hands
each run in progress a session of its own, under a lock: two threads running the same
:class:`~pybpf.vm.jit.JitProgram` at once, or a helper running it again from inside a run,
never share stacks or a state block. The pool grows to the largest number of runs that were
ever in progress at once and keeps those sessions for the next runs.

The range table lists the session's own stacks first (the most frequent target of a scan),
then every mapped region that is not a stack. The regions part depends only on the address
space's layout, so the pool builds it once per :attr:`~pybpf.vm.memory.AddressSpace.generation`
and a session rewrites its table only when the layout it holds is not the current one. Stacks
of other runs (other sessions, the interpreter's) stay out of the table: an access to them
reaches the fault handler, which allows it if the region is still mapped.
"""

from __future__ import annotations

import ctypes
import threading
import weakref
from collections import deque
from typing import Any

from pybpf.vm.execution import STACK_SIZE
from pybpf.vm.jit.state import RANGE_FIELDS, STATE_SLOTS, Slot
from pybpf.vm.memory import AddressSpace, Region, RegionKind

_StateBlock = ctypes.c_uint64 * STATE_SLOTS
STATE_BYTES = ctypes.sizeof(_StateBlock)
NO_HOT = (2**64 - 1, 2**64 - 1, 0)
"""HOT_START, HOT_END, HOT_WRITABLE when no scan found a range yet (no access passes it)."""
STACK_GAP = STACK_SIZE
"""Unmapped bytes between two frames' stacks in the session's buffer: an access running off one
stack faults (as it does under the interpreter) instead of landing in the next frame's stack."""

# Slot numbers as plain ints (reading an IntEnum member costs ~60 ns; these are read every run).
_RANGE_COUNT = int(Slot.RANGE_COUNT)
_RANGES_END = int(Slot.RANGES) + 1
_HOT_START = int(Slot.HOT_START)
_HOT_END = int(Slot.HOT_WRITABLE) + 1

_ALIGN = 64
"""Where the state block and the stacks start (a cache line)."""

_Layout = tuple[AddressSpace, int, list[int]]
"""(address space, its generation, the range-table fields of its non-stack regions)."""


class Session:
    """One run's reusable resources: the run-state block, the stacks, the range and map tables."""

    __slots__ = (
        "_buffer",
        "_layout",
        "_retired",
        "_span",
        "_view",
        "_zeros",
        "key",
        "map_table",
        "ranges",
        "stacks",
        "state",
        "tops",
        "words",
    )

    def __init__(self, memory: AddressSpace, frames: int) -> None:
        # The state block, then the stacks, STACK_GAP apart, all in one buffer: one memset
        # clears everything a run starts from. The state block is no region: it is a gap too.
        # Everything starts on a 64-byte boundary, as a stack of its own (malloc'd) would be
        # at least 16-byte aligned: native code may keep 16-byte values there.
        stride = STACK_GAP + STACK_SIZE
        head = -(-STATE_BYTES // _ALIGN) * _ALIGN
        self._span = head + frames * stride
        self._buffer = bytearray(self._span + _ALIGN)
        shift = -ctypes.addressof((ctypes.c_char * 1).from_buffer(self._buffer)) % _ALIGN
        self.state: Any = _StateBlock.from_buffer(self._buffer, shift)
        self.key = ctypes.addressof(self.state)
        view = memoryview(self._buffer)
        # The same bytes as memoryviews: struct.pack_into/unpack_from and a copy of zeros cost a
        # fraction of ctypes slice assignments and ctypes.memset (a foreign call that also
        # releases the GIL, so another thread may take it for a whole switch interval).
        self.words = view[shift : shift + STATE_BYTES]
        self._view = view[shift : shift + self._span]
        self._zeros = bytes(self._span)
        first = shift + head + STACK_GAP
        self.stacks = tuple(
            Region(
                RegionKind.STACK,
                f"jit stack of frame {number}",
                view[first + number * stride : first + number * stride + STACK_SIZE],
            )
            for number in range(frames)
        )
        # The STACK_TOPS slots (one per possible call depth; 0 for frames this session has not).
        self.tops = [stack.end for stack in self.stacks] + [0] * (Slot.INITIAL_REGS - Slot.STACK_TOPS - frames)
        for stack in self.stacks:
            memory.add(stack)
        self.ranges: Any = None
        self._layout: _Layout | None = None  # what the range table holds after the stacks
        self.map_table: Any = None
        # Tables replaced during a run (a fault refilled a bigger one): native code of the run
        # may still hold their address, so they live until the next run starts.
        self._retired: list[Any] = []

    def reset(self) -> None:
        """Zero the run-state block (no slot of the last run leaks into this one) and the stacks
        (every run starts with zeroed stacks, as the interpreter's fresh ones are)."""
        self._view[:] = self._zeros
        if self._retired:
            self._retired.clear()

    def ranges_for(self, layout: _Layout) -> list[int]:
        """Slots RANGE_COUNT and RANGES for a table of the stacks then ``layout``'s regions."""
        if self._layout is not layout:
            self._write_ranges(layout[2])
            self._layout = layout
        return [len(self.stacks) + len(layout[2]) // RANGE_FIELDS, ctypes.addressof(self.ranges)]

    def fill_all_ranges(self, memory: AddressSpace) -> None:
        """The table of every region mapped now (after a fault: a region may have been mapped mid-run)."""
        own = {id(stack) for stack in self.stacks}
        fields = [
            value
            for region in memory.regions
            if id(region) not in own
            for value in (region.address, region.end, int(region.writable))
        ]
        self._write_ranges(fields)
        self._layout = None  # not a pool's layout: the next run rewrites its table
        state = self.state
        state[_RANGE_COUNT:_RANGES_END] = [
            len(self.stacks) + len(fields) // RANGE_FIELDS,
            ctypes.addressof(self.ranges),
        ]
        state[_HOT_START:_HOT_END] = NO_HOT

    def _write_ranges(self, fields: list[int]) -> None:
        own = len(self.stacks) * RANGE_FIELDS
        needed = own + len(fields)
        if self.ranges is None or len(self.ranges) < needed:
            self._retired.append(self.ranges)
            # Room to grow: a table reallocated on every new region would cost what caching saves.
            self.ranges = (ctypes.c_uint64 * (needed + 8 * RANGE_FIELDS))()
            self.ranges[:own] = [value for stack in self.stacks for value in (stack.address, stack.end, 1)]
        self.ranges[own:needed] = fields

    def fill_map_table(self, fields: list[int]) -> int:
        """Copy the map table's fields into the session's table; its native address."""
        if self.map_table is None or len(self.map_table) < len(fields):
            self._retired.append(self.map_table)
            self.map_table = (ctypes.c_uint64 * len(fields))()
        self.map_table[: len(fields)] = fields
        return ctypes.addressof(self.map_table)


def _unmap(memory: AddressSpace, stacks: list[Region]) -> None:
    for stack in stacks:
        if stack in memory:
            memory.remove(stack)


class SessionPool:
    """The sessions of one program: a free one per run, a new one when every session is in use.

    The stacks of every session the pool made stay mapped until :meth:`close` or until the pool
    is garbage collected.
    """

    __slots__ = ("__weakref__", "_free", "_layout", "_lock", "_stacks", "frames", "memory")

    def __init__(self, memory: AddressSpace, frames: int) -> None:
        self.memory = memory
        self.frames = frames
        self._lock = threading.Lock()
        # deque: its append and pop are atomic, so taking and giving back a session need no lock.
        self._free: deque[Session] = deque()
        self._stacks: list[Region] = []  # of every session made, to unmap them when the pool goes
        self._layout: _Layout = (memory, -1, [])
        weakref.finalize(self, _unmap, memory, self._stacks)

    def acquire(self) -> Session:
        """A session no run is using (made now if there is none)."""
        try:
            return self._free.pop()
        except IndexError:
            pass
        session = Session(self.memory, self.frames)  # maps its stacks: outside our lock
        with self._lock:
            self._stacks.extend(session.stacks)
        return session

    def release(self, session: Session) -> None:
        self._free.append(session)

    def ready(self) -> None:
        """Make the first session now (its stacks mapped), so that a timed first run does not."""
        if not self.sessions:
            self.release(self.acquire())

    def layout(self, memory: AddressSpace) -> _Layout:
        """The range-table fields of ``memory``'s non-stack regions, rebuilt when its generation moved."""
        cached = self._layout
        generation = memory.generation  # before reading the regions (see AddressSpace.generation)
        if cached[0] is memory and cached[1] == generation:
            return cached
        fields: list[int] = []
        stack = RegionKind.STACK
        for region in memory.regions:  # a plain loop: half the time of a nested comprehension
            if region.kind is not stack:
                fields += (region.address, region.end, region.writable)
        cached = (memory, generation, fields)
        self._layout = cached  # one assignment: another thread sees the old tuple or this one
        return cached

    @property
    def sessions(self) -> int:
        """How many sessions the pool has made (the most runs ever in progress at once)."""
        with self._lock:
            return len(self._stacks) // self.frames

    def close(self) -> None:
        """Unmap the stacks of the free sessions (a session in use unmaps nothing; call when idle)."""
        free: list[Session] = []
        while True:
            try:
                free.append(self._free.pop())
            except IndexError:
                break
        for session in free:
            _unmap(self.memory, list(session.stacks))
