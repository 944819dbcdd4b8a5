"""Running a program when its hook fires: the context image, buffers mapped for the call, the gate.

A hook builds the context the program type expects (registers, a tracepoint record, u64
arguments) and may first map buffers (a ``bytes`` argument, a path) into the program's address
space so that pointers in the context point at them; :class:`CallMemory` maps them for one run
and unmaps them afterwards. :func:`run_hooked` runs the program with its engine
(:mod:`pybpf.hooks.engine`) once the object's :class:`~pybpf.hooks.run_gate.RunGate` admits
the run: in parallel with other threads' runs when the program is parallel-safe, alone on its
object otherwise, and always alone on its virtual CPU.

Each thread that fires a hook runs on a virtual CPU of its own (``native thread id % ncpus``),
as a kernel hook runs on the CPU of the task that hit it: per-CPU maps see one copy per thread.
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pybpf.errors import NotSupportedError
from pybpf.hooks.engine import run_program, run_services
from pybpf.hooks.run_gate import RunGate
from pybpf.runtime.context import ContextImage
from pybpf.runtime.helpers.services import RunState, TaskInfo
from pybpf.runtime.program import Program
from pybpf.vm.memory import Region, RegionKind

U64 = (1 << 64) - 1
_U64 = struct.Struct("<Q")


ARENA_SIZE = 4096
"""Bytes of a link's argument arena; a bigger argument gets a region of its own for the call."""


class HookScratch:
    """A link's reusable run memory: its context image and an arena for argument buffers.

    Both stay mapped while the link is attached, so a run maps nothing in the common case (a
    region per argument and per context costs more than the program itself). A scratch serves
    one run at a time: a link keeps a :class:`ScratchPool` of them, one per run in progress.
    """

    def __init__(self, program: Program, arena_size: int = ARENA_SIZE) -> None:
        self.memory = program.services.memory
        self.image = ContextImage(program.layout, f"{program.name} hook context")
        self.arena = Region.zeroed(RegionKind.INPUT, f"{program.name} hook arguments", arena_size)
        self.size = program.layout.size
        self._zero = bytes(self.size)
        self.closed = False
        self.image.map_into(self.memory)
        self.memory.add(self.arena)

    def close(self) -> None:
        """Unmap (only when no run uses it: see :class:`ScratchPool`)."""
        self.closed = True
        self.image.unmap_from(self.memory)
        if self.arena in self.memory:
            self.memory.remove(self.arena)


class ScratchPool:
    """A link's scratches: each run takes one for itself, so threads never share a context.

    Starts with one (the common single-threaded case maps nothing per run) and grows to the
    number of runs that were ever in progress at once, threads and nested runs alike. Closing
    (detach) unmaps the free scratches at once and each busy one when its run gives it back, so
    a hook firing in one thread while another detaches finishes on memory that stays mapped.
    """

    def __init__(self, program: Program) -> None:
        self.program = program
        self._lock = threading.Lock()
        self._free = [HookScratch(program)]
        self.closed = False

    def acquire(self) -> HookScratch | None:
        """A scratch for one run, or None once closed (the run then maps memory of its own)."""
        with self._lock:
            if self.closed:
                return None
            if self._free:
                return self._free.pop()
        return HookScratch(self.program)  # mapping is thread-safe (AddressSpace)

    def release(self, scratch: HookScratch) -> None:
        with self._lock:
            if not self.closed:
                self._free.append(scratch)
                return
        scratch.close()

    def close(self) -> None:
        with self._lock:
            self.closed = True
            free, self._free = self._free, []
        for scratch in free:
            scratch.close()

    def __len__(self) -> int:
        """Free scratches now."""
        with self._lock:
            return len(self._free)


@dataclass(frozen=True, slots=True)
class HookedProgram:
    """A program as hooks run it: its object's gate and its admission mode."""

    program: Program
    gate: RunGate
    parallel: bool  # runs may overlap: parallel-safe helpers, and verified (or interpreted); see HookRuntime.hooked


class CallMemory:
    """Buffers mapped in a program's address space for one hook invocation."""

    def __init__(self, program: Program, scratch: HookScratch | None = None) -> None:
        self.memory = program.services.memory
        self._scratch = scratch
        self._cursor = 0
        self._regions: list[Region] = []
        self._write_back: list[tuple[bytearray, memoryview]] = []

    def map_bytes(self, data: bytes | bytearray | memoryview | str, name: str = "hook argument") -> int:
        """Map a copy of ``data`` followed by a NUL byte, and return its address.

        The NUL is there because CPython keeps one after the contents of every ``bytes`` and
        ``bytearray`` object, so a C-string read (bpf_probe_read_user_str) of a Python buffer
        stops there, as it would reading the object's memory. ``str`` is mapped as UTF-8. What
        the program writes into a ``bytearray``'s copy (bpf_probe_write_user) is copied back into
        it after the run; writes into other arguments' copies are discarded.
        """
        if isinstance(data, str):
            payload = data.encode("utf-8", "surrogateescape")
        elif isinstance(data, memoryview):
            payload = data.tobytes()
        else:
            payload = bytes(data)
        size = len(payload) + 1
        scratch = self._scratch
        if scratch is not None and self._cursor + size <= scratch.arena.size:
            start = self._cursor
            view = scratch.arena.view
            view[start : start + size - 1] = payload
            view[start + size - 1] = 0
            self._cursor = (start + size + 7) & ~7
            address = scratch.arena.address + start
            window = view[start : start + len(payload)]
        else:
            region = Region.from_bytes(RegionKind.INPUT, name, payload + b"\0")
            self.memory.add(region)
            self._regions.append(region)
            address = region.address
            window = region.view[: len(payload)]
        if isinstance(data, bytearray):
            self._write_back.append((data, window))
        return address

    def close(self) -> None:
        for target, window in self._write_back:
            target[:] = window
        self._write_back.clear()
        for region in self._regions:
            if region in self.memory:
                self.memory.remove(region)
        self._regions.clear()


def argument_value(memory: CallMemory, value: object, name: str = "hook argument") -> int:
    """A Python argument as a register holds it: integers as u64, buffers and strings as pointers.

    ``None`` is NULL; a float is its IEEE-754 bits (as a register would carry a double); any
    other object is its ``id()``, an address the program cannot dereference (a read faults with
    -EFAULT in bpf_probe_read_*), which is what a pointer to an opaque struct is to a probe.
    """
    match value:
        case bool() | int():
            return int(value) & U64
        case None:
            return 0
        case float():
            return int(_U64.unpack(struct.pack("<d", value))[0])
        case bytes() | bytearray() | memoryview() | str():
            return memory.map_bytes(value, name)
        case _:
            return id(value) & U64


@dataclass(frozen=True, slots=True)
class HookRun:
    """What one run returned: r0 as the kernel's int return (sign-extended 32 bits) and raw."""

    retval: int
    r0: int


def signed32(value: int) -> int:
    value &= 0xFFFF_FFFF
    return value - (1 << 32) if value & 0x8000_0000 else value


def run_hooked(
    hooked: HookedProgram,
    build_context: Callable[[CallMemory], bytes],
    *,
    scratch: ScratchPool | None = None,
    attach_cookie: int = 0,
    func_ip: int = 0,
    task: TaskInfo | None = None,
) -> HookRun:
    """Run the program once on the context ``build_context`` returns (it may map buffers first).

    ``scratch`` is the link's pool of reusable memory (else the run maps its own); ``task`` is
    the thread that fired the hook, the current task for this run. The gate admits the run
    (see :mod:`pybpf.hooks.run_gate`); a shared run then holds its virtual CPU for its whole
    length (an exclusive one has the whole object).
    """
    program = hooked.program
    services = program.services
    cpu = threading.get_native_id() % services.cpus
    pool = scratch
    mine = pool.acquire() if pool is not None else None
    call = CallMemory(program, mine)
    own_image = None
    try:
        # The context is built outside the gate: the scratch is this run's, and mapping
        # argument buffers is safe from any thread (AddressSpace).
        data = build_context(call)
        if mine is not None:
            image = mine.image
            view = image.region.view
            view[: mine.size] = mine._zero
            view[: len(data)] = data
        else:
            image = own_image = ContextImage(program.layout, program.layout.uapi.name)
            image.load_uapi(data)
            image.map_into(call.memory)
        gate = hooked.gate
        if gate.enter(not hooked.parallel):
            # Alone on the object: no CPU lock to take, and swapping the object's current task
            # is seen by this run only (shared runs get a per-run view of the services instead).
            saved = services.task
            if task is not None:
                services.task = task
            try:
                state = RunState(services, ctx=image.address, cpu=cpu, attach_cookie=attach_cookie, func_ip=func_ip)
                r0 = run_program(program, image.region, state)
            finally:
                services.task = saved
                gate.leave()
        else:
            try:
                with gate.cpu_locks[cpu]:
                    view_of = run_services(services, task)
                    state = RunState(view_of, ctx=image.address, cpu=cpu, attach_cookie=attach_cookie, func_ip=func_ip)
                    r0 = run_program(program, image.region, state)
            finally:
                gate.leave()
    finally:
        if own_image is not None:
            own_image.unmap_from(call.memory)
        call.close()
        if mine is not None and pool is not None:
            pool.release(mine)
    return HookRun(signed32(r0), r0)


def require_user_space(program: object) -> Program:
    """``program`` if it runs in user space; hooks cannot run a program loaded into the kernel."""
    if not isinstance(program, Program):
        raise NotSupportedError(
            f"{program!r} is not a user-space program: hooks run programs loaded with pybpf.load(..., backend='vm')"
        )
    return program


def pack_u64s(values: Sequence[int], size: int) -> bytes:
    """``values`` as little-endian u64s, zero-padded to ``size`` bytes (a u64 args context)."""
    data = b"".join(_U64.pack(value & U64) for value in values)
    return data + bytes(max(size - len(data), 0))
