"""``pybpf disasm OBJ``: programs of an ELF object with their C source lines, and the round trip."""

from __future__ import annotations

import io
import json
from pathlib import Path

from pybpf.cli.main import main
from pybpf.isa import encode_program
from pybpf.obj import load_spec

PROGS = Path(__file__).resolve().parents[1] / "progs"


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main(list(argv), out=out)
    return code, out.getvalue()


def test_disasm_object_interleaves_c_source() -> None:
    code, text = run("disasm", str(PROGS / "xdp_lb.o"))
    assert code == 0
    assert "; program xdp_lb (section xdp)" in text
    source = (PROGS / "xdp_lb.c").read_text()
    comment_lines = [line[2:] for line in text.splitlines() if line.startswith("; ") and "program" not in line]
    assert comment_lines, "no source lines shown"
    assert all(line.strip() in source for line in comment_lines)


def test_disasm_object_listing_reassembles_to_the_same_bytes(tmp_path: Path) -> None:
    spec = load_spec(PROGS / "bpf2bpf.o")
    code, text = run("disasm", str(PROGS / "bpf2bpf.o"), "--prog", "count_scaled")
    assert code == 0
    listing = tmp_path / "prog.s"
    listing.write_text(text)
    code, hex_out = run("asm", str(listing))
    assert code == 0
    assert bytes.fromhex(hex_out.strip()) == encode_program(spec.programs["count_scaled"].instructions)


def test_disasm_object_json_has_program_and_source() -> None:
    code, text = run("disasm", str(PROGS / "socket_filter.o"), "--json")
    assert code == 0
    rows = json.loads(text)
    assert {row["program"] for row in rows}
    assert any("source" in row for row in rows)


def test_disasm_unknown_program_is_an_error(capsys: object) -> None:
    code, _ = run("disasm", str(PROGS / "bpf2bpf.o"), "--prog", "nothere")
    assert code == 1
