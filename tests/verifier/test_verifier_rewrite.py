"""The kernel's post-verification dead-code rewrites (pybpf.verifier.rewrite) and their use by
the loader: the reduced program behaves exactly as the original and is smaller where the
verifier proved code dead."""

from __future__ import annotations

import platform
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

import pybpf
from pybpf.asm import Syntax, assemble
from pybpf.asm.printer import format_insn
from pybpf.isa.insn import CallLocal, Goto, LabeledInsn, LoadImm64, SourceLine
from pybpf.isa.opcodes import PseudoSrc
from pybpf.obj import load_spec
from pybpf.obj.spec import LineInfo
from pybpf.verifier import verify, verify_program
from pybpf.verifier.rewrite import eliminate_dead_code, rewrite_program

PROGS = Path(__file__).parent.parent / "progs"
CLANG = shutil.which("clang-19")

_BRANCHY = """
    r0 = 0
    if r0 == 1 goto +2
    r0 = 1
    goto +1
    r0 = 2
    if r0 > 5 goto +1
    r0 += 1
    exit
"""


def _text(insns: tuple[LabeledInsn, ...]) -> list[str]:
    return [f"{labeled.pc}: {format_insn(labeled.insn)}" for labeled in insns]


def test_privileged_removes_dead_code_and_nops() -> None:
    insns = assemble(_BRANCHY, Syntax.LLVM)
    report = verify(insns)
    assert report.seen == {0, 1, 2, 3, 5, 6, 7}
    result = eliminate_dead_code(insns, report.seen)
    # pc 1's taken edge is dead (ja +0, then removed as a nop); pc 4 is dead; pc 3's goto then
    # jumps to the next instruction and is a nop too.
    assert _text(result.insns) == ["0: r0 = 0x0", "1: r0 = 0x1", "2: if r0 > 0x5 goto +0x1", "3: r0 += 0x1",
                                   "4: exit"]
    assert result.pc_map == {0: 0, 2: 1, 5: 2, 6: 3, 7: 4}
    assert result.removed == 3
    assert result.hard_wired == 1


def test_unprivileged_traps_dead_slots_in_place() -> None:
    insns = assemble(_BRANCHY, Syntax.LLVM)
    report = verify(insns)
    result = eliminate_dead_code(insns, report.seen, privileged=False)
    assert result.removed == 0
    assert [labeled.insn for labeled in result.insns][4] == Goto(-1)
    assert [labeled.insn for labeled in result.insns if labeled.pc != 4] == [
        labeled.insn for labeled in insns if labeled.pc != 4]


def test_dead_lddw_becomes_two_traps() -> None:
    insns = assemble("r0 = 0\nif r0 == 0 goto +2\nr0 = 0x123456789 ll\nexit", Syntax.LLVM)
    result = eliminate_dead_code(insns, verify(insns).seen, privileged=False)
    assert _text(result.insns) == ["0: r0 = 0x0", "1: if r0 == 0x0 goto +0x2", "2: goto -0x1", "3: goto -0x1",
                                   "4: exit"]


def test_fall_through_dead_becomes_goto() -> None:
    insns = assemble("r0 = 0\nif r0 == 0 goto +1\nr0 = 5\nexit", Syntax.LLVM)
    result = eliminate_dead_code(insns, verify(insns).seen)
    # goto +1 over the dead pc 2: after deleting it the goto is a nop and goes too.
    assert _text(result.insns) == ["0: r0 = 0x0", "1: exit"]


def test_call_and_function_offsets_follow_the_deletion() -> None:
    program = """
        r0 = 0
        if r0 != 0 goto +1
        goto +1
        r0 = 7
        r2 = func pc+3
        call pc+1
        exit
        r0 = 1
        exit
    """
    insns = assemble(program, Syntax.LLVM)
    report = verify(insns)
    assert report.accepted, report.summary()
    result = eliminate_dead_code(insns, report.seen)
    assert result.pc_map == {0: 0, 4: 1, 6: 3, 7: 4, 8: 5, 9: 6}
    by_pc = {labeled.pc: labeled.insn for labeled in result.insns}
    lddw, call = by_pc[1], by_pc[3]
    assert isinstance(lddw, LoadImm64) and lddw.src == PseudoSrc.FUNC and 1 + 1 + lddw.imm == 5
    assert isinstance(call, CallLocal) and 3 + 1 + call.off == 5
    assert format_insn(by_pc[5]) == "r0 = 0x1"
    # The reduced program still verifies, with nothing left to remove.
    again = verify(result.insns)
    assert again.accepted, again.summary()
    assert not eliminate_dead_code(result.insns, again.seen).changed


def test_line_info_follows_and_is_inherited() -> None:
    insns = assemble(_BRANCHY, Syntax.LLVM)
    lines = {pc: SourceLine("a.c", pc + 10, 1, f"line {pc}") for pc in (0, 3, 4, 6)}
    original = next(iter(load_spec(PROGS / "xdp_firewall.o").programs.values()))
    program = replace(original, instructions=tuple(insns), map_references=(), func_info=(), core_relocations=(),
                      subprograms=(), line_info=tuple(LineInfo(pc, line) for pc, line in lines.items()))
    moved = rewrite_program(program, eliminate_dead_code(insns, verify(insns).seen))
    # pc 6 moves to 3; the deleted pcs 3 and 4 hand their (last) line to the next survivor, old
    # pc 5 (new 2), which had none of its own.
    assert [(record.pc, record.source) for record in moved.line_info] == [(0, lines[0]), (2, lines[4]),
                                                                          (3, lines[6])]
    assert [labeled.pc for labeled in moved.instructions] == [0, 1, 2, 3, 4]


def _compile(tmp_path: Path, source: str) -> Path:
    if CLANG is None:
        pytest.skip("clang-19 is not installed")
    path = tmp_path / "dead.c"
    path.write_text(source)
    obj = tmp_path / "dead.o"
    multiarch = f"-I/usr/include/{platform.machine()}-linux-gnu"
    subprocess.run([CLANG, "-g", "-O2", "-target", "bpf", "-mcpu=v3", f"-I{PROGS}", multiarch, "-c", str(path),
                    "-o", str(obj)], check=True, capture_output=True)
    return obj


# A spilled constant clang must reload (volatile) but the verifier tracks: the branch on it is
# dead to the verifier only, so the object keeps code the loaded program does not.
_DEAD_C = r"""
#include "bpf_helpers.h"
struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 4); __type(key, __u32); __type(value, __u64); }
    counts SEC(".maps");
SEC("xdp") int prog(struct xdp_md *ctx) {
    volatile __u64 mode = 3;
    unsigned char *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
    __u32 key = 0;
    if (mode == 4) {
        key = 2;
        if (data + 2 > end) return XDP_ABORTED;
        key += data[0] + data[1];
    }
    if (data + 1 > end) return XDP_PASS;
    key = (key + data[0]) & 3;
    __u64 *count = bpf_map_lookup_elem(&counts, &key);
    if (count) *count += 1;
    return data[0] > 100 ? XDP_DROP : XDP_TX;
}
char LICENSE[] SEC("license") = "GPL";
"""

_PACKETS = (b"", b"\x05", b"\x65\x01\x02", bytes(range(64)), b"\xff" * 20)


def _runs(obj: Path | str, verify: bool) -> tuple[list[int], list[bytes], int]:
    with pybpf.load(obj, verify=verify, engine="interp") as loaded:
        program = loaded.programs["prog"]
        results = [program.test_run(packet).retval for packet in _PACKETS]
        counts = [loaded.maps["counts"].lookup_raw(key.to_bytes(4, "little")) or b"" for key in range(4)]
        return results, counts, program.spec.slot_count


def test_loader_runs_the_reduced_program(tmp_path: Path) -> None:
    obj = _compile(tmp_path, _DEAD_C)
    spec = load_spec(obj)
    report = verify_program(spec.programs["prog"], spec)
    assert report.accepted, report.summary()
    full_results, full_counts, full_size = _runs(obj, verify=False)
    reduced_results, reduced_counts, reduced_size = _runs(obj, verify=True)
    assert reduced_results == full_results
    assert reduced_counts == full_counts
    assert reduced_size < full_size


@pytest.mark.parametrize("path", sorted(PROGS.glob("*.o")), ids=lambda path: path.name)
def test_rewrite_keeps_every_test_object_verifiable(path: Path) -> None:
    """On every test object the reduced program still verifies and has nothing left to remove."""
    spec = load_spec(path)
    for program in spec.programs.values():
        # A state at every prune point: where the checkpoint spacing of pybpf.verifier.states
        # puts states depends on instruction counts, which removing code changes.
        report = verify_program(program, spec, test_state_freq=True)
        if not report.accepted:
            continue
        reduced = rewrite_program(program, eliminate_dead_code(program.instructions, report.seen))
        again = verify_program(reduced, spec, test_state_freq=True)
        assert again.accepted, again.summary()
        assert again.processed_insns <= report.processed_insns
        assert not eliminate_dead_code(reduced.instructions, again.seen).changed


def test_unentered_callback_stays_whole() -> None:
    """bpf_loop(0, cb): no path enters the callback, but its address is taken by reached code,
    so it is kept (whole) and the function pointer still points at it."""
    program = """
        r0 = 0
        if r0 != 0 goto +1
        goto +1
        r0 = 7
        r1 = 0
        r2 = func pc+6
        r3 = 0
        r4 = 0
        call 181
        r0 = 0
        exit
        r0 = 0
        exit
    """
    insns = assemble(program, Syntax.LLVM)
    report = verify(insns)
    assert report.accepted, report.summary()
    assert not {12, 13} & report.seen
    result = eliminate_dead_code(insns, report.seen)
    assert result.removed == 3
    by_pc = {labeled.pc: labeled.insn for labeled in result.insns}
    lddw_pc = next(pc for pc, insn in by_pc.items() if isinstance(insn, LoadImm64))
    lddw = by_pc[lddw_pc]
    assert isinstance(lddw, LoadImm64)
    assert [format_insn(by_pc[lddw_pc + 1 + lddw.imm]), format_insn(by_pc[lddw_pc + 2 + lddw.imm])] == [
        "r0 = 0x0", "exit"]
    assert verify(result.insns).accepted
