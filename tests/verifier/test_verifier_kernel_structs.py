"""Kernel structs read through BTF-typed pointers: a map's struct bpf_map behind its pointer,
the vm_area_struct bpf_find_vma hands its callback.

tests/progs/map_ptr.c reads an array map's struct bpf_array and a hash map's struct bpf_map
through CO-RE, as the kernel's map_ptr selftests do. In user space the relocations resolve
against pybpf's modelled layout (pybpf.platform.kernel_types) and the map pointer holds the
address of a read-only image of that struct; in the kernel against vmlinux. Both must accept the
program, and a run must read the maps' real attributes, the same ones the kernel's run reads.
tests/progs/find_vma.c looks up addresses of this process (a raw_tp test run's current task is
the test itself in both): the area found, or -ENOENT, must be the kernel's.
"""

from __future__ import annotations

import ctypes
import mmap
import re
from pathlib import Path
from typing import Any

import pytest

import pybpf
from pybpf.errors import ProgramRejectedError, VerifierError
from pybpf.obj import load_spec
from pybpf.platform import BpfMapType
from pybpf.platform.kernel_types import KernelMember, KernelStruct, MemberKind, map_image, map_struct
from pybpf.runtime.helpers.vma import VM_EXEC, VM_READ, VM_SHARED, VM_WRITE, find_vma_of
from pybpf.runtime.program import Engine
from pybpf.verifier.btf_access import FieldRead, struct_walk

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


# -- bpf_find_vma ---------------------------------------------------------------------------------

FIND_VMA = PROGS / "find_vma.o"
ENOENT = -2
_PERMISSIONS = VM_READ | VM_WRITE | VM_EXEC | VM_SHARED


def _addresses() -> dict[str, int]:
    """Addresses of this process: in a file-backed text area (libc's printf) and in an anonymous area."""
    printf = ctypes.cast(ctypes.CDLL(None).printf, ctypes.c_void_p).value
    assert printf is not None
    return {"libc text": printf, "anonymous": _FENCED_PAGE, "unmapped": 8}


def _fenced_anonymous_page() -> int:
    """An anonymous read-write page between two PROT_NONE pages of its own.

    The heap's areas grow and merge with their neighbours whenever this process allocates, so their
    bounds can move between our read of /proc/self/maps and the kernel's run. The fences have other
    flags than the page, so the page's area stays exactly one page.
    """
    page = mmap.PAGESIZE
    area = mmap.mmap(-1, 3 * page)
    _KEEP_MAPPED.append(area)
    start = ctypes.addressof(ctypes.c_char.from_buffer(area))
    mprotect = ctypes.CDLL(None, use_errno=True).mprotect
    mprotect.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    for fence in (start, start + 2 * page):
        if mprotect(fence, page, _PROT_NONE) != 0:
            raise OSError(ctypes.get_errno(), "mprotect failed")
    return start + page


_PROT_NONE = 0  # <sys/mman.h>; the mmap module has PROT_READ and PROT_WRITE only
_KEEP_MAPPED: list[mmap.mmap] = []
_FENCED_PAGE = _fenced_anonymous_page()


def _vma_row(found: dict[str, Any]) -> tuple[int, ...]:
    area = found["area"]
    return (found["ret"], area["calls"], area["start"], area["end"], area["flags"] & _PERMISSIONS, area["pgoff"])


def _find_vma_user(address: int, engine: Engine) -> tuple[int, ...]:
    with pybpf.load(FIND_VMA) as obj:
        table = obj.maps["vmas"]
        table.update(0, {"addr": address})
        obj.programs["find_vma_of"].test_run(engine=engine)
        return _vma_row(table.lookup(0))


def _find_vma_kernel(address: int) -> tuple[int, ...]:
    with pybpf.load(FIND_VMA, backend="kernel") as obj:
        table = obj.maps["vmas"]
        table.update(0, {"addr": address})
        obj.programs["find_vma_of"].test_run(repeat=0)  # a raw_tp test run takes no repeat count
        return _vma_row(table.lookup(0))


@pytest.mark.parametrize("engine", ["interp", "jit"])
def test_find_vma_finds_the_area_of_an_address_of_this_process(engine: Engine) -> None:
    for where, address in _addresses().items():
        ret, calls, start, end, flags, pgoff = _find_vma_user(address, engine)
        if where == "unmapped":
            assert (ret, calls) == (ENOENT, 0)
            continue
        area = find_vma_of(address)
        assert area is not None
        assert (ret, calls) == (0, 1), where
        assert start <= address < end, where
        assert (start, end, flags, pgoff) == (area.start, area.end, area.flags, area.pgoff), where
        if where == "libc text":
            assert flags & VM_EXEC


@pytest.mark.kernel
@pytest.mark.skipif(not KERNEL_AVAILABLE, reason=KERNEL_REASON or "bpf() unavailable")
def test_find_vma_agrees_with_the_kernel() -> None:
    accepted, log = kernel_verdict(FIND_VMA)
    assert accepted, log
    for where, address in _addresses().items():
        assert _find_vma_user(address, "interp") == _find_vma_kernel(address), where


_FIND_VMA_C = r"""
#include "bpf_helpers.h"
struct task_struct;
struct vm_area_struct { unsigned long vm_start; } __attribute__((preserve_access_index));
static struct task_struct *(*bpf_get_current_task_btf)(void) = (void *)BPF_FUNC_get_current_task_btf;
static long (*bpf_find_vma)(struct task_struct *task, __u64 addr, void *callback_fn, void *callback_ctx,
                            __u64 flags) = (void *)BPF_FUNC_find_vma;
static long callback(struct task_struct *task, struct vm_area_struct *vma, void *data) { BODY; return 0; }
SEC("raw_tp/sys_enter") int prog(void *ctx) { __u64 data = 0; return bpf_find_vma(TASK, 4096, callback, &data, 0); }
char LICENSE[] SEC("license") = "GPL";
"""


@pytest.mark.parametrize(
    ("name", "task", "body", "reason"),
    [
        ("vma-write", "bpf_get_current_task_btf()", "vma->vm_start = 0", "only read is supported"),
        ("vma-beyond", "bpf_get_current_task_btf()", "*(__u64 *)data = ((__u64 *)vma)[4096]",
         "access beyond struct vm_area_struct"),
        ("null-task", "(void *)0", "", "R1 type=scalar expected=ptr_, trusted_ptr_, rcu_ptr_"),
        ("scalar-task", "(void *)bpf_get_current_task()", "", "R1 type=scalar expected=ptr_, trusted_ptr_, rcu_ptr_"),
    ],
)
def test_find_vma_rejections_match_the_kernel(tmp_path: Path, name: str, task: str, body: str, reason: str) -> None:
    obj = compile_c(tmp_path, name.replace("-", "_"), _FIND_VMA_C.replace("TASK", task).replace("BODY", body))
    with pytest.raises(ProgramRejectedError, match=re.escape(reason)):
        pybpf.load(obj)
    if KERNEL_AVAILABLE:
        accepted, log = kernel_verdict(obj)
        assert not accepted
        assert reason in log


# -- the layout check itself (btf_struct_walk's rules) --------------------------------------------

_WITH_POINTER = KernelStruct("holder", 16, (
    KernelMember("vma", 0, 8, MemberKind.POINTER, target="vm_area_struct"),
    KernelMember("count", 8, 4),
))


@pytest.mark.parametrize(
    ("struct", "off", "size", "expected"),
    [
        (map_struct(BpfMapType.ARRAY), 12, 4, FieldRead()),  # map.max_entries, through the nested struct
        (map_struct(BpfMapType.ARRAY), 30, 2, FieldRead()),  # inside map.name (an array of char)
        (map_struct(BpfMapType.ARRAY), 48, 4, FieldRead()),  # elem_size
        (map_struct(BpfMapType.ARRAY), 40, 8,
         "access beyond the end of member name (mend:44) in struct bpf_map with off 40 size 8"),
        (map_struct(BpfMapType.HASH), 44, 4, "struct bpf_map doesn't have field at offset 44"),
        (map_struct(BpfMapType.HASH), 46, 4, "access beyond struct bpf_map at off 46 size 4"),
        (_WITH_POINTER, 0, 8, FieldRead(pointer_to="vm_area_struct")),
        (_WITH_POINTER, 0, 4, "cannot access ptr member vma with moff 0 in struct holder with off 0 size 4"),
        (_WITH_POINTER, 12, 4, "struct holder doesn't have field at offset 12"),
    ],
)
def test_struct_walk(struct: KernelStruct, off: int, size: int, expected: FieldRead | str) -> None:
    if isinstance(expected, FieldRead):
        assert struct_walk(struct, off, size) == expected
        return
    with pytest.raises(VerifierError, match=re.escape(expected)):
        struct_walk(struct, off, size)
