"""The public BPF ISA conformance suite, run the way the suite's runner runs any plugin.

Each ``tests/*.data`` program is assembled by pybpf, its bytecode written as hex to the stdin of
``pybpf conformance-plugin MEM_HEX`` (a real subprocess), and the r0 it prints compared with
``-- result``; an ``-- error`` test must make the plugin fail with a message. Every file under
``negative/`` must fail as the suite intends: the assembler or data-file parser rejects it with a
line and column, or the plugin refuses it, or its stated result is not what the program computes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pybpf.asm import parse_data_file
from pybpf.errors import AssemblerError, PybpfError

SUITE = Path(__file__).resolve().parents[3] / "shared" / "conformance"
TESTS = sorted((SUITE / "tests").glob("*.data"))
NEGATIVES = sorted((SUITE / "negative").glob("*.data"))
ENGINES = ["interp", "jit"]

pytestmark = pytest.mark.skipif(not TESTS, reason=f"conformance suite not found at {SUITE}")


def plugin_command() -> list[str]:
    script = Path(sys.executable).with_name("pybpf")
    if script.exists():
        return [str(script), "conformance-plugin"]
    found = shutil.which("pybpf")
    if found:
        return [found, "conformance-plugin"]
    return [sys.executable, "-m", "pybpf.cli.main", "conformance-plugin"]


def run_plugin(bytecode: bytes, memory: bytes | None, engine: str) -> subprocess.CompletedProcess[str]:
    argv = plugin_command() + ([memory.hex()] if memory else []) + ["--engine", engine]
    return subprocess.run(
        argv,
        input=bytecode.hex(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "PYTHONHASHSEED": "0"},
    )


def test_suite_is_complete() -> None:
    assert len(TESTS) == 313


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("path", TESTS, ids=[p.stem for p in TESTS])
def test_conformance_program(path: Path, engine: str) -> None:
    data = parse_data_file(path.read_text())
    proc = run_plugin(data.bytecode(), data.mem, engine)
    if data.error is not None:
        assert proc.returncode != 0, f"expected an error ({data.error!r}), plugin printed {proc.stdout!r}"
        assert proc.stderr.strip(), "a failing plugin must say why on stderr"
        return
    assert proc.returncode == 0, f"plugin failed: {proc.stderr.strip()}"
    assert data.result is not None
    assert int(proc.stdout.strip(), 16) == data.result


def negative_outcome(path: Path) -> str:
    """How the negative test fails (a description), or '' when it would wrongly pass."""
    try:
        data = parse_data_file(path.read_text())
        bytecode = data.bytecode()
    except AssemblerError as error:
        assert error.line >= 1 and error.column >= 1
        return f"rejected: {error}"
    except PybpfError as error:
        return f"rejected: {error}"
    proc = run_plugin(bytecode, data.mem, "interp")
    if proc.returncode != 0:
        assert proc.stderr.strip()
        return f"plugin refused: {proc.stderr.strip()}"
    if data.error is not None:
        return f"expected an error, program returned {proc.stdout.strip()}"
    if data.result is not None and int(proc.stdout.strip(), 16) != data.result:
        return f"result {proc.stdout.strip()} differs from the stated {data.result:#x}"
    return ""


@pytest.mark.parametrize("path", NEGATIVES, ids=[p.stem for p in NEGATIVES])
def test_negative_case_fails(path: Path) -> None:
    outcome = negative_outcome(path)
    assert outcome, f"{path.name} passed, but it is a negative test"
    if path.name.startswith("invalid_"):
        assert outcome.startswith("rejected: line "), outcome
        assert ", column " in outcome
    if path.name.startswith("unused-"):
        assert outcome.startswith("plugin refused:"), outcome
        # unused-mov64_reg-offset: offset 1 makes the mov an addr_space_cast (Linux 6.9+), and
        # its imm of 0 is what the decoder refuses.
        assert any(reason in outcome for reason in ("reserved field", "offset must be", "addr_space_cast")), outcome
