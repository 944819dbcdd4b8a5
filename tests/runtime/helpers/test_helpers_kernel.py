"""Differential tests: the same program run by the kernel (BPF_PROG_TEST_RUN) and by our interpreter.

Skipped, with the probe's reason, where bpf(2) is unavailable. Programs only run through test
runs; nothing is attached.
"""

from __future__ import annotations

import random
import struct

import pytest
from helper_harness import labeled, make_harness

from pybpf.isa import Bin, BinOp, Call, Exit, Imm, Instruction, Load, LoadImm64, Reg, Size, Store, encode_program
from pybpf.kernel import BpfProgType, available, prog_load, prog_test_run
from pybpf.platform import HelperId
from pybpf.runtime.helpers import default_helpers
from pybpf.vm import Interpreter

_OK, _REASON = available()
pytestmark = [pytest.mark.kernel, pytest.mark.skipif(not _OK, reason=f"bpf() unavailable: {_REASON}")]

STACK = -256


def put_bytes(data: bytes, offset: int) -> list[Instruction]:
    """Store ``data`` (padded to 8 bytes) on the stack at r10 + offset."""
    data += bytes(-len(data) % 8)
    insns: list[Instruction] = []
    for index in range(0, len(data), 8):
        insns.append(LoadImm64.constant(Reg.R1, struct.unpack("<Q", data[index : index + 8])[0]))
        insns.append(Store(Size.DW, Reg.R10, offset + index, Reg.R1))
    return insns


def pointer(reg: Reg, offset: int) -> list[Instruction]:
    return [Bin(BinOp.MOV, reg, Reg.R10, True), Bin(BinOp.ADD, reg, Imm(offset), True)]


def both(insns: list[Instruction]) -> tuple[int, int]:
    """r0 from the kernel (XDP test run, 32-bit retval) and from our interpreter (low 32 bits)."""
    with prog_load(BpfProgType.XDP, encode_program(insns)) as fd:
        kernel = prog_test_run(fd, bytes(64)).retval
    harness = make_harness()
    ours = Interpreter(labeled(insns), helpers=default_helpers(), memory=harness.memory).run(user=harness.state).r0
    return kernel & 0xFFFFFFFF, ours & 0xFFFFFFFF


def csum_diff_program(old: bytes, new: bytes, seed: int) -> list[Instruction]:
    return [
        *put_bytes(old + new, STACK),
        *pointer(Reg.R1, STACK),
        Bin(BinOp.MOV, Reg.R2, Imm(len(old)), True),
        *pointer(Reg.R3, STACK + len(old)),
        Bin(BinOp.MOV, Reg.R4, Imm(len(new)), True),
        LoadImm64.constant(Reg.R5, seed),
        Call(HelperId.CSUM_DIFF),
        Exit(),
    ]


def _cases() -> list[tuple[bytes, bytes, int]]:
    rng = random.Random(1234)
    cases = [(b"", b"\xef\xbe\xad\xde" * 2, 0), (b"\0" * 4, b"\0" * 4, 0), (b"\xff" * 4, b"", 0xFFFFFFFF)]
    for _ in range(6):
        old = rng.randbytes(4 * rng.randint(0, 8))
        new = rng.randbytes(4 * rng.randint(0, 8))
        cases.append((old, new, rng.getrandbits(32)))
    return cases


@pytest.mark.parametrize(("old", "new", "seed"), _cases())
def test_csum_diff_matches_the_kernel(old: bytes, new: bytes, seed: int) -> None:
    kernel, ours = both(csum_diff_program(old, new, seed))
    assert ours == kernel


def strtol_program(text: bytes, flags: int, helper: HelperId) -> list[Instruction]:
    # r0 = result + (value << 8): one 32-bit retval shows both (the low byte holds the result).
    return [
        *put_bytes(text, STACK),
        Store(Size.DW, Reg.R10, -8, Imm(-1)),
        *pointer(Reg.R1, STACK),
        Bin(BinOp.MOV, Reg.R2, Imm(len(text)), True),
        Bin(BinOp.MOV, Reg.R3, Imm(flags), True),
        *pointer(Reg.R4, -8),
        Call(helper),
        Load(Size.DW, Reg.R1, Reg.R10, -8),
        Bin(BinOp.LSH, Reg.R1, Imm(8), True),
        Bin(BinOp.AND, Reg.R0, Imm(0xFF), True),
        Bin(BinOp.ADD, Reg.R0, Reg.R1, True),
        Exit(),
    ]


@pytest.mark.parametrize(
    ("text", "flags"),
    [
        (b"123", 0),
        (b"  -42xyz", 0),
        (b"0x1f", 0),
        (b"0x", 0),
        (b"017", 8),
        (b"abc", 10),
        (b"-", 0),
        (b"99999999999999999999", 10),
        (b"\xa0 7", 10),
        (b"12", 7),
        (b"0xg", 16),
    ],
)
@pytest.mark.parametrize("helper", [HelperId.STRTOL, HelperId.STRTOUL])
def test_strtol_and_strtoul_match_the_kernel(text: bytes, flags: int, helper: HelperId) -> None:
    kernel, ours = both(strtol_program(text, flags, helper))
    assert ours == kernel
