"""Kfunc externs (``extern ... __ksym`` functions) in the object loader (pybpf.obj.ksyms)."""

from __future__ import annotations

from pathlib import Path

from pybpf.isa import Call, CallKfunc, LoadImm64
from pybpf.obj import load_spec
from pybpf.obj.ksyms import POISON_CALL_KFUNC_BASE
from pybpf.platform import KFUNC_BY_NAME

OBJECT = Path(__file__).resolve().parents[1] / "progs" / "kfunc_iter.o"


def test_kfunc_calls_carry_the_tables_id_and_are_recorded() -> None:
    spec = load_spec(OBJECT)
    program = spec.programs["repeat_count"]
    insns = {item.pc: item.insn for item in program.instructions}
    names = {ref.name for ref in program.kfunc_references}
    assert names == {"bpf_iter_num_new", "bpf_iter_num_next", "bpf_iter_num_destroy"}
    for ref in program.kfunc_references:
        assert insns[ref.pc] == CallKfunc(KFUNC_BY_NAME[ref.name].id)
        assert ref.weak  # bpf_helpers.h declares the iterator kfuncs __weak, as libbpf does
    assert spec.ksyms["bpf_strlen"].kfunc_id == KFUNC_BY_NAME["bpf_strlen"].id
    assert not spec.ksyms["bpf_strlen"].weak


def test_a_missing_weak_kfunc_is_zero_and_its_call_is_poisoned() -> None:
    spec = load_spec(OBJECT)
    program = spec.programs["sections"]
    insns = {item.pc: item.insn for item in program.instructions}
    extern = spec.ksyms["bpf_pybpf_no_such_kfunc"]
    assert extern.kfunc_id == 0 and extern.weak
    refs = [ref for ref in program.kfunc_references if ref.name == extern.name]
    assert {ref.address for ref in refs} == {True, False}
    for ref in refs:
        if ref.address:
            assert insns[ref.pc] == LoadImm64.constant(insns[ref.pc].dst, 0)  # type: ignore[union-attr]
        else:
            assert insns[ref.pc] == Call(POISON_CALL_KFUNC_BASE + extern.index)
    assert program.unknown_kfuncs() == ()  # weak: not an error


def test_a_known_kfuncs_address_is_non_zero() -> None:
    program = load_spec(OBJECT).programs["sections"]
    insns = {item.pc: item.insn for item in program.instructions}
    (ref,) = [ref for ref in program.kfunc_references if ref.name == "bpf_iter_num_new" and ref.address]
    insn = insns[ref.pc]
    assert isinstance(insn, LoadImm64) and insn.value != 0
