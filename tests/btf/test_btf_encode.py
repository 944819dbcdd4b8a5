"""BTF encoding: every object's BTF, re-encoded, decodes to the same types (and encoding is the
inverse of decoding for what we write: the corpus's value layouts and function prototypes)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pybpf.btf import Btf, FieldKind, SpecialField, encode_btf, special_fields
from pybpf.btf.types import Array, Func, FuncLinkage, FuncProto, Int, IntEncoding, Member, Param, Struct
from pybpf.obj import load_spec

PROGS = Path(__file__).parent.parent / "progs"
OBJECTS = [path for path in sorted(PROGS.glob("*.o")) if load_spec(path).btf is not None]


@pytest.mark.parametrize("path", OBJECTS, ids=[path.stem for path in OBJECTS])
def test_object_btf_round_trips(path: Path) -> None:
    btf = load_spec(path).btf
    assert btf is not None
    again = Btf.from_bytes(encode_btf(btf.types[1:]))
    assert again.types == btf.types


def test_built_types_round_trip_and_keep_their_fields() -> None:
    u32 = Int("unsigned int", 4, IntEncoding(0), 0, 32)
    types = (
        u32,
        Struct("bpf_spin_lock", 4, (Member("val", 1, 0),)),
        Array("", 1, 1, 3),
        Struct("value", 24, (Member("count", 1, 0), Member("lock", 2, 32), Member("pad", 3, 64))),
        FuncProto("", 1, (Param("x", 1),)),
        Func("f", 5, FuncLinkage.GLOBAL),
    )
    btf = Btf.from_bytes(encode_btf(types))
    assert btf.types[1:] == types
    assert special_fields(btf, 4) == (SpecialField(FieldKind.SPIN_LOCK, 4, 4),)
