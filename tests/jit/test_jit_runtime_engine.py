"""Engine selection in the runtime: ``load(..., engine=)``, ``test_run(..., engine=)``, ``--engine``."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from pybpf.cli.main import main
from pybpf.errors import TestRunError
from pybpf.runtime.loader import load

PROGS = Path(__file__).resolve().parents[1] / "progs"
ETHERNET = bytes.fromhex("ffffffffffff0000000000010800")
PACKET = ETHERNET + bytes.fromhex("4500002e00004000401100007f0000017f000001") + bytes(26)


def cli(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    return main(list(argv), out=out), out.getvalue()


def test_load_engine_jit_runs_native_code_with_the_interpreters_result() -> None:
    with load(PROGS / "xdp_lb.o", engine="interp") as interp_obj, load(PROGS / "xdp_lb.o", engine="jit") as jit_obj:
        expected = interp_obj.program("xdp_lb").test_run(PACKET)
        got = jit_obj.program("xdp_lb").test_run(PACKET)
    assert jit_obj.program("xdp_lb").engine == "jit"
    assert (got.retval, got.data_out) == (expected.retval, expected.data_out)
    assert expected.instructions > 0
    assert got.instructions == 0  # native code does not count instructions


def test_per_call_engine_overrides_the_programs() -> None:
    with load(PROGS / "xdp_firewall.o", engine="interp") as obj:
        program = obj.program("xdp_firewall")
        assert program.engine == "interp"
        native = program.test_run(PACKET, engine="jit")
        reference = program.test_run(PACKET)
    assert native.instructions == 0
    assert reference.instructions > 0
    assert native.retval == reference.retval


def test_unknown_engine_is_refused() -> None:
    with pytest.raises(TestRunError, match="unknown engine"):
        load(PROGS / "xdp_lb.o", engine="fast")  # type: ignore[arg-type]
    with load(PROGS / "xdp_lb.o") as obj, pytest.raises(TestRunError, match="unknown engine"):
        obj.program("xdp_lb").test_run(PACKET, engine="turbo")  # type: ignore[arg-type]


def test_prog_run_cli_engine_jit() -> None:
    argv = ["prog", "run", str(PROGS / "xdp_lb.o"), "--prog", "xdp_lb", "--data-in", PACKET.hex(), "--json"]
    code_i, out_i = cli(*argv)
    code_j, out_j = cli(*argv, "--engine", "jit")
    assert code_i == code_j == 0
    run_i, run_j = json.loads(out_i)["runs"][0], json.loads(out_j)["runs"][0]
    assert run_j["retval"] == run_i["retval"]
    assert run_j["data_out"] == run_i["data_out"]


def test_run_cli_engine_jit_on_assembly(tmp_path: Path) -> None:
    source = tmp_path / "prog.s"
    source.write_text("mov %r0, 7\nlsh %r0, 3\nexit\n")
    code, out = cli("run", str(source), "--engine", "jit", "--json")
    assert code == 0
    assert json.loads(out) == {"r0": 56, "instructions": 0}


def test_run_cli_replays_a_capture_with_the_jit(tmp_path: Path) -> None:
    from pybpf.hooks.packets import write_capture

    frames = [PACKET, PACKET[:20], bytes.fromhex("00112233445566778899aabb86dd") + bytes(60)]
    capture = tmp_path / "in.pcap"
    write_capture(capture, frames)
    argv = ["run", str(PROGS / "xdp_firewall.o"), "--prog", "xdp_firewall", "--pcap", str(capture), "--json"]
    code_i, out_i = cli(*argv, "--engine", "interp")
    code_j, out_j = cli(*argv, "--engine", "jit")
    assert code_i == code_j == 0
    report_i, report_j = json.loads(out_i), json.loads(out_j)
    engine_specific = {"instructions", "packets_per_second", "ns_per_packet", "elapsed_ns"}
    assert report_j["instructions"] == 0 < report_i["instructions"]  # native code really ran
    for key in engine_specific:
        del report_i[key], report_j[key]
    assert report_j == report_i  # same verdicts, outputs and maps
