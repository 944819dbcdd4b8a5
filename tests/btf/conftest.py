"""Fixtures for the BTF tests: compile C with clang-19 for BPF, pull sections out with pyelftools,
and read the running kernel's BTF (each skipped with a reason when unavailable)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from btf_compiled import CompiledObject

from pybpf.btf import Btf

PROGS = Path(__file__).parent / "progs"
VMLINUX = Path("/sys/kernel/btf/vmlinux")
CLANG = "clang-19"


@pytest.fixture(scope="session")
def compile_prog(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], CompiledObject]:
    if shutil.which(CLANG) is None:
        pytest.skip(f"{CLANG} is not installed: cannot build BPF test objects")
    out_dir = tmp_path_factory.mktemp("btf-objs")
    cache: dict[str, CompiledObject] = {}

    def build(name: str) -> CompiledObject:
        if name not in cache:
            source = PROGS / f"{name}.c"
            target = out_dir / f"{name}.o"
            subprocess.run(
                [CLANG, "-O2", "-g", "-target", "bpf", "-c", str(source), "-o", str(target)],
                check=True,
                capture_output=True,
            )
            cache[name] = CompiledObject(target, source)
        return cache[name]

    return build


@pytest.fixture(scope="session")
def vmlinux_bytes() -> bytes:
    try:
        return VMLINUX.read_bytes()
    except OSError as err:
        pytest.skip(f"kernel BTF not readable at {VMLINUX}: {err}")


@pytest.fixture(scope="session")
def vmlinux_btf(vmlinux_bytes: bytes) -> Btf:
    return Btf.from_bytes(vmlinux_bytes)


@pytest.fixture(scope="session")
def bpftool() -> str:
    path = shutil.which("bpftool")
    if path is None:
        pytest.skip("bpftool is not installed")
    return path
