"""Where the kernel is available: the JIT's test runs equal the kernel's BPF_PROG_TEST_RUN.

Skipped with the reason when bpf() cannot load programs here (not root, no BPF, a sandbox).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import pybpf
from pybpf.errors import PybpfError
from pybpf.runtime.loader import load

PROGS = Path(__file__).resolve().parents[1] / "progs"
ETH_IPV4 = bytes.fromhex("00112233445566778899aabb0800")
ETH_IPV6 = bytes.fromhex("00112233445566778899aabb86dd")
PACKETS = (
    ETH_IPV4 + bytes.fromhex("4500002e1234400040110000c0a80001c0a800c7d43100350012abcd") + bytes(18),
    ETH_IPV4 + bytes.fromhex("450000341234400040060000c0a80002c0a800c7") + bytes(32),
    ETH_IPV6 + bytes(60),
    ETH_IPV4 + bytes(6),
)
CASES = (("xdp_firewall", "xdp_firewall"), ("xdp_lb", "xdp_lb"), ("bpf2bpf", "xdp_no_calls"))


def kernel_object(path: Path) -> Any:
    try:
        return pybpf.load(path, backend="kernel")
    except (PybpfError, OSError) as error:
        pytest.skip(f"the kernel cannot load {path.name} here: {type(error).__name__}: {error}")


@pytest.mark.parametrize(("file", "program"), CASES, ids=[f"{file}:{program}" for file, program in CASES])
def test_jit_test_runs_equal_the_kernels(file: str, program: str) -> None:
    path = PROGS / f"{file}.o"
    with kernel_object(path) as kernel, load(path, engine="jit") as native:
        for packet in PACKETS:
            expected = kernel.program(program).test_run(packet)
            got = native.program(program).test_run(packet)
            assert (got.retval, got.data_out) == (expected.retval, expected.data_out), packet.hex()
