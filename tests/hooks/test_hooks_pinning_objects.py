"""Program and link pins: descriptions under the pin root, listed by kind, removed by unpin."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import pybpf
from pybpf.errors import NotSupportedError
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


def ipv4_packet(source: str) -> bytes:
    ip = bytearray(20)
    ip[0] = 0x45
    ip[12:16] = bytes(int(part) for part in source.split("."))
    return bytes(12) + b"\x08\x00" + bytes(ip) + bytes(26)


def deny_key(prefixlen: int, address: str) -> bytes:
    return prefixlen.to_bytes(4, "little") + bytes(int(part) for part in address.split("."))


def test_pinned_program_loads_again_in_another_process_and_pinned_trie_steers_the_owner(tmp_path: Path) -> None:
    import subprocess
    import sys
    import textwrap

    from pybpf.hooks.pinning import open_pinned_program, pin_map

    source = PROGS / "xdp_firewall.o"
    src = Path(pybpf.__file__).resolve().parents[1]
    with pybpf.load(source) as obj:
        firewall = obj.program("xdp_firewall")
        prog_path = pin_program(firewall, "progs/firewall", tmp_path, object_file=source)
        map_path = pin_map(obj.maps["deny_v4"], "maps/deny_v4", tmp_path)
        assert firewall.test_run(ipv4_packet("10.1.2.3")).retval == 2  # XDP_PASS
        # Another process: denies 10/8 in the owner's trie (the owner applies it; its program
        # sees it at once), then runs the pinned program, which has maps of its own.
        child = f"""
            from pybpf.hooks.pinning import open_pinned_map, open_pinned_program
            with open_pinned_map({str(map_path)!r}) as deny:
                deny.update(bytes.fromhex({deny_key(8, "10.0.0.0").hex()!r}), (1).to_bytes(4, "little"))
            program = open_pinned_program({str(prog_path)!r}, engine="interp")
            packet = bytes.fromhex({ipv4_packet("10.1.2.3").hex()!r})
            print(program.name, program.test_run(packet).retval)
        """
        result = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(child)],
            capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(src)}, check=False, timeout=60,
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.split() == ["xdp_firewall", "2"]  # its own, empty deny list
        assert firewall.test_run(ipv4_packet("10.1.2.3")).retval == 1  # XDP_DROP in the owner
        assert firewall.test_run(ipv4_packet("192.168.1.1")).retval == 2
    reloaded = open_pinned_program(prog_path, engine="interp")
    assert reloaded.test_run(ipv4_packet("10.1.2.3")).retval == 2
    assert reloaded.attach_provider is not None  # attaches to hooks like a program pybpf.load gave
    described = pin_program(reloaded, "progs/description_only", tmp_path)
    with pytest.raises(NotSupportedError, match="object file"):
        open_pinned_program(described)
    with pytest.raises(PinError):
        open_pinned_program(map_path)
