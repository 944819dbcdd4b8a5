"""Hash and array operations stay cheap: a dict probe plus a slot copy, independent of the map's size.

Absolute timings vary with the machine, so the budgets are loose (tens of microseconds per
operation where the real cost is well under one), and the size-independence check compares
a tiny map with a large one measured on the same machine at the same moment.
"""

from __future__ import annotations

import time

from pybpf.platform.uapi_generated import BpfMapType
from pybpf.runtime.maps import Map, MapDef, create_map
from pybpf.vm.memory import AddressSpace

OPS = 20_000


def per_op_seconds(m: Map, keys: list[bytes]) -> float:
    value = b"v" * m.value_size
    start = time.perf_counter()
    for index in range(OPS):
        key = keys[index % len(keys)]
        m.lookup_address(key)
        m.prog_update(key, value, 0)
    return (time.perf_counter() - start) / (2 * OPS)


def filled_hash(entries: int) -> tuple[Map, list[bytes]]:
    m = create_map(MapDef(BpfMapType.HASH, 8, 16, entries), AddressSpace())
    keys = [i.to_bytes(8, "little") for i in range(entries)]
    for key in keys:
        m.prog_update(key, bytes(16), 0)
    return m, keys


def test_hash_and_array_operations_are_cheap() -> None:
    small, small_keys = filled_hash(16)
    assert per_op_seconds(small, small_keys) < 20e-6
    array = create_map(MapDef(BpfMapType.ARRAY, 4, 16, 4096), AddressSpace())
    assert per_op_seconds(array, [i.to_bytes(4, "little") for i in range(4096)]) < 20e-6


def test_hash_cost_does_not_grow_with_size() -> None:
    small, small_keys = filled_hash(16)
    large, large_keys = filled_hash(50_000)
    best_small = min(per_op_seconds(small, small_keys) for _ in range(3))
    best_large = min(per_op_seconds(large, large_keys) for _ in range(3))
    assert best_large < 4 * best_small
