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

from pybpf.runtime.context import ContextImage
from pybpf.runtime.helpers.services import RunState, TaskInfo
from pybpf.runtime.program import Program
from pybpf.vm.memory import Region, RegionKind

U64 = (1 << 64) - 1
_U64 = struct.Struct("<Q")


class CallMemory:
    """Buffers mapped in a program's address space for one hook invocation."""

    def __init__(self, program: Program) -> None:
        self.memory = program.services.memory
        self._regions: list[Region] = []
        self._write_back: list[tuple[bytearray, Region]] = []

    def map_bytes(self, data: bytes | bytearray | memoryview | str, name: str) -> int:
        """Map a copy of ``data`` followed by a NUL byte, and return its address.

        The NUL is there because CPython keeps one after the contents of every ``bytes`` and
        ``bytearray`` object, so a C-string read (bpf_probe_read_user_str) of a Python buffer
        stops there, as it would reading the object's memory. ``str`` is mapped as UTF-8. A
        ``bytearray`` is mapped writable and what the program writes (bpf_probe_write_user) is
        copied back into it after the run.
        """
        if isinstance(data, str):
            payload = data.encode("utf-8", "surrogateescape")
        elif isinstance(data, memoryview):
            payload = data.tobytes()
        else:
            payload = bytes(data)
        region = Region.from_bytes(RegionKind.INPUT, name, payload + b"\0", writable=isinstance(data, bytearray))
        self.memory.add(region)
        self._regions.append(region)
        if isinstance(data, bytearray):
            self._write_back.append((data, region))
        return region.address

    def close(self) -> None:
        for target, region in self._write_back:
            target[:] = region.view[: len(target)]
        self._write_back.clear()
        for region in self._regions:
            if region in self.memory:
                self.memory.remove(region)
        self._regions.clear()


def argument_value(memory: CallMemory, value: object, name: str) -> int:
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
    attach_cookie: int = 0,
    func_ip: int = 0,
    task: TaskInfo | None = None,
) -> HookRun:
    """Run ``program`` once on the context ``build_context`` returns (it may map buffers first).

    ``task`` is the thread that fired the hook: the object's current task for this run.
    """
    with lock:
        call = CallMemory(program)
        image = ContextImage(program.layout, program.layout.uapi.name)
        try:
            data = build_context(call)
            image.load_uapi(data)
            image.map_into(call.memory)
            services = program.services
            if task is not None:
                # Safe: every run on these services holds ``lock``.
                saved_task, services.task = services.task, task
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
                if task is not None:
                    services.task = saved_task
        finally:
            image.unmap_from(call.memory)
            call.close()
    return HookRun(signed32(result.r0), result.r0)


def pack_u64s(values: Sequence[int], size: int) -> bytes:
    """``values`` as little-endian u64s, zero-padded to ``size`` bytes (a u64 args context)."""
    data = b"".join(_U64.pack(value & U64) for value in values)
    return data + bytes(max(size - len(data), 0))
