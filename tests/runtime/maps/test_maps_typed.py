"""BTF-typed keys and values: the codec, maps built from an object file's specs, and batches."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pybpf.btf import (
    Array,
    Btf,
    BtfType,
    Enum,
    EnumValue,
    Float,
    Int,
    IntEncoding,
    Member,
    StringTable,
    Struct,
    Typedef,
    Union,
)
from pybpf.errors import BtfTypeError, MapErrnoError, MapKeyNotFoundError
from pybpf.obj import load_spec
from pybpf.platform.uapi_generated import BpfMapType
from pybpf.runtime.maps import MapDef, create_map
from pybpf.runtime.typed_values import btf_value_decode, btf_value_encode
from pybpf.vm.memory import AddressSpace

PROGS = Path(__file__).resolve().parents[2] / "progs"

# Type ids: 1 u32, 2 s16, 3 char, 4 char[6], 5 enum color, 6 struct flags (bitfields),
# 7 union, 8 struct value, 9 typedef value_t, 10 double, 11 u8, 12 u16[3], 13 anonymous struct.
TYPES: list[BtfType] = [
    Int("unsigned int", 4, IntEncoding(0), 0, 32),
    Int("short", 2, IntEncoding.SIGNED, 0, 16),
    Int("char", 1, IntEncoding.CHAR | IntEncoding.SIGNED, 0, 8),
    Array("", 3, 1, 6),
    Enum("color", 4, (EnumValue("RED", 0), EnumValue("BLUE", 7))),
    Struct("flags", 4, (Member("low", 1, 0, 3), Member("mid", 2, 3, 5), Member("high", 1, 8, 24)), kind_flag=True),
    Union("either", 4, (Member("word", 1, 0), Member("half", 2, 0))),
    Struct(
        "value",
        40,
        (
            Member("id", 1, 0),
            Member("delta", 2, 32),
            Member("name", 4, 48),
            Member("color", 5, 96),
            Member("flags", 6, 128),
            Member("either", 7, 160),
            Member("ratio", 10, 192),
            Member("", 13, 256),
        ),
    ),
    Typedef("value_t", 8),
    Float("double", 8),
    Int("unsigned char", 1, IntEncoding(0), 0, 8),
    Array("", 14, 1, 3),
    Struct("", 8, (Member("small", 11, 0), Member("triple", 12, 16))),
    Int("unsigned short", 2, IntEncoding(0), 0, 16),
]
BTF = Btf(TYPES, StringTable(b"\0"))
VALUE_T = 9


def test_struct_round_trip_and_layout() -> None:
    value = {
        "id": 0xDEADBEEF,
        "delta": -2,
        "name": b"eth0",
        "color": "BLUE",
        "flags": {"low": 5, "mid": -3, "high": 0xABCDEF},
        "either": {"word": 0x01020304},
        "ratio": 0.5,
        "small": 9,
        "triple": [1, 2, 3],
    }
    data = btf_value_encode(BTF, VALUE_T, value)
    assert len(data) == 40
    assert data[0:4] == struct.pack("<I", 0xDEADBEEF)
    assert data[4:6] == struct.pack("<h", -2)
    assert data[6:12] == b"eth0\0\0"
    assert data[12:16] == struct.pack("<I", 7)
    assert int.from_bytes(data[16:20], "little") == 5 | (0b11101 << 3) | (0xABCDEF << 8)  # -3 in 5 bits
    assert data[24:32] == struct.pack("<d", 0.5)
    assert data[32] == 9 and data[34:40] == struct.pack("<HHH", 1, 2, 3)
    decoded = btf_value_decode(BTF, VALUE_T, data)
    assert decoded["name"] == [ord(c) for c in "eth0"] + [0, 0]
    assert decoded["color"] == 7 and decoded["either"] == {"word": 0x01020304, "half": 0x0304}
    assert decoded["flags"] == {"low": 5, "mid": -3, "high": 0xABCDEF}
    assert decoded["small"] == 9 and decoded["triple"] == [1, 2, 3]
    assert btf_value_encode(BTF, VALUE_T, decoded) == data


def test_missing_members_are_zero_and_unknown_ones_fail() -> None:
    assert btf_value_encode(BTF, VALUE_T, {}) == bytes(40)
    with pytest.raises(BtfTypeError):
        btf_value_encode(BTF, VALUE_T, {"nope": 1})
    with pytest.raises(BtfTypeError):
        btf_value_encode(BTF, 1, 1 << 32)
    with pytest.raises(BtfTypeError):
        btf_value_encode(BTF, 6, {"low": 8})  # 3-bit field
    with pytest.raises(BtfTypeError):
        btf_value_encode(BTF, 4, b"toolong")


@settings(max_examples=100, deadline=None)
@given(data=st.binary(min_size=40, max_size=40))
def test_decode_encode_is_identity_on_bytes(data: bytes) -> None:
    decoded = btf_value_decode(BTF, VALUE_T, data)
    again = btf_value_encode(BTF, VALUE_T, decoded)
    # The union overlays its members, and padding (bytes 20..24, 33) is not described by any member.
    mask = [i for i in range(40) if not 20 <= i < 24 and i != 33]
    assert [again[i] for i in mask] == [data[i] for i in mask]


def test_typed_hash_map() -> None:
    m = create_map(
        MapDef(BpfMapType.HASH, 4, 40, 8, btf=BTF, btf_key_type_id=1, btf_value_type_id=VALUE_T), AddressSpace()
    )
    m[7] = {"id": 1, "name": "lo"}
    m[b"\x08\0\0\0"] = bytes(40)  # raw bytes still work
    assert m[7]["id"] == 1
    assert sorted(m) == [7, 8]
    assert dict(m.items())[8]["id"] == 0
    assert 7 in m and 9 not in m
    assert m.get(9, "absent") == "absent"
    del m[7]
    with pytest.raises(MapKeyNotFoundError):
        m[7]


def test_percpu_values_are_lists() -> None:
    m = create_map(
        MapDef(BpfMapType.PERCPU_ARRAY, 4, 2, 2, btf=BTF, btf_key_type_id=1, btf_value_type_id=2),
        AddressSpace(),
        ncpus=3,
    )
    m[1] = [-1, 2, -3]
    assert m[1] == [-1, 2, -3]
    assert m.lookup_raw(b"\1\0\0\0") == b"\xff\xff" + bytes(6) + b"\2\0" + bytes(6) + b"\xfd\xff" + bytes(6)
    with pytest.raises(MapErrnoError):
        m[1] = [1, 2]


def test_map_from_object_spec() -> None:
    spec = load_spec(PROGS / "xdp_lb.o")
    backends = create_map(MapDef.from_spec(spec.maps["backends"], spec.btf), AddressSpace())
    backends[3] = {"addr": 0x0A000001, "mac": [1, 2, 3, 4, 5, 6]}
    assert backends[3] == {"addr": 0x0A000001, "mac": [1, 2, 3, 4, 5, 6], "pad": 0}
    assert backends.lookup_raw(b"\3\0\0\0") == struct.pack("<I", 0x0A000001) + bytes([1, 2, 3, 4, 5, 6, 0, 0])


def test_batches() -> None:
    m = create_map(MapDef(BpfMapType.HASH, 4, 4, 8), AddressSpace())
    assert m.update_batch([(i, i * 10) for i in range(5)]) == 5
    items, token = m.lookup_batch(count=3)
    assert [k for k, _ in items] == [i.to_bytes(4, "little") for i in range(3)]
    rest, token = m.lookup_batch(token)
    assert token is None and len(rest) == 2
    assert m.delete_batch([0, 1]) == 2
    with pytest.raises(MapKeyNotFoundError) as caught:
        m.delete_batch([2, 99, 3])
    assert "after 1 element" in str(caught.value.__notes__)
    assert m.lookup_and_delete_batch() == [
        ((3).to_bytes(4, "little"), (30).to_bytes(4, "little")),
        ((4).to_bytes(4, "little"), (40).to_bytes(4, "little")),
    ]
    assert len(m) == 0
    queue = create_map(MapDef(BpfMapType.QUEUE, 0, 4, 2), AddressSpace())
    with pytest.raises(MapErrnoError):
        queue.lookup_batch()


def spin_lock_btf() -> Btf:
    # 1 u32, 2 struct bpf_spin_lock { u32 val; }, 3 struct locked { u32 count; struct bpf_spin_lock lock; }
    return Btf(
        [
            Int("unsigned int", 4, IntEncoding(0), 0, 32),
            Struct("bpf_spin_lock", 4, (Member("val", 1, 0),)),
            Struct("locked", 8, (Member("count", 1, 0), Member("lock", 2, 32))),
        ],
        StringTable(b"\0"),
    )


def test_bpf_f_lock_needs_a_spin_lock() -> None:
    btf = spin_lock_btf()
    locked = create_map(
        MapDef(BpfMapType.HASH, 4, 8, 4, btf=btf, btf_key_type_id=1, btf_value_type_id=3), AddressSpace()
    )
    locked.update_raw(b"\1\0\0\0", b"\5\0\0\0\0\0\0\0", 4)  # BPF_F_LOCK
    address = locked.lookup_address(b"\1\0\0\0")
    locked.address_space.store(address + 4, 4, 1)  # a program holds the lock
    locked.update_raw(b"\1\0\0\0", b"\6\0\0\0\0\0\0\0", 4)
    assert locked.lookup(1) == {"count": 6, "lock": {"val": 1}}  # the lock word is never overwritten
    with pytest.raises(MapErrnoError) as caught:
        locked.freeze()  # maps with special BTF fields cannot be frozen (ENOTSUPP)
    assert caught.value.errno == 524
    plain = create_map(MapDef(BpfMapType.HASH, 4, 8, 4), AddressSpace())
    with pytest.raises(MapErrnoError) as caught:
        plain.update_raw(b"\1\0\0\0", bytes(8), 4)
    assert caught.value.errno_name == "EINVAL"
    with pytest.raises(MapErrnoError):
        plain.lookup_raw(b"\1\0\0\0", 4)
