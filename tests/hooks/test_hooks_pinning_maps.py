"""Pinned maps shared between processes through the pin file (mmap), read by `pybpf map dump --pinned`."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import pybpf
from pybpf.errors import MapInvalidArgumentError, NotSupportedError
from pybpf.hooks.link import HookRuntime
from pybpf.hooks.pinning import (
    PIN_ROOT_ENV,
    PinError,
    list_pins,
    open_pinned_map,
    pin_map,
    pin_root,
    read_pin,
    unpin,
)
from pybpf.hooks.probes import attach_probe
from pybpf.platform.uapi_generated import BpfMapFlag, BpfMapType
from pybpf.runtime.maps import ArrayMap, HashMap, MapDef, PercpuHashMap, create_map
from pybpf.vm.memory import AddressSpace

PROGS = Path(__file__).resolve().parents[1] / "progs"
SRC = Path(__file__).resolve().parents[2] / "src"


def python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args], capture_output=True, text=True, env=env, check=False
    )


def cli_dump(path: Path) -> dict[str, object]:
    result = python("import sys; from pybpf.cli.main import main; sys.exit(main(sys.argv[1:]))",
                    "map", "dump", "--pinned", str(path), "--json")
    assert result.returncode == 0, result.stderr
    dumped: dict[str, object] = json.loads(result.stdout)
    return dumped


def u64_at(dumped: dict[str, object], index: int) -> int:
    entries = dumped["entries"]
    assert isinstance(entries, list)
    return int.from_bytes(bytes.fromhex(entries[index][1]), "little")


def test_pin_root_order(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(PIN_ROOT_ENV, str(tmp_path / "env"))
    assert pin_root() == tmp_path / "env"
    assert pin_root(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv(PIN_ROOT_ENV)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "xdg"))
    assert pin_root() == tmp_path / "xdg" / "pybpf"
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    run_user = Path(f"/run/user/{os.getuid()}")
    expected = run_user / "pybpf" if run_user.is_dir() else Path(f"/tmp/pybpf-{os.getuid()}")
    assert pin_root() == expected


def test_second_process_reads_live_values(tmp_path: Path) -> None:
    with pybpf.load(PROGS / "hooks_probe.o") as obj:
        path = pin_map(obj.maps["stats"], "probe/stats", tmp_path)
        assert path == tmp_path / "probe" / "stats"
        assert read_pin(path).meta["type_name"] == "array"
        with pytest.raises(FileExistsError):
            pin_map(obj.maps["hash_calls"], path)
        with pytest.raises(NotSupportedError, match="already pinned"):
            pin_map(obj.maps["stats"], "probe/stats_again", tmp_path)
        assert not (tmp_path / "probe" / "stats_again").exists()
        link = attach_probe(obj.program("on_entry"), lambda n, s: n, runtime=HookRuntime(), install=False)
        for n in range(5):
            link.wrapper(n, "x")
        first = cli_dump(path)
        assert first["type"] == "array"
        assert (u64_at(first, 0), u64_at(first, 1)) == (5, 0 + 1 + 2 + 3 + 4)
        link.wrapper(10, "y")
        second = cli_dump(path)
        assert (u64_at(second, 0), u64_at(second, 1)) == (6, 20)
        # The pinning process's own user-space view is the same storage.
        assert obj.maps["stats"].lookup_raw(bytes(4)) == (6).to_bytes(8, "little")
        link.detach()
    assert [info.path for info in list_pins(tmp_path, "map")] == [path]
    unpin(path)
    assert not path.exists()


def test_values_survive_the_pinning_process(tmp_path: Path) -> None:
    writer = f"""
        import struct
        import pybpf
        from pybpf.hooks.pinning import pin_map
        obj = pybpf.load({str(PROGS / "hooks_probe.o")!r}, ncpus=2)
        pin_map(obj.maps["percpu_calls"], "percpu", {str(tmp_path)!r})
        obj.maps["percpu_calls"].update_raw(bytes(4), struct.pack("<QQ", 11, 22))
        pin_map(obj.maps["stats"], "stats", {str(tmp_path)!r})
        obj.maps["stats"].update_raw((3).to_bytes(4, "little"), struct.pack("<Q", 1234))
    """
    result = python(writer)
    assert result.returncode == 0, result.stderr
    with open_pinned_map("stats", tmp_path) as pinned:
        assert pinned.map is not None
        assert pinned.map.lookup_raw((3).to_bytes(4, "little")) == struct.pack("<Q", 1234)
        assert dict(pinned.entries())[(3).to_bytes(4, "little")] == struct.pack("<Q", 1234)
    with open_pinned_map(tmp_path / "percpu") as pinned:
        assert pinned.type is BpfMapType.PERCPU_ARRAY
        assert dict(pinned.entries())[bytes(4)] == ((11).to_bytes(8, "little"), (22).to_bytes(8, "little"))
    dumped = cli_dump(tmp_path / "percpu")
    entries = dumped["entries"]
    assert isinstance(entries, list)
    assert entries[0][1] == [(11).to_bytes(8, "little").hex(), (22).to_bytes(8, "little").hex()]


def test_mmapable_array_is_shared_by_direct_memory_access(tmp_path: Path) -> None:
    definition = MapDef(BpfMapType.ARRAY, 4, 8, 16, int(BpfMapFlag.MMAPABLE), "shared")
    memory = AddressSpace()
    array = ArrayMap(definition, memory)
    array.update_raw(bytes(4), struct.pack("<Q", 7))
    path = pin_map(array, "shared", tmp_path)
    assert array.lookup_raw(bytes(4)) == struct.pack("<Q", 7)  # moved with its values
    # Another process writes element 1 by plain memory access through its own mapping.
    writer = f"""
        import struct
        from pybpf.hooks.pinning import open_pinned_map
        with open_pinned_map({str(path)!r}) as pinned:
            view = pinned.mmap()
            (seen,) = struct.unpack_from("<Q", view, 0)
            struct.pack_into("<Q", view, 8, seen * 6)
            del view
    """
    result = python(writer)
    assert result.returncode == 0, result.stderr
    # ... and this process sees it, through the map API and through a program's lookup address.
    assert array.lookup_raw((1).to_bytes(4, "little")) == struct.pack("<Q", 42)
    address = array.lookup_address((1).to_bytes(4, "little"))
    assert memory.load(address, 8) == 42
    view = array.mmap()
    struct.pack_into("<Q", view, 0, 99)
    del view
    with open_pinned_map(path) as pinned:
        assert pinned.map is not None
        assert pinned.map.lookup_raw(bytes(4)) == struct.pack("<Q", 99)
    array.close()


def test_unsupported_pins(tmp_path: Path) -> None:
    bloom = create_map(MapDef(BpfMapType.BLOOM_FILTER, 0, 8, 4, 0, "bloom"), AddressSpace())
    with pytest.raises(NotSupportedError, match="bloom_filter"):
        pin_map(bloom, "bloom", tmp_path)
    assert not (tmp_path / "bloom").exists()
    prog_array = create_map(MapDef(BpfMapType.PROG_ARRAY, 4, 4, 4, 0, "jumps"), AddressSpace())
    with pytest.raises(NotSupportedError, match="prog_array"):
        pin_map(prog_array, "jumps", tmp_path)
    with pybpf.load(PROGS / "global_data.o") as obj:
        data_map = next(name for name in obj.maps if name.startswith("."))
        with pytest.raises(NotSupportedError, match="global data"):
            pin_map(obj.maps[data_map], "data", tmp_path)
    (tmp_path / "junk").write_bytes(b"not a pin")
    with pytest.raises(PinError):
        open_pinned_map("junk", tmp_path)
    with pytest.raises(MapInvalidArgumentError):
        ArrayMap(MapDef(BpfMapType.ARRAY, 4, 8, 16), AddressSpace(), storage=bytearray(64))


def test_hash_map_pinned_live_and_after_exit(tmp_path: Path) -> None:
    definition = MapDef(BpfMapType.HASH, 8, 8, 10000, 0, "big_hash")
    memory = AddressSpace()
    table = HashMap(definition, memory)
    expected: dict[bytes, bytes] = {}

    def put(key: int, value: int) -> None:
        table.update_raw(struct.pack("<Q", key), struct.pack("<Q", value))
        expected[struct.pack("<Q", key)] = struct.pack("<Q", value)

    for key in range(100):
        put(key, key * 3)
    path = pin_map(table, "hash", tmp_path)
    assert table.lookup_raw(struct.pack("<Q", 7)) == struct.pack("<Q", 21)  # moved with its elements
    for key in range(100, 5000):  # the slab grows new chunks inside the pin file
        put(key, key * 3)
    for key in range(0, 5000, 7):
        table.delete_raw(struct.pack("<Q", key))
        del expected[struct.pack("<Q", key)]
    put(3, 333)  # an update in place
    with open_pinned_map(path) as pinned:
        assert dict(pinned.entries()) == expected
        assert pinned.lookup(struct.pack("<Q", 3)) == struct.pack("<Q", 333)
        with pytest.raises(NotSupportedError):
            pinned.mmap()
    # A program's lookup address points into the file too.
    address = table.lookup_address(struct.pack("<Q", 3))
    memory.store(address, 8, 444)
    dumped = cli_dump(path)
    assert dumped["type"] == "hash"
    entries = dumped["entries"]
    assert isinstance(entries, list)
    assert len(entries) == len(expected)
    assert dict(entries)[struct.pack("<Q", 3).hex()] == struct.pack("<Q", 444).hex()
    table.close()


def test_hash_from_a_program_survives_its_process(tmp_path: Path) -> None:
    writer = f"""
        import pybpf
        from pybpf.hooks.link import HookRuntime
        from pybpf.hooks.pinning import pin_map
        from pybpf.hooks.probes import attach_probe
        obj = pybpf.load({str(PROGS / "hooks_probe.o")!r}, ncpus=2)
        pin_map(obj.maps["hash_calls"], "calls", {str(tmp_path)!r})
        link = attach_probe(obj.program("count_threads"), lambda n: n, runtime=HookRuntime(), install=False)
        for n in range(9):
            link.wrapper(n)
        assert link.errors == 0, link.last_error
    """
    result = python(writer)
    assert result.returncode == 0, result.stderr
    with open_pinned_map("calls", tmp_path) as pinned:
        assert dict(pinned.entries()) == {bytes(4): struct.pack("<Q", 9)}


def test_percpu_hash_values_split_per_cpu(tmp_path: Path) -> None:
    table = PercpuHashMap(MapDef(BpfMapType.PERCPU_HASH, 4, 4, 8, 0, "pcpu"), AddressSpace(), 2)
    table.update_raw(bytes(4), struct.pack("<IIII", 5, 0, 6, 0))  # two CPUs, values padded to 8
    path = pin_map(table, "pcpu", tmp_path)
    table.prog_update((1).to_bytes(4, "little"), struct.pack("<I", 9), 0, cpu=1)
    with open_pinned_map(path) as pinned:
        assert dict(pinned.entries()) == {
            bytes(4): (struct.pack("<I", 5), struct.pack("<I", 6)),
            (1).to_bytes(4, "little"): (bytes(4), struct.pack("<I", 9)),
        }
    table.close()
