"""Context layouts: what a program may read or write through its context pointer (r1).

The kernel describes this per program type in ``*_is_valid_access()`` callbacks and rewrites each
access in ``convert_ctx_access()``.  We keep the same facts as data: a ``ContextLayout`` is the
uapi struct's fields with their offsets, the load/store widths the kernel accepts, and what a
load yields (a plain scalar, or a pointer the verifier must type: packet start/end/meta, a socket,
flow keys).  A program type narrows a shared layout with :meth:`ContextLayout.restrict`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from enum import Enum, auto

__all__ = ["ContextLayout", "Conversion", "CtxField"]

NARROW_READ = frozenset({1, 2, 4})
NARROW_READ64 = frozenset({1, 2, 4, 8})
ONLY4 = frozenset({4})
ONLY8 = frozenset({8})
NONE: frozenset[int] = frozenset()


class Conversion(Enum):
    """What a context load produces, as the verifier must type the destination register."""

    PLAIN = auto()  # a scalar taken from the context (kernel: copied or derived from its struct)
    PACKET_DATA = auto()  # PTR_TO_PACKET: start of the packet (or sockopt optval)
    PACKET_END = auto()  # PTR_TO_PACKET_END: one past the packet's last byte
    PACKET_META = auto()  # PTR_TO_PACKET_META: start of the XDP/tc metadata area
    SOCK_COMMON_OR_NULL = auto()  # __sk_buff.sk: PTR_TO_SOCK_COMMON_OR_NULL
    SOCKET = auto()  # bpf_sock_addr.sk, bpf_sockopt.sk: PTR_TO_SOCKET
    SOCKET_OR_NULL = auto()  # bpf_sk_lookup.sk, sk_msg_md.sk
    FLOW_KEYS = auto()  # __sk_buff.flow_keys in flow dissectors: PTR_TO_FLOW_KEYS


@dataclass(frozen=True, slots=True)
class CtxField:
    """One field of a context struct.

    An access of width ``w`` at byte ``o`` of the context hits this field when
    ``offset <= o`` and ``o + w <= offset + size``; it must be ``w``-aligned within the struct and
    ``w`` must be in ``read_sizes`` / ``write_sizes``.  Arrays (``cb[5]``) are one field whose
    size is the whole array.
    """

    name: str
    offset: int
    size: int
    read_sizes: frozenset[int]
    write_sizes: frozenset[int] = NONE
    conversion: Conversion = Conversion.PLAIN
    source: str = ""  # what the kernel reads for it (``skb->len``), for documentation and runtime

    @property
    def end(self) -> int:
        return self.offset + self.size

    @property
    def readable(self) -> bool:
        return bool(self.read_sizes)

    @property
    def writable(self) -> bool:
        return bool(self.write_sizes)

    def allows(self, offset: int, width: int, write: bool) -> bool:
        """Whether an access of ``width`` bytes at context offset ``offset`` is permitted."""
        if not (self.offset <= offset and offset + width <= self.end):
            return False
        if offset % width:
            return False
        sizes = self.write_sizes if write else self.read_sizes
        if width not in sizes:
            return False
        # Pointer-valued fields are only ever loaded whole: a narrow load would yield half a pointer.
        return self.conversion is Conversion.PLAIN or (offset == self.offset and width == self.size)


@dataclass(frozen=True, slots=True)
class ContextLayout:
    """A context struct: name, total size and fields ordered by offset."""

    name: str
    size: int
    fields: tuple[CtxField, ...]

    def field(self, name: str) -> CtxField:
        for candidate in self.fields:
            if candidate.name == name:
                return candidate
        raise KeyError(f"{self.name} has no field {name!r}")

    def field_at(self, offset: int, width: int = 1) -> CtxField | None:
        """The field containing bytes ``[offset, offset + width)``, or None (padding, outside)."""
        for candidate in self.fields:
            if candidate.offset <= offset and offset + width <= candidate.end:
                return candidate
        return None

    def check_access(self, offset: int, width: int, write: bool) -> CtxField | None:
        """The field an access goes to when the access is allowed, else None."""
        target = self.field_at(offset, width)
        if target is None or not target.allows(offset, width, write):
            return None
        return target

    def restrict(
        self,
        *,
        unreadable: Iterable[str] = (),
        writable: Iterable[str] | None = None,
        name_suffix: str = "",
    ) -> ContextLayout:
        """A copy where ``unreadable`` fields can be neither read nor written and, when
        ``writable`` is given, only those fields keep their write sizes (others become read-only).
        """
        hidden = set(unreadable)
        keep_writes = None if writable is None else set(writable)
        known = {f.name for f in self.fields}
        unknown = (hidden | (keep_writes or set())) - known
        if unknown:
            raise KeyError(f"{self.name} has no fields {sorted(unknown)}")
        fields = []
        for original in self.fields:
            updated = original
            if original.name in hidden:
                updated = replace(original, read_sizes=NONE, write_sizes=NONE)
            elif keep_writes is not None and original.name not in keep_writes:
                updated = replace(original, write_sizes=NONE)
            fields.append(updated)
        return ContextLayout(self.name + name_suffix, self.size, tuple(fields))


def sequential(
    name: str,
    specs: Iterable[tuple[str, int, frozenset[int], frozenset[int], Conversion, str]],
    *,
    align_of: dict[str, int] | None = None,
) -> ContextLayout:
    """Lay out fields one after another with C's natural alignment.

    A field aligns to its size when that is 1, 2, 4 or 8, otherwise (u32 arrays) to 4, unless
    ``align_of`` says otherwise; the struct size rounds up to the largest alignment.  A spec
    whose name starts with ``_`` is padding (a bit-field or an unused union arm) and is not kept.
    """
    overrides = align_of or {}
    offset = 0
    max_align = 1
    fields: list[CtxField] = []
    for field_name, field_size, reads, writes, conversion, source in specs:
        if field_name in overrides:
            align = overrides[field_name]
        elif field_name.startswith("_"):
            align = 1
        else:
            align = field_size if field_size in (1, 2, 4, 8) else 4
        max_align = max(max_align, align)
        offset = (offset + align - 1) // align * align
        if not field_name.startswith("_"):
            fields.append(CtxField(field_name, offset, field_size, reads, writes, conversion, source))
        offset += field_size
    total = (offset + max_align - 1) // max_align * max_align
    return ContextLayout(name, total, tuple(fields))
