"""Runtime costs that used to be asserted in timed tests: BTF parsing and map operations.

Run with ``python benchmarks/bench_runtime_costs.py [--rounds N]``. Rows:

- parsing the running kernel's BTF (``/sys/kernel/btf/vmlinux``), the CO-RE target of the kernel
  backend, in seconds (skipped when the file is not readable);
- one ``lookup_address`` + ``prog_update`` pair on a 16-entry hash map and on a 4,096-entry array,
  in microseconds per operation;
- the same on a 50,000-entry hash map, and its ratio to the 16-entry one measured in the same round:
  a hash operation is a dict probe plus a slot copy, so the ratio should stay near 1x (aim: < 4x).

Each cell is the best of ``--rounds`` rounds.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from pybpf.btf import Btf
from pybpf.platform.uapi_generated import BpfMapType
from pybpf.runtime.maps import Map, MapDef, create_map
from pybpf.vm.memory import AddressSpace

VMLINUX = Path("/sys/kernel/btf/vmlinux")
OPS = 20_000


def per_op_us(m: Map, keys: list[bytes]) -> float:
    value = b"v" * m.value_size
    start = time.perf_counter()
    for index in range(OPS):
        key = keys[index % len(keys)]
        m.lookup_address(key)
        m.prog_update(key, value, 0)
    return (time.perf_counter() - start) / (2 * OPS) * 1e6


def filled_hash(entries: int) -> tuple[Map, list[bytes]]:
    m = create_map(MapDef(BpfMapType.HASH, 8, 16, entries), AddressSpace())
    keys = [i.to_bytes(8, "little") for i in range(entries)]
    for key in keys:
        m.prog_update(key, bytes(16), 0)
    return m, keys


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    rounds = parser.parse_args().rounds
    print(f"runtime costs (best of {rounds} rounds)")
    try:
        raw = VMLINUX.read_bytes()
    except OSError as err:
        print(f"  vmlinux BTF parse: skipped ({err})")
    else:
        best = float("inf")
        for _ in range(rounds):
            start = time.perf_counter()
            Btf.from_bytes(raw)
            best = min(best, time.perf_counter() - start)
        print(f"  vmlinux BTF parse ({len(raw) // 1024} KiB): {best:.2f} s")
    small, small_keys = filled_hash(16)
    large, large_keys = filled_hash(50_000)
    array = create_map(MapDef(BpfMapType.ARRAY, 4, 16, 4096), AddressSpace())
    array_keys = [i.to_bytes(4, "little") for i in range(4096)]
    best_small = best_large = best_array = float("inf")
    for _ in range(rounds):
        best_small = min(best_small, per_op_us(small, small_keys))
        best_large = min(best_large, per_op_us(large, large_keys))
        best_array = min(best_array, per_op_us(array, array_keys))
    print(f"  hash op, 16 entries:     {best_small:.2f} us")
    print(f"  hash op, 50,000 entries: {best_large:.2f} us ({best_large / best_small:.2f}x the 16-entry map)")
    print(f"  array op, 4,096 entries: {best_array:.2f} us")


if __name__ == "__main__":
    main()
