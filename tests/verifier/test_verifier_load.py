"""``pybpf.load`` verifies every program; ``verify=False`` is the explicit opt-out."""

from __future__ import annotations

import platform
import shutil
import subprocess
from pathlib import Path

import pytest

import pybpf
from pybpf.errors import ProgramRejectedError, VerifierError

from .test_verifier_objects import BUGGY_C, PROGS

CLANG = shutil.which("clang-19")


@pytest.fixture(scope="module")
def buggy_object(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if CLANG is None:
        pytest.skip("clang-19 is not installed")
    directory = tmp_path_factory.mktemp("buggy")
    source = directory / "buggy.c"
    source.write_text(BUGGY_C)
    obj = directory / "buggy.o"
    multiarch = f"-I/usr/include/{platform.machine()}-linux-gnu"
    subprocess.run([CLANG, "-g", "-O2", "-target", "bpf", f"-I{PROGS}", multiarch, "-c", str(source), "-o", str(obj)],
                   check=True, capture_output=True)
    return obj


def test_load_refuses_a_rejected_program(buggy_object: Path) -> None:
    with pytest.raises(ProgramRejectedError) as raised:
        pybpf.load(buggy_object)
    error = raised.value
    assert isinstance(error, VerifierError)
    assert error.program == "count_packets"
    assert error.reason == "R0 invalid mem access 'map_value_or_null'"
    assert error.source is not None and "*value += 1" in error.source
    assert "count_packets" in str(error)


def test_opt_out_loads_unverified(buggy_object: Path) -> None:
    with pybpf.load(buggy_object, verify=False) as obj:
        assert "count_packets" in obj.programs


def test_verified_object_runs() -> None:
    with pybpf.load(PROGS / "xdp_firewall.o") as obj:
        result = obj.programs["xdp_firewall"].test_run(bytes(64))
        assert result.retval in (1, 2)
