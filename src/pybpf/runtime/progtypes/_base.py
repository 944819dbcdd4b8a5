"""What a test run needs from a program type: build the context and packet, then read them back.

A :class:`RunKind` is chosen per program type; :meth:`RunKind.prepare` turns ``data_in`` and
``ctx_in`` into a :class:`PreparedRun` (the context image, the packet regions) the way the
kernel's ``bpf_prog_test_run_*`` in ``net/bpf/test_run.c`` does, and :meth:`PreparedRun.finish`
gives back ``(data_out, ctx_out)`` after the run(s).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from pybpf.errors import TestRunError
from pybpf.runtime.context import ContextImage, InternalLayout
from pybpf.runtime.helpers.packet_context import PacketContext
from pybpf.vm.memory import AddressSpace, Region

U32 = 0xFFFF_FFFF


class PreparedRun(ABC):
    """The memory of one test run: a context and, for packet programs, the packet.

    ``context`` is r1 (a context image or a raw region for syscall programs); ``packet`` is what
    LD_ABS/LD_IND read; ``packet_state`` is the object packet helpers see (``RunState.packet``).
    """

    context: Region
    packet: Region | None = None
    packet_state: PacketContext | None = None

    def __init__(self, memory: AddressSpace) -> None:
        self.memory = memory
        self._mapped: list[Region] = []

    def map(self, region: Region) -> Region:
        if region not in self.memory:
            self.memory.add(region)
            self._mapped.append(region)
        return region

    def close(self) -> None:
        """Unmap every region this run mapped."""
        for region in self._mapped:
            if region in self.memory:
                self.memory.remove(region)
        self._mapped.clear()

    def packet_region(self) -> Region | None:
        """What LD_ABS/LD_IND read (the packet from ``skb->data``), if anything."""
        return self.packet

    def retval(self, r0: int) -> int:
        """BPF_PROG_TEST_RUN's ``retval``: a u32 for every program type."""
        return r0 & U32

    @abstractmethod
    def finish(self) -> tuple[bytes, bytes | None]:
        """``(data_out, ctx_out)`` as the kernel copies them back after the run(s)."""


class RunKind(ABC):
    """How the kernel test-runs one family of program types."""

    takes_data: bool = True
    allows_repeat: bool = True

    @abstractmethod
    def prepare(
        self, memory: AddressSpace, layout: InternalLayout, data_in: bytes, ctx_in: bytes | None
    ) -> PreparedRun:
        """Build the run's memory (raise TestRunError where the kernel says EINVAL)."""


@dataclass(frozen=True, slots=True)
class Limits:
    """Sizes the kernel accepts."""

    min_data: int = 0
    max_data: int | None = None


def check_ctx_size(ctx_in: bytes | None, layout: InternalLayout) -> None:
    """bpf_ctx_init(): a ctx_in longer than the struct must be zero past its end (else E2BIG)."""
    if ctx_in is None:
        return
    size = layout.uapi.size
    if len(ctx_in) > size and any(ctx_in[size:]):
        raise TestRunError(f"ctx_in is {len(ctx_in)} bytes; {layout.uapi.name} is {size} and the rest is not zero")


def new_image(layout: InternalLayout, ctx_in: bytes | None) -> ContextImage:
    image = ContextImage(layout, layout.uapi.name)
    if ctx_in:
        image.load_uapi(ctx_in[: layout.uapi.size])
    return image
