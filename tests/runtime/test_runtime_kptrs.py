"""kptrs in map values at run time: interpreter, JIT and kernel agree, and maps own what they hold.

tests/progs/map_kptr.c moves cpumasks (created by syscall programs) and current's task (by a tc
program) into maps' referenced kptrs with bpf_kptr_xchg, reads them back inside an RCU section,
takes them out and releases them. The same sequence of test runs must give the same return
values, the same ``results`` and the same map contents as user space reads them (kptr slots
read as NULL) on every engine and in the kernel. The user-space object model must also free an
object exactly when its last reference goes: taken out and released by the program, or freed by
the map when the element is overwritten, deleted or the map destroyed.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

import pytest
from kernel_oracle import PROGS, loaded_in_kernel, possible_cpus

import pybpf
from pybpf.kernel.object import KernelObject
from pybpf.runtime.object import Object
from pybpf.runtime.program import ENGINES, Engine

OBJECT = PROGS / "map_kptr.o"
# (program, whether it is a syscall program: the kernel test-runs those with repeat 0 and no data)
SEQUENCE = (("stash", True), ("inspect", True), ("stash", True), ("take", True), ("inspect", True), ("take", True),
            ("keep_task", False), ("keep_task", False))

Outcome = tuple[list[int], list[int], list[bytes], list[tuple[bytes, bytes]]]


def _results(obj: Object | KernelObject) -> list[int]:
    return [struct.unpack("<q", bytes(entry.value))[0] for entry in obj.map_entries("results")]  # type: ignore[arg-type]


def _sequence(obj: Object | KernelObject, engine: Engine | None) -> Outcome:
    returns = []
    for name, syscall in SEQUENCE:
        program = obj.program(name)
        data = b"" if syscall else bytes(64)
        if isinstance(obj, Object):
            returns.append(obj.program(name).test_run(data, engine=engine).retval)
        else:
            returns.append(program.test_run(data, repeat=0 if syscall else 1).retval)
    masks = [bytes(entry.value) for entry in obj.map_entries("masks")]  # type: ignore[arg-type]
    hashed = [(bytes(entry.key), bytes(entry.value)) for entry in obj.map_entries("hashed")]  # type: ignore[arg-type]
    return returns, _results(obj), masks, hashed


@pytest.fixture
def kernel() -> Iterator[KernelObject]:
    yield from loaded_in_kernel(OBJECT)


@pytest.mark.parametrize("engine", ENGINES)
def test_masks_move_through_the_kptrs(engine: Engine) -> None:
    with pybpf.load(OBJECT, ncpus=possible_cpus()) as user:
        returns, results, masks, hashed = _sequence(user, engine)
    # stash: weight 2 (CPU 100000 ignored), first 0; the second stash replaced (and released)
    # the first mask; inspect cleared CPU 1; take found the second mask, then nothing.
    assert returns == [0, 1, 0, 2, 0, (-1) & 0xFFFFFFFF, 0, 1]
    assert results[:3] == [2, 0, 1]
    assert results[3:6] == [-1, -1, -1]  # the last inspect saw an empty slot
    assert masks == [bytes(32), bytes(32)]  # kptr slots read as NULL from user space
    assert hashed == [((7).to_bytes(4, "little"), (7).to_bytes(8, "little") + bytes(24))]


@pytest.mark.kernel
@pytest.mark.parametrize("engine", ENGINES)
def test_same_results_as_the_kernel(kernel: KernelObject, engine: Engine) -> None:
    with pybpf.load(OBJECT, ncpus=possible_cpus()) as user:
        assert _sequence(user, engine) == _sequence(kernel, None)


def _stash(user: Object) -> None:
    assert user.program("stash").test_run(b"").retval == 0


def test_an_object_lives_while_a_kptr_or_the_program_holds_it() -> None:
    with pybpf.load(OBJECT) as user:
        objects = user.services.objects
        _stash(user)
        assert objects.live("bpf_cpumask") == 1  # one mask, held by masks[0] and hashed[7]
        assert user.program("take").test_run(b"").retval == 2
        assert objects.live("bpf_cpumask") == 1  # still in hashed[7]
        user.maps["hashed"].delete_raw((7).to_bytes(4, "little"))
        assert objects.live("bpf_cpumask") == 0


def test_overwriting_an_element_frees_its_kptrs() -> None:
    with pybpf.load(OBJECT) as user:
        objects = user.services.objects
        _stash(user)
        user.maps["hashed"].delete_raw((7).to_bytes(4, "little"))
        assert objects.live("bpf_cpumask") == 1
        # An update from user space copies around the kptrs, then frees them (NULL afterwards).
        user.maps["masks"].update_raw((0).to_bytes(4, "little"), bytes(range(32)))
        assert objects.live("bpf_cpumask") == 0
        assert user.program("take").test_run(b"").retval == (-1) & 0xFFFFFFFF


def test_destroying_the_map_frees_its_kptrs() -> None:
    with pybpf.load(OBJECT) as user:
        objects = user.services.objects
        _stash(user)
        (address,) = objects.addresses("bpf_cpumask")
        assert objects.references(address) == 2
        user.maps["masks"].close()
        assert objects.references(address) == 1
        user.maps["hashed"].close()
        assert objects.live() == 0
