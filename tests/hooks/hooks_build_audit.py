"""Build tests/hooks/bpf/audit_lsm.c with clang for the tests that need an audit (lsm) program."""

from __future__ import annotations

import platform
import shutil
import subprocess
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
PROGS = HERE.parent / "progs"
PATH_LEN = 128


def build_audit_object(directory: Path) -> Path:
    """Compile audit_lsm.c into ``directory``; skips the calling test without a working clang."""
    clang = shutil.which("clang-19") or shutil.which("clang")
    if clang is None:
        pytest.skip("clang is not installed")
    target = directory / "audit_lsm.o"
    arch = platform.machine()
    command = [clang, "-O2", "-g", "-target", "bpf", "-Wall", "-Werror", f"-I{PROGS}"]
    command.append(f"-I/usr/include/{arch}-linux-gnu")
    result = subprocess.run(
        [*command, "-c", str(HERE / "bpf" / "audit_lsm.c"), "-o", str(target)],
        check=False,
        capture_output=True,
        text=True,
    )
    if result.returncode:
        pytest.skip(f"clang cannot build BPF objects here: {result.stderr[-300:]}")
    return target
