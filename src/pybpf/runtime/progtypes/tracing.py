"""Test runs of programs whose context is plain data: raw_tp, kprobe, tracing, syscall...

The kernel test-runs raw tracepoints (``ctx_in`` holds the u64 arguments) and syscall programs
(``ctx_in`` is any buffer the program may read and write, copied back as ``ctx_out``), never
with ``data_in`` or ``repeat``. kprobe, tracepoint and perf_event programs cannot be test-run in
the kernel; here they run the same way with ``ctx_in`` as their register or record context.
"""

from __future__ import annotations

from pybpf.errors import TestRunError
from pybpf.runtime.context import ContextImage, InternalLayout
from pybpf.runtime.progtypes._base import PreparedRun, RunKind, new_image
from pybpf.vm.memory import AddressSpace, Region, RegionKind

SYSCALL_CTX_MAX = 0xFFFF


class ArgsRun(PreparedRun):
    def __init__(self, memory: AddressSpace, region: Region, image: ContextImage | None, size: int) -> None:
        super().__init__(memory)
        self.image = image
        self.size = size
        self.context = self.map(region)

    def finish(self) -> tuple[bytes, bytes | None]:
        return b"", bytes(self.context.view[: self.size])


class ArgsKind(RunKind):
    """A context image filled from ``ctx_in``; no packet. ``max_ctx`` caps ``ctx_in``."""

    takes_data = False
    allows_repeat = False

    def __init__(self, max_ctx: int | None = None) -> None:
        self.max_ctx = max_ctx

    def prepare(
        self, memory: AddressSpace, layout: InternalLayout, data_in: bytes, ctx_in: bytes | None
    ) -> PreparedRun:
        limit = layout.uapi.size if self.max_ctx is None else self.max_ctx
        ctx = ctx_in or b""
        if len(ctx) > limit:
            raise TestRunError(f"ctx_in of {len(ctx)} bytes: {layout.uapi.name} takes at most {limit}")
        image = new_image(layout, ctx)
        return ArgsRun(memory, image.region, image, layout.uapi.size)


class SyscallKind(RunKind):
    """The context is the caller's buffer itself (no conversion): any access inside it."""

    takes_data = False
    allows_repeat = False

    def prepare(
        self, memory: AddressSpace, layout: InternalLayout, data_in: bytes, ctx_in: bytes | None
    ) -> PreparedRun:
        ctx = ctx_in or b""
        if len(ctx) > SYSCALL_CTX_MAX:
            raise TestRunError(f"ctx_in of {len(ctx)} bytes: a syscall program's context is at most {SYSCALL_CTX_MAX}")
        region = Region.from_bytes(RegionKind.CONTEXT, "syscall ctx", ctx or b"\0")
        return ArgsRun(memory, region, None, len(ctx))
