"""Program and link pins: descriptions under the pin root, listed by kind, removed by unpin."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import pybpf
from pybpf.hooks.link import HookRuntime
from pybpf.hooks.pinning import PinError, list_pins, pin_program, pinned_links, read_pin, unpin
from pybpf.hooks.probes import attach_probe

PROGS = Path(__file__).resolve().parents[1] / "progs"


def test_program_and_link_pins(tmp_path: Path) -> None:
    source = PROGS / "hooks_probe.o"
    with pybpf.load(source) as obj:
        program = obj.program("on_entry")
        path = pin_program(program, "progs/on_entry", tmp_path, object_file=source)
        with pytest.raises(FileExistsError):
            pin_program(program, "progs/on_entry", tmp_path)
        meta = read_pin(path).meta
        assert meta["kind"] == "prog"
        assert (meta["name"], meta["section"], meta["type"]) == ("on_entry", "uprobe", "kprobe")
        assert meta["object"] == str(source)
        assert meta["pid"] == os.getpid()
        with attach_probe(program, lambda n, s: n, runtime=HookRuntime(), install=False) as link:
            link_path = link.pin("links/on_entry", tmp_path)
    assert [info.kind for info in list_pins(tmp_path)] == ["link", "prog"]
    assert [info.path for info in list_pins(tmp_path, "prog")] == [path]
    (record,) = pinned_links(tmp_path)
    assert record["program"] == "on_entry"
    assert record["attached"] is True  # as it was when pinned
    assert record["path"] == str(link_path)
    unpin(link_path)
    assert pinned_links(tmp_path) == []
    (tmp_path / "progs" / "not_a_pin").write_text("hello")
    with pytest.raises(PinError):
        unpin("progs/not_a_pin", tmp_path)
    assert [info.path for info in list_pins(tmp_path)] == [path]  # non-pins are skipped
