"""What a test run needs from a program type: build the context and packet, then read them back.

A :class:`RunKind` is chosen per program type; :meth:`RunKind.prepare` turns ``data_in`` and
``ctx_in`` into a :class:`PreparedRun` (the context image, the packet regions) the way the
kernel's ``bpf_prog_test_run_*`` in ``net/bpf/test_run.c`` does, and :meth:`PreparedRun.finish`
gives back ``(data_out, ctx_out)`` after the run(s).
"""

from __future__ import annotations

import functools
import struct
from abc import ABC, abstractmethod
from dataclasses import dataclass

from pybpf.errors import TestRunError
from pybpf.platform.context import Conversion
from pybpf.runtime.context import ContextImage, InternalLayout
from pybpf.runtime.helpers.packet_context import PacketContext
from pybpf.vm.memory import AddressSpace, Region

U32 = 0xFFFF_FFFF
_U64 = struct.Struct("<Q")
_INT_STRUCTS = {1: struct.Struct("<B"), 2: struct.Struct("<H"), 4: struct.Struct("<I"), 8: struct.Struct("<Q")}


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


class ImageFields:
    """Where a context layout's fields and pointer slots are, found once per layout.

    :class:`ContextImage` looks each field up by name through the struct's field list (40-odd
    for ``__sk_buff``), which costs more than the write itself; the hot paths of a test run
    (the packet pointers after every packet change, the skb fields, ctx_out) write the same
    fields run after run, so they use these precomputed offsets on ``image.region.view`` instead,
    with the same packing and masking as :meth:`ContextImage.set`/:meth:`ContextImage.set_pointer`.
    """

    __slots__ = ("ints", "slots", "spans", "xdp_slots")

    def __init__(self, layout: InternalLayout) -> None:
        self.spans: dict[str, tuple[int, int]] = {}
        self.ints: dict[str, tuple[struct.Struct, int, int]] = {}
        for field in layout.uapi.fields:
            self.spans[field.name] = (field.offset, field.end)
            packer = _INT_STRUCTS.get(field.size)
            if packer is not None:
                self.ints[field.name] = (packer, field.offset, (1 << (8 * field.size)) - 1)
        pointers = (kind for kind in Conversion if kind is not Conversion.PLAIN)  # plain fields have no slot
        self.slots: dict[Conversion, int | None] = {kind: layout.slot_for(kind) for kind in pointers}
        # data, data_end, data_meta (XDP's pointer order) when the layout has all three: every
        # XDP run writes them, and a dict lookup per pointer (an enum hash) costs more than the write.
        slots = self.slots
        xdp = (slots[Conversion.PACKET_DATA], slots[Conversion.PACKET_END], slots[Conversion.PACKET_META])
        self.xdp_slots: tuple[int, int, int] | None = None
        if xdp[0] is not None and xdp[1] is not None and xdp[2] is not None:
            self.xdp_slots = (xdp[0], xdp[1], xdp[2])

    def set(self, image: ContextImage, name: str, value: int) -> None:
        packer, offset, mask = self.ints[name]
        packer.pack_into(image.region.view, offset, value & mask)

    def get(self, image: ContextImage, name: str) -> int:
        packer, offset, _ = self.ints[name]
        value: int = packer.unpack_from(image.region.view, offset)[0]
        return value

    def set_pointer(self, image: ContextImage, conversion: Conversion, address: int) -> None:
        slot = self.slots[conversion]
        if slot is not None:
            _U64.pack_into(image.region.view, slot, address & 0xFFFF_FFFF_FFFF_FFFF)


class _SameStruct:
    """A cache key equal for layouts of the very same uapi struct object (their offsets are equal:
    :meth:`InternalLayout.of` derives everything from it); hashing the struct's fields would cost
    more than the lookups it saves."""

    __slots__ = ("layout",)

    def __init__(self, layout: InternalLayout) -> None:
        self.layout = layout

    def __hash__(self) -> int:
        return id(self.layout.uapi)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _SameStruct) and other.layout.uapi is self.layout.uapi


@functools.lru_cache(maxsize=64)  # one entry per context struct in use; the key keeps its struct alive
def _image_fields(key: _SameStruct) -> ImageFields:
    return ImageFields(key.layout)


def image_fields(layout: InternalLayout) -> ImageFields:
    """The :class:`ImageFields` of ``layout``."""
    return _image_fields(_SameStruct(layout))
