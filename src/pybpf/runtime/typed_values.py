"""Encode Python values to the bytes of a BTF type and back (the map API's typed keys and values).

The mapping: integers, enums and pointers are ``int``; ``float`` for floats; a struct or
union is a ``dict`` of member name to value (anonymous members are flattened into it, as C
lets you name their fields directly); an array is a ``list``. Encoding is lenient where C
is: missing members and missing trailing array elements are zero, and a char array also
accepts ``bytes`` or ``str``. Decoding always gives the full structure.

Byte order is the BTF's (little-endian for every object we load on this host).
"""

from __future__ import annotations

import struct
from typing import Any

from pybpf.btf import AnyEnum, Array, Btf, Enum, Enum64, Float, Int, Member, Ptr, Struct, Union
from pybpf.errors import BtfTypeError

_FLOAT_FORMATS = {4: "f", 8: "d"}


def btf_value_encode(btf: Btf, type_id: int, value: Any) -> bytes:
    """The bytes of ``value`` as a C object of BTF type ``type_id``."""
    size = btf.size_of(type_id)
    buffer = bytearray(size)
    _encode_into(btf, type_id, value, buffer, 0)
    return bytes(buffer)


def btf_value_decode(btf: Btf, type_id: int, data: bytes | bytearray | memoryview) -> Any:
    """The Python value of the C object of BTF type ``type_id`` held in ``data``."""
    size = btf.size_of(type_id)
    if len(data) < size:
        raise BtfTypeError(f"{len(data)} bytes cannot hold a {size}-byte {btf.format_type(type_id)}", type_id=type_id)
    return _decode(btf, type_id, bytes(data[:size]), 0)


def _byteorder(btf: Btf) -> Any:
    return btf.byte_order


def _int_bounds(size: int, signed: bool) -> tuple[int, int]:
    bits = size * 8
    return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)


def _encode_int(btf: Btf, type_id: int, value: Any, *, size: int, signed: bool, buffer: bytearray, offset: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, bool):
            value = int(value)
        else:
            raise BtfTypeError(f"expected an int for {btf.format_type(type_id)}, got {value!r}", type_id=type_id)
    low, high = _int_bounds(size, signed)
    # Accept both signed and unsigned spellings of the same bits (-1 or 0xff for a u8): C does.
    if not (min(low, 0) <= value <= (1 << (size * 8)) - 1 or low <= value <= high):
        raise BtfTypeError(f"{value} does not fit {btf.format_type(type_id)}", type_id=type_id)
    buffer[offset : offset + size] = (value & ((1 << (size * 8)) - 1)).to_bytes(size, _byteorder(btf))


def _encode_into(btf: Btf, type_id: int, value: Any, buffer: bytearray, offset: int) -> None:
    resolved_id = btf.resolve(type_id)
    record = btf[resolved_id]
    if isinstance(record, Int):
        _encode_int(btf, resolved_id, value, size=record.size, signed=record.is_signed, buffer=buffer, offset=offset)
    elif isinstance(record, Enum | Enum64):
        if isinstance(value, str):
            value = _enum_value(btf, resolved_id, record, value)
        _encode_int(btf, resolved_id, value, size=record.size, signed=record.signed, buffer=buffer, offset=offset)
    elif isinstance(record, Ptr):
        _encode_int(btf, resolved_id, value, size=btf.pointer_size, signed=False, buffer=buffer, offset=offset)
    elif isinstance(record, Float):
        fmt = _FLOAT_FORMATS.get(record.size)
        if fmt is None or not isinstance(value, int | float):
            raise BtfTypeError(f"cannot encode {value!r} as {btf.format_type(resolved_id)}", type_id=resolved_id)
        prefix = "<" if btf.byte_order == "little" else ">"
        struct.pack_into(prefix + fmt, buffer, offset, float(value))
    elif isinstance(record, Array):
        _encode_array(btf, resolved_id, record, value, buffer=buffer, offset=offset)
    elif isinstance(record, Struct | Union):
        if not isinstance(value, dict):
            message = f"expected a dict for {btf.format_type(resolved_id)}, got {value!r}"
            raise BtfTypeError(message, type_id=resolved_id)
        remaining = dict(value)
        _encode_members(btf, record, remaining, buffer, offset)
        if remaining:
            names = ", ".join(sorted(map(str, remaining)))
            raise BtfTypeError(f"{btf.format_type(resolved_id)} has no member(s) {names}", type_id=resolved_id)
    else:
        raise BtfTypeError(f"cannot encode a value of kind {record.KIND.name}", type_id=resolved_id)


def _enum_value(btf: Btf, type_id: int, record: AnyEnum, name: str) -> int:
    for item in record.values:
        if item.name == name:
            return item.value
    raise BtfTypeError(f"{btf.format_type(type_id)} has no enumerator {name!r}", type_id=type_id)


def _encode_array(btf: Btf, type_id: int, record: Array, value: Any, *, buffer: bytearray, offset: int) -> None:
    element_size = btf.size_of(record.type_id)
    element = btf.resolved(record.type_id)
    if isinstance(value, str):
        value = value.encode()
    if isinstance(value, bytes | bytearray) and isinstance(element, Int) and element.size == 1:
        if len(value) > record.nelems:
            raise BtfTypeError(f"{len(value)} bytes do not fit {btf.format_type(type_id)}", type_id=type_id)
        buffer[offset : offset + len(value)] = value
        return
    if not isinstance(value, list | tuple):
        raise BtfTypeError(f"expected a list for {btf.format_type(type_id)}, got {value!r}", type_id=type_id)
    if len(value) > record.nelems:
        raise BtfTypeError(f"{len(value)} elements do not fit {btf.format_type(type_id)}", type_id=type_id)
    for index, item in enumerate(value):
        _encode_into(btf, record.type_id, item, buffer, offset + index * element_size)


def _encode_members(
    btf: Btf, record: Struct | Union, remaining: dict[Any, Any], buffer: bytearray, offset: int
) -> None:
    for member in record.members:
        if not member.name:
            inner = btf.resolved(member.type_id)
            if isinstance(inner, Struct | Union):
                _encode_members(btf, inner, remaining, buffer, offset + member.bit_offset // 8)
            continue
        if member.name not in remaining:
            continue
        item = remaining.pop(member.name)
        if member.bitfield_size:
            _encode_bitfield(btf, member, item, buffer, offset)
        else:
            _encode_into(btf, member.type_id, item, buffer, offset + member.bit_offset // 8)


def _encode_bitfield(btf: Btf, member: Member, value: Any, buffer: bytearray, offset: int) -> None:
    # Little-endian bitfields: bit_offset counts from the least significant bit of the struct.
    if not isinstance(value, int):
        raise BtfTypeError(f"bitfield {member.name!r} needs an int, got {value!r}", type_id=member.type_id)
    width = member.bitfield_size
    if not -(1 << (width - 1)) <= value < (1 << width):
        raise BtfTypeError(f"{value} does not fit the {width}-bit field {member.name!r}", type_id=member.type_id)
    start = member.bit_offset // 8
    end = (member.bit_offset + width + 7) // 8
    word = int.from_bytes(buffer[offset + start : offset + end], "little")
    shift = member.bit_offset - start * 8
    mask = ((1 << width) - 1) << shift
    word = (word & ~mask) | ((value << shift) & mask)
    buffer[offset + start : offset + end] = word.to_bytes(end - start, "little")


def _decode(btf: Btf, type_id: int, data: bytes, offset: int) -> Any:
    resolved_id = btf.resolve(type_id)
    record = btf[resolved_id]
    if isinstance(record, Int):
        return int.from_bytes(data[offset : offset + record.size], _byteorder(btf), signed=record.is_signed)
    if isinstance(record, Enum | Enum64):
        return int.from_bytes(data[offset : offset + record.size], _byteorder(btf), signed=record.signed)
    if isinstance(record, Ptr):
        return int.from_bytes(data[offset : offset + btf.pointer_size], _byteorder(btf))
    if isinstance(record, Float):
        fmt = _FLOAT_FORMATS.get(record.size)
        if fmt is None:
            raise BtfTypeError(f"cannot decode a {record.size}-byte float", type_id=resolved_id)
        prefix = "<" if btf.byte_order == "little" else ">"
        return struct.unpack_from(prefix + fmt, data, offset)[0]
    if isinstance(record, Array):
        element_size = btf.size_of(record.type_id)
        return [_decode(btf, record.type_id, data, offset + i * element_size) for i in range(record.nelems)]
    if isinstance(record, Struct | Union):
        result: dict[str, Any] = {}
        _decode_members(btf, record, data, offset, result)
        return result
    raise BtfTypeError(f"cannot decode a value of kind {record.KIND.name}", type_id=resolved_id)


def _decode_members(btf: Btf, record: Struct | Union, data: bytes, offset: int, result: dict[str, Any]) -> None:
    for member in record.members:
        if not member.name:
            inner = btf.resolved(member.type_id)
            if isinstance(inner, Struct | Union):
                _decode_members(btf, inner, data, offset + member.bit_offset // 8, result)
            continue
        if member.bitfield_size:
            width = member.bitfield_size
            start = member.bit_offset // 8
            end = (member.bit_offset + width + 7) // 8
            word = int.from_bytes(data[offset + start : offset + end], "little")
            raw = (word >> (member.bit_offset - start * 8)) & ((1 << width) - 1)
            base = btf.resolved(member.type_id)
            signed = (isinstance(base, Int) and base.is_signed) or (isinstance(base, Enum | Enum64) and base.signed)
            if signed and raw >> (width - 1):
                raw -= 1 << width
            result[member.name] = raw
        else:
            result[member.name] = _decode(btf, member.type_id, data, offset + member.bit_offset // 8)
