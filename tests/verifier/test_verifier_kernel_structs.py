"""Kernel structs read through BTF-typed pointers: a map's struct bpf_map behind its pointer.

tests/progs/map_ptr.c reads an array map's struct bpf_array and a hash map's struct bpf_map
through CO-RE, as the kernel's map_ptr selftests do. In user space the relocations resolve
against pybpf's modelled layout (pybpf.platform.kernel_types) and the map pointer holds the
address of a read-only image of that struct; in the kernel against vmlinux. Both must accept the
program, and a run must read the maps' real attributes, the same ones the kernel's run reads.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import pybpf
from pybpf.errors import ProgramRejectedError
from pybpf.obj import load_spec
from pybpf.platform import BpfMapType
from pybpf.platform.kernel_types import map_image, map_struct
from pybpf.runtime.program import Engine

from .c_objects import KERNEL_AVAILABLE, KERNEL_REASON, PROGS, compile_c, kernel_verdict

MAP_PTR = PROGS / "map_ptr.o"
PACKET = bytes(64)
FIELD_COUNT = 8


def _expected() -> list[int]:
    """What map_ptr.c must record: the attributes its two maps were created with."""
    spec = load_spec(MAP_PTR)
    array, table = spec.maps["m_array"], spec.maps["m_hash"]
    index_mask = (1 << (array.max_entries - 1).bit_length()) - 1
    return [array.max_entries, array.key_size, array.value_size, int(BpfMapType.ARRAY),
            (array.value_size + 7) // 8 * 8, index_mask, table.max_entries, int(BpfMapType.HASH)]


def _run(engine: Engine) -> list[int]:
    with pybpf.load(MAP_PTR) as obj:
        obj.programs["map_fields"].test_run(PACKET, engine=engine)
        fields = obj.maps["fields"]
        return [int(fields.lookup(index)) for index in range(FIELD_COUNT)]


def _kernel_run() -> list[int]:
    with pybpf.load(MAP_PTR, backend="kernel") as obj:
        obj.programs["map_fields"].test_run(PACKET)
        fields = obj.maps["fields"]
        return [int(fields.lookup(index)) for index in range(FIELD_COUNT)]


@pytest.mark.parametrize("engine", ["interp", "jit"])
def test_a_run_reads_the_maps_attributes(engine: Engine) -> None:
    assert _run(engine) == _expected()


@pytest.mark.kernel
@pytest.mark.skipif(not KERNEL_AVAILABLE, reason=KERNEL_REASON or "bpf() unavailable")
def test_the_kernel_reads_the_same_attributes() -> None:
    accepted, log = kernel_verdict(MAP_PTR)
    assert accepted, log
    assert _kernel_run() == _run("interp") == _expected()


def test_the_image_is_the_modelled_struct() -> None:
    image = map_image(BpfMapType.ARRAY, key_size=4, value_size=8, max_entries=7, name="m_array")
    struct = map_struct(BpfMapType.ARRAY)
    assert len(image) == struct.size
    inner = struct.member("map")
    assert inner is not None
    at = map_struct(BpfMapType.HASH).member("max_entries")
    assert at is not None
    assert int.from_bytes(image[inner.offset + at.offset : inner.offset + at.offset + 4], "little") == 7


_WRITE = r"""
#include "bpf_helpers.h"
struct bpf_map { __u32 max_entries; } __attribute__((preserve_access_index));
struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(max_entries, 4); __type(key, __u32); __type(value, __u32); }
    m SEC(".maps");
SEC("socket") int prog(struct __sk_buff *skb) { ((struct bpf_map *)&m)->max_entries = 1; return 0; }
char LICENSE[] SEC("license") = "GPL";
"""


def test_writing_the_map_struct_is_refused_as_by_the_kernel(tmp_path: Path) -> None:
    obj = compile_c(tmp_path, "map_write", _WRITE)
    with pytest.raises(ProgramRejectedError, match="only read from bpf_map is supported"):
        pybpf.load(obj)
    if KERNEL_AVAILABLE:
        accepted, log = kernel_verdict(obj)
        assert not accepted
        assert "only read from bpf_htab is supported" in log  # the kernel's hash map struct
