"""The arena kfuncs for user-space runs (kernel/bpf/arena.c): pages of a BPF_MAP_TYPE_ARENA map.

Each checks its map is an arena (the kernel's ``map->map_type`` test: another map gives NULL,
nothing or -EINVAL) and defers to :class:`~pybpf.runtime.maps.arena.ArenaMap`, which allocates as
the kernel does. Addresses in and out are user-space (address space 1) pointers.
"""

# Every kfunc takes (env, r1..r5): the helper ABI fixes six positional parameters.
# ruff: noqa: PLR0917

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, cast

from pybpf.platform.uapi_generated import BpfMapType
from pybpf.runtime.helpers._common import EINVAL, U32, U64, find_map
from pybpf.vm.execution import ExecutionContext, HelperFn

__all__ = ["ARENA_KFUNC_IMPLS"]


class _Arena(Protocol):
    """What the kfuncs need of the runtime's arena map (pybpf.runtime.maps.arena.ArenaMap)."""

    def alloc_pages(self, address: int, count: int) -> int: ...
    def free_pages(self, address: int, count: int) -> None: ...
    def reserve_pages(self, address: int, count: int) -> int: ...


def _arena(env: ExecutionContext, address: int) -> _Arena | None:
    _, found = find_map(env, address)
    return cast(_Arena, found) if getattr(found, "type", None) == BpfMapType.ARENA else None


def arena_alloc_pages(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    arena = _arena(env, r1)
    if arena is None or r5 or not r3 & U32:
        return 0
    return arena.alloc_pages(r2, r3 & U32) & U64


def arena_free_pages(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    arena = _arena(env, r1)
    if arena is not None and r3 & U32 and r2:
        arena.free_pages(r2, r3 & U32)
    return 0


def arena_reserve_pages(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    arena = _arena(env, r1)
    if arena is None:
        return EINVAL
    return arena.reserve_pages(r2, r3 & U32) & U64


ARENA_KFUNC_IMPLS: Mapping[str, HelperFn] = {
    "bpf_arena_alloc_pages": arena_alloc_pages,
    "bpf_arena_free_pages": arena_free_pages,
    "bpf_arena_reserve_pages": arena_reserve_pages,
}
"""The arena kfuncs, by kernel name (merged into pybpf.runtime.helpers.kfuncs.KFUNC_IMPLS)."""
