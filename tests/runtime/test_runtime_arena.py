"""BPF arenas run under the interpreter, the JIT and the kernel: the same results, read back
through each one's user-space view of the arena (the kernel's: our mmap of the map).

tests/progs/arena_list.c builds a linked list in the arena (nodes on pages the program
allocates, the head a global ``__arena`` variable) that Python walks; arena_htab.c a hash table
whose buckets Python reads; arena_pages.c records what
allocation, freeing, reserving, accesses to pages that are not allocated and the casts do. Each
object runs with BPF_PROG_TEST_RUN (SEC("syscall")) in user space and, where bpf() works, in
the kernel; pointers are compared as offsets into the arena (each arena has its own address).
"""

from __future__ import annotations

import errno
import struct
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pytest

import pybpf
from pybpf.kernel.probe import available
from pybpf.kernel.progs import prog_test_run
from pybpf.obj.elf import read_elf

PROGS = Path(__file__).parent.parent / "progs"
PAGE = 4096
MAP_EXTRA = 0x100000000000  # arena_pages.c's map_extra
U64 = (1 << 64) - 1
_KERNEL, _KERNEL_REASON = available()


class ArenaView(Protocol):
    """What both backends give user space: the arena's address and reads through its mapping."""

    user_vm_start: int

    def read(self, address: int, n: int) -> bytes: ...


Run = Callable[[str, bytes], int]  # program name, ctx_in -> r0


@dataclass(frozen=True)
class Backend:
    run: Run
    arena: ArenaView


@contextmanager
def backend(obj: Path, engine: str) -> Iterator[Backend]:
    """``obj`` loaded in user space (``interp``/``jit``) or into the kernel (``kernel``)."""
    if engine == "kernel":
        if not _KERNEL:
            pytest.skip(f"bpf() unavailable: {_KERNEL_REASON}")
        from pybpf.kernel.loader import load

        with load(obj) as loaded:
            arena = loaded.maps["arena"].arena
            assert arena is not None, "the kernel loader maps every arena"
            def run(name: str, ctx: bytes) -> int:
                # The kernel runs syscall programs once and takes no ctx_out (it writes ctx_in).
                return prog_test_run(loaded.programs[name].fd, ctx_in=ctx or None, ctx_size_out=0, repeat=0).retval

            yield Backend(run, arena)
        return
    with pybpf.load(obj, engine=engine) as user:
        arena = user.maps["arena"]
        yield Backend(lambda name, ctx: user.programs[name].test_run(ctx_in=ctx, repeat=0).retval, arena)


def arena_globals(obj: Path) -> dict[str, int]:
    """Offsets of the object's global ``__arena`` variables (at the arena's start, as libbpf)."""
    elf = read_elf(obj.read_bytes(), str(obj))
    section = next(s for s in elf.sections if s.name == ".addr_space.1")
    return {s.name: s.value for s in elf.symbols if s.shndx == section.index and s.type == "STT_OBJECT"}


def u64(view: ArenaView, address: int) -> int:
    return int(struct.unpack("<Q", view.read(address, 8))[0])


ENGINES = ["interp", "jit", "kernel"]


# -- the linked list -----------------------------------------------------------------------------


ListOutcome = tuple[tuple[int, ...], tuple[int, ...], tuple[tuple[int, int], ...]]


def list_outcome(engine: str) -> ListOutcome:
    obj = PROGS / "arena_list.o"
    where = arena_globals(obj)
    with backend(obj, engine) as bpf:
        start = bpf.arena.user_vm_start
        retvals = [
            bpf.run("list_push", struct.pack("<II", 1, 10)),
            bpf.run("list_push", struct.pack("<II", 100, 64)),
            bpf.run("list_push", struct.pack("<II", 7, 0)),
            bpf.run("list_sum", b""),
        ]
        head = u64(bpf.arena, start + where["head"])
        walked: list[tuple[int, int]] = []
        node = head
        while node and len(walked) < 200:
            walked.append((node - start, u64(bpf.arena, node + 8)))  # (offset, value)
            node = u64(bpf.arena, node)
        counters = (
            u64(bpf.arena, start + where["magic"]),
            struct.unpack("<I", bpf.arena.read(start + where["pages"], 4))[0],
            u64(bpf.arena, start + where["sum"]),
            struct.unpack("<I", bpf.arena.read(start + where["length"], 4))[0],
        )
    return tuple(retvals), counters, tuple(walked)


@pytest.fixture(scope="module")
def interp_list() -> ListOutcome:
    return list_outcome("interp")


def test_list_built_in_the_arena_is_walkable_from_user_space(interp_list: ListOutcome) -> None:
    retvals, counters, walked = interp_list
    values = [value for _, value in walked]
    assert retvals == (0, 0, 0, 74)
    assert values == list(range(163, 99, -1)) + list(range(10, 0, -1))  # newest first
    assert counters == (0x6172656E61, 3, sum(values), 74)
    offsets = [offset for offset, _ in walked]
    # Page 0 holds the globals; each push took the next page, nodes in array order within it.
    assert offsets[0] == 2 * PAGE + 63 * 16 and offsets[64] == 1 * PAGE + 9 * 16


@pytest.mark.parametrize("engine", ["jit", "kernel"])
def test_list_same_under_every_engine(engine: str, interp_list: ListOutcome) -> None:
    assert list_outcome(engine) == interp_list


# -- pages, faults, casts ----------------------------------------------------------------------------


def pages_outcome(engine: str) -> tuple[int, tuple[int, ...], int]:
    obj = PROGS / "arena_pages.o"
    where = arena_globals(obj)
    with backend(obj, engine) as bpf:
        start = bpf.arena.user_vm_start
        r0 = bpf.run("pages", b"")
        results = struct.unpack("<28Q", bpf.arena.read(start + where["results"], 28 * 8))
        assert start == MAP_EXTRA  # the object's map_extra: where user space maps the arena
        first = u64(bpf.arena, start + where["first"])
    return r0, results, first


def _expected_pages() -> Sequence[int]:
    ebusy, einval = -errno.EBUSY & U64, -errno.EINVAL & U64
    # 21-27: atomics on an allocated page (40, then +2 |0x100 = 298, swapped for 7), then on one
    # that is not: nothing changes, the fetching register keeps what it held (5, 0, 3).
    return (0, 0, 0, 12, 0, 0, 1, 0, 1, 0, ebusy, 1, 1, 1, 2, 3, einval, 1, 1, 0, 5, 40, 298, 7, 5, 0, 3, 0)


@pytest.mark.parametrize("engine", ENGINES)
def test_pages_faults_and_casts(engine: str) -> None:
    r0, results, first = pages_outcome(engine)
    assert r0 == 0
    assert first == MAP_EXTRA + PAGE  # a user address, after the globals' page
    assert results == tuple(_expected_pages())


# -- the hash table ------------------------------------------------------------------------------

BUCKETS = 32
KEYS = [7, 39, 71, 1000, 7, 2**31 + 5, 12345, 99, 39]  # repeats replace, some keys collide


HtabOutcome = tuple[tuple[int, ...], tuple[int, ...], tuple[tuple[int, int, int], ...], int]


def htab_outcome(engine: str) -> HtabOutcome:
    obj = PROGS / "arena_htab.o"
    where = arena_globals(obj)
    with backend(obj, engine) as bpf:
        start = bpf.arena.user_vm_start
        distances = tuple(
            bpf.run("htab_update", struct.pack("<IIQ", key, 0, key * 10 + index)) & 0xFFFFFFFF
            for index, key in enumerate(KEYS)
        )
        lookups: list[int] = []
        for key in (*KEYS, 4, 5):
            hit = bpf.run("htab_lookup", struct.pack("<IIQ", key, 0, 0))
            lookups.append(u64(bpf.arena, start + where["found"]) if hit else -1)
        table = u64(bpf.arena, start + where["table"])
        buckets = tuple(struct.iter_unpack("<IIQ", bpf.arena.read(table, BUCKETS * 16)))
        entries = struct.unpack("<I", bpf.arena.read(start + where["entries"], 4))[0]
        offset = table - start
    used = tuple((key, used, value) for key, used, value in buckets)
    return distances, tuple(lookups), used, entries * 1_000_000 + offset


@pytest.fixture(scope="module")
def interp_htab() -> HtabOutcome:
    return htab_outcome("interp")


def test_hash_table_updates_and_lookups(interp_htab: HtabOutcome) -> None:
    distances, lookups, buckets, summary = interp_htab
    latest = {key: key * 10 + index for index, key in enumerate(KEYS)}
    assert lookups[: len(KEYS)] == tuple(latest[key] for key in KEYS)
    assert lookups[len(KEYS):] == (-1, -1)
    assert sorted((key, value) for key, used, value in buckets if used) == sorted(latest.items())
    assert summary == len(latest) * 1_000_000 + PAGE  # the table's page follows the globals'
    assert all(distance < BUCKETS for distance in distances)


@pytest.mark.parametrize("engine", ["jit", "kernel"])
def test_hash_table_same_under_every_engine(engine: str, interp_htab: HtabOutcome) -> None:
    assert htab_outcome(engine) == interp_htab
