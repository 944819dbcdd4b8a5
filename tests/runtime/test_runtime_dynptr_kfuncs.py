"""Dynptr kfuncs in user space (interpreter and JIT) and in the kernel: the same results.

tests/progs/dynptr_kfuncs.c builds xdp and skb dynptrs over the packet, slices them (read-only
and writable), narrows and clones them, and records every kfunc's return value; each program
is test-run on the same packets by both sides, and the results, the packets out, the map
values and the ring buffer records must agree.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

import pytest
from dynptr_maps import plain_value, records_of, results_of
from kernel_oracle import PACKETS, PROGS, loaded_in_kernel

import pybpf
from pybpf.errors import InvalidArgumentError, TestRunError
from pybpf.kernel.object import KernelObject
from pybpf.runtime.object import Object
from pybpf.runtime.program import ENGINES, Engine

OBJECT = PROGS / "dynptr_kfuncs.o"



def _run(obj: Object | KernelObject, program: str, packet: bytes, engine: Engine | None) -> tuple[int, bytes] | str:
    try:
        if isinstance(obj, Object):
            ours = obj.program(program).test_run(packet, engine=engine)
            return ours.retval, bytes(ours.data_out)
        theirs = obj.program(program).test_run(packet)
        return theirs.retval, bytes(theirs.data_out)
    except (InvalidArgumentError, TestRunError):
        return "refused"


@pytest.fixture
def kernel() -> Iterator[KernelObject]:
    yield from loaded_in_kernel(OBJECT)


@pytest.mark.parametrize("engine", ENGINES)
def test_xdp_dynptr_slices_adjust_and_clone(engine: Engine) -> None:
    packet = PACKETS[0]
    with pybpf.load(OBJECT) as user:
        result = user.program("xdp_dynptr").test_run(packet, engine=engine)
        results = results_of(user)
    einval = -22
    assert results[:4] == [0, einval, 1, len(packet)]
    assert results[4] == packet[12] << 8 | packet[13]
    assert result.data_out[0] == packet[0] ^ 0xFF  # through the writable slice
    assert results[5:8] == [0, 0, len(packet) - 14]
    assert results[8:10] == [0, struct.unpack_from("<Q", packet, 14)[0]]
    assert results[10:14] == [einval, 0, 0, 0]


@pytest.mark.kernel
@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("program", ["xdp_dynptr", "tc_dynptr", "local_dynptr", "ringbuf_clone"])
def test_same_results_as_the_kernel(kernel: KernelObject, program: str, engine: Engine) -> None:
    with pybpf.load(OBJECT) as user:
        for number, packet in enumerate(PACKETS):
            ours, theirs = _run(user, program, packet, engine), _run(kernel, program, packet, None)
            assert ours == theirs, f"packet {number}"
            assert results_of(user) == results_of(kernel), f"packet {number}"
        assert [plain_value(e.value) for e in user.map_entries("scratch")] == \
            [plain_value(e.value) for e in kernel.map_entries("scratch")]
        assert records_of(user) == records_of(kernel)
