"""The compiled test objects: we accept every program the kernel accepts, and say where C is wrong.

``tests/progs/*.o`` are real clang output; each program must verify with our verifier, and where
bpf() works the whole object is also loaded into the kernel and the two verdicts compared. A
small buggy C program compiled here checks that a rejection names the offending C line.
"""

from __future__ import annotations

import platform
import shutil
import subprocess
from pathlib import Path

import pytest

from pybpf.errors import LoadError, PybpfError, VerifierRejectedError
from pybpf.kernel.probe import available
from pybpf.obj import load_spec
from pybpf.obj.spec import ObjectSpec
from pybpf.verifier import verify_program

PROGS = Path(__file__).parent.parent / "progs"
OBJECTS = sorted(PROGS.glob("*.o"))
_AVAILABLE, _REASON = available()
CLANG = shutil.which("clang-19")


def _spec(path: Path) -> ObjectSpec:
    return load_spec(path)


def _ours(spec: ObjectSpec) -> dict[str, bool]:
    return {name: verify_program(program, spec).accepted for name, program in spec.programs.items()}


@pytest.mark.parametrize("path", OBJECTS, ids=[path.name for path in OBJECTS])
def test_object_programs_verify(path: Path) -> None:
    spec = _spec(path)
    assert spec.programs
    for name, program in spec.programs.items():
        report = verify_program(program, spec)
        assert report.accepted, f"{name}: {report.summary()}"
        assert report.processed_insns >= 1
        # At most 10x the program's length for these loop-free or small-loop programs.
        assert report.processed_insns <= 10 * max(program.slot_count, 200)


@pytest.mark.kernel
@pytest.mark.skipif(not _AVAILABLE, reason=_REASON or "bpf() unavailable")
@pytest.mark.parametrize("path", OBJECTS, ids=[path.name for path in OBJECTS])
def test_object_verdict_agrees_with_kernel(path: Path) -> None:
    from pybpf.kernel.loader import load

    spec = _spec(path)
    try:
        with load(path):
            kernel_accepts = True
    except VerifierRejectedError:
        kernel_accepts = False
    except LoadError as error:
        if "verifier" not in str(error).lower():
            pytest.skip(f"the kernel loader could not instantiate the object: {error}")
        kernel_accepts = False
    except PybpfError as error:
        pytest.skip(f"the kernel loader could not instantiate the object: {error}")
    assert all(_ours(spec).values()) == kernel_accepts


# A hash map: a lookup in an array with a constant in-range key cannot fail, and the kernel
# (6.14+) then needs no NULL check, as we don't.
BUGGY_C = r"""
#include "bpf_helpers.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} counts SEC(".maps");

SEC("xdp")
int count_packets(struct xdp_md *ctx)
{
	__u32 key = 0;
	__u64 *value = bpf_map_lookup_elem(&counts, &key);
	*value += 1; /* forgot the NULL check */
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
"""


@pytest.mark.clang
@pytest.mark.skipif(CLANG is None, reason="clang-19 is not installed")
def test_rejection_names_the_c_line(tmp_path: Path) -> None:
    source = tmp_path / "buggy.c"
    source.write_text(BUGGY_C)
    obj = tmp_path / "buggy.o"
    # Debian keeps <asm/types.h> under the multiarch include directory.
    multiarch = f"-I/usr/include/{platform.machine()}-linux-gnu"
    assert CLANG is not None  # the skipif above
    subprocess.run([CLANG, "-g", "-O2", "-target", "bpf", f"-I{PROGS}", multiarch, "-c", str(source), "-o", str(obj)],
                   check=True, capture_output=True)
    spec = load_spec(obj)
    report = verify_program(spec.programs["count_packets"], spec)
    assert not report.accepted
    error = report.error
    assert error is not None
    assert error.reason == "R0 invalid mem access 'map_value_or_null'"
    assert error.source is not None and "*value += 1" in error.source
    assert error.insn is not None and "r0" in error.insn
