"""``pybpf verify``: the JSON shape, exit statuses, raw bytecode and the per-instruction log."""

from __future__ import annotations

import io
import json
from pathlib import Path

from pybpf.asm import assemble_bytes
from pybpf.cli.main import main

PROGS = Path(__file__).parent.parent / "progs"


def _run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    status = main(list(argv), out)
    return status, out.getvalue()


def test_verify_object_json_shape() -> None:
    status, text = _run("verify", str(PROGS / "xdp_firewall.o"), "--json")
    assert status == 0
    document = json.loads(text)
    assert list(document) == ["programs"]
    (entry,) = document["programs"]
    assert set(entry) == {"name", "section", "type", "accepted", "error", "pc", "line", "processed_insns"}
    assert entry["name"] == "xdp_firewall" and entry["type"] == "xdp" and entry["accepted"] is True
    assert entry["error"] is None and entry["pc"] is None and entry["processed_insns"] > 0


def test_verify_raw_rejected(tmp_path: Path) -> None:
    raw = tmp_path / "prog.bin"
    raw.write_bytes(assemble_bytes("r2 = *(u32 *)(r1 + 0)\nr0 = *(u8 *)(r2 + 0)\nr0 = 2\nexit"))
    status, text = _run("verify", "--raw", str(raw), "--type", "xdp", "--json")
    assert status == 1
    (entry,) = json.loads(text)["programs"]
    assert entry["accepted"] is False
    assert entry["error"] == "R2 offset is outside of the packet"
    assert entry["pc"] == 1


def test_verify_raw_text_and_log(tmp_path: Path) -> None:
    raw = tmp_path / "prog.bin"
    raw.write_bytes(assemble_bytes("r0 = 1\nexit"))
    status, text = _run("verify", "--raw", str(raw), "--type", "socket_filter", "--log", "2")
    assert status == 0
    # The kernel's level-2 format: the state at the start, then what each instruction left.
    assert "0: R1=ctx() R10=fp0" in text
    assert "0: (b7) r0 = 1                        ; R0=1" in text
    assert "1: (95) exit" in text
    assert "accepted" in text


def test_verify_one_program_by_name() -> None:
    status, text = _run("verify", str(PROGS / "tail_calls.o"), "--prog", "dispatch", "--json")
    assert status == 0
    assert [entry["name"] for entry in json.loads(text)["programs"]] == ["dispatch"]


def test_text_output_explains_a_rejection(tmp_path: Path) -> None:
    raw = tmp_path / "prog.bin"
    raw.write_bytes(assemble_bytes("r2 = *(u32 *)(r1 + 0)\nr0 = *(u8 *)(r2 + 0)\nr0 = 2\nexit"))
    status, text = _run("verify", "--raw", str(raw), "--type", "xdp")
    assert status == 1
    assert "REJECTED" in text
    assert "instruction 1 (r0 = *(u8 *)(r2 + 0x0)): R2 offset is outside of the packet" in text
    assert "hint: compare data + offset + size against data_end" in text


def test_log_level_one_lists_the_walk(tmp_path: Path) -> None:
    raw = tmp_path / "prog.bin"
    raw.write_bytes(assemble_bytes("r0 = 0\nif r1 == 0 goto +1\nr0 = 1\nexit"))
    status, text = _run("verify", "--raw", str(raw), "--type", "socket_filter", "--log", "1")
    assert status == 0
    lines = text.splitlines()
    assert "0: (b7) r0 = 0" in lines and "2: (b7) r0 = 1" in lines
    assert not any("R10=fp0" in line for line in lines)


def test_text_output_counts_dead_instructions(tmp_path: Path) -> None:
    raw = tmp_path / "prog.bin"
    raw.write_bytes(assemble_bytes("r0 = 0\nif r0 == 1 goto +2\nr0 = 2\nexit\nr0 = 3\nexit"))
    status, text = _run("verify", "--raw", str(raw), "--type", "socket_filter")
    assert status == 0
    assert text.rstrip().endswith(", 2 dead insns")
    raw.write_bytes(assemble_bytes("r0 = 0\nif r1 == 0 goto +2\nr0 = 2\nexit\nr0 = 3\nexit"))
    _, text = _run("verify", "--raw", str(raw), "--type", "socket_filter")
    assert "dead" not in text


def test_unprivileged_lists_speculation_barriers(tmp_path: Path) -> None:
    # selftests progs/verifier_unpriv.c "alu32: mov u32 const" (6.17+: accepted, a nospec before
    # the load only a mispredicted branch reaches; not checkable on this kernel, which refuses
    # unprivileged bpf()).
    raw = tmp_path / "prog.bin"
    raw.write_bytes(assemble_bytes("w7 = 0\nw7 &= 1\nw0 = w7\nif r0 == 0 goto +1\nr0 = *(u64 *)(r7 + 0)\nexit"))
    status, text = _run("verify", "--raw", str(raw), "--type", "socket_filter", "--unprivileged")
    assert status == 0
    assert "speculation barrier inserted before insn 4 because" in text
    status, text = _run("verify", "--raw", str(raw), "--type", "socket_filter")
    assert status == 0 and "speculation barrier" not in text
