"""Hooks fired by several threads at once, under both engines: no lost update, no shared scratch.

The programs (tests/hooks/bpf/parallel_counters.c) only look maps up, so their runs overlap (the
RunGate's shared side): an atomic add on a hash value and on an array value, a compare-and-swap
loop, and a plain add on a per-CPU value; ``hot_adds`` makes 64 atomic adds per run on one
word. A short switch interval makes the interpreter's threads trade the GIL often, so an atomic
instruction that were not atomic (a load and a store another thread can slip between) loses
updates here (``hot_adds`` loses thousands without the address space's atomic lock); under the
JIT the native runs hold no GIL at all and the cores really run them at once.
"""

from __future__ import annotations

import platform
import shutil
import struct
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import pybpf
from pybpf.hooks.engine import TaskServices, run_services
from pybpf.hooks.link import HookRuntime
from pybpf.hooks.probes import attach_probe
from pybpf.hooks.run_gate import RunGate, parallel_safe
from pybpf.hooks.tracepoints import Tracepoint, attach_tracepoint
from pybpf.runtime.helpers.services import RunState, TaskInfo
from pybpf.runtime.object import Object
from pybpf.runtime.program import ENGINES
from pybpf.vm.memory import AddressSpace, Region, RegionKind

HERE = Path(__file__).resolve().parent
PROGS = HERE.parent / "progs"
THREADS = 6
CALLS = 120
CPUS = 4
HOT_ADDS = 64  # as in parallel_counters.c


@pytest.fixture(scope="module")
def counters_object(tmp_path_factory: pytest.TempPathFactory) -> Path:
    clang = shutil.which("clang-19") or shutil.which("clang")
    if clang is None:
        pytest.skip("clang is not installed")
    target = tmp_path_factory.mktemp("bpf") / "parallel_counters.o"
    include = f"-I/usr/include/{platform.machine()}-linux-gnu"
    command = [clang, "-O2", "-g", "-target", "bpf", "-mcpu=v3", "-Wall", "-Werror", f"-I{PROGS}", include]
    result = subprocess.run(
        [*command, "-c", str(HERE / "bpf" / "parallel_counters.c"), "-o", str(target)],
        check=False,
        capture_output=True,
        text=True,
    )
    if result.returncode:
        pytest.skip(f"clang cannot build BPF objects here: {result.stderr[-300:]}")
    return target


@pytest.fixture
def busy_switching() -> Iterator[None]:
    """Threads trade the GIL every 10 microseconds (not 5 ms): races that exist show up."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        yield
    finally:
        sys.setswitchinterval(previous)


def hammer(fire: Callable[[int], object], threads: int = THREADS, calls: int = CALLS) -> None:
    """Call ``fire(n)`` for n in 1..calls from ``threads`` threads started together."""
    barrier = threading.Barrier(threads)
    failures: list[BaseException] = []

    def worker() -> None:
        try:
            barrier.wait()
            for n in range(1, calls + 1):
                fire(n)
        except BaseException as error:
            failures.append(error)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in pool), "a firing thread is stuck"
    assert not failures, failures


def u64(data: bytes, offset: int = 0) -> int:
    return int(struct.unpack_from("<Q", data, offset)[0])


def check_counters(obj: Object, runs: int, total: int, cpus: int = CPUS) -> None:
    key0, key1, key2 = (index.to_bytes(4, "little") for index in range(3))
    array = obj.maps["shared_array"]
    assert u64(obj.maps["shared_hash"].lookup_raw(key0)) == total
    assert u64(array.lookup_raw(key0)) == total
    # One successful compare-and-swap per run, or one give-up after 16 lost races.
    assert u64(array.lookup_raw(key1)) + u64(array.lookup_raw(key2)) == runs
    percpu = obj.maps["percpu_counter"].lookup_raw(key0)
    assert sum(u64(percpu, 8 * cpu) for cpu in range(cpus)) == total


@pytest.mark.usefixtures("busy_switching")
@pytest.mark.parametrize("engine", ENGINES)
def test_probe_fired_by_threads_loses_no_update(counters_object: Path, engine: str) -> None:
    with pybpf.load(counters_object, ncpus=CPUS, engine=engine) as obj:
        obj.maps["shared_hash"].update_raw(bytes(4), bytes(8))  # the program only looks it up
        program = obj.program("probe_count")
        assert parallel_safe(program)
        with attach_probe(program, lambda n: n, runtime=HookRuntime(), install=False) as link:
            hammer(link.wrapper)
            assert link.errors == 0, link.last_error
            assert link.fires == THREADS * CALLS
        check_counters(obj, THREADS * CALLS, THREADS * CALLS * (CALLS + 1) // 2)


@pytest.mark.usefixtures("busy_switching")
@pytest.mark.parametrize("engine", ENGINES)
def test_atomic_and_per_cpu_adds_from_many_threads_are_all_counted(counters_object: Path, engine: str) -> None:
    # Four threads on two virtual CPUs: two threads share each CPU's copy of hot_percpu.
    with pybpf.load(counters_object, ncpus=2, engine=engine) as obj:
        with attach_probe(obj.program("hot_adds"), lambda n: n, runtime=HookRuntime(), install=False) as link:
            hammer(link.wrapper, threads=4, calls=100)
            assert link.errors == 0, link.last_error
        assert u64(obj.maps["hot"].lookup_raw(bytes(4))) == 4 * 100 * HOT_ADDS
        percpu = obj.maps["hot_percpu"].lookup_raw(bytes(4))
        assert u64(percpu, 0) + u64(percpu, 8) == 4 * 100 * HOT_ADDS


@pytest.mark.usefixtures("busy_switching")
@pytest.mark.parametrize("engine", ENGINES)
def test_tracepoint_fired_by_threads_loses_no_update(counters_object: Path, engine: str) -> None:
    runtime = HookRuntime()
    tracepoint = Tracepoint("app", "work", [("amount", "u64")], runtime=runtime)
    with pybpf.load(counters_object, ncpus=CPUS, engine=engine) as obj:
        obj.maps["shared_hash"].update_raw(bytes(4), bytes(8))
        link = attach_tracepoint(obj.program("tracepoint_count"), "app/work", runtime=runtime)
        hammer(lambda n: tracepoint.fire(amount=n))
        assert link.errors == 0, link.last_error
        link.detach()
        check_counters(obj, THREADS * CALLS, THREADS * CALLS * (CALLS + 1) // 2)
    tracepoint.close()


@pytest.mark.parametrize("engine", ENGINES)
def test_hooks_run_the_programs_engine(counters_object: Path, engine: str) -> None:
    with pybpf.load(counters_object, ncpus=CPUS, engine=engine) as obj:
        program = obj.program("probe_count")
        runtime = HookRuntime()
        with attach_probe(program, lambda n: n, runtime=runtime, install=False) as link:
            link.wrapper(5)
            assert link.errors == 0, link.last_error
        # The engine was settled (and the JIT compiled) when the probe attached, not by the run.
        assert program.engine == engine
        assert (program._jit is not None) == (engine == "jit")
        assert u64(obj.maps["shared_array"].lookup_raw(bytes(4))) == 5


@pytest.mark.parametrize("engine", ENGINES)
def test_detaching_while_other_threads_fire_is_safe(counters_object: Path, engine: str) -> None:
    with pybpf.load(counters_object, ncpus=CPUS, engine=engine) as obj:
        obj.maps["shared_hash"].update_raw(bytes(4), bytes(8))
        link = attach_probe(obj.program("probe_count"), lambda n: n, runtime=HookRuntime(), install=False)
        before = {region for region in obj.memory.regions if region.kind is not RegionKind.STACK}
        detached = threading.Event()
        calls = [0] * THREADS

        def fire(index: int) -> None:
            # Fire until the detach is over, then a few more times (those pass through unprobed).
            after = 0
            while after < 20:
                link.wrapper(1)
                calls[index] += 1
                after += detached.is_set()

        pool = [threading.Thread(target=fire, args=(index,)) for index in range(THREADS)]
        for thread in pool:
            thread.start()
        while link.fires < 50:  # detach in the middle of the firing
            threading.Event().wait(0.001)
        link.detach()
        detached.set()
        for thread in pool:
            thread.join(timeout=60)
        assert not any(thread.is_alive() for thread in pool)
        assert not link.attached
        assert link.errors == 0, link.last_error
        # Every run counted is whole (all four counters agree), and some ran after the detach started.
        array = obj.maps["shared_array"]
        runs = u64(array.lookup_raw((1).to_bytes(4, "little"))) + u64(array.lookup_raw((2).to_bytes(4, "little")))
        assert 50 <= runs == link.fires < sum(calls)
        percpu = obj.maps["percpu_counter"].lookup_raw(bytes(4))
        assert u64(obj.maps["shared_array"].lookup_raw(bytes(4))) == sum(u64(percpu, 8 * cpu) for cpu in range(CPUS))
        # The link's contexts and argument arenas are all unmapped: nothing is left behind.
        after = {region for region in obj.memory.regions if region.kind is not RegionKind.STACK}
        assert after <= before
        assert not [region for region in after if "hook" in region.name]


@pytest.mark.parametrize(("engine", "verify"), [("interp", True), ("jit", True), ("jit", False)])
def test_a_hook_fired_inside_a_run_nests_without_deadlock(counters_object: Path, engine: str, verify: bool) -> None:
    # hot_adds probes RunState.__init__, which every hook run calls inside the gate (the run's
    # state): each run of probe_count then runs hot_adds inside it, in the same thread, through the
    # same gate and CPU lock. Unverified native programs take the exclusive side, the others the
    # shared one. (Not AddressSpace.add: native sessions keep their stacks mapped between runs.)
    with pybpf.load(counters_object, ncpus=2, engine=engine, verify=verify) as obj:
        obj.maps["shared_hash"].update_raw(bytes(4), bytes(8))
        runtime = HookRuntime()
        outer = attach_probe(obj.program("probe_count"), lambda n: n, runtime=runtime, install=False)
        assert runtime.hooked(outer.program).parallel is verify
        with attach_probe(obj.program("hot_adds"), RunState.__init__, runtime=runtime) as inner:
            assert RunState.__init__ is inner.wrapper
            hammer(outer.wrapper, threads=3, calls=30)
        assert RunState.__init__ is inner.original
        outer.detach()
        assert outer.errors == 0, outer.last_error
        assert inner.errors == 0, inner.last_error
        assert inner.fires >= 3 * 30  # at least once inside every outer run
        assert u64(obj.maps["hot"].lookup_raw(bytes(4))) == inner.fires * HOT_ADDS
        check_counters(obj, 3 * 30, 3 * 30 * 31 // 2, cpus=2)


def test_unverified_native_programs_run_alone(counters_object: Path) -> None:
    # Native code of an unverified program might stray into a region another thread unmaps.
    with pybpf.load(counters_object, verify=False, engine="jit") as obj:
        assert not HookRuntime().hooked(obj.program("probe_count")).parallel
    with pybpf.load(counters_object, verify=False, engine="interp") as obj:
        assert HookRuntime().hooked(obj.program("probe_count")).parallel


def test_programs_that_change_maps_run_alone() -> None:
    with pybpf.load(PROGS / "hooks_probe.o") as obj:
        assert not parallel_safe(obj.program("count_threads"))  # bpf_map_update_elem
        assert not parallel_safe(obj.program("on_entry"))


def test_gate_lets_shared_runs_overlap_and_exclusive_runs_wait() -> None:
    gate = RunGate(2)
    inside = threading.Event()
    release = threading.Event()
    order: list[str] = []

    def shared_run(name: str) -> None:
        gate.enter(exclusive=False)
        order.append(f"{name} in")
        inside.set()
        release.wait(10)
        order.append(f"{name} out")
        gate.leave()

    first = threading.Thread(target=shared_run, args=("a",))
    first.start()
    assert inside.wait(10)
    # A second shared run gets in while the first is inside (it would block forever otherwise).
    second_in = threading.Event()

    def second() -> None:
        gate.enter(exclusive=False)
        second_in.set()
        gate.leave()

    threading.Thread(target=second).start()
    assert second_in.wait(10)

    def exclusive_run() -> None:
        with gate:
            order.append("x in")

    writer = threading.Thread(target=exclusive_run)
    writer.start()
    writer.join(0.2)
    assert writer.is_alive()  # waits for the shared run still inside
    release.set()
    first.join(10)
    writer.join(10)
    assert order == ["a in", "a out", "x in"]


def test_gate_nested_run_in_the_same_thread_does_not_wait() -> None:
    gate = RunGate(1)
    gate.enter(exclusive=False)
    def exclusive_run() -> None:
        with gate:
            pass

    waiting = threading.Thread(target=exclusive_run)
    waiting.start()
    writer_queued = False
    for _ in range(100):  # until the exclusive run is queued behind us
        writer_queued = gate._waiting == 1
        if writer_queued:
            break
        waiting.join(0.01)
    assert writer_queued
    # Re-entry (a hook fired from inside a run of this thread) passes, whatever waits.
    done = threading.Event()
    gate.enter(exclusive=True)
    with gate.cpu_locks[0], gate.cpu_locks[0]:
        done.set()
    gate.leave()
    gate.leave()
    waiting.join(10)
    assert done.is_set() and not waiting.is_alive()


def test_each_run_sees_its_own_task() -> None:
    with pybpf.load(PROGS / "hooks_probe.o") as obj:
        services = obj.services
        mine = TaskInfo.current()
        other = TaskInfo(pid=mine.pid + 1, tgid=mine.tgid, uid=mine.uid, gid=mine.gid, comm=b"other", cgroup_id=0)
        view = run_services(services, other)
        assert isinstance(view, TaskServices)
        assert view.task == other and services.task != other  # the object's own stays put
        assert view.maps is services.maps and view.cpus == services.cpus
        assert view.task_struct is services.task_struct and view.trace_pipe is services.trace_pipe
        services.cpu = services.cpus - 1  # a view reads through: later changes are seen
        assert view.cpu == services.cpus - 1
        assert run_services(services, None) is services


@pytest.mark.usefixtures("busy_switching")
def test_address_space_maps_and_finds_from_many_threads() -> None:
    # Threads map and unmap regions of their own (as runs do with stacks and contexts) while
    # others look up regions that stay mapped: every lookup finds the right region, and the
    # table ends as it began.
    memory = AddressSpace()
    fixed = [memory.add(Region.zeroed(RegionKind.OTHER, f"fixed {index}", 64)) for index in range(16)]
    wrong: list[str] = []
    stop = threading.Event()

    def churn() -> None:
        mine = [Region.zeroed(RegionKind.STACK, "churn", 512) for _ in range(4)]
        while not stop.is_set():
            for region in mine:
                memory.add(region)
            for region in mine:
                if memory.find(region.address + 8, 8) is not region:
                    wrong.append(f"own region not found at {region.address:#x}")
            for region in mine:
                memory.remove(region)

    def look() -> None:
        for round_number in range(300):
            for region in fixed:
                found = memory.find(region.address + round_number % 56, 8)
                if found is not region:
                    wrong.append(f"{region.name}: found {found!r}")
            memory.store(fixed[0].address, 8, round_number)
            if memory.load(fixed[0].address, 8) > 300:
                wrong.append("load read a foreign value")

    churners = [threading.Thread(target=churn) for _ in range(3)]
    lookers = [threading.Thread(target=look) for _ in range(3)]
    for thread in churners + lookers:
        thread.start()
    for thread in lookers:
        thread.join(timeout=60)
    stop.set()
    for thread in churners:
        thread.join(timeout=60)
    assert not wrong, wrong[:5]
    assert memory.regions == tuple(sorted(fixed, key=lambda region: region.address))
