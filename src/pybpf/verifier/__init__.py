"""pybpf.verifier: a static verifier whose verdicts follow the Linux kernel's.

Layers built so far: the tnum bit domain (:mod:`.tnum`), and the structural pass the kernel
runs before exploring paths (:mod:`.cfg`, :mod:`.structure`).
"""

from __future__ import annotations

from pybpf.verifier.cfg import Cfg, Edge, EdgeKind, Subprog, walk
from pybpf.verifier.structure import (
    BPF_COMPLEXITY_LIMIT_INSNS,
    BPF_MAXINSNS,
    ProgramStructure,
    StructureConfig,
    check_structure,
)
from pybpf.verifier.tnum import Tnum

__all__ = [
    "BPF_COMPLEXITY_LIMIT_INSNS",
    "BPF_MAXINSNS",
    "Cfg",
    "Edge",
    "EdgeKind",
    "ProgramStructure",
    "StructureConfig",
    "Subprog",
    "Tnum",
    "check_structure",
    "walk",
]
