"""The compilation cache: native code by program bytes, options and host CPU.

Generated code depends on the program alone (load-time values such as map addresses come from
the run's constant table, the Python callbacks from the run-state block), so every load of the
same bytes can share one compilation. The key hashes the encoded instructions, which ``lddw``
values come from the table, the optimisation level, whether bounds checks are emitted, the
code generator's and llvmlite's versions and the host CPU's name and feature string: code built
for one CPU's features is never reused on another (a cache that outlived the process would see a different key there).

The cache lives in memory for the process (:data:`PROCESS_CACHE`, the default of
:class:`~pybpf.vm.jit.JitProgram`); it holds at most ``capacity`` compilations, evicting the
least recently used. There is no on-disk cache: MCJIT's objects are not relocatable to disk
through llvmlite, and re-running LLVM from cached IR would save little.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from pybpf.isa.codec import encode
from pybpf.isa.insn import LabeledInsn
from pybpf.vm.jit.llvm import NativeCode, host_cpu, require_llvmlite

CODEGEN_VERSION = "6"
"""Bumped whenever generated code changes meaning (part of every key)."""


@dataclass(frozen=True, slots=True)
class Compiled:
    """One compilation: the native code, why each trapping pc traps, the IR before optimisation."""

    native: NativeCode
    traps: Mapping[int, str]
    generated_ir: str
    compile_ns: int


def cache_key(
    insns: Iterable[LabeledInsn], table_pcs: Iterable[int], opt_level: int, bounds_checks: bool = True
) -> str:
    """The key of a program's compilation on this host (hex SHA-256)."""
    require_llvmlite()
    import llvmlite  # the version is part of the key: another LLVM may generate other code

    digest = hashlib.sha256()
    for item in insns:
        for raw in encode(item.insn):
            digest.update(raw.to_bytes())
    cpu, features = host_cpu()
    versions = f"{CODEGEN_VERSION}|{llvmlite.__version__}"
    options = f"|{sorted(table_pcs)}|O{opt_level}|checks={bounds_checks}|{versions}|{cpu}|{features}"
    digest.update(options.encode())
    return digest.hexdigest()


class CompileCache:
    """Compilations by :func:`cache_key`, at most ``capacity`` of them (least recently used evicted)."""

    def __init__(self, capacity: int = 256) -> None:
        self.capacity = capacity
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[str, Compiled] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> Compiled | None:
        with self._lock:
            found = self._entries.get(key)
            if found is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return found

    def put(self, key: str, compiled: Compiled) -> None:
        with self._lock:
            self._entries[key] = compiled
            self._entries.move_to_end(key)
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.hits = self.misses = 0


PROCESS_CACHE = CompileCache()
"""The process's cache, which every JitProgram uses unless given another (or None)."""
