"""``log_level`` 1 and 2 in the kernel's own format (pybpf.verifier.kernel_log).

The differential test loads each program into the kernel with log level 2 and compares, line
by line, every instruction line of the first path (the instruction as the kernel's disassembler
prints it, then ``;`` at column 39 and the registers and stack slots it touched)."""

from __future__ import annotations

import pytest

from pybpf.asm import Syntax, assemble
from pybpf.isa.codec import encode_program
from pybpf.kernel.probe import available
from pybpf.kernel.progs import prog_load_with_log
from pybpf.platform import BpfProgType
from pybpf.verifier import RegState, RegType, Scalar, verify
from pybpf.verifier.kernel_log import align, format_kernel_insn, format_kernel_reg

_AVAILABLE, _REASON = available()

PROGRAMS = {
    "alu": """
        r6 = r1
        r2 = *(u32 *)(r6 + 0)
        r4 = r2
        r4 = -r4
        r5 = r2
        r5 = be16 r5
        r7 = (s8)r2
        r8 = 1000
        r8 <<= 4
        r9 = r2
        r9 &= 0xf0
        if w2 s> 100 goto +1
        r0 = 0
        r0 = 0
        exit
    """,
    "branch": """
        r6 = r1
        r0 = 0
        r2 = *(u32 *)(r6 + 0)
        if r2 > 10 goto +2
        r0 = r2
        r0 += 1
        exit
    """,
    "stack": """
        r1 = 7
        *(u64 *)(r10 - 8) = r1
        r2 = *(u64 *)(r10 - 8)
        r3 = -1
        *(u64 *)(r10 - 16) = r3
        r0 = 0
        exit
    """,
    # Bounds and constants print in decimal only within the 16-bit ranges; a 32-bit signed
    # bound in hex is its 32-bit pattern (smin32=0xfffe7960), never sign-extended.
    "number-formats": """
        r6 = r1
        r0 = 0
        r7 = *(s16 *)(r6 + 48)
        r8 = *(s8 *)(r6 + 48)
        r8 += -500
        w9 = *(u32 *)(r6 + 48)
        if w9 s< -600 goto Lout
        if w9 s> 70000 goto Lout
        r2 = *(u32 *)(r6 + 48)
        w2 = (s16)w2
        w2 += -100000
        r3 = *(u32 *)(r6 + 48)
        r3 = (s32)r3
        if r3 s< -100000 goto Lout
        r4 = 0x80000000 ll
        r5 = 65535
        r5 += 1
        Lout:
        exit
    """,
}


def _insn_lines(log: list[str]) -> list[str]:
    """Instruction lines up to the end of the first path (the first ``exit``)."""
    lines: list[str] = []
    for line in log:
        head = line.split(" ", 1)[0]
        if head.endswith(":") and head[:-1].isdigit() and " (" in line[:10]:
            lines.append(line)
            if line.endswith("exit"):
                break
    return lines


@pytest.mark.kernel
@pytest.mark.skipif(not _AVAILABLE, reason=_REASON or "bpf() unavailable")
@pytest.mark.parametrize("name", list(PROGRAMS))
def test_level_two_matches_the_kernel(name: str) -> None:
    insns = assemble(PROGRAMS[name], Syntax.LLVM)
    loaded = prog_load_with_log(BpfProgType.SOCKET_FILTER, encode_program(insns), log_level=2)
    with loaded.fd:
        kernel = _insn_lines(loaded.log.splitlines())
    ours = _insn_lines(list(verify(insns, log_level=2).log))
    assert ours == kernel


def test_level_one_has_no_state() -> None:
    log = verify(assemble("r0 = 0\nexit", Syntax.LLVM), log_level=1).log
    assert log[:2] == ("0: (b7) r0 = 0", "1: (95) exit")


def test_path_starts_print_the_whole_state() -> None:
    log = verify(assemble("r0 = 0\nif r1 == 0 goto +1\nr0 = 1\nexit", Syntax.LLVM), log_level=2).log
    assert log[0] == "0: R1=ctx() R10=fp0"
    assert any(line.startswith("from 1 to 3: R0=0 R1=ctx() R10=fp0") for line in log)


@pytest.mark.parametrize(("text", "expected"), [
    ("w1 = w2", "(bc) w1 = w2"), ("r1 s>>= 3", "(c7) r1 s>>= 3"),
    ("r1 = *(s16 *)(r2 - 4)", "(89) r1 = *(s16 *)(r2 -4)"), ("*(u8 *)(r10 - 1) = 5", "(72) *(u8 *)(r10 -1) = 5"),
    ("lock *(u64 *)(r1 + 8) += r2", "(db) lock *(u64 *)(r1 +8) += r2"),
    ("if w1 != -1 goto +3", "(56) if w1 != 0xffffffff goto pc+3"), ("call 1", "(85) call bpf_map_lookup_elem#1"),
    ("r1 = 0x100000000 ll", "(18) r1 = 0x100000000"),
])
def test_instruction_text(text: str, expected: str) -> None:
    labeled = assemble(text, Syntax.LLVM)[0]
    assert format_kernel_insn(3, labeled.insn) == f"3: {expected}"


def test_register_text() -> None:
    assert format_kernel_reg(RegState.pointer(RegType.PTR_TO_STACK, -16)) == "fp-16"
    assert format_kernel_reg(RegState.pointer(RegType.PTR_TO_PACKET, 4, range=14)) == "pkt(off=4,r=14)"
    assert format_kernel_reg(RegState.const(-3)) == "-3"
    assert format_kernel_reg(RegState.scalar(Scalar.from_urange(0, 10))) == \
        "scalar(smin=smin32=0,smax=umax=smax32=umax32=10,var_off=(0x0; 0xf))"
    assert format_kernel_reg(RegState.scalar()) == "scalar()"


def test_alignment_matches_vlog_alignment() -> None:
    assert align("0: (bf) r6 = r1").index(";") == 38
    long = "10: (63) *(u32 *)(r10 -12) = r1234567890"
    # Past column 36 the semicolon goes to the next multiple of 8 (counting the newline), less 2.
    assert align(long).index(";") == (len(long) + 1 + 4 + 7) // 8 * 8 - 2


_CALL = """
    r6 = r1
    r1 = 5
    call pc+2
    r0 += 1
    exit
    r0 = r1
    r0 += 2
    exit
"""


@pytest.mark.kernel
@pytest.mark.skipif(not _AVAILABLE, reason=_REASON or "bpf() unavailable")
def test_call_and_return_blocks_match_the_kernel() -> None:
    """A bpf-to-bpf call prints the caller's and callee's frames; the return prints both again."""
    insns = assemble(_CALL, Syntax.LLVM)
    loaded = prog_load_with_log(BpfProgType.SOCKET_FILTER, encode_program(insns), log_level=2)
    with loaded.fd:
        lines = loaded.log.splitlines()
    start = lines.index("0: R1=ctx() R10=fp0")
    end = next(index for index, line in enumerate(lines) if line.startswith("processed "))
    assert list(verify(insns, log_level=2).log) == lines[start:end]


def test_callback_path_starts_at_its_call() -> None:
    program = """
        r1 = 2
        r2 = func pc+6
        r3 = 0
        r4 = 0
        call 181
        r0 = 0
        exit
        r0 = 0
        exit
    """
    log = verify(assemble(program, Syntax.LLVM), log_level=2).log
    assert any(line.startswith("from 5 to 8: frame1: R1=scalar() R2=0 R10=fp0") for line in log), log
