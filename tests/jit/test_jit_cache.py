"""The compilation cache: same bytes, options and host reuse native code; anything else compiles."""

from __future__ import annotations

from pathlib import Path

import pytest

from pybpf.asm import assemble
from pybpf.runtime.loader import load
from pybpf.runtime.object import Object
from pybpf.vm import Region, RegionKind
from pybpf.vm.jit import JitProgram
from pybpf.vm.jit.cache import CompileCache, cache_key
from pybpf.vm.jit.llvm import host_cpu

PROGS = Path(__file__).resolve().parents[1] / "progs"
SOURCE = "ldxdw %r0, [%r1]\nmul %r0, 3\nexit\n"


def run(program: JitProgram, value: int) -> int:
    return program.run(Region.from_bytes(RegionKind.INPUT, "in", value.to_bytes(8, "little"))).r0


def test_same_program_compiles_once() -> None:
    cache = CompileCache()
    first = JitProgram(assemble(SOURCE), cache=cache)
    second = JitProgram(assemble(SOURCE), cache=cache)
    assert (first.from_cache, second.from_cache) == (False, True)
    assert second.native is first.native
    assert (cache.hits, cache.misses, len(cache)) == (1, 1, 1)
    assert run(second, 14) == run(first, 14) == 42


def test_different_bytes_or_options_compile_again() -> None:
    cache = CompileCache()
    base = JitProgram(assemble(SOURCE), cache=cache)
    other = JitProgram(assemble(SOURCE.replace("3", "5")), cache=cache)
    unoptimised = JitProgram(assemble(SOURCE), cache=cache, opt_level=0)
    assert not other.from_cache
    assert not unoptimised.from_cache
    assert len({id(base.native), id(other.native), id(unoptimised.native)}) == 3
    assert (run(base, 2), run(other, 2), run(unoptimised, 2)) == (6, 10, 6)


def test_key_covers_the_host_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    insns = assemble(SOURCE)
    here = cache_key(insns, (), 2)
    cpu, features = host_cpu()
    monkeypatch.setattr("pybpf.vm.jit.cache.host_cpu", lambda: (cpu, features + ",+imaginary-feature"))
    assert cache_key(insns, (), 2) != here
    monkeypatch.setattr("pybpf.vm.jit.cache.host_cpu", lambda: ("another-cpu", features))
    assert cache_key(insns, (), 2) != here


def test_no_cache_always_compiles() -> None:
    first = JitProgram(assemble(SOURCE), cache=None)
    second = JitProgram(assemble(SOURCE), cache=None)
    assert not first.from_cache
    assert not second.from_cache
    assert first.native is not second.native


def test_reloaded_object_reuses_code_with_its_own_maps() -> None:
    """Map addresses differ between loads; they come from each program's constant table."""
    packet = bytes.fromhex("00112233445566778899aabb0800") + bytes.fromhex("4500002e1234400040110000") + bytes(34)
    with load(PROGS / "xdp_firewall.o", engine="jit") as first, load(PROGS / "xdp_firewall.o", engine="jit") as second:
        first.program("xdp_firewall").test_run(packet, repeat=5)
        second.program("xdp_firewall").test_run(packet, repeat=2)
        assert second.program("xdp_firewall").jit.native is first.program("xdp_firewall").jit.native
        assert second.program("xdp_firewall").jit.from_cache
        counts = (passed(first), passed(second))
    assert counts == (5, 2)  # each object's counter saw only its own runs


def passed(obj: Object) -> int:
    """verdict_count[1] (XDP_PASS), summed over the per-CPU copies."""
    value = list(obj.map_entries("verdict_count"))[1].value
    copies = value if isinstance(value, tuple) else (value,)
    return sum(int.from_bytes(copy, "little") for copy in copies)


def test_unchecked_code_is_a_different_compilation_without_range_checks() -> None:
    cache = CompileCache()
    checked = JitProgram(assemble(SOURCE), cache=cache)
    unchecked = JitProgram(assemble(SOURCE), cache=cache, bounds_checks=False)
    assert not unchecked.from_cache
    assert "call i1 @\"bpf_in_ranges\"" in checked.generated_ir
    assert "call i1 @\"bpf_in_ranges\"" not in unchecked.generated_ir
    assert run(unchecked, 7) == run(checked, 7) == 21
