"""The test programs are real: each loads in the running kernel's verifier (bpftool, private bpffs).

Later differential tests rely on this. Nothing is attached; tests/progs/verify_kernel.sh mounts a
private bpffs under /tmp, pins the loaded programs there and unmounts it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "progs" / "verify_kernel.sh"


@pytest.mark.kernel
def test_every_program_passes_the_kernel_verifier() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to load programs and mount bpffs")
    if shutil.which("bpftool") is None:
        pytest.skip("bpftool is not installed")
    if not Path("/sys/kernel/btf/vmlinux").exists():
        pytest.skip("the kernel has no BTF (CO-RE programs cannot load)")
    result = subprocess.run([str(SCRIPT)], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok   xdp_firewall.o" in result.stdout
