"""The internal context image: the uapi struct, then one 8-byte slot per pointer field.

Plain fields keep their uapi offsets, so plain loads and stores (narrow ones included) need no
rewriting at all and ``ctx_in``/``ctx_out`` are a copy of the image's head. Pointer fields
(packet data/end/meta, sockets, flow keys) are 4 bytes wide in ``xdp_md`` and ``__sk_buff``: the
rewrite turns their loads into 8-byte loads of the field's slot, which the run fills with a
real address.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from pybpf.errors import VmError
from pybpf.platform.context import ContextLayout, Conversion, CtxField
from pybpf.vm.memory import AddressSpace, Region, RegionKind

_U64 = struct.Struct("<Q")
_INT_FORMATS = {1: "<B", 2: "<H", 4: "<I", 8: "<Q"}


@dataclass(frozen=True, slots=True)
class InternalLayout:
    """Where each field of ``uapi`` lives in the internal image (``size`` bytes in all)."""

    uapi: ContextLayout
    pointer_slots: Mapping[str, int]  # pointer field name -> offset of its 8-byte slot
    size: int

    @classmethod
    def of(cls, uapi: ContextLayout) -> InternalLayout:
        base = (uapi.size + 7) // 8 * 8
        slots: dict[str, int] = {}
        for field in uapi.fields:
            if field.conversion is not Conversion.PLAIN:
                slots[field.name] = base + 8 * len(slots)
        return cls(uapi, MappingProxyType(slots), max(base + 8 * len(slots), 8))

    def internal_offset(self, field: CtxField, offset: int) -> int:
        """The image offset a uapi access at ``offset`` (inside ``field``) goes to."""
        slot = self.pointer_slots.get(field.name)
        return offset if slot is None else slot

    def slot_for(self, conversion: Conversion) -> int | None:
        """The slot of the (first) pointer field with ``conversion``, if the layout has one."""
        for field in self.uapi.fields:
            if field.conversion is conversion:
                return self.pointer_slots[field.name]
        return None


class ContextImage:
    """One context image in its own region, with typed access by field name.

    The runtime fills it before a run and reads it back afterwards; helpers that move packet
    pointers (``xdp_adjust_head``...) update the pointer slots through :meth:`set_pointer`.
    """

    __slots__ = ("layout", "region")

    def __init__(self, layout: InternalLayout, name: str = "context") -> None:
        self.layout = layout
        self.region = Region.zeroed(RegionKind.CONTEXT, name, layout.size)

    @property
    def address(self) -> int:
        return self.region.address

    def map_into(self, memory: AddressSpace) -> None:
        if self.region not in memory:
            memory.add(self.region)

    def unmap_from(self, memory: AddressSpace) -> None:
        if self.region in memory:
            memory.remove(self.region)

    # -- plain fields --------------------------------------------------------------------------

    def get(self, name: str) -> int:
        field = self._field(name)
        fmt = _INT_FORMATS.get(field.size)
        if fmt is None:
            raise VmError(f"{self.layout.uapi.name}.{name} is {field.size} bytes, not an integer")
        value: int = struct.unpack_from(fmt, self.region.view, field.offset)[0]
        return value

    def set(self, name: str, value: int) -> None:
        field = self._field(name)
        fmt = _INT_FORMATS.get(field.size)
        if fmt is None:
            raise VmError(f"{self.layout.uapi.name}.{name} is {field.size} bytes, not an integer")
        struct.pack_into(fmt, self.region.view, field.offset, value & ((1 << (8 * field.size)) - 1))

    def get_bytes(self, name: str) -> bytes:
        field = self._field(name)
        return bytes(self.region.view[field.offset : field.end])

    def set_bytes(self, name: str, data: bytes) -> None:
        field = self._field(name)
        if len(data) != field.size:
            raise VmError(f"{self.layout.uapi.name}.{name} is {field.size} bytes, got {len(data)}")
        self.region.view[field.offset : field.end] = data

    def uapi_bytes(self) -> bytes:
        """The uapi struct as the program sees it (pointer fields read as written by the caller)."""
        return bytes(self.region.view[: self.layout.uapi.size])

    def load_uapi(self, data: bytes) -> None:
        """Copy a caller's uapi struct (``ctx_in``) over the head of the image."""
        if len(data) > self.layout.uapi.size:
            raise VmError(f"{self.layout.uapi.name} is {self.layout.uapi.size} bytes, got {len(data)}")
        self.region.view[: len(data)] = data

    # -- pointer slots -------------------------------------------------------------------------

    def set_pointer(self, conversion: Conversion, address: int) -> None:
        """Set the real address a load of the ``conversion`` field yields (no-op if absent)."""
        slot = self.layout.slot_for(conversion)
        if slot is not None:
            _U64.pack_into(self.region.view, slot, address & 0xFFFF_FFFF_FFFF_FFFF)

    def pointer(self, conversion: Conversion) -> int | None:
        slot = self.layout.slot_for(conversion)
        if slot is None:
            return None
        value: int = _U64.unpack_from(self.region.view, slot)[0]
        return value

    def _field(self, name: str) -> CtxField:
        try:
            return self.layout.uapi.field(name)
        except KeyError as error:
            raise VmError(str(error)) from None
