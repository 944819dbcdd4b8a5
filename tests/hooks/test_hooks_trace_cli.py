"""``pybpf trace``: programs on a script's functions, tracepoints and audit events, end to end.

Each test writes a small script into tmp_path and runs it through ``pybpf.cli.main.main`` in this
process (as the command does); the report goes to the injected stream, the script's own output
to stdout (capsys). Tracepoint names are unique per test: declarations live in the process's
tracepoint table.
"""

from __future__ import annotations

import io
import json
import struct
import textwrap
from pathlib import Path
from typing import Any

import pytest

from pybpf.cli.main import main

ROOT = Path(__file__).resolve().parents[2]
PROGS = ROOT / "tests" / "progs"
DENY_SECRET = ROOT / "examples" / "hooks" / "deny_secret.o"


def trace(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    status = main(["trace", *argv], out=out)
    return status, out.getvalue()


def trace_json(*argv: str) -> tuple[int, dict[str, Any]]:
    status, text = trace("--json", *argv)
    record: dict[str, Any] = json.loads(text.strip().splitlines()[-1])
    return status, record


def u64_entries(record: dict[str, Any], name: str) -> dict[int, int]:
    entries = record["maps"][name]["entries"]
    return {int.from_bytes(bytes.fromhex(key), "little"): int.from_bytes(bytes.fromhex(value), "little")
            for key, value in entries}


def script(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return path


def test_probe_on_a_function_the_script_defines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = script(
        tmp_path,
        "count.py",
        """
        import sys

        def handle(n, name):
            return n * 2

        calls = int(sys.argv[1])
        print("sum", sum(handle(i, f"req-{i}") for i in range(calls)), sys.argv[2:])
        """,
    )
    status, record = trace_json(
        str(PROGS / "hooks_probe.o"), "--prog", "on_entry", "--prog", "on_return",
        "--func", "__main__:handle", "--", str(path), "7", "-x", "--flag",
    )
    assert status == 0 and record["exit_status"] == 0
    assert capsys.readouterr().out.splitlines()[0] == "sum 42 ['-x', '--flag']"
    stats = u64_entries(record, "stats")
    assert stats == {0: 7, 1: sum(range(7)), 2: 2 * sum(range(7)), 3: 7}  # calls, args, results, returns
    assert [(link["program"], link["kind"], link["runs"]) for link in record["links"]] == [
        ("on_entry", "uprobe", 7),
        ("on_return", "uretprobe", 7),
    ]
    assert record["unattached"] == []
    name = bytes.fromhex(record["maps"]["last_name"]["entries"][0][1]).rstrip(b"\0")
    assert name == b"req-6"  # bpf_probe_read_user_str of the second argument of the last call


def test_probe_on_a_function_of_another_module(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    script(tmp_path, "trace_cli_helpers.py", "def work(n, name):\n    return n + 1\n")
    path = script(
        tmp_path,
        "main.py",
        """
        import trace_cli_helpers
        from trace_cli_helpers import work

        print(trace_cli_helpers.work(1, "a") + work(2, "b"))
        """,
    )
    status, text = trace(str(PROGS / "hooks_probe.o"), "--prog", "on_entry", "--func", "trace_cli_helpers:work",
                         str(path))
    assert status == 0
    assert capsys.readouterr().out.strip() == "5"
    assert "link" in text and "on_entry -> uprobe trace_cli_helpers.work: 2 runs" in text
    assert "  01000000: 0300000000000000" in text  # stats[1]: the sum of the first arguments


def test_tracepoint_the_script_declares(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = script(
        tmp_path,
        "app.py",
        """
        import pybpf

        def main():
            tp = pybpf.Tracepoint("clitest", "request", fields=[
                ("id", "u32"), ("status", "u16"), ("path", "char[32]"), ("bytes", "u64")])
            for i in range(5):
                tp.fire(id=i, status=500 if i == 2 else 200, path=f"/p{i}", bytes=i * 10)
            tp.close()

        main()
        print("done")
        """,
    )
    status, record = trace_json(str(PROGS / "hooks_tracepoint.o"), "--prog", "on_request",
                                "--tracepoint", "clitest/request", "--", str(path))
    assert status == 0
    assert capsys.readouterr().out.strip() == "done"
    (link,) = record["links"]
    assert (link["kind"], link["target"], link["runs"], link["errors"]) == ("tracepoint", "clitest/request", 5, 0)
    events = [struct.unpack_from("<IIQ", bytes.fromhex(data)) for data in record["ring_buffers"]["requests"]]
    assert events == [(0, 200, 0), (1, 200, 10), (3, 200, 30), (4, 200, 40)]  # the program skips 5xx
    assert record["maps"]["requests"]["held"] == 4


def test_audit_program_denies_open_in_the_script(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    secret = tmp_path / "secret-notes.txt"
    public = tmp_path / "public.txt"
    secret.write_text("s3cr3t")
    public.write_text("hello")
    path = script(
        tmp_path,
        "opener.py",
        """
        import sys

        for name in sys.argv[1:]:
            try:
                print(open(name).read())
            except PermissionError as error:
                print("denied", error.errno, error.filename)
        """,
    )
    status, text = trace(str(DENY_SECRET), "--prog", "deny_secret", "--audit", "open", "--",
                         str(path), str(public), str(secret))
    assert status == 0
    assert capsys.readouterr().out.splitlines() == ["hello", f"denied 1 {secret}"]
    assert "deny_secret -> lsm open:" in text and "1 denied" in text
    assert secret.read_text() == "s3cr3t"  # detached after the run


def test_exit_status_missing_target_and_wrong_program(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = script(tmp_path, "exits.py", "import sys\nsys.exit(3)\n")
    status, record = trace_json(str(PROGS / "hooks_probe.o"), "--prog", "on_entry", "--func", "__main__:nowhere",
                                str(path))
    assert status == 3 and record["exit_status"] == 3
    assert record["links"] == [] and "never appeared" in record["unattached"][0]
    quiet = script(tmp_path, "quiet.py", "x = 1\n")
    status, record = trace_json(str(PROGS / "hooks_probe.o"), "--prog", "on_entry", "--func", "__main__:nowhere",
                                str(quiet))
    assert status == 1 and record["exit_status"] == 0  # the target never appeared
    status, _ = trace(str(PROGS / "hooks_probe.o"), "--prog", "on_entry", "--tracepoint", "a/b", str(quiet))
    assert status == 1
    assert "tracepoint and raw_tracepoint programs" in capsys.readouterr().err
    raising = script(tmp_path, "raises.py", "raise ValueError('boom')\n")
    status, record = trace_json(str(PROGS / "hooks_probe.o"), "--prog", "on_entry", "--func", "__main__:nowhere",
                                str(raising))
    assert status == 1 and record["script_error"] == "ValueError: boom"
    assert "ValueError: boom" in capsys.readouterr().err  # the traceback, as Python prints it
