"""``pybpf run``: raw bytecode or assembly in, r0 out; errors as messages, never tracebacks."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from pybpf.cli.main import main

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
IPV4_HEADER = "45 00 00 73 00 00 40 00 40 11 00 00 c0 a8 00 01 c0 a8 00 c7"


def rfc1071(data: bytes) -> int:
    total = sum(int.from_bytes(data[i : i + 2].ljust(2, b"\0"), "big") for i in range(0, len(data), 2))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    return main(list(argv), out=out), out.getvalue()


@pytest.mark.parametrize("data", [bytes.fromhex(IPV4_HEADER), b"\x01", b"\xff" * 33, bytes(range(200))])
def test_example_checksum_matches_rfc1071(data: bytes) -> None:
    code, text = run("run", str(EXAMPLES / "checksum.s"), "--mem", data.hex(), "--json")
    assert code == 0
    assert json.loads(text)["r0"] == rfc1071(data)


def test_run_raw_bytecode_file(tmp_path: Path) -> None:
    program = tmp_path / "p.bin"
    code, _ = run("asm", str(EXAMPLES / "checksum.s"), "-o", str(program))
    assert code == 0
    code, text = run("run", str(program), "--mem", IPV4_HEADER)
    assert code == 0
    assert text.startswith("r0 = 0xb861 ")


def test_faulting_program_reports_pc_and_address(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "bad.s"
    source.write_text("r0 = *(u64 *)(r1 + 0x100)\nexit\n")
    code, text = run("run", str(source), "--mem", "00 11", "--json")
    assert code == 1
    message = json.loads(text)["error"]
    assert "pc 0" in message and "read of 8 byte(s)" in message
    assert "Traceback" not in capsys.readouterr().err


def test_runaway_program_stops_at_the_budget(tmp_path: Path) -> None:
    source = tmp_path / "loop.s"
    source.write_text("loop:\ngoto loop\n")
    code, text = run("run", str(source), "--limit", "1000", "--json")
    assert code == 1
    assert "1000" in json.loads(text)["error"]


def test_random_bytes_give_a_clear_error_in_a_subprocess(tmp_path: Path) -> None:
    junk = tmp_path / "junk.bin"
    junk.write_bytes(bytes([0xFF, 0x00, 0x13, 0x37, 0x00, 0x00, 0x00, 0x00]))
    proc = subprocess.run(
        [sys.executable, "-m", "pybpf.cli.main", "run", str(junk)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 1
    assert proc.stderr.startswith("pybpf: error: instruction 0: unknown opcode 0xff")
