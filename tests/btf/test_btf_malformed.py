"""Hostile input: random bytes, truncations and bit flips of valid blobs. Only BtfError may escape
from decoding, and from using what decoded (lookups, sizes, formatting, dumps, CO-RE)."""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Callable

import pytest
from btf_compiled import CompiledObject
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pybpf.btf import Btf, BtfKind, dump_raw
from pybpf.btf.core import CoreResolver
from pybpf.btf.ext import BtfExt
from pybpf.errors import BtfError, BtfFormatError

Compile = Callable[[str], CompiledObject]
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def blobs(compile_prog: Compile) -> tuple[bytes, bytes]:
    obj = compile_prog("core_local")
    return obj.btf_bytes, obj.btf_ext_bytes


def _exercise(data: bytes) -> None:
    """Decode and use everything; only BtfError may come out."""
    try:
        btf = Btf.from_bytes(data)
    except BtfError:
        return
    for type_id in range(len(btf)):
        for call in (btf.size_of, btf.align_of, btf.format_type, btf.resolve):
            with contextlib.suppress(BtfError):
                call(type_id)
    with contextlib.suppress(BtfError):
        dump_raw(btf)


def _exercise_ext(btf_data: bytes, ext_data: bytes) -> None:
    btf = Btf.from_bytes(btf_data)
    try:
        ext = BtfExt.from_bytes(ext_data, btf)
    except BtfError:
        return
    resolver = CoreResolver(btf)
    for relos in ext.core_relos.values():
        for relo in relos:
            with contextlib.suppress(BtfError):
                resolver.resolve(btf, relo)


def _header(type_len: int, str_len: int) -> bytes:
    return struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, type_len, type_len, str_len)


@FUZZ
@given(st.binary(max_size=512))
def test_random_bytes(data: bytes) -> None:
    _exercise(data)


@FUZZ
@given(st.binary(max_size=256))
def test_random_type_section_behind_a_valid_header(body: bytes) -> None:
    strings = b"\0a\0bc\0"
    body = body[: len(body) // 4 * 4]
    _exercise(_header(len(body), len(strings)) + body + strings)


@FUZZ
@given(data=st.data())
def test_truncations_and_bit_flips_of_a_real_blob(blobs: tuple[bytes, bytes], data: st.DataObject) -> None:
    btf_data, _ = blobs
    cut = data.draw(st.integers(0, len(btf_data)))
    _exercise(btf_data[:cut])
    flips = data.draw(st.lists(st.integers(0, len(btf_data) * 8 - 1), min_size=1, max_size=4))
    mutated = bytearray(btf_data)
    for bit in flips:
        mutated[bit // 8] ^= 1 << (bit % 8)
    _exercise(bytes(mutated))


@FUZZ
@given(data=st.data())
def test_btf_ext_truncations_and_bit_flips(blobs: tuple[bytes, bytes], data: st.DataObject) -> None:
    btf_data, ext_data = blobs
    cut = data.draw(st.integers(0, len(ext_data)))
    _exercise_ext(btf_data, ext_data[:cut])
    flips = data.draw(st.lists(st.integers(0, len(ext_data) * 8 - 1), min_size=1, max_size=4))
    mutated = bytearray(ext_data)
    for bit in flips:
        mutated[bit // 8] ^= 1 << (bit % 8)
    _exercise_ext(btf_data, bytes(mutated))


def test_specific_errors_name_where() -> None:
    with pytest.raises(BtfFormatError, match="magic"):
        Btf.from_bytes(b"\x00\x00" + bytes(22))
    with pytest.raises(BtfFormatError, match="truncated header"):
        Btf.from_bytes(b"\x9f\xeb\x01\x00")
    # INT type whose name offset points past the string section.
    int_type = struct.pack("<IIII", 99, BtfKind.INT << 24, 4, 32)
    with pytest.raises(BtfFormatError) as info:
        Btf.from_bytes(_header(len(int_type), 2) + int_type + b"\0\0")
    assert info.value.type_id == 1 and "string offset 99" in str(info.value)
    unknown = struct.pack("<III", 0, 25 << 24, 0)
    with pytest.raises(BtfFormatError, match="unknown BTF kind 25") as info:
        Btf.from_bytes(_header(len(unknown), 1) + unknown + b"\0")
    assert info.value.type_id == 1 and info.value.offset == 24
    dangling = struct.pack("<III", 0, BtfKind.PTR << 24, 7)
    with pytest.raises(BtfFormatError, match="type id 7"):
        Btf.from_bytes(_header(len(dangling), 1) + dangling + b"\0")
    loop = struct.pack("<III", 0, BtfKind.CONST << 24, 1)
    btf = Btf.from_bytes(_header(len(loop), 1) + loop + b"\0")
    with pytest.raises(BtfError, match="loop"):
        btf.resolve(1)
    with pytest.raises(BtfError):
        btf.format_type(1)


def test_big_endian_blob_decodes_like_little_endian() -> None:
    def blob(order: str) -> bytes:
        types = struct.pack(order + "IIII", 1, BtfKind.INT << 24, 4, (1 << 24) | 32)
        types += struct.pack(order + "III", 0, BtfKind.PTR << 24, 1)
        strings = b"\0int\0"
        header = struct.pack(order + "HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(types), len(types), len(strings))
        return header + types + strings

    little, big = Btf.from_bytes(blob("<")), Btf.from_bytes(blob(">"))
    assert big.byte_order == "big" and little.byte_order == "little"
    assert big.types == little.types
    assert big.format_type(2) == "int *"


def test_split_btf_continues_ids_and_strings() -> None:
    base_types = struct.pack("<IIII", 1, BtfKind.INT << 24, 4, (1 << 24) | 32)
    base_strings = b"\0int\0"
    base = Btf.from_bytes(_header(len(base_types), len(base_strings)) + base_types + base_strings)
    # A pointer to base type 1 named by a string of the split section (offset past the base's).
    split_types = struct.pack("<III", len(base_strings) + 1, BtfKind.TYPEDEF << 24, 1)
    split_types += struct.pack("<III", 0, BtfKind.PTR << 24, 2)
    split_strings = b"\0myint\0"
    split = Btf.from_bytes(_header(len(split_types), len(split_strings)) + split_types + split_strings, base=base)
    assert split.start_id == 2 and len(split) == 4
    assert split[2].name == "myint" and split.format_type(3) == "myint *"
    assert split.find("int") == 1 and split.size_of(3) == 8
    assert dump_raw(split).splitlines()[0] == "[2] TYPEDEF 'myint' type_id=1"
