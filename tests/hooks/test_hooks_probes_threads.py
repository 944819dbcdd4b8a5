"""Several threads calling a probed function: no update is lost (atomics, per-CPU and hash maps)."""

from __future__ import annotations

import struct
import threading
from pathlib import Path

import pytest

import pybpf
from pybpf.hooks.link import HookRuntime
from pybpf.hooks.probes import attach_probe
from pybpf.hooks.run_gate import parallel_safe
from pybpf.runtime.program import ENGINES

PROGS = Path(__file__).resolve().parents[1] / "progs"
THREADS = 8
CALLS = 150


@pytest.mark.parametrize("engine", ENGINES)
def test_threads_lose_no_updates(engine: str) -> None:
    # count_threads creates its hash element (bpf_map_update_elem): its runs go one at a time.
    with pybpf.load(PROGS / "hooks_probe.o", ncpus=4, engine=engine) as obj:
        assert not parallel_safe(obj.program("count_threads"))
        link = attach_probe(obj.program("count_threads"), lambda n: n, runtime=HookRuntime(), install=False)
        probed = link.wrapper
        barrier = threading.Barrier(THREADS)

        def worker() -> None:
            barrier.wait()
            for n in range(CALLS):
                probed(n)

        threads = [threading.Thread(target=worker) for _ in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert link.errors == 0, link.last_error
        total = THREADS * CALLS
        key = bytes(4)
        (calls,) = struct.unpack("<Q", obj.maps["stats"].lookup_raw(key))
        (hashed,) = struct.unpack("<Q", obj.maps["hash_calls"].lookup_raw(key))
        percpu = obj.maps["percpu_calls"].lookup_raw(key)
        per_cpu = [struct.unpack_from("<Q", percpu, 8 * cpu)[0] for cpu in range(4)]
        assert calls == total
        assert hashed == total
        assert sum(per_cpu) == total
        link.detach()


def test_non_percpu_maps_ignore_the_running_cpu() -> None:
    # A regular array/hash has one copy: a program on virtual CPU 3 must see the same value as CPU 0.
    with pybpf.load(PROGS / "hooks_probe.o", ncpus=4) as obj:
        stats = obj.maps["stats"]
        assert stats.lookup_address(bytes(4), 3) == stats.lookup_address(bytes(4), 0)
        hashed = obj.maps["hash_calls"]
        hashed.update_raw(bytes(4), bytes(8))
        assert hashed.lookup_address(bytes(4), 3) == hashed.lookup_address(bytes(4), 0)
        percpu = obj.maps["percpu_calls"]
        assert percpu.lookup_address(bytes(4), 1) == percpu.lookup_address(bytes(4), 0) + 8
