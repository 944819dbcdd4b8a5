"""Decoding .BTF: types and layouts of a clang-built object, the running kernel's BTF, and
differential checks against bpftool's raw dump."""

from __future__ import annotations

import subprocess
from collections.abc import Callable

import pytest
from btf_compiled import CompiledObject

from pybpf.btf import (
    Array,
    Btf,
    BtfKind,
    Datasec,
    DeclTag,
    Enum,
    Enum64,
    Func,
    FuncLinkage,
    FuncProto,
    Fwd,
    Int,
    Ptr,
    Struct,
    TypeTag,
    Union,
    Var,
    VarLinkage,
    dump_raw,
    iter_raw_dump,
)
from pybpf.errors import BtfError, BtfTypeError

Compile = Callable[[str], CompiledObject]


@pytest.fixture(scope="module")
def all_kinds(compile_prog: Compile) -> tuple[CompiledObject, Btf]:
    obj = compile_prog("all_kinds")
    return obj, Btf.from_bytes(obj.btf_bytes)


def _struct(btf: Btf, name: str) -> Struct:
    type_id = btf.find(name, BtfKind.STRUCT)
    assert type_id is not None, name
    record = btf[type_id]
    assert isinstance(record, Struct)
    return record


def test_every_kind_is_decoded(all_kinds: tuple[CompiledObject, Btf]) -> None:
    _, btf = all_kinds
    kinds = {record.KIND for record in btf.types[1:]}
    expected = set(BtfKind) - {BtfKind.UNKN}
    assert expected <= kinds, f"missing {expected - kinds}"
    assert btf.types[0].KIND == BtfKind.UNKN
    assert btf.byte_order == "little"


def test_ints_enums_and_linkage(all_kinds: tuple[CompiledObject, Btf]) -> None:
    _, btf = all_kinds
    int_id = btf.find("int", BtfKind.INT)
    assert int_id is not None
    int_type = btf[int_id]
    assert isinstance(int_type, Int)
    assert (int_type.size, int_type.bits, int_type.offset, int_type.is_signed) == (4, 32, 0, True)
    bool_type = btf[btf.find("_Bool") or 0]
    assert isinstance(bool_type, Int) and bool_type.is_bool

    color = btf[btf.find("color", BtfKind.ENUM) or 0]
    assert isinstance(color, Enum) and color.signed
    assert [(v.name, v.value) for v in color.values] == [("RED", 1), ("GREEN", -2), ("BLUE", 7)]
    ucol = btf[btf.find("ucol") or 0]
    assert isinstance(ucol, Enum) and not ucol.signed and ucol.values[0].value == 0x80000000
    big = btf[btf.find("big") or 0]
    assert isinstance(big, Enum64) and big.size == 8
    assert [v.value for v in big.values] == [1 << 32, (1 << 64) - 1]

    helper = btf[btf.find("helper", BtfKind.FUNC) or 0]
    assert isinstance(helper, Func) and helper.linkage == FuncLinkage.GLOBAL
    proto = btf[helper.type_id]
    assert isinstance(proto, FuncProto)
    assert [p.name for p in proto.params] == ["a", "k"]
    assert btf.format_type(proto.params[0].type_id) == "struct all *"

    counter = btf[btf.find("s_counter", BtfKind.VAR) or 0]
    assert isinstance(counter, Var) and counter.linkage == VarLinkage.STATIC
    data = btf[btf.find(".data", BtfKind.DATASEC) or 0]
    assert isinstance(data, Datasec)
    assert [btf[v.type_id].name for v in data.vars] == ["s_counter"]
    assert data.vars[0].size == 4

    fwd = btf[btf.find("fwd_only") or 0]
    assert isinstance(fwd, Fwd) and not fwd.is_union
    tags = {(t.name, t.component_idx) for t in btf.types if isinstance(t, DeclTag)}
    assert {("st", -1), ("field", 0), ("fn", -1)} <= tags
    assert any(isinstance(t, TypeTag) and t.name == "user" for t in btf.types)


def test_members_and_bitfields(all_kinds: tuple[CompiledObject, Btf]) -> None:
    obj, btf = all_kinds
    flags = _struct(btf, "flags")
    assert [(m.name, m.bit_offset, m.bitfield_size) for m in flags.members] == [
        ("a", 0, 3),
        ("b", 3, 5),
        ("c", 8, 7),
        ("d", 64, 0),
    ]
    all_type_id = btf.find("all", BtfKind.STRUCT)
    assert all_type_id is not None
    for member, constant in (("in", "offsetof_in"), ("arr", "offsetof_arr"), ("fp", "offsetof_fp")):
        found = btf.find_member(all_type_id, member)
        assert found is not None
        assert found.bit_offset == 8 * obj.layout(constant)
    # Members of anonymous struct/union members are found as C finds them.
    inner_id = btf.find("inner", BtfKind.STRUCT)
    assert inner_id is not None
    found_u = btf.find_member(inner_id, "u")
    found_c2 = btf.find_member(inner_id, "c2")
    assert found_u is not None and found_c2 is not None
    assert found_u.bit_offset == 8 * obj.layout("offsetof_inner_u")
    assert found_c2.bit_offset == 8 * obj.layout("offsetof_inner_c2")
    assert found_c2.path == (2, 1)
    assert btf.find_member(inner_id, "nope") is None


def test_sizes_and_alignment_agree_with_clang(all_kinds: tuple[CompiledObject, Btf]) -> None:
    obj, btf = all_kinds
    for name, kind in (("all", BtfKind.STRUCT), ("flags", BtfKind.STRUCT), ("inner", BtfKind.STRUCT)):
        type_id = btf.find(name, kind)
        assert type_id is not None
        assert btf.size_of(type_id) == obj.layout(f"sizeof_{name}")
    assert btf.size_of(btf.find("un", BtfKind.UNION) or 0) == obj.layout("sizeof_un")
    assert btf.align_of(btf.find("all") or 0) == obj.layout("alignof_all")
    assert btf.align_of(btf.find("inner") or 0) == obj.layout("alignof_inner")
    packed = btf.find("packed", BtfKind.STRUCT) or 0
    assert btf.size_of(packed) == obj.layout("sizeof_packed")
    assert btf.align_of(packed) == obj.layout("alignof_packed") == 1
    with pytest.raises(BtfTypeError):
        btf.size_of(btf.find("helper", BtfKind.FUNC) or 0)


def test_resolve_and_format(all_kinds: tuple[CompiledObject, Btf]) -> None:
    _, btf = all_kinds
    all_type = _struct(btf, "all")
    by_name = {m.name: m.type_id for m in all_type.members}
    vci = by_name["vci"]
    assert btf.format_type(vci) == "const volatile int"
    assert btf.resolved(vci) == btf[btf.find("int") or 0]
    expected = {
        "rp": "int *restrict",
        "fw": "struct fwd_only *",
        "u": "union un",
        "in": "struct inner [2]",
        "fp": "int (*)(int, const char *)",
        "arr": "int [3][4]",
        "b": "enum big",
        "fl": "struct flags",
    }
    for member, text in expected.items():
        assert btf.format_type(by_name[member]) == text, member
    assert btf.format_type(by_name["fp"], "cb") == "int (*cb)(int, const char *)"
    assert btf.format_type(btf.find("helper", BtfKind.FUNC) or 0) == "int helper(struct all *a, int k)"
    d_member = _struct(btf, "flags").members[3]
    assert btf.format_type(d_member.type_id) == "u64"
    assert btf.format_type(btf.resolve(d_member.type_id)) == "unsigned long long"


def test_lookup_errors(all_kinds: tuple[CompiledObject, Btf]) -> None:
    _, btf = all_kinds
    with pytest.raises(BtfTypeError) as info:
        btf[len(btf)]
    assert info.value.type_id == len(btf)
    assert isinstance(info.value, BtfError)
    assert btf.find("no_such_type") is None
    assert btf.find("all", BtfKind.UNION) is None


def test_raw_dump_matches_bpftool_on_object(all_kinds: tuple[CompiledObject, Btf], bpftool: str) -> None:
    obj, btf = all_kinds
    expected = subprocess.run(
        [bpftool, "btf", "dump", "file", str(obj.path), "format", "raw"], check=True, capture_output=True, text=True
    ).stdout
    assert dump_raw(btf) == expected


def test_vmlinux_dumps_like_bpftool(vmlinux_btf: Btf, bpftool: str) -> None:
    # How long the parse takes is measured by benchmarks/bench_runtime_costs.py, not asserted here.
    btf = vmlinux_btf
    expected = subprocess.run(
        [bpftool, "btf", "dump", "file", "/sys/kernel/btf/vmlinux", "format", "raw"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.splitlines()
    ours = list(iter_raw_dump(btf))
    assert len(ours) == len(expected)
    mismatches = [(i, a, b) for i, (a, b) in enumerate(zip(ours, expected, strict=True)) if a != b]
    assert not mismatches[:5]


def test_vmlinux_well_known_types(vmlinux_btf: Btf) -> None:
    btf = vmlinux_btf
    task = btf.find("task_struct", BtfKind.STRUCT)
    assert task is not None
    comm = btf.find_member(task, "comm")
    assert comm is not None
    assert btf.format_type(comm.member.type_id) == "char [16]"
    iphdr = btf.find("iphdr", BtfKind.STRUCT)
    assert iphdr is not None and btf.size_of(iphdr) == 20
    ptr_ids = [i for i, t in enumerate(btf.types) if isinstance(t, Ptr) and t.type_id == iphdr]
    assert ptr_ids and btf.format_type(ptr_ids[0]) == "struct iphdr *"
    # Every array's size is its element size times its length.
    arrays = [i for i, t in enumerate(btf.types) if isinstance(t, Array)][:500]
    for type_id in arrays:
        array = btf[type_id]
        assert isinstance(array, Array)
        assert btf.size_of(type_id) == array.nelems * btf.size_of(array.type_id)
    # Union members all start at offset 0.
    for record in btf.types[:20000]:
        if isinstance(record, Union):
            assert all(m.bit_offset == 0 or m.bitfield_size for m in record.members)
