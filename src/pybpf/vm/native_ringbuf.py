"""A ring buffer's native descriptor: what native code needs to produce records like the Python map.

The ring's memory protocol is :mod:`pybpf.runtime.maps.ringbuf`'s (the kernel's): one aligned
store per position and header word, the header (length with BUSY) before the producer position
that exposes it, BUSY cleared by one store after the data, the producer position published with
release semantics. Producers must also exclude each other while they reserve. In Python a
``threading.Lock`` did that, but native code (which runs without the GIL, in any thread) cannot
take a Python lock; so the ring also has a **spin word** here, in memory both sides reach:

- native code takes it with an atomic compare-and-swap (0 -> 1) and frees it with a release store;
- Python producers take their ``threading.Lock`` first (Python threads then block instead of
  spinning against each other), then the spin word through :func:`atomics` (tiny functions
  compiled once per process with llvmlite: compare-and-swap and release store; Python itself has
  no atomic instructions). Those calls cost a microsecond or two, so a ring takes the spin word
  from Python only once it is **shared** with native code (:meth:`NativeRing.share`, called when
  a run's ring table hands the descriptor to native code); until then the Python lock suffices.

The spin word is per process, like the lock it extends: producers in another process that opens
a pinned ring are not serialised with ours (as before; only the consumer is expected there).

Wake-ups: the kernel queues an irq_work to wake the consumer; our consumers poll (a pinned ring's
reader in another process polls on an interval), so a commit only counts the wake-up it would
have made: native code with an atomic add to ``WAKEUPS``, Python in a counter of its own (the
GIL orders Python's commits); ``wakeups`` is their sum. No Python action is needed after a
native run.

Fields (:class:`RingField`, u64 each, at a stable address the map owns): the spin word, the data
region's address (records at ``DATA + (pos & MASK)``, the region twice the ring's size), the
mask, the address of the positions (u64 consumer_pos, then u64 producer_pos) and the wake-up
count. The map rewrites ``DATA`` and ``POSITIONS`` when its storage moves (between runs).
"""

from __future__ import annotations

import ctypes
import functools
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum


class RingField(IntEnum):
    """Indices of a ring descriptor's u64 fields."""

    LOCK = 0
    """The producers' spin word: 0 free, 1 held."""
    DATA = 1
    """The data region's address."""
    MASK = 2
    """The ring's size minus one (a power of two)."""
    POSITIONS = 3
    """Address of the u64 consumer position, followed by the u64 producer position."""
    WAKEUPS = 4
    """Commits that would have woken the consumer."""


RING_FIELDS = len(RingField)
CONSUMER_POS_OFFSET = 0
PRODUCER_POS_OFFSET = 8

_ATOMICS_IR = """
define i64 @pybpf_cmpxchg(i64* %word, i64 %expected, i64 %desired) {
entry:
  %pair = cmpxchg i64* %word, i64 %expected, i64 %desired seq_cst seq_cst
  %old = extractvalue { i64, i1 } %pair, 0
  ret i64 %old
}

define void @pybpf_fetch_add(i64* %word, i64 %value) {
entry:
  %old = atomicrmw add i64* %word, i64 %value seq_cst
  ret void
}

define void @pybpf_store_release(i64* %word, i64 %value) {
entry:
  store atomic i64 %value, i64* %word release, align 8
  ret void
}
"""


@dataclass(frozen=True, slots=True)
class Atomics:
    """Atomic operations on u64 words for Python code (compiled by :func:`atomics`)."""

    cmpxchg: Callable[[int, int, int], int]
    """``cmpxchg(address, expected, desired)``: the old value (equal to ``expected`` when it swapped)."""
    store_release: Callable[[int, int], None]
    fetch_add: Callable[[int, int], None]
    keep: object
    """The compiled code, kept alive with the functions."""


@functools.cache  # compiled once per process: the functions do not depend on anything
def atomics() -> Atomics:
    from pybpf.vm.jit.llvm import NativeCode  # llvmlite, loaded only when a ring is used

    code = NativeCode(_ATOMICS_IR, opt_level=2)
    cmpxchg_type = ctypes.CFUNCTYPE(ctypes.c_uint64, ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint64)
    store_type = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_uint64)
    return Atomics(
        cmpxchg_type(code.address("pybpf_cmpxchg")),
        store_type(code.address("pybpf_store_release")),
        store_type(code.address("pybpf_fetch_add")),
        code,
    )


class NativeRing:
    """A ring buffer's descriptor (:data:`RING_FIELDS` u64 at ``address``) and the producers' spin word."""

    __slots__ = ("_fields", "_python_wakeups", "_shared", "address", "python_lock")

    def __init__(self, mask: int) -> None:
        self.python_lock = threading.Lock()
        """Serialises the process's Python producers (the kernel's ``rb->spinlock``)."""
        self._shared = False  # set once native code may produce: Python takes the spin word from then on
        self._python_wakeups = 0  # Python's commits count here (under the GIL): no native call per commit
        self._fields = (ctypes.c_uint64 * RING_FIELDS)()
        self._fields[RingField.MASK] = mask
        self.address: int = ctypes.addressof(self._fields)

    def set_storage(self, data: int, positions: int) -> None:
        """Where the records and the positions are now (the map calls it when its storage moves)."""
        self._fields[RingField.DATA] = data
        self._fields[RingField.POSITIONS] = positions

    @property
    def wakeups(self) -> int:
        """Wake-ups of Python's commits plus native code's (``WAKEUPS``, added to atomically)."""
        return self._python_wakeups + int(self._fields[RingField.WAKEUPS])

    def count_wakeup(self) -> None:
        """One more wake-up from a Python commit."""
        self._python_wakeups += 1

    def share(self) -> None:
        """Native code may produce from now on: Python producers take the spin word too.

        Set under the Python lock, so a Python reservation that skipped the spin word has ended
        before any native one can start (the caller hands the descriptor to native code after).
        """
        if not self._shared:
            with self.python_lock:
                self._shared = True

    def acquire(self) -> None:
        """Exclude the other producers: the Python lock, then (once shared) the spin word."""
        self.python_lock.acquire()
        if self._shared:
            cmpxchg = atomics().cmpxchg
            while cmpxchg(self.address, 0, 1) != 0:  # LOCK is the first field
                time.sleep(0)  # a native producer holds it for a few instructions: let it run

    def release(self) -> None:
        if self._shared:
            atomics().store_release(self.address, 0)
        self.python_lock.release()


class NativeRingMap(ABC):
    """A ring buffer map native code may produce into (the runtime's RingBufMap)."""

    __slots__ = ()

    @abstractmethod
    def native_ring(self) -> NativeRing | None:
        """The ring's descriptor, or None when every producer operation must go through Python."""

    @abstractmethod
    def owns(self, address: int) -> bool:
        """Whether ``address`` points into the ring's records (to find the ring of a sample)."""
