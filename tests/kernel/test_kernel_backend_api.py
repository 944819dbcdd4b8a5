"""The kernel backend's API: the runtime's map API on kernel maps, pinning, info, error paths.

Error paths that need no privileges run against a fake bpf(2); the rest skip, with the probe's
reason, where bpf(2) does not work. Pins live only in a private bpffs mounted for the module.
"""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import pybpf
from pybpf.errors import (
    MapErrnoError,
    MapKeyNotFoundError,
    PermissionDeniedError,
    PybpfError,
    VerifierRejectedError,
)
from pybpf.kernel import (
    BpfCmd,
    BpfProgType,
    BpfUpdateFlag,
    KernelMap,
    KernelProgram,
    NotOnBpffsError,
    available,
    enable_stats,
    open_pinned,
)
from pybpf.kernel.bpffs import private_bpffs
from pybpf.runtime.maps import Map

PROGS = Path(__file__).resolve().parents[1] / "progs"
# Ethernet + IPv4 (UDP, 10.0.0.1 -> 10.0.0.2) + 8 bytes: a packet the firewall counts.
IPV4_FRAME = (
    b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00"
    + bytes.fromhex("4500001c00010000401166ce0a0000010a000002") + bytes(8)
)


def _needs_kernel() -> None:
    ok, reason = available()
    if not ok:
        pytest.skip(f"bpf() unavailable: {reason}")


@pytest.fixture(scope="module")
def kernel() -> None:
    _needs_kernel()


@pytest.fixture(scope="module")
def bpffs() -> Iterator[Path]:
    _needs_kernel()
    try:
        with private_bpffs() as directory:
            yield directory
    except PybpfError as error:
        pytest.skip(f"cannot mount a private bpffs: {error}")


# -- error paths against a fake bpf(2) ----------------------------------------------------------------


def test_loading_without_privileges_says_so() -> None:
    calls: list[BpfCmd] = []

    def unprivileged(cmd: BpfCmd, attr: ctypes.Structure) -> int:
        calls.append(cmd)
        return -errno.EPERM

    with pytest.raises(PermissionDeniedError, match="needs CAP_BPF or root") as caught:
        pybpf.load(PROGS / "xdp_firewall.o", backend="kernel", syscall=unprivileged)
    assert caught.value.errno == errno.EPERM
    # EPERM is final: no BTF sanitising, no retry without BTF.
    assert set(calls) == {BpfCmd.BTF_LOAD}


def test_a_refused_program_closes_everything_created_before_it() -> None:
    opened: list[int] = []

    def maps_only(cmd: BpfCmd, attr: ctypes.Structure) -> int:
        if cmd in (BpfCmd.BTF_LOAD, BpfCmd.MAP_CREATE):
            fd = os.open(os.devnull, os.O_RDONLY)
            opened.append(fd)
            return fd
        if cmd == BpfCmd.PROG_LOAD:
            return -errno.EPERM
        return 0

    with pytest.raises(PermissionDeniedError) as caught:
        pybpf.load(PROGS / "xdp_firewall.o", backend="kernel", syscall=maps_only)
    assert any("xdp_firewall" in note for note in caught.value.__notes__)
    assert len(opened) == 3  # the BTF and both maps
    for fd in opened:
        with pytest.raises(OSError):
            os.fstat(fd)


# -- the kernel -----------------------------------------------------------------------------------


def test_verifier_rejection_carries_the_kernel_log(kernel: None) -> None:
    # An XDP program loaded as a socket filter reads xdp_md fields the verifier refuses.
    with pytest.raises(VerifierRejectedError) as caught:
        pybpf.load(PROGS / "xdp_firewall.o", backend="kernel", prog_types={"xdp_firewall": BpfProgType.SOCKET_FILTER})
    error = caught.value
    assert "processed" in error.log or "invalid" in error.log
    assert "the verifier rejected the program" in str(error)
    last = [line for line in error.log.splitlines() if line.strip()]
    assert any(line.strip() in str(error) for line in last[-3:])
    assert any("xdp_firewall" in note for note in error.__notes__)


# Each action is one call of the map API; its result (or the errno it raised) is compared across backends.
MapAction = Callable[[KernelMap | Map], object]


def _drive(found: KernelMap | Map, actions: list[MapAction]) -> list[object]:
    """Run each action on ``found``; record its result or the error class and errno it raised."""
    out: list[object] = []
    for action in actions:
        try:
            result = action(found)
            out.append(sorted(result) if isinstance(result, list) else result)
        except MapErrnoError as error:
            out.append((type(error).__name__, error.errno))
    return out


HASH_ACTIONS: list[MapAction] = [
    lambda m: m.update(1, 10),
    lambda m: m.update(2, 20),
    lambda m: m.update(1, 11, BpfUpdateFlag.NOEXIST),
    lambda m: m.update(3, 30, BpfUpdateFlag.EXIST),
    lambda m: m[1],
    lambda m: m.get(9, "absent"),
    lambda m: 2 in m,
    len,
    lambda m: [(k, v) for k, v in m.items()],
    lambda m: m.delete(2),
    lambda m: m.delete(2),
    lambda m: m.lookup(2),
    lambda m: m.update_batch([(4, 40), (5, 50)]),
    lambda m: sorted(m.lookup_batch()[0]),
    lambda m: m.delete_batch([4, 5]),
    lambda m: sorted(m.keys()),
    lambda m: m.lookup_raw(b"\x01\x00"),
]

QUEUE_ACTIONS: list[MapAction] = [
    lambda m: m.update(b"", 1),
    lambda m: m.update(b"", 2),
    lambda m: m.lookup(),
    lambda m: m.lookup_and_delete(),
    lambda m: m.lookup_and_delete(),
    lambda m: m.lookup_and_delete(),
]


@pytest.mark.parametrize(
    ("name", "map_name", "actions"),
    [("legacy_maps", "legacy_counts", HASH_ACTIONS), ("queue_stack", "fifo", QUEUE_ACTIONS)],
    ids=["hash", "queue"],
)
def test_map_api_matches_the_runtime(kernel: None, name: str, map_name: str, actions: list[MapAction]) -> None:
    path = PROGS / f"{name}.o"
    with pybpf.load(path) as user, pybpf.load(path, backend="kernel") as kernel_object:
        found = kernel_object.maps[map_name]
        assert isinstance(found, KernelMap)
        assert _drive(found, actions) == _drive(user.maps[map_name], actions)


def test_typed_values_match_the_runtime(kernel: None) -> None:
    path = PROGS / "xdp_lb.o"
    value = {"addr": 0x0A010105, "mac": list(range(6))}  # struct backend { addr; mac[6]; pad; }
    with pybpf.load(path) as user, pybpf.load(path, backend="kernel") as kernel_object:
        for obj in (user, kernel_object):
            obj.maps["backends"][3] = value
        typed = kernel_object.maps["backends"][3]
        assert typed == user.maps["backends"][3]
        assert typed["addr"] == 0x0A010105 and list(typed["mac"]) == list(range(6))
        key = bytes([3, 0, 0, 0])
        assert kernel_object.maps["backends"].lookup_raw(key) == user.maps["backends"].lookup_raw(key)


def test_missing_key_raises_the_runtime_error(kernel: None) -> None:
    with pybpf.load(PROGS / "legacy_maps.o", backend="kernel") as obj, pytest.raises(MapKeyNotFoundError):
        obj.maps["legacy_counts"][12345]


def test_pinning_outside_bpffs_is_refused(kernel: None, tmp_path: Path) -> None:
    with pybpf.load(PROGS / "socket_filter.o", backend="kernel") as obj:
        with pytest.raises(NotOnBpffsError, match="not on a bpf filesystem"):
            obj.program("udp_only").pin(tmp_path / "udp_only")
        assert not (tmp_path / "udp_only").exists()


def test_pin_and_open_pinned(bpffs: Path) -> None:
    with pybpf.load(PROGS / "xdp_firewall.o", backend="kernel") as obj:
        program = obj.program("xdp_firewall")
        counts = obj.maps["verdict_count"]
        program.pin(bpffs / "fw")
        counts.pin(bpffs / "counts")
        expected = program.test_run(IPV4_FRAME)
        program_id, map_id = program.id, counts.info().id
    # The object is closed; the pins keep both alive.
    reopened_map = open_pinned(bpffs / "counts")
    reopened_program = open_pinned(bpffs / "fw")
    try:
        assert isinstance(reopened_map, KernelMap) and isinstance(reopened_program, KernelProgram)
        assert reopened_map.info().id == map_id and reopened_program.id == program_id
        assert reopened_program.test_run(IPV4_FRAME).retval == expected.retval
        totals = {key: sum(int.from_bytes(v, "little") for v in value) for key, value in reopened_map.items()}
        assert sum(totals.values()) == 2  # both runs counted, whichever CPU they ran on
    finally:
        reopened_map.close()
        reopened_program.close()
        os.unlink(bpffs / "counts")
        os.unlink(bpffs / "fw")


def test_program_info_counts_runs(kernel: None) -> None:
    with pybpf.load(PROGS / "socket_filter.o", backend="kernel") as obj:
        program = obj.program("udp_only")
        before = program.info()
        assert before.xlated_prog_len > 0 and before.jited_prog_len > 0 and before.verified_insns > 0
        assert before.name == "udp_only"
        with enable_stats():
            program.test_run(bytes(64), repeat=5)
        after = program.info()
        assert after.run_cnt - before.run_cnt >= 5


def test_loaded_objects_are_listed(kernel: None) -> None:
    from pybpf.kernel import loaded_maps, loaded_programs

    with pybpf.load(PROGS / "xdp_firewall.o", backend="kernel") as obj:
        program_id = obj.program("xdp_firewall").id
        map_ids = {found.info().id for found in obj.maps.values()}
        programs = {info.id: info for info in loaded_programs()}
        assert programs[program_id].name == "xdp_firewall"
        assert map_ids <= {info.id for info in loaded_maps()}
    assert program_id not in {info.id for info in loaded_programs()}
