"""Running a program when its hook fires: the context image, buffers mapped for the call, the run lock.

A hook builds the context the program type expects (registers, a tracepoint record, u64
arguments) and may first map buffers (a ``bytes`` argument, a path) into the program's address
space so that pointers in the context point at them; :class:`CallMemory` maps them for one run
and unmaps them afterwards. :func:`run_hooked` holds the object's run lock (see
:mod:`pybpf.hooks.link`) from the first mapping to the last unmapping, since the address space
and the interpreter's atomics are not safe for concurrent runs.

Each thread that fires a hook runs on a virtual CPU of its own (``native thread id % ncpus``),
as a kernel hook runs on the CPU of the task that hit it: per-CPU maps see one copy per thread.
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pybpf.errors import NotSupportedError
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
    region per argument and per context costs more than the program itself). One set per link
    is enough because runs on an object are serialised (its run lock) and a program never calls
    back into Python code that could fire the same link again.
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
        """Unmap (call with the object's run lock held); later runs map their own memory."""
        self.closed = True
        self.image.unmap_from(self.memory)
        if self.arena in self.memory:
            self.memory.remove(self.arena)


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
    program: Program,
    build_context: Callable[[CallMemory], bytes],
    lock: threading.RLock,
    *,
    scratch: HookScratch | None = None,
    attach_cookie: int = 0,
    func_ip: int = 0,
    task: TaskInfo | None = None,
) -> HookRun:
    """Run ``program`` once on the context ``build_context`` returns (it may map buffers first).

    ``scratch`` is the link's reusable memory (else the run maps its own); ``task`` is the thread
    that fired the hook, the object's current task for this run.
    """
    with lock:
        if scratch is not None and scratch.closed:
            scratch = None  # a run racing with detach: harmless, on memory of its own
        call = CallMemory(program, scratch)
        own_image = None
        try:
            data = build_context(call)
            if scratch is not None:
                image = scratch.image
                view = image.region.view
                view[: scratch.size] = scratch._zero
                view[: len(data)] = data
            else:
                image = own_image = ContextImage(program.layout, program.layout.uapi.name)
                image.load_uapi(data)
                image.map_into(call.memory)
            services = program.services
            saved_task = services.task
            if task is not None:
                # Safe: every run on these services holds ``lock``.
                services.task = task
            state = RunState(
                services,
                ctx=image.address,
                cpu=threading.get_native_id() % services.cpus,
                attach_cookie=attach_cookie,
                func_ip=func_ip,
            )
            try:
                result = program.interpreter.run(image.region, user=state)
            finally:
                services.task = saved_task
        finally:
            if own_image is not None:
                own_image.unmap_from(call.memory)
            call.close()
    return HookRun(signed32(result.r0), result.r0)


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
