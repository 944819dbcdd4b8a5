"""The bpf_conformance plugin: in process through run_program, and as a subprocess speaking the protocol."""

from __future__ import annotations

import importlib.util
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from vm_build import const

from pybpf.errors import InvalidInstructionError, MemoryAccessError, PybpfError
from pybpf.isa import Bin, BinOp, Call, CallReg, Exit, Imm, Load, Reg, Size, encode_program
from pybpf.vm.conformance import format_result, parse_hex, run_program

NEGATIVE = Path(__file__).resolve().parents[3] / "shared" / "conformance" / "negative"
SRC = Path(__file__).resolve().parents[2] / "src"

CALLX_UNWIND = encode_program(
    [Bin(BinOp.MOV, Reg.R1, Imm(-1), True), Bin(BinOp.MOV, Reg.R2, Imm(5), True), CallReg(Reg.R2),
     Bin(BinOp.MOV, Reg.R0, Imm(2), True), Exit()]
)  # fmt: skip
UNWIND_ZERO = encode_program(
    [Bin(BinOp.MOV, Reg.R1, Imm(0), True), Call(5), Bin(BinOp.MOV, Reg.R0, Imm(2), True), Exit()]
)
LDXH = encode_program([Load(Size.H, Reg.R0, Reg.R1, 2), Exit()])


def _raw_section(path: Path) -> bytes:
    lines = path.read_text().splitlines()
    start = lines.index("-- raw") + 1
    body = []
    for line in lines[start:]:
        if line.startswith("--"):
            break
        body.append(line)
    return parse_hex(" ".join(body))


def test_run_program_in_process() -> None:
    assert run_program(CALLX_UNWIND, b"") == 2
    assert run_program(UNWIND_ZERO, b"") == 0  # helper 5 with r1 = 0 stops the program with r0 = 0
    assert run_program(LDXH, bytes.fromhex("aabb1122")) == 0x2211
    assert run_program(encode_program([const(Reg.R0, 1 << 63), Exit()])) == 1 << 63
    with pytest.raises(MemoryAccessError, match="pc 0"):
        run_program(LDXH, b"")  # no memory: r1 = 0


def test_hex_and_result_format() -> None:
    assert parse_hex("b7 00 00 00\n 2a 00 00 00\t95 00 00 00 00000000") == bytes.fromhex(
        "b70000002a0000009500000000000000"
    )
    assert format_result(2) == "0x2"
    assert format_result(0) == "0x0"
    assert format_result((1 << 64) - 1) == "0xffffffffffffffff"


@pytest.mark.skipif(not NEGATIVE.is_dir(), reason="the shared conformance corpus is not present")
def test_every_unused_field_program_is_refused_in_process() -> None:
    paths = sorted(NEGATIVE.glob("unused-*.data"))
    assert paths
    for path in paths:
        with pytest.raises(InvalidInstructionError, match=r"^instruction \d+: "):
            run_program(_raw_section(path), b"")


def _plugin(*args: str, stdin: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    command = [sys.executable, "-m", "pybpf.cli.conformance_cmd", *args]
    return subprocess.run(command, input=stdin, capture_output=True, text=True, env=env, timeout=60, check=False)


def test_plugin_subprocess_protocol() -> None:
    done = _plugin(stdin=CALLX_UNWIND.hex(" "))
    assert (done.returncode, done.stdout, done.stderr) == (0, "0x2\n", "")
    done = _plugin("aa bb 11 22", stdin=LDXH.hex("\n", 8))
    assert (done.returncode, done.stdout.strip()) == (0, "0x2211")
    done = _plugin("--engine", "interp", "aabb3344", stdin=LDXH.hex())
    assert done.stdout.strip() == "0x4433"


def test_plugin_subprocess_failures() -> None:
    done = _plugin(stdin=LDXH.hex())  # no memory: a null read
    assert done.returncode != 0 and done.stdout == ""
    assert "pc 0: invalid read of 2 byte(s) at 0x2: null pointer" in done.stderr
    if NEGATIVE.is_dir():
        raw = _raw_section(NEGATIVE / "unused-call-dst.data")
        done = _plugin(stdin=raw.hex(" "))
        assert done.returncode != 0
        assert "instruction 0" in done.stderr and "reserved field 'dst'" in done.stderr
    done = _plugin(stdin="zz")
    assert done.returncode != 0 and "error" in done.stderr
    done = _plugin("--engine", "jit", stdin=LDXH.hex())  # the JIT reports the same fault
    assert done.returncode != 0 and done.stdout == ""
    assert "pc 0: invalid read of 2 byte(s) at 0x2: null pointer" in done.stderr
    done = _plugin("--engine", "nonesuch", stdin=LDXH.hex())
    assert done.returncode == 2 and "invalid choice" in done.stderr


@pytest.mark.skipif(
    any(importlib.util.find_spec(f"pybpf.cli.{name}") is None for name in ("asm_cmd", "run_cmd")),
    reason="pybpf.cli.main needs the asm and run commands, which have not landed yet",
)
def test_through_the_main_cli() -> None:
    from pybpf.cli.main import main

    stdin, out = sys.stdin, io.StringIO()
    try:
        sys.stdin = io.StringIO(CALLX_UNWIND.hex())
        assert main(["conformance-plugin"], out) == 0
    finally:
        sys.stdin = stdin
    assert out.getvalue() == "0x2\n"


def test_errors_are_pybpf_errors() -> None:
    with pytest.raises(PybpfError):
        run_program(b"\x95\x00", b"")  # not a whole slot
