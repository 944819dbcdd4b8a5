"""Pruning effectiveness: our processed-instruction count stays near the kernel's verified_insns.

The kernel reports, per loaded program, how many instructions its verifier processed
(``bpf_prog_info.verified_insns``). With liveness-aware pruning ours should be within a small
factor of it on every test object; a regression in pruning shows up here as a blown ratio.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pybpf.errors import PybpfError
from pybpf.kernel.probe import available
from pybpf.obj import load_spec
from pybpf.verifier import verify_program

PROGS = Path(__file__).parent.parent / "progs"
OBJECTS = sorted(PROGS.glob("*.o"))
_AVAILABLE, _REASON = available()
# Measured worst case 1.6 (kfunc_iter/set_bits: after its first iterator loop converged, every
# state above it is compared by ranges, see the package doc's "Loops"); most programs match the
# kernel's count exactly since the kernel's prune points and checkpoint spacing
# (pybpf.verifier.states).
MAX_RATIO = 2.0


@pytest.mark.kernel
@pytest.mark.skipif(not _AVAILABLE, reason=_REASON or "bpf() unavailable")
@pytest.mark.parametrize("path", OBJECTS, ids=[path.name for path in OBJECTS])
def test_processed_insns_near_the_kernel(path: Path) -> None:
    from pybpf.kernel.loader import load

    spec = load_spec(path)
    try:
        with load(path) as obj:
            kernel = {name: program.info().verified_insns for name, program in obj.programs.items()}
    except PybpfError as error:
        pytest.skip(f"the kernel loader could not load the object: {error}")
    for name, program in spec.programs.items():
        ours = verify_program(program, spec).processed_insns
        theirs = kernel.get(name, 0)
        if theirs:
            assert ours <= MAX_RATIO * theirs, f"{name}: we processed {ours} insns, the kernel {theirs}"
