"""What tracing helpers need from a run, for native code: the current task and the random generator.

``bpf_get_current_pid_tgid``, ``bpf_get_current_uid_gid`` and ``bpf_get_current_comm`` answer
with facts that hold for a whole run (the task the hook fired in), so Python puts them in
run-state slots before native code starts. ``bpf_get_prandom_u32`` draws from a generator whose
state must be the same for both engines (a seeded object gives the same stream whether its runs
use the interpreter, the JIT or both, interleaved): the state lives in native memory
(:class:`PrandomState`), and the Python helper and the generated code step it with the same
algorithm.

The generator is the kernel's ``prandom_u32_state`` (lib/random32.c): a combined Tausworthe
generator of four 32-bit components (L'Ecuyer's "maximally equidistributed combined Tausworthe
generators", period about 2**113), one state per CPU as the kernel keeps ``bpf_user_rnd_state``
per CPU. Each component ``s`` with parameters ``(a, b, c, d)`` steps to
``((s & c) << d) ^ (((s << a) ^ s) >> b)`` in 32-bit arithmetic; the output is the XOR of the
four. A component below its minimum (2, 8, 16, 128) would degenerate, so seeding raises it as
the kernel's ``__seed`` does. :data:`TAUSWORTHE_STEPS` is the one table both implementations read.

:class:`TracingRunSupport` is the explicit interface a run's ``user`` object implements (the
runtime's ``RunState``): native code serves these helpers only for such a run, and only those
whose implementation is the runtime's own (see
:meth:`~pybpf.vm.native_maps.NativeRunSupport.native_helpers`).
"""

from __future__ import annotations

import ctypes
from abc import ABC, abstractmethod
from dataclasses import dataclass

from pybpf.errors import VmError

U32 = 0xFFFF_FFFF
TASK_COMM_LEN = 16
PRANDOM_WORDS = 4
PRANDOM_STATE_SIZE = PRANDOM_WORDS * 4
"""Bytes of one CPU's generator state (four u32 components, s1 first)."""
PRANDOM_WARMUP = 10
"""Draws discarded after seeding (the kernel's prandom_warmup), so that nearby seeds diverge."""


@dataclass(frozen=True, slots=True)
class TauswortheStep:
    """One component's recurrence: ``((s & mask) << left) ^ (((s << shift) ^ s) >> right)``."""

    shift: int
    right: int
    mask: int
    left: int
    minimum: int
    """Seeds below it are raised by it (a component must keep enough set bits to cycle)."""


TAUSWORTHE_STEPS = (
    TauswortheStep(6, 13, 0xFFFF_FFFE, 18, 2),
    TauswortheStep(2, 27, 0xFFFF_FFF8, 2, 8),
    TauswortheStep(13, 21, 0xFFFF_FFF0, 7, 16),
    TauswortheStep(3, 12, 0xFFFF_FF80, 13, 128),
)


def tausworthe(step: TauswortheStep, value: int) -> int:
    """One component's next value (32-bit)."""
    return (((value & step.mask) << step.left) & U32) ^ ((((value << step.shift) & U32) ^ value) >> step.right)


class PrandomState:
    """Per-CPU generator states at a stable native address: ``cpus`` blocks of :data:`PRANDOM_STATE_SIZE` bytes."""

    __slots__ = ("_words", "address", "cpus")

    def __init__(self, cpus: int, seeds: list[int]) -> None:
        """``seeds``: :data:`PRANDOM_WORDS` u32 per CPU (raised to each component's minimum)."""
        if cpus < 1 or len(seeds) != cpus * PRANDOM_WORDS:
            raise VmError(f"a prandom state needs {PRANDOM_WORDS} seed words for each of {cpus} CPUs")
        self.cpus = cpus
        self._words = (ctypes.c_uint32 * (cpus * PRANDOM_WORDS))()
        self.address: int = ctypes.addressof(self._words)
        for cpu in range(cpus):
            for index, step in enumerate(TAUSWORTHE_STEPS):
                seed = seeds[cpu * PRANDOM_WORDS + index] & U32
                self._words[cpu * PRANDOM_WORDS + index] = seed + step.minimum if seed < step.minimum else seed
            for _ in range(PRANDOM_WARMUP):
                self.next_u32(cpu)

    def cpu_address(self, cpu: int) -> int | None:
        """Where ``cpu``'s state starts, or None for a CPU outside the state."""
        return self.address + cpu * PRANDOM_STATE_SIZE if 0 <= cpu < self.cpus else None

    def next_u32(self, cpu: int) -> int:
        """Step ``cpu``'s generator and return its output (what the generated code does too)."""
        if not 0 <= cpu < self.cpus:
            raise VmError(f"no prandom state for cpu {cpu} (the state has {self.cpus} CPUs)")
        words = self._words
        base = cpu * PRANDOM_WORDS
        output = 0
        for index, step in enumerate(TAUSWORTHE_STEPS):
            value = tausworthe(step, words[base + index])
            words[base + index] = value
            output ^= value
        return output

    def words(self, cpu: int) -> tuple[int, ...]:
        """``cpu``'s four components (tests, debugging)."""
        base = cpu * PRANDOM_WORDS
        return tuple(self._words[base : base + PRANDOM_WORDS])


@dataclass(frozen=True, slots=True)
class NativeTask:
    """The current task as the get_current_* helpers report it, in the words native code returns."""

    pid_tgid: int
    """``tgid << 32 | pid``."""
    uid_gid: int
    """``gid << 32 | uid``."""
    comm: bytes
    """:data:`TASK_COMM_LEN` bytes: the name (at most 15 bytes), zero padded."""

    def comm_words(self) -> tuple[int, int]:
        """The name as two little-endian u64 (how the run-state slots hold it)."""
        return int.from_bytes(self.comm[:8], "little"), int.from_bytes(self.comm[8:TASK_COMM_LEN], "little")


class TracingRunSupport(ABC):
    """What one run offers the native tracing helpers; the run's ``user`` object implements it."""

    __slots__ = ()

    @abstractmethod
    def native_task(self) -> NativeTask:
        """The task the run executes as (constant for the run)."""

    @abstractmethod
    def native_prandom_state(self) -> int:
        """The native address of this run's CPU's :class:`PrandomState` block, or 0 (draws go through Python)."""

    @abstractmethod
    def native_ring_table(self) -> tuple[int, int]:
        """(address, count) of the ring table: ``count`` pairs of u64 (map pointer, ring descriptor address).

        The table must stay valid while the run lasts (its owner keeps replaced tables alive).
        """
