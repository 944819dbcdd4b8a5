"""Kfuncs in user space: open-coded iterators, RCU/preemption sections and the string kfuncs of
tests/progs/kfunc_iter.c, run by the interpreter and the JIT, and compared with the kernel's
BPF_PROG_TEST_RUN of the same object (loaded through pybpf's kernel backend, which resolves the
kfuncs against the kernel's BTF)."""

from __future__ import annotations

import platform
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

import pybpf
from pybpf.errors import UnknownKfuncError
from pybpf.kernel import available
from pybpf.kernel.loader import load as kernel_load
from pybpf.obj import load_spec
from pybpf.runtime.object import Object

PROGS = Path(__file__).resolve().parents[1] / "progs"
OBJECT = PROGS / "kfunc_iter.o"
PROGRAMS = sorted(load_spec(OBJECT).programs)
# Packet lengths decide sum_to_len's loop bound.
INPUTS = [bytes(64), bytes(range(100)), bytes(14)]


@pytest.fixture(scope="module")
def ours() -> Iterator[Object]:
    with pybpf.load(OBJECT) as obj:
        yield obj


@pytest.mark.parametrize("name", PROGRAMS)
def test_interpreter_and_jit_agree(ours: Object, name: str) -> None:
    program = ours.program(name)
    for data in INPUTS:
        assert program.test_run(data, engine="interp").retval == program.test_run(data, engine="jit").retval


@pytest.mark.kernel
@pytest.mark.parametrize("name", PROGRAMS)
def test_results_match_the_kernel(ours: Object, name: str) -> None:
    ok, reason = available()
    if not ok:
        pytest.skip(f"bpf() unavailable: {reason}")
    with kernel_load(OBJECT) as kernel:
        for data in INPUTS:
            expected = kernel.programs[name].test_run(data).retval
            assert ours.program(name).test_run(data).retval == expected, data.hex()


def test_loops_fill_the_map_as_the_kernel_does(ours: Object) -> None:
    ok, reason = available()
    if not ok:
        pytest.skip(f"bpf() unavailable: {reason}")
    ours.program("fill_squares").test_run(bytes(64))
    with kernel_load(OBJECT) as kernel:
        kernel.programs["fill_squares"].test_run(bytes(64))
        for index in range(16):
            key = index.to_bytes(4, "little")
            assert ours.maps["squares"].lookup_raw(key) == kernel.maps["squares"].lookup_raw(key)


def test_a_program_calling_an_unknown_kfunc_does_not_load(tmp_path: Path) -> None:
    # The same bytes with a kfunc's name changed in the string tables: nothing resolves it.
    data = OBJECT.read_bytes().replace(b"bpf_strcasecmp\0", b"bpf_strcasecmq\0")
    with pytest.raises(UnknownKfuncError) as info:
        pybpf.load(data)
    assert info.value.symbol == "bpf_strcasecmq"


TASK_PROGRAM = r"""
#include "bpf_helpers.h"
extern struct task_struct *bpf_task_from_pid(int pid) __ksym;
extern void bpf_task_release(struct task_struct *p) __ksym;
char LICENSE[] SEC("license") = "GPL";
SEC("tc") int p(struct __sk_buff *s) {
    struct task_struct *t = bpf_task_from_pid(1);
    if (!t) return 7;
    bpf_task_release(t);
    return 0;
}
"""


def test_a_kfunc_returning_a_kernel_object_keeps_the_jits_bounds_checks(tmp_path: Path) -> None:
    clang = shutil.which("clang-19")
    if clang is None:
        pytest.skip("clang-19 is not installed")
    source = tmp_path / "task.c"
    source.write_text(TASK_PROGRAM)
    obj = tmp_path / "task.o"
    multiarch = f"-I/usr/include/{platform.machine()}-linux-gnu"
    subprocess.run([clang, "-g", "-O2", "-target", "bpf", f"-I{PROGS}", multiarch, "-c", str(source), "-o", str(obj)],
                   check=True, capture_output=True)
    with pybpf.load(obj) as loaded:
        program = loaded.program("p")
        assert program.jit_bounds_checks
        assert "bpf_task_from_pid returns a kernel object" in program.engine_reason
        # User space has no tasks to hand out: the lookup fails, as for a pid that does not exist.
        assert program.test_run(bytes(64)).retval == 7
