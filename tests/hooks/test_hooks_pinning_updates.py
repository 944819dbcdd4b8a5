"""Another process updates and deletes elements of a pinned hash map while its owner runs (and after)."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

import pybpf
from pybpf.errors import MapKeyExistsError, MapKeyNotFoundError
from pybpf.hooks.pinning import OwnerGoneError, open_pinned_map, pin_map
from pybpf.hooks.pinning.updates import UpdateServer
from pybpf.platform.uapi_generated import BpfMapType
from pybpf.runtime.maps import HashMap, MapDef, PercpuHashMap
from pybpf.vm.memory import AddressSpace

SRC = Path(pybpf.__file__).resolve().parents[1]  # the pybpf under test, for the child processes


def python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True, text=True, env=env, check=False, timeout=60,
    )


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return python("import sys; from pybpf.cli.main import main; sys.exit(main(sys.argv[1:]))", *args)


def u64(value: int) -> bytes:
    return struct.pack("<Q", value)


def test_cli_updates_and_deletes_elements_the_owner_sees(tmp_path: Path) -> None:
    memory = AddressSpace()
    table = HashMap(MapDef(BpfMapType.HASH, 8, 8, 64, 0, "flows"), memory)
    table.update_raw(u64(1), u64(100))
    table.update_raw(u64(2), u64(200))
    path = pin_map(table, "flows", tmp_path)
    old_address = table.lookup_address(u64(1))

    result = cli("map", "update", "--pinned", str(path), u64(1).hex(), u64(111).hex())
    assert result.returncode == 0, result.stderr
    assert table.lookup_raw(u64(1)) == u64(111)
    assert table.lookup_address(u64(1)) == old_address  # in place: a program's pointer sees it
    assert memory.load(old_address, 8) == 111

    # The Python API in another process: a new element, found by programs; a delete; errors.
    child = f"""
        import struct
        from pybpf.hooks.pinning import open_pinned_map
        with open_pinned_map({str(path)!r}) as flows:
            flows.update(struct.pack("<Q", 3), struct.pack("<Q", 300))
            flows.delete(struct.pack("<Q", 2))
            for attempt in (lambda: flows.update(struct.pack("<Q", 1), bytes(8), 1),
                            lambda: flows.delete(struct.pack("<Q", 9)),
                            lambda: flows.update(b"1", bytes(8))):
                try:
                    attempt()
                except Exception as error:
                    print(type(error).__name__, error.errno)
    """
    result = python(child)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["MapKeyExistsError 17", "MapKeyNotFoundError 2", "MapInvalidArgumentError 22"]
    assert memory.load(table.lookup_address(u64(3)), 8) == 300
    assert table.lookup_address(u64(2)) == 0
    assert list(table.raw_keys()) == [u64(1), u64(3)]
    # The CLI reports the owner's refusal.
    refused = cli("map", "delete", "--pinned", str(path), u64(9).hex(), "--json")
    assert refused.returncode == 1 and "no such key" in refused.stderr
    assert table.lookup_raw(u64(1)) == u64(111)
    table.close()


def test_updates_from_another_process_interleave_with_the_owners(tmp_path: Path) -> None:
    # Both processes insert and delete at the same time: every change lands and the owner's
    # element list stays whole (the owner applies the other's requests under its map lock).
    table = HashMap(MapDef(BpfMapType.HASH, 8, 8, 1024, 0, "busy"), AddressSpace())
    path = pin_map(table, "busy", tmp_path)
    child = f"""
        import struct
        from pybpf.hooks.pinning import open_pinned_map
        with open_pinned_map({str(path)!r}) as busy:
            for n in range(1000, 1300):
                busy.update(struct.pack("<Q", n), struct.pack("<Q", n * 2))
            for n in range(1000, 1300, 3):
                busy.delete(struct.pack("<Q", n))
    """
    process = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(child)],
        env={**os.environ, "PYTHONPATH": str(SRC)}, stderr=subprocess.PIPE, text=True,
    )
    for n in range(300):
        table.update_raw(u64(n), u64(n * 2))
        if n % 2:
            table.delete_raw(u64(n))
    _, errors = process.communicate(timeout=60)
    assert process.returncode == 0, errors
    expected = {u64(n): u64(n * 2) for n in range(0, 300, 2)}
    expected.update({u64(n): u64(n * 2) for n in range(1000, 1300) if (n - 1000) % 3})
    assert {key: table.lookup_raw(key) for key in table.raw_keys()} == expected
    assert len(table) == len(expected)
    with open_pinned_map(path) as busy:
        assert dict(busy.entries()) == expected
    table.close()


def test_owner_gone_updates_edit_the_file_under_its_lock(tmp_path: Path) -> None:
    writer = f"""
        import struct
        from pybpf.hooks.pinning import pin_map
        from pybpf.platform.uapi_generated import BpfMapType
        from pybpf.runtime.maps import MapDef, PercpuHashMap
        from pybpf.vm.memory import AddressSpace
        table = PercpuHashMap(MapDef(BpfMapType.PERCPU_HASH, 4, 8, 4, 0, "left"), AddressSpace(), 2)
        table.update_raw(struct.pack("<I", 1), struct.pack("<QQ", 1, 2))
        table.update_raw(struct.pack("<I", 2), struct.pack("<QQ", 3, 4))
        pin_map(table, "left", {str(tmp_path)!r})
    """
    result = python(writer)
    assert result.returncode == 0, result.stderr
    one, two, three = (struct.pack("<I", n) for n in (1, 2, 3))
    with open_pinned_map("left", tmp_path) as left:
        assert not left.owner_alive
        left.update(one, struct.pack("<QQ", 10, 20))
        left.update(three, struct.pack("<QQ", 30, 40), 1)  # BPF_NOEXIST: a new element
        with pytest.raises(MapKeyExistsError):
            left.update(three, struct.pack("<QQ", 0, 0), 1)
        with pytest.raises(MapKeyNotFoundError):
            left.update(struct.pack("<I", 9), struct.pack("<QQ", 0, 0), 2)  # BPF_EXIST
        left.delete(two)
        with pytest.raises(MapKeyNotFoundError):
            left.delete(two)
        assert dict(left.entries()) == {one: (u64(10), u64(20)), three: (u64(30), u64(40))}


def test_closing_the_map_stops_serving(tmp_path: Path) -> None:
    table = PercpuHashMap(MapDef(BpfMapType.PERCPU_HASH, 4, 4, 4, 0, "short"), AddressSpace(), 2)
    path = pin_map(table, "short", tmp_path)
    threads = {thread.name for thread in threading.enumerate()}
    assert "pybpf-pin-short" in threads
    with open_pinned_map(path) as short:
        short.update(bytes(4), struct.pack("<II", 0, 0) + struct.pack("<II", 7, 0))
        assert table.lookup_raw(bytes(4))[8:12] == struct.pack("<I", 7)
        table.close()
        # The owner still runs but no longer serves the map: the update cannot be applied.
        with pytest.raises(OwnerGoneError):
            short.update(bytes(4), bytes(16))
    assert isinstance(UpdateServer, type)


def test_the_owners_jit_program_finds_an_element_another_process_inserted(tmp_path: Path) -> None:
    from pybpf.hooks.link import HookRuntime
    from pybpf.hooks.probes import attach_probe

    progs = Path(__file__).resolve().parents[1] / "progs"
    with pybpf.load(progs / "hooks_probe.o", engine="jit") as obj:
        path = pin_map(obj.maps["hash_calls"], "calls", tmp_path)
        result = python(f"""
            import struct
            from pybpf.hooks.pinning import open_pinned_map
            with open_pinned_map({str(path)!r}) as calls:
                calls.update(bytes(4), struct.pack("<Q", 100))
        """)
        assert result.returncode == 0, result.stderr
        # count_threads looks the key up (natively, through the JIT's index) and adds 1 to what
        # it finds; only if the lookup missed would it insert 1 instead.
        link = attach_probe(obj.program("count_threads"), lambda n: n, runtime=HookRuntime(), install=False)
        for n in range(3):
            link.wrapper(n)
        assert link.errors == 0, link.last_error
        assert obj.maps["hash_calls"].lookup_raw(bytes(4)) == u64(103)
        link.detach()
