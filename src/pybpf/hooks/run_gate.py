"""How hook runs on one loaded object share it between threads: a :class:`RunGate` per object.

In the kernel a program runs on the CPU of the task that hit its hook, many CPUs at once, and
never two programs on one CPU at a time (preemption is off, or migration is off and the
program's per-CPU data is its own). The gate gives hooks the same model:

- **One run per virtual CPU.** A thread runs on virtual CPU ``native thread id % cpus`` and
  holds that CPU's lock for the run. A per-CPU map value is then only ever touched by one run
  at a time, so ``*value += 1`` on a per-CPU counter loses no update, as in the kernel.
- **Runs on different CPUs go in parallel** when the program is *parallel-safe*
  (:func:`parallel_safe`): it calls only helpers that are safe to run concurrently (map
  lookups, the clock, the current task, probe reads, spin locks...) and no tail call. Such
  runs share maps through values in place, and what makes that safe is the program's own
  atomic instructions (real atomics in native code; under the interpreter, the address
  space's ``atomic_lock`` around each read-modify-write) and bpf_spin_lock.
- **Everything else runs alone on its object** (the exclusive side): a program that updates
  or deletes map elements, writes to a ring buffer, tail calls... The runtime's maps are
  Python structures (a dict and a linked list per hash map, free lists in slabs) that are not
  safe to change from two threads at once, so those runs are serialised, as every run was
  before. Packet hooks take this side too.

Re-entry: a run that fires another hook in the same thread (a helper raising an audit event
that a program of the same object watches) passes straight through the gate: its thread is
already inside, and waiting for itself would deadlock. The CPU locks are re-entrant for the
same reason. Lock order is always gate, then CPU lock. The price: a map-changing program nested
in a shared run changes maps while other threads' shared runs look them up; lookups only read
a dict (atomic under the GIL), so they see the element or not, never a broken table.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from pybpf.isa.insn import Call, CallReg
from pybpf.platform.uapi_generated import HelperId

if TYPE_CHECKING:
    from pybpf.runtime.program import Program

PARALLEL_SAFE_HELPERS = frozenset(
    {
        # Lookups only read the map's index (one dict probe, atomic under the GIL); the value
        # is changed in place by the program, with atomics where it is shared.
        HelperId.MAP_LOOKUP_ELEM,
        HelperId.MAP_LOOKUP_PERCPU_ELEM,
        HelperId.PER_CPU_PTR,
        HelperId.THIS_CPU_PTR,
        # Clock, CPU, PRNG (random.Random is locked by the GIL), the current task (per run).
        HelperId.KTIME_GET_NS,
        HelperId.KTIME_GET_BOOT_NS,
        HelperId.KTIME_GET_COARSE_NS,
        HelperId.KTIME_GET_TAI_NS,
        HelperId.JIFFIES64,
        HelperId.GET_SMP_PROCESSOR_ID,
        HelperId.GET_NUMA_NODE_ID,
        HelperId.GET_PRANDOM_U32,
        HelperId.GET_CURRENT_PID_TGID,
        HelperId.GET_CURRENT_UID_GID,
        HelperId.GET_CURRENT_COMM,
        HelperId.GET_CURRENT_TASK,
        HelperId.GET_CURRENT_TASK_BTF,
        HelperId.GET_CURRENT_CGROUP_ID,
        # Reads into the program's own stack; this run's attachment data.
        HelperId.PROBE_READ,
        HelperId.PROBE_READ_STR,
        HelperId.PROBE_READ_USER,
        HelperId.PROBE_READ_USER_STR,
        HelperId.PROBE_READ_KERNEL,
        HelperId.PROBE_READ_KERNEL_STR,
        HelperId.GET_FUNC_IP,
        HelperId.GET_ATTACH_COOKIE,
        HelperId.GET_FUNC_ARG,
        HelperId.GET_FUNC_ARG_CNT,
        # Real locks, one per lock word (RuntimeServices.locks): made for threads.
        HelperId.SPIN_LOCK,
        HelperId.SPIN_UNLOCK,
        # Calls back into this program's own code, which is checked with the rest of it.
        HelperId.LOOP,
    }
)
"""Helpers a run may call while runs of the same object go on in other threads."""


def parallel_safe(program: Program) -> bool:
    """Whether ``program``'s runs may overlap other runs on its object (see the module docstring).

    No tail calls (the target is another program, whose helpers are not checked here) and no
    helper outside :data:`PARALLEL_SAFE_HELPERS`.
    """
    for item in program.interpreter.insns:
        insn = item.insn
        if isinstance(insn, CallReg):
            return False
        if isinstance(insn, Call) and insn.helper not in PARALLEL_SAFE_HELPERS:
            return False
    return True


class RunGate:
    """Admission of hook runs on one loaded object: shared (parallel-safe) or exclusive, per CPU.

    Writers first: once an exclusive run waits, new shared runs wait behind it, so a stream of
    parallel runs cannot starve a program that updates maps.
    """

    def __init__(self, cpus: int) -> None:
        # State changes under a plain lock (cheap when nobody waits); waiting uses a condition
        # on the same lock, and leaving notifies only when someone waits.
        self._lock = threading.Lock()
        self._condition = threading.Condition(self._lock)
        self._shared = 0  # shared runs inside
        self._exclusive = 0  # thread id of the exclusive run inside, 0 when none
        self._waiting = 0  # exclusive runs waiting for the shared ones to leave
        self._sleepers = 0  # threads waiting on the condition, of either kind
        self._inside: dict[int, int] = {}  # thread id -> runs it has inside (nested runs > 1)
        self.cpu_locks = tuple(threading.RLock() for _ in range(max(cpus, 1)))

    def enter(self, exclusive: bool) -> bool:
        """Wait until this thread may run (shared, or ``exclusive``); pair with :meth:`leave`.

        Returns whether this thread now has the object to itself (an exclusive run, or a run
        nested in one), so the caller may change the object's shared state for the run.
        """
        me = threading.get_ident()
        with self._lock:
            depth = self._inside.get(me, 0)
            if depth:  # a nested run: this thread is already inside, in whichever mode
                self._inside[me] = depth + 1
                return self._exclusive == me
            if exclusive:
                self._waiting += 1
                while self._exclusive or self._shared:
                    self._sleep()
                self._waiting -= 1
                self._exclusive = me
            else:
                while self._exclusive or self._waiting:
                    self._sleep()
                self._shared += 1
            self._inside[me] = 1
            return bool(exclusive)

    def _sleep(self) -> None:
        self._sleepers += 1
        try:
            self._condition.wait()
        finally:
            self._sleepers -= 1

    def leave(self) -> None:
        me = threading.get_ident()
        with self._lock:
            depth = self._inside.pop(me)
            if depth > 1:
                self._inside[me] = depth - 1
                return
            if self._exclusive == me:
                self._exclusive = 0
            else:
                self._shared -= 1
            if self._sleepers:
                self._condition.notify_all()

    def __enter__(self) -> RunGate:
        """``with gate:`` is one exclusive run (packet hooks; anything that must run alone)."""
        self.enter(exclusive=True)
        return self

    def __exit__(self, *exc: object) -> None:
        self.leave()


__all__ = ["PARALLEL_SAFE_HELPERS", "RunGate", "parallel_safe"]
