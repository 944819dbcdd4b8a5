"""``pybpf prog run`` and ``pybpf map dump`` through cli.main (no kernel needed)."""

from __future__ import annotations

import io
import json
import struct
from pathlib import Path

import pytest

import pybpf
from pybpf.cli import prog_cmd
from pybpf.cli.main import main

PROGS = Path(__file__).resolve().parents[1] / "progs"
FRAME = (
    b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00"
    + bytes([0x45, 0, 0, 28, 0, 1, 0, 0, 64, 17, 0, 0, 192, 168, 1, 7, 10, 0, 0, 2]) + bytes(8)
)


def run_cli(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main(list(argv), out)
    return code, out.getvalue()


def test_prog_run_json_runs_in_order_with_persistent_maps() -> None:
    code, text = run_cli(
        "prog", "run", str(PROGS / "xdp_firewall.o"), "--prog", "xdp_firewall",
        "--data-in", FRAME.hex(), "--data-in", FRAME.hex(), "--dump-maps", "--json",
    )
    assert code == 0
    runs = json.loads(text)["runs"]
    assert [run["retval"] for run in runs] == [2, 2]  # XDP_PASS
    assert runs[0]["data_out"] == FRAME.hex()
    assert all(isinstance(run["duration_ns"], float) for run in runs)
    counts = [run["maps"]["verdict_count"] for run in runs]
    assert counts[0]["type"] == "percpu_array"
    passed = [{key: value for key, value in c["entries"]}["01000000"] for c in counts]
    totals = [sum(struct.unpack("<Q", bytes.fromhex(v))[0] for v in per_cpu) for per_cpu in passed]
    assert totals == [1, 2]  # the second run sees the first run's count


def test_prog_run_data_from_file_and_text_output(tmp_path: Path) -> None:
    packet = tmp_path / "packet.bin"
    packet.write_bytes(FRAME)
    code, text = run_cli("prog", "run", str(PROGS / "tc_mark.o"), "--prog", "tc_mark", "--data-in", f"@{packet}")
    assert code == 0
    assert "run 1: retval 0" in text
    assert FRAME.hex() in text


def test_map_dump_global_data() -> None:
    code, text = run_cli("map", "dump", str(PROGS / "global_data.o"), ".rodata", "--json")
    assert code == 0
    dumped = json.loads(text)
    assert dumped["type"] == "array"
    assert [key for key, _ in dumped["entries"]] == ["00000000"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--prog", "nope", "--data-in", "00"], "no program named 'nope'"),
        (["--prog", "xdp_firewall", "--data-in", "zz"], "neither hex"),
        (["--prog", "xdp_firewall", "--type", "bogus", "--data-in", "00"], "unknown program type"),
    ],
    ids=["unknown-program", "bad-hex", "bad-type"],
)
def test_prog_run_errors_are_json_with_nonzero_exit(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, text = run_cli("prog", "run", str(PROGS / "xdp_firewall.o"), *argv, "--json")
    assert code != 0
    assert message in json.loads(text)["error"]
    assert message in capsys.readouterr().err


def test_prog_run_shows_each_runs_trace_lines() -> None:
    ipv6 = FRAME[:12] + b"\x86\xdd" + FRAME[14:]
    args = ("prog", "run", str(PROGS / "trace_printk.o"), "--prog", "trace_len", "--data-in", FRAME.hex())
    code, text = run_cli(*args, "--data-in", ipv6.hex(), "--data-in", FRAME[:10].hex(), "--json")
    assert code == 0
    traces = [run["trace"] for run in json.loads(text)["runs"]]
    assert len(traces) == 3
    assert len(traces[0]) == 1 and traces[0][0].endswith(f"bpf_trace_printk: len {len(FRAME)} proto 800")
    assert len(traces[1]) == 1 and traces[1][0].endswith(f"len {len(ipv6)} proto 86dd")
    assert traces[2][0].endswith("len 10 proto 0")  # too short for an ethertype
    code, text = run_cli(*args, "--data-in", ipv6.hex())
    assert code == 0
    lines = text.splitlines()
    # The trace block follows the runs, each line tagged with its run.
    start = lines.index("trace_pipe:")
    assert all(line.startswith("run ") for line in lines[:start] if not line.startswith("  "))
    assert lines[start + 1].startswith("  run 1: ") and lines[start + 1].endswith("proto 800")
    assert lines[start + 2].startswith("  run 2: ") and lines[start + 2].endswith("proto 86dd")


def test_prog_run_without_trace_output_prints_no_trace_block() -> None:
    code, text = run_cli("prog", "run", str(PROGS / "tc_mark.o"), "--prog", "tc_mark", "--data-in", FRAME.hex())
    assert code == 0
    assert "trace_pipe" not in text
    code, text = run_cli(
        "prog", "run", str(PROGS / "tc_mark.o"), "--prog", "tc_mark", "--data-in", FRAME.hex(), "--json"
    )
    assert json.loads(text)["runs"][0]["trace"] == []


def test_run_records_name_the_redirect_map_and_key() -> None:
    # The CLI cannot fill maps, so drive its record/text functions with a filled devmap.
    ipv6 = FRAME[:12] + b"\x86\xdd" + FRAME[14:]
    with pybpf.load(PROGS / "redirect_devmap.o") as obj:
        obj.maps["tx_ports"].update_raw(struct.pack("<I", 1), struct.pack("<I", 9))
        program = obj.programs["redirect_dev"]
        record = prog_cmd._run_record(obj, program, program.test_run(ipv6), dump_maps=False)
        assert record["verdict"] == "XDP_REDIRECT"
        assert record["redirect"] == {"map": "tx_ports", "key": 1}
        plain = prog_cmd._run_record(obj, program, program.test_run(FRAME), dump_maps=False)
        assert "redirect" not in plain
    out = io.StringIO()
    prog_cmd._write_text(out, [record, plain], "redirect_dev")
    assert out.getvalue().count("redirect: map tx_ports key 1") == 1


def test_dump_maps_counts_the_values_of_keyless_maps() -> None:
    long_frame = FRAME + bytes(40)  # longer than 60 bytes: the program pops what it pushed
    obj = str(PROGS / "queue_stack.o")
    code, text = run_cli("prog", "run", obj, "--prog", "queue_stack", "--data-in", FRAME.hex(), "--dump-maps", "--json")
    assert code == 0
    maps = json.loads(text)["runs"][0]["maps"]
    assert (maps["fifo"]["held"], maps["lifo"]["held"]) == (1, 1)
    assert maps["fifo"]["entries"] == []
    assert "held" not in maps["qs_log"]
    code, text = run_cli(
        "prog", "run", obj, "--prog", "queue_stack", "--data-in", FRAME.hex(), "--data-in", long_frame.hex(),
        "--dump-maps",
    )
    assert code == 0
    # Run 2 pushed one more and popped one: one value left in each.
    assert "map fifo (queue): 1 values held (no keys to list)" in text
    assert "map lifo (stack): 1 values held (no keys to list)" in text
