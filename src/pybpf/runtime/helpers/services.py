"""What helpers reach besides memory: maps by address, clocks, randomness, CPUs, the task, the trace pipe.

A :class:`RuntimeServices` lives as long as the programs and maps that share an address space.
A :class:`RunState` is created for every run and handed to ``Interpreter.run(user=...)``; helpers
find it as ``env.user`` (see :func:`run_state`) and through it the services, the run's packet
(:class:`~pybpf.runtime.helpers.packet_context.PacketContext`) and what the run did that the
caller must see afterwards (redirect target, override_return value).

Map pointers: a program holds a map as a 64-bit value (``lddw r1, map``). A map object that has
an ``address`` attribute (every :mod:`pybpf.runtime.maps` map: the address of the image of its
modelled kernel struct, ``kernel_image``, which registering maps read-only so that programs may
read ``map->max_entries``) is known by it; any other object gets a small read-only region of its own in
the address space and that region's address is its pointer. Either way the value is unique and
stable for the map's lifetime, and :meth:`MapRegistry.find` turns it back into the map.
"""

from __future__ import annotations

import ctypes
import functools
import os
import random
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Protocol

from pybpf.errors import HelperError
from pybpf.platform.uapi_generated import HelperId
from pybpf.runtime.helpers.objects import KernelObjects
from pybpf.runtime.objects import ObjectHeap
from pybpf.vm.execution import ExecutionContext, HelperFn
from pybpf.vm.memory import AddressSpace, Region, RegionKind
from pybpf.vm.native_maps import NativeMap, NativeMapDescriptor, NativeRunSupport
from pybpf.vm.native_ringbuf import NativeRing, NativeRingMap
from pybpf.vm.native_tracing import PRANDOM_WORDS, NativeTask, PrandomState, TracingRunSupport

if TYPE_CHECKING:
    from pybpf.runtime.helpers.packet_context import PacketContext

MAP_HANDLE_SIZE = 64
"""Bytes of the read-only region whose address is a map's pointer."""
TASK_STRUCT_SIZE = 4096
"""Bytes of the opaque zeroed region standing in for ``current``'s task_struct."""
TASK_COMM_LEN = 16
DEFAULT_HZ = 250
"""CONFIG_HZ used to derive jiffies64 from CLOCK_MONOTONIC (Debian and most distributions)."""
INITIAL_JIFFIES = (-300 * DEFAULT_HZ) & 0xFFFFFFFF
"""The kernel starts jiffies 5 minutes before the 32-bit wrap to catch wrap bugs early."""


class Clock(Protocol):
    """The time sources of the ktime_get_*/jiffies64 helpers, in nanoseconds (jiffies in ticks)."""

    def monotonic_ns(self) -> int: ...
    def boottime_ns(self) -> int: ...
    def coarse_ns(self) -> int: ...
    def tai_ns(self) -> int: ...
    def jiffies64(self) -> int: ...


class SystemClock:
    """The host's clocks: CLOCK_MONOTONIC, CLOCK_BOOTTIME, CLOCK_MONOTONIC_COARSE, CLOCK_TAI."""

    def __init__(self, hz: int = DEFAULT_HZ) -> None:
        self.hz = hz

    def monotonic_ns(self) -> int:
        return time.clock_gettime_ns(time.CLOCK_MONOTONIC)

    def boottime_ns(self) -> int:
        return time.clock_gettime_ns(time.CLOCK_BOOTTIME)

    def coarse_ns(self) -> int:
        # CLOCK_MONOTONIC_COARSE (6) is not exported by the time module on every build.
        return time.clock_gettime_ns(getattr(time, "CLOCK_MONOTONIC_COARSE", 6))

    def tai_ns(self) -> int:
        return time.clock_gettime_ns(time.CLOCK_TAI)

    def jiffies64(self) -> int:
        # The kernel's jiffies count ticks since boot from INITIAL_JIFFIES; boottime is the closest clock.
        return INITIAL_JIFFIES + self.boottime_ns() * self.hz // 1_000_000_000


class ManualClock:
    """A clock that only moves when told to (deterministic tests); every source reads ``now_ns``."""

    def __init__(self, now_ns: int = 0, hz: int = DEFAULT_HZ) -> None:
        self.now_ns = now_ns
        self.hz = hz

    def advance(self, ns: int) -> None:
        self.now_ns += ns

    def monotonic_ns(self) -> int:
        return self.now_ns

    def boottime_ns(self) -> int:
        return self.now_ns

    def coarse_ns(self) -> int:
        return self.now_ns

    def tai_ns(self) -> int:
        return self.now_ns

    def jiffies64(self) -> int:
        return INITIAL_JIFFIES + self.now_ns * self.hz // 1_000_000_000


@dataclass(frozen=True, slots=True)
class TaskInfo:
    """What the get_current_* helpers report about "current"."""

    pid: int  # the thread id (the kernel's task->pid)
    tgid: int  # the process id (task->tgid)
    uid: int
    gid: int
    comm: bytes  # at most TASK_COMM_LEN - 1 bytes
    cgroup_id: int = 0

    @classmethod
    def current(cls) -> TaskInfo:
        """This process and thread, with comm read from /proc/self/comm."""
        try:
            comm = Path("/proc/self/comm").read_bytes().rstrip(b"\n")
        except OSError:
            comm = b"python"
        return cls(
            pid=threading.get_native_id(),
            tgid=os.getpid(),
            uid=os.getuid(),
            gid=os.getgid(),
            comm=comm[: TASK_COMM_LEN - 1],
        )


@dataclass(frozen=True, slots=True)
class TraceEvent:
    """One bpf_trace_printk/trace_vprintk message as the trace pipe records it."""

    text: str
    pid: int
    comm: str
    cpu: int
    timestamp_ns: int

    def format(self) -> str:
        """The line as /sys/kernel/tracing/trace_pipe shows it (without the irq-flags column)."""
        seconds, ns = divmod(self.timestamp_ns, 1_000_000_000)
        body = self.text[:-1] if self.text.endswith("\n") else self.text
        return f"{self.comm}-{self.pid} [{self.cpu:03d}] {seconds}.{ns // 1000:06d}: bpf_trace_printk: {body}"


class TracePipe:
    """Where trace_printk output goes: a bounded in-memory list of events, read or drained by the user."""

    def __init__(self, capacity: int = 65536) -> None:
        self.capacity = capacity
        self._events: list[TraceEvent] = []
        self._lock = threading.Lock()
        self.dropped = 0

    def write(self, event: TraceEvent) -> None:
        with self._lock:
            if len(self._events) >= self.capacity:
                # The kernel's ring buffer overwrites the oldest entries; we drop them the same way.
                del self._events[0]
                self.dropped += 1
            self._events.append(event)

    @property
    def events(self) -> tuple[TraceEvent, ...]:
        with self._lock:
            return tuple(self._events)

    def messages(self) -> list[str]:
        """The message texts, each without its trailing newline."""
        return [event.text[:-1] if event.text.endswith("\n") else event.text for event in self.events]

    def drain(self) -> list[TraceEvent]:
        """Take every event out (as reading trace_pipe consumes it)."""
        with self._lock:
            taken, self._events = self._events, []
        return taken

    def __iter__(self) -> Iterator[TraceEvent]:
        return iter(self.events)

    def __len__(self) -> int:
        return len(self._events)


class MapRegistry:
    """Maps found by the pointer value a program holds (the address of a per-map handle region)."""

    def __init__(self, memory: AddressSpace, objects: KernelObjects | None = None,
                 heap: ObjectHeap | None = None) -> None:
        self.memory = memory
        # A kptr holding a program-allocated object (a local kptr) drops it into this heap.
        self.heap = heap
        # Where a registered map's kptrs release the objects they still hold (a map that
        # takes part in runs is registered before any of its kptrs can hold one).
        self.objects = objects
        self._by_address: dict[int, object] = {}
        # id(map) -> (map, pointer, handle region or None); the map is kept to pin its id.
        self._by_id: dict[int, tuple[object, int, Region | None]] = {}
        # The native ring table (map pointer, ring descriptor) of the registered ring buffers.
        # Replaced tables are kept: a native run in another thread may still be reading one.
        self._ring_tables: list[ctypes.Array[ctypes.c_uint64]] = [(ctypes.c_uint64 * 1)()]
        self._ring_count = 0
        self._unshared: list[NativeRing] = []  # rings in the table not yet told native code may produce

    def register(self, map_object: object, name: str = "") -> int:
        """Give ``map_object`` a handle (once) and return its pointer value."""
        known = self._by_id.get(id(map_object))
        if known is not None:
            return known[1]
        own = getattr(map_object, "address", None)
        region: Region | None = None
        if isinstance(own, int) and own:
            # pybpf.runtime.maps objects carry their own identity address: the image of their
            # kernel struct, mapped read-only here so programs may read its fields.
            address = own
            image = getattr(map_object, "kernel_image", None)
            if image is not None:
                label = name or str(getattr(map_object, "name", "")) or type(map_object).__name__
                region = Region(RegionKind.OTHER, f"struct bpf_map of {label}", image, writable=False)
                if region.address != address:
                    raise HelperError(f"map {label!r}: its kernel struct image is not at its pointer {address:#x}")
                self.memory.add(region)
        else:
            label = name or str(getattr(map_object, "name", "")) or type(map_object).__name__
            region = Region.zeroed(RegionKind.OTHER, f"map handle {label}", MAP_HANDLE_SIZE, writable=False)
            self.memory.add(region)
            address = region.address
        if address in self._by_address:
            raise HelperError(f"map pointer {address:#x} is already taken by another map")
        self._by_address[address] = map_object
        self._by_id[id(map_object)] = (map_object, address, region)
        if self.objects is not None and getattr(map_object, "kptr_offsets", None):
            map_object.kptr_release = self._release_kptr  # type: ignore[attr-defined]
        if self.heap is not None and getattr(map_object, "has_graphs", False):
            map_object.graph_release = self.heap.free_fields  # type: ignore[attr-defined]
        if isinstance(map_object, NativeRingMap):
            self._rebuild_ring_table()
        return address

    def _release_kptr(self, address: int) -> None:
        """What a map's kptr held goes: a bpf_obj_new object is dropped, a kernel object released."""
        if self.heap is not None and self.heap.owns(address):
            self.heap.drop(address)
        elif self.objects is not None:
            self.objects.release(address)

    def unregister(self, map_object: object) -> None:
        known = self._by_id.pop(id(map_object), None)
        if known is None:
            return
        map_object, address, region = known
        del self._by_address[address]
        if region is not None:
            self.memory.remove(region)
        if isinstance(map_object, NativeRingMap):
            self._rebuild_ring_table()

    def _rebuild_ring_table(self) -> None:
        fields: list[int] = []
        rings: list[NativeRing] = []
        for pointer, found in self._by_address.items():
            ring = found.native_ring() if isinstance(found, NativeRingMap) else None
            if ring is not None:
                fields += (pointer, ring.address)
                rings.append(ring)
        self._unshared = rings
        self._ring_tables.append((ctypes.c_uint64 * (len(fields) or 1))(*fields))
        self._ring_count = len(fields) // 2

    def ring_table(self) -> tuple[int, int]:
        """(address, count) of the native ring table: (map pointer, ring descriptor address) pairs.

        For a run whose native code may produce: the rings' Python producers take the spin word
        from now on (:meth:`~pybpf.vm.native_ringbuf.NativeRing.share`).
        """
        if self._unshared:
            for ring in self._unshared:
                ring.share()
            self._unshared = []
        return ctypes.addressof(self._ring_tables[-1]), self._ring_count

    def find(self, address: int) -> object | None:
        """The map whose pointer is ``address``, or None."""
        return self._by_address.get(address)

    def rings(self) -> list[NativeRingMap]:
        """The ring buffer maps registered (to find the ring of a sample native code reserved)."""
        return [found for found in self._by_address.values() if isinstance(found, NativeRingMap)]

    def address_of(self, map_object: object) -> int | None:
        known = self._by_id.get(id(map_object))
        return None if known is None else known[1]

    def clear(self) -> None:
        for map_object, _, _ in list(self._by_id.values()):
            self.unregister(map_object)

    def __len__(self) -> int:
        return len(self._by_address)


class LockTable:
    """bpf_spin_lock state: one real lock per lock word, so threads running programs exclude each other."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[int, threading.Lock] = {}
        self._owners: dict[int, int] = {}

    def acquire(self, address: int) -> None:
        me = threading.get_ident()
        with self._guard:
            if self._owners.get(address) == me:
                raise HelperError(f"bpf_spin_lock at {address:#x} is already held by this program (deadlock)")
            lock = self._locks.setdefault(address, threading.Lock())
        lock.acquire()
        with self._guard:
            self._owners[address] = me

    def release(self, address: int) -> None:
        me = threading.get_ident()
        with self._guard:
            if self._owners.get(address) != me:
                raise HelperError(f"bpf_spin_unlock at {address:#x}: the lock is not held by this program")
            del self._owners[address]
            lock = self._locks[address]
        lock.release()

    def held(self, address: int) -> bool:
        with self._guard:
            return address in self._owners


class RuntimeServices:
    """Everything long-lived that helpers use: maps by pointer, clock, PRNG, CPUs, task, trace pipe.

    ``seed`` makes bpf_get_prandom_u32 deterministic; ``cpus`` is the number of virtual CPUs
    (a run executes on ``RunState.cpu``, default ``cpu``). Random numbers come from one
    generator per virtual CPU, as the kernel's per-CPU ``bpf_user_rnd_state``, kept in native
    memory (:class:`~pybpf.vm.native_tracing.PrandomState`) that the JIT's native
    get_prandom_u32 steps too: interpreter and JIT runs draw from one stream.
    """

    def __init__(
        self,
        memory: AddressSpace,
        *,
        clock: Clock | None = None,
        seed: int | None = None,
        cpus: int | None = None,
        cpu: int = 0,
        numa_node: int = 0,
        task: TaskInfo | None = None,
        trace_pipe: TracePipe | None = None,
    ) -> None:
        self.memory = memory
        # Referenced kernel objects programs create (cpumasks...), which maps' kptrs may hold.
        self.objects = KernelObjects(memory)
        # bpf_obj_new's objects and the lists and rb-trees holding them (pybpf.runtime.objects).
        self.heap = ObjectHeap(memory)
        self.maps = MapRegistry(memory, self.objects, self.heap)
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.cpus = cpus if cpus is not None else (os.cpu_count() or 1)
        if not 0 <= cpu < self.cpus:
            raise HelperError(f"cpu {cpu} is outside the {self.cpus} virtual CPUs")
        # Seed words from the seed (None: from the OS), one set per CPU, so each CPU's stream differs.
        seeder = random.Random(seed)
        self.prandom = PrandomState(self.cpus, [seeder.getrandbits(32) for _ in range(self.cpus * PRANDOM_WORDS)])
        self.cpu = cpu
        self.numa_node = numa_node
        self.task = task if task is not None else TaskInfo.current()
        self.trace_pipe = trace_pipe if trace_pipe is not None else TracePipe()
        self.locks = LockTable()
        self._native_helper_sets: dict[tuple[object, ...], frozenset[int]] = {}
        self.task_struct = memory.add(
            Region.zeroed(RegionKind.OTHER, "task_struct of current", TASK_STRUCT_SIZE, writable=False)
        )

    def prandom_u32(self, cpu: int | None = None) -> int:
        """The next draw of ``cpu``'s generator (default: the services' ``cpu``)."""
        chosen = self.cpu if cpu is None else cpu
        if self.prandom.cpu_address(chosen) is None:
            raise HelperError(f"cpu {chosen} is outside the {self.cpus} virtual CPUs")
        return self.prandom.next_u32(chosen)

    def native_helpers(self, helpers: Mapping[int, HelperFn]) -> frozenset[int]:
        """The helpers of ``helpers`` that native code may serve: the runtime's own functions (and
        ktime only on the host's clock). Asked before every native run, so the answer is kept per
        distinct set of those functions (a helper table may be changed between runs)."""
        equivalents = _native_equivalents()
        host_clock = type(self.clock) is SystemClock
        key = (host_clock, *(helpers.get(helper) for helper in equivalents))
        found = self._native_helper_sets.get(key)
        if found is None:
            found = frozenset(
                helper
                for helper, fn in equivalents.items()
                if helpers.get(helper) is fn and (host_clock or helper != HelperId.KTIME_GET_NS)
            )
            self._native_helper_sets[key] = found
        return found

    def close(self) -> None:
        """Unmap the regions the services own (map handles, the task_struct stand-in)."""
        self.maps.clear()
        self.objects.close()
        self.heap.close()
        if self.task_struct in self.memory:
            self.memory.remove(self.task_struct)


@dataclass(frozen=True, slots=True)
class Redirect:
    """Where bpf_redirect/bpf_redirect_map sent the packet: an ifindex, or a map and key."""

    ifindex: int = 0
    flags: int = 0
    map: object | None = None
    key: int = 0


@dataclass(slots=True)  # mutable: it records what one run does, as it happens
class RunState(NativeRunSupport, TracingRunSupport):
    """Per-run data helpers see as ``env.user``: services, the packet, and the run's recorded effects.

    ``ctx`` is the context pointer the run was given (r1); ``func_ip``/``attach_cookie`` are what
    get_func_ip/get_attach_cookie return for this attachment. As a
    :class:`~pybpf.vm.native_maps.NativeRunSupport` it tells the JIT which helpers native code
    may serve for this run, and gives it the maps' native descriptors; as a
    :class:`~pybpf.vm.native_tracing.TracingRunSupport`, the current task and the generator state.
    """

    services: RuntimeServices
    packet: PacketContext | None = None
    ctx: int = 0
    cpu: int | None = None
    func_ip: int = 0
    attach_cookie: int = 0
    override_return: int | None = None
    redirect: Redirect | None = None
    held_locks: list[int] = field(default_factory=list)
    reserved: dict[int, object] = field(default_factory=dict)  # ringbuf sample address -> its map

    @property
    def current_cpu(self) -> int:
        return self.services.cpu if self.cpu is None else self.cpu

    # -- NativeRunSupport ---------------------------------------------------------------------------

    def native_map(self, pointer: int) -> NativeMapDescriptor | None:
        found = self.services.maps.find(pointer)
        return found.native_descriptor() if isinstance(found, NativeMap) else None

    def native_cpu(self) -> int:
        return self.current_cpu

    def native_helpers(self, helpers: Mapping[int, HelperFn]) -> frozenset[int]:
        return self.services.native_helpers(helpers)

    # -- TracingRunSupport --------------------------------------------------------------------------

    def native_task(self) -> NativeTask:
        return native_task_of(self.services.task)

    def native_prandom_state(self) -> int:
        address = self.services.prandom.cpu_address(self.current_cpu)
        return 0 if address is None else address

    def native_ring_table(self) -> tuple[int, int]:
        return self.services.maps.ring_table()


@functools.lru_cache(maxsize=64)  # a hook's task repeats run after run: the words are computed once
def native_task_of(task: TaskInfo) -> NativeTask:
    """``task`` as the get_current_* helpers answer (the same words the Python helpers compute)."""
    comm = task.comm[: TASK_COMM_LEN - 1]
    return NativeTask(
        pid_tgid=((task.tgid & 0xFFFF_FFFF) << 32) | (task.pid & 0xFFFF_FFFF),
        uid_gid=((task.gid & 0xFFFF_FFFF) << 32) | (task.uid & 0xFFFF_FFFF),
        comm=comm + bytes(TASK_COMM_LEN - len(comm)),
    )


@functools.cache  # a constant, computed on first use: an import per run cost microseconds
def _native_equivalents() -> Mapping[int, HelperFn]:
    """The runtime's helpers whose semantics native code reproduces (ktime: on the host's clock only)."""
    # Imported here: those helper modules import this one.
    from pybpf.runtime.helpers.maps import map_lookup_elem, map_update_elem
    from pybpf.runtime.helpers.output import ringbuf_discard, ringbuf_output, ringbuf_reserve, ringbuf_submit
    from pybpf.runtime.helpers.system import (
        get_current_comm,
        get_current_pid_tgid,
        get_current_uid_gid,
        get_prandom_u32,
        get_smp_processor_id,
        ktime_get_ns,
    )

    return MappingProxyType(
        {
            HelperId.MAP_LOOKUP_ELEM: map_lookup_elem,
            HelperId.MAP_UPDATE_ELEM: map_update_elem,
            HelperId.GET_SMP_PROCESSOR_ID: get_smp_processor_id,
            HelperId.KTIME_GET_NS: ktime_get_ns,
            HelperId.GET_CURRENT_PID_TGID: get_current_pid_tgid,
            HelperId.GET_CURRENT_UID_GID: get_current_uid_gid,
            HelperId.GET_CURRENT_COMM: get_current_comm,
            HelperId.GET_PRANDOM_U32: get_prandom_u32,
            HelperId.RINGBUF_RESERVE: ringbuf_reserve,
            HelperId.RINGBUF_SUBMIT: ringbuf_submit,
            HelperId.RINGBUF_DISCARD: ringbuf_discard,
            HelperId.RINGBUF_OUTPUT: ringbuf_output,
        }
    )


def run_state(env: ExecutionContext) -> RunState:
    """The :class:`RunState` of the run a helper serves; HelperError if the run was started without one."""
    state = env.user
    if not isinstance(state, RunState):
        raise HelperError("this helper needs runtime services: run the program with user=RunState(...)", env.helper_pc)
    return state
