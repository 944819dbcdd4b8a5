"""`pybpf link list`: the links pinned under the pin root, with whether their process still runs."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pybpf
from pybpf.cli.main import main
from pybpf.hooks.link import HookRuntime
from pybpf.hooks.pinning import read_pin
from pybpf.hooks.probes import attach_probe

PROGS = Path(__file__).resolve().parents[1] / "progs"
SRC = Path(__file__).resolve().parents[2] / "src"


def test_link_list_reads_pinned_links(tmp_path: Path) -> None:
    out = io.StringIO()
    assert main(["link", "list", "--root", str(tmp_path)], out) == 0
    assert "no pinned links" in out.getvalue()
    with pybpf.load(PROGS / "hooks_probe.o") as obj:
        link = attach_probe(obj.program("on_entry"), lambda n, s: n, runtime=HookRuntime(), install=False)
        path = link.pin("links/entry", tmp_path)
        assert read_pin(path).kind == "link"
    # A link pinned by a process that has exited since.
    code = (
        "import pybpf; from pybpf.hooks.link import HookRuntime; from pybpf.hooks.tracepoints import *\n"
        "rt = HookRuntime(); Tracepoint('app', 'gone', [('x', 'u8')], runtime=rt)\n"
        f"obj = pybpf.load({str(PROGS / 'hooks_tracepoint.o')!r})\n"
        f"attach_tracepoint(obj.program('on_request'), 'app/gone', runtime=rt).pin('links/gone', {str(tmp_path)!r})\n"
    )
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False)
    assert result.returncode == 0, result.stderr
    out = io.StringIO()
    assert main(["link", "list", "--root", str(tmp_path), "--json"], out) == 0
    listed = json.loads(out.getvalue())
    assert listed["root"] == str(tmp_path)
    by_path = {Path(record["path"]).name: record for record in listed["links"]}
    assert by_path["entry"]["kind"] == "uprobe"
    assert by_path["entry"]["program"] == "on_entry"
    assert by_path["entry"]["pid"] == os.getpid()
    assert by_path["entry"]["alive"] is True
    assert by_path["gone"]["kind"] == "tracepoint"
    assert by_path["gone"]["target"] == "app/gone"
    assert by_path["gone"]["alive"] is False
    out = io.StringIO()
    assert main(["link", "list", "--root", str(tmp_path)], out) == 0
    text = out.getvalue()
    assert "uprobe" in text and "(process gone)" in text
