"""The object BTF fix-up for kfunc externs (kernel.btf_fixup.fix_ksyms), checked without a kernel:
the .ksyms DATASEC must list only allocated VARs and every extern FUNC parameter must be named."""

from __future__ import annotations

from pathlib import Path

from pybpf.btf import Btf
from pybpf.btf.types import Datasec, Func, FuncProto, Var
from pybpf.kernel.btf_fixup import RawBtf, fix_ksyms
from pybpf.obj import load_spec

OBJECT = Path(__file__).resolve().parents[1] / "progs" / "kfunc_iter.o"


def test_ksyms_entries_become_one_allocated_placeholder_var() -> None:
    spec = load_spec(OBJECT)
    assert spec.elf.btf_raw is not None
    before = Btf.from_bytes(spec.elf.btf_raw)
    fixed = Btf.from_bytes(fix_ksyms(RawBtf(spec.elf.btf_raw)).to_bytes())
    assert len(fixed) == len(before) + 1  # one type appended; every existing id unchanged
    datasec = fixed[fixed.find(".ksyms")]  # type: ignore[index]
    assert isinstance(datasec, Datasec)
    targets = {entry.type_id for entry in datasec.vars}
    assert len(targets) == 1
    placeholder = fixed[targets.pop()]
    assert isinstance(placeholder, Var) and placeholder.name == "dummy_ksym"
    assert [entry.offset for entry in datasec.vars] == [4 * index for index in range(len(datasec.vars))]
    for name in spec.ksyms:
        func = fixed[fixed.find(name)]  # type: ignore[index]
        assert isinstance(func, Func)
        proto = fixed[func.type_id]
        assert isinstance(proto, FuncProto)
        assert all(param.name for param in proto.params if param.type_id)


def test_btf_without_ksyms_is_left_alone() -> None:
    spec = load_spec(OBJECT.with_name("xdp_firewall.o"))
    assert spec.elf.btf_raw is not None
    raw = RawBtf(spec.elf.btf_raw)
    assert fix_ksyms(raw) is raw
