"""``pybpf prog run`` and ``pybpf map dump`` with ``--backend kernel``: same output shape, same results."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from pybpf.cli.main import main
from pybpf.kernel import available

PROGS = Path(__file__).resolve().parents[1] / "progs"
# Ethernet + IPv4 (UDP, 10.0.0.1 -> 10.0.0.2) + 8 bytes.
FRAME = "020202020202040404040404" "0800" "4500001c00010000401166ce0a0000010a000002" "0000000000000000"


@pytest.fixture(scope="module", autouse=True)
def kernel() -> None:
    ok, reason = available()
    if not ok:
        pytest.skip(f"bpf() unavailable: {reason}")


def _json(argv: list[str]) -> Any:
    out = io.StringIO()
    assert main(argv, out) == 0
    return json.loads(out.getvalue())


def _summed(dumped: dict[str, Any]) -> dict[str, int]:
    """Per-CPU values summed: the kernel runs a test on whichever CPU it likes."""

    def number(part: str) -> int:
        return int.from_bytes(bytes.fromhex(part), "little")

    return {
        key: sum(number(part) for part in value) if isinstance(value, list) else number(value)
        for key, value in dumped["entries"]
    }


def test_prog_run_backends_agree() -> None:
    argv = ["prog", "run", str(PROGS / "xdp_firewall.o"), "--prog", "xdp_firewall", "--data-in", FRAME]
    argv += ["--data-in", FRAME, "--dump-maps", "--json"]
    user = _json([*argv, "--backend", "vm"])
    kernel = _json([*argv, "--backend", "kernel"])
    assert [(r["retval"], r["data_out"], r.get("verdict")) for r in kernel["runs"]] == [
        (r["retval"], r["data_out"], r.get("verdict")) for r in user["runs"]
    ]
    assert kernel["runs"][0]["verdict"] == "XDP_PASS"
    for name in ("verdict_count", "deny_v4"):
        assert _summed(kernel["runs"][-1]["maps"][name]) == _summed(user["runs"][-1]["maps"][name])
    assert sum(_summed(kernel["runs"][-1]["maps"]["verdict_count"]).values()) == 2


def test_map_dump_of_global_data_in_the_kernel() -> None:
    argv = ["map", "dump", str(PROGS / "global_data.o"), ".rodata", "--json"]
    kernel = _json([*argv, "--backend", "kernel"])
    assert kernel == _json(argv)
    assert kernel["type"] == "array" and len(kernel["entries"]) == 1
