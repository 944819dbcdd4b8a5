"""pybpf.obj: BPF ELF objects -> ``ObjectSpec`` (programs, maps, BTF), pure and deterministic.

The same object bytes give the same spec on every machine: nothing here probes the kernel or
opens a file descriptor. The instantiation stage (runtime/kernel) creates the maps, applies
each program's ``map_references`` and CO-RE relocations, and loads the programs.
"""

from __future__ import annotations

from pybpf.obj.loader import load_spec
from pybpf.obj.spec import (
    CoreRelocation,
    ElfMetadata,
    FuncInfo,
    LineInfo,
    MapKind,
    MapReference,
    MapSlotInit,
    MapSpec,
    ObjectSpec,
    Pinning,
    ProgramSpec,
    SubprogramRange,
)

__all__ = [
    "CoreRelocation",
    "ElfMetadata",
    "FuncInfo",
    "LineInfo",
    "MapKind",
    "MapReference",
    "MapSlotInit",
    "MapSpec",
    "ObjectSpec",
    "Pinning",
    "ProgramSpec",
    "SubprogramRange",
    "load_spec",
]
