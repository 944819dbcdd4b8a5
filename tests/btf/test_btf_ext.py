"""Decoding .BTF.ext: line info must point at the real C source lines, func info at the functions."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from btf_compiled import CompiledObject

from pybpf.btf import Btf, Func
from pybpf.btf.ext import BtfExt, CoreReloKind

Compile = Callable[[str], CompiledObject]


@pytest.fixture(scope="module")
def lines(compile_prog: Compile) -> tuple[CompiledObject, Btf, BtfExt]:
    obj = compile_prog("lines")
    btf = Btf.from_bytes(obj.btf_bytes)
    return obj, btf, BtfExt.from_bytes(obj.btf_ext_bytes, btf)


def test_line_info_matches_source(lines: tuple[CompiledObject, Btf, BtfExt]) -> None:
    obj, _, ext = lines
    source = obj.source.read_text().splitlines()
    assert set(ext.line_info) == {".text", "socket", "socket/second"}
    for section, records in ext.line_info.items():
        section_slots = len(obj.sections[section]) // 8
        offsets = [record.insn_off for record in records]
        assert offsets == sorted(offsets)
        for record in records:
            info = record.line_info
            assert info.file.endswith("progs/lines.c")
            assert 1 <= info.line <= len(source)
            assert info.text == source[info.line - 1], (section, record)
            assert 0 <= info.column <= len(info.text) + 1
            assert record.insn_off % 8 == 0 and record.pc == record.insn_off // 8
            assert record.pc < section_slots
    marks = {record.line_info.text.split("/* ")[-1].rstrip(" */") for recs in ext.line_info.values() for record in recs}
    assert {"MARK_SQUARE", "MARK_BRANCH", "MARK_RETURN", "MARK_SECOND"} <= marks


def test_line_table_is_keyed_by_pc(lines: tuple[CompiledObject, Btf, BtfExt]) -> None:
    obj, _, ext = lines
    table = ext.line_table("socket/second")
    assert 0 in table
    source = obj.source.read_text().splitlines()
    marked = next(i for i, line in enumerate(source, 1) if "MARK_SECOND" in line)
    assert {info.line for info in table.values()} == {marked}
    assert ext.line_table("no-such-section") == {}


def test_func_info_names_functions(lines: tuple[CompiledObject, Btf, BtfExt]) -> None:
    _, btf, ext = lines
    names = {}
    for section, records in ext.func_info.items():
        for record in records:
            func = btf[record.type_id]
            assert isinstance(func, Func)
            names[func.name] = (section, record.pc)
    assert names == {"entry": ("socket", 0), "square": (".text", 0), "second": ("socket/second", 0)}
    assert ext.func_table("socket") == {0: btf.find("entry")}
    assert not ext.core_relos
    assert set(ext.sections) == {".text", "socket", "socket/second"}


def test_core_relo_records(compile_prog: Compile) -> None:
    obj = compile_prog("core_local")
    btf = Btf.from_bytes(obj.btf_bytes)
    ext = BtfExt.from_bytes(obj.btf_ext_bytes, btf)
    relos = ext.core_relos["kprobe/x"]
    kinds = {relo.kind for relo in relos}
    assert kinds == set(CoreReloKind)  # the program exercises every relocation kind
    first = relos[0]
    assert btf[first.type_id].name == "task_struct___local"
    assert first.access_str == "0:0" and first.kind == CoreReloKind.FIELD_BYTE_OFFSET
    assert all(relo.insn_off == relo.pc * 8 for relo in relos)
