"""The hot range (the last region a range-table scan found) never lets through what the table refuses."""

from __future__ import annotations

import pytest

from pybpf.asm import assemble
from pybpf.errors import MemoryAccessError
from pybpf.vm import Region, RegionKind
from pybpf.vm.jit import JitProgram


def test_a_read_makes_a_read_only_region_hot_and_a_write_there_is_still_refused() -> None:
    program = JitProgram(assemble("ldxb %r0, [%r1]\nstb [%r1+1], 7\nexit\n"))
    region = Region.from_bytes(RegionKind.RODATA, "ro", b"abcd", writable=False)
    with pytest.raises(MemoryAccessError, match="read-only"):
        program.run(region)
    assert bytes(region.view) == b"abcd"


def test_an_access_past_the_hot_region_end_is_refused() -> None:
    # The first load makes the 8-byte input hot; the second straddles its end.
    program = JitProgram(assemble("ldxb %r0, [%r1]\nldxdw %r0, [%r1+4]\nexit\n"))
    with pytest.raises(MemoryAccessError):
        program.run(Region.from_bytes(RegionKind.INPUT, "input", bytes(8)))


def test_the_hot_range_does_not_outlive_its_run() -> None:
    program = JitProgram(assemble("ldxdw %r0, [%r2]\nexit\n"))
    first = Region.from_bytes(RegionKind.INPUT, "first", (5).to_bytes(8, "little"))
    program.memory.add(first)
    assert program.run(registers={2: first.address}).r0 == 5  # the run made ``first`` hot
    program.memory.remove(first)
    with pytest.raises(MemoryAccessError):  # unmapped now: the next run must not reach it
        program.run(registers={2: first.address})


def test_alternating_regions_each_pass_the_check() -> None:
    source = "ldxdw %r0, [%r1]\nstxdw [%r10-8], %r0\nldxdw %r3, [%r10-8]\nadd %r0, %r3\nldxdw %r3, [%r1]\n"
    source += "add %r0, %r3\nexit\n"
    result = JitProgram(assemble(source)).run(Region.from_bytes(RegionKind.INPUT, "in", (4).to_bytes(8, "little")))
    assert result.r0 == 12
