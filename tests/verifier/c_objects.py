"""C test programs for the verifier tests: built with clang-19, and loaded into the kernel for its verdict.

:func:`compile_c` writes a source and compiles it as the test objects are (``-O2 -g -target bpf
-mcpu=v3``, tests/progs on the include path); :func:`kernel_verdict` loads the object through the
kernel backend and says whether the kernel's verifier accepted it, with its log;
:func:`our_verdict` is pybpf's verdict on one of its programs.
"""

from __future__ import annotations

import platform
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from pybpf.errors import LoadError, PybpfError, VerifierRejectedError
from pybpf.kernel.probe import available

PROGS = Path(__file__).parent.parent / "progs"
CLANG = shutil.which("clang-19")
KERNEL_AVAILABLE, KERNEL_REASON = available()


def compile_c(tmp_path: Path, name: str, source: str) -> Path:
    """``source`` compiled to ``tmp_path/name.o``; skips the test when clang-19 is missing."""
    if CLANG is None:
        pytest.skip("clang-19 is not installed")
    path = tmp_path / f"{name}.c"
    path.write_text(source + "\n")
    obj = tmp_path / f"{name}.o"
    multiarch = f"-I/usr/include/{platform.machine()}-linux-gnu"
    subprocess.run(
        [CLANG, "-g", "-O2", "-target", "bpf", "-mcpu=v3", f"-I{PROGS}", multiarch, "-c", str(path), "-o", str(obj)],
        check=True,
        capture_output=True,
    )
    return obj


def our_verdict(obj: Path, program: str = "p") -> tuple[bool, str]:
    """(whether pybpf's verifier accepts ``program`` of ``obj``, its first diagnostic's reason)."""
    from pybpf.obj import load_spec
    from pybpf.verifier import verify_program

    spec = load_spec(obj)
    report = verify_program(spec.programs[program], spec)
    return report.accepted, report.diagnostics[0].reason if report.diagnostics else ""


def kernel_verdict(obj: Path) -> tuple[bool, str]:
    """(whether the kernel's verifier accepts every program of ``obj``, its log when it rejects).

    Skips the test when the kernel loader fails for another reason than the verifier.
    """
    from pybpf.kernel.loader import load

    try:
        with load(obj):
            return True, ""
    except VerifierRejectedError as error:
        return False, error.log or str(error)
    except LoadError as error:
        if "verifier" not in str(error).lower():
            pytest.skip(f"the kernel loader could not instantiate the object: {error}")
        return False, str(error)
    except PybpfError as error:
        pytest.skip(f"the kernel loader could not instantiate the object: {error}")


def kernel_processed(obj: Path) -> tuple[bool, int | None]:
    """(whether the kernel accepts every program of ``obj``, the instructions it processed for
    the last program it verified, from its log statistics; None when the log has none)."""
    from pybpf.kernel.loader import load

    try:
        with load(obj, log_level=1) as loaded:
            log = "\n".join(program.log for program in loaded.programs.values())
            accepted = True
    except VerifierRejectedError as error:
        log, accepted = error.log or "", False
    except PybpfError as error:
        pytest.skip(f"the kernel loader could not instantiate the object: {error}")
    counts = re.findall(r"processed (\d+) insns", log)
    return accepted, int(counts[-1]) if counts else None
