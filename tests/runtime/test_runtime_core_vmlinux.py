"""CO-RE against the running kernel's BTF: ``pybpf.load(obj, vmlinux_btf="/sys/kernel/btf/vmlinux")``.

core_read.o reads ``task->tgid``, ``task->real_parent`` and ``parent->tgid`` through a local
``struct task_struct`` marked preserve_access_index. The expected offsets come from bpftool's
raw dump of the same vmlinux BTF, parsed here (an oracle independent of pybpf.btf); the test
then checks the relocated instructions and what the program reads at run time.
"""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

import pybpf
from pybpf.btf import Struct
from pybpf.isa.insn import Bin, Imm
from pybpf.runtime.object import Object

PROGS = Path(__file__).resolve().parents[1] / "progs"
VMLINUX = Path("/sys/kernel/btf/vmlinux")
LOCAL_OFFSETS = {"tgid": 4, "real_parent": 8}  # core_read.c's own struct task_struct

pytestmark = pytest.mark.skipif(
    not VMLINUX.exists() or shutil.which("bpftool") is None, reason="needs /sys/kernel/btf/vmlinux and bpftool"
)


def bpftool_member_offsets(struct_name: str) -> dict[str, int]:
    """Byte offsets of ``struct_name``'s members from ``bpftool btf dump ... format raw``."""
    dump = subprocess.run(
        ["bpftool", "btf", "dump", "file", str(VMLINUX), "format", "raw"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    header = re.compile(rf"^\[\d+\] STRUCT '{struct_name}' size=\d+ vlen=(\d+)$", re.MULTILINE)
    found = header.search(dump)
    if found is None:
        pytest.fail(f"bpftool's dump has no struct {struct_name}")
    lines = dump[found.end() + 1 :].splitlines()[: int(found.group(1))]
    offsets: dict[str, int] = {}
    for line in lines:
        member = re.match(r"^\s+'([^']*)' type_id=\d+ bits_offset=(\d+)", line)
        if member is not None and member.group(1):
            offsets[member.group(1)] = int(member.group(2)) // 8
    return offsets


@pytest.fixture(scope="module")
def kernel_offsets() -> dict[str, int]:
    return bpftool_member_offsets("task_struct")


@pytest.fixture(scope="module")
def relocated() -> Iterator[Object]:
    with pybpf.load(PROGS / "core_read.o", vmlinux_btf=VMLINUX) as obj:
        yield obj


def relocated_fields(obj: Object) -> dict[str, int]:
    """Each CO-RE-relocated field of record_parent (named by the local BTF) -> the immediate it got."""
    program = obj.programs["record_parent"]
    btf = obj.spec.btf
    assert btf is not None
    insns = {item.pc: item.insn for item in program.interpreter.insns}
    fields: dict[str, int] = {}
    for record in program.spec.core_relocations:
        root = btf.resolved(record.type_id)
        assert isinstance(root, Struct) and root.name == "task_struct"
        member = root.members[int(record.access.split(":")[1])]
        insn = insns[record.pc]
        assert isinstance(insn, Bin) and isinstance(insn.src, Imm), f"pc {record.pc}: {insn!r}"
        fields[member.name] = insn.src.value
    return fields


def test_field_offsets_are_relocated_to_the_running_kernels(
    relocated: Object, kernel_offsets: dict[str, int]
) -> None:
    # core_read.c reads task->tgid and task->real_parent (clang reuses the tgid offset for parent->tgid).
    fields = relocated_fields(relocated)
    assert fields == {name: kernel_offsets[name] for name in ("tgid", "real_parent")}
    assert fields != LOCAL_OFFSETS


def test_without_vmlinux_the_objects_own_btf_is_the_target() -> None:
    with pybpf.load(PROGS / "core_read.o") as obj:
        assert relocated_fields(obj) == LOCAL_OFFSETS


def test_the_program_reads_the_fields_at_the_kernels_offsets(
    relocated: Object, kernel_offsets: dict[str, int]
) -> None:
    # Lay out the stand-in task_struct as the running kernel does: tgid, and real_parent
    # pointing back at the same task (a task that is its own parent, like init).
    task = relocated.services.task_struct
    tgid_at, parent_at = kernel_offsets["tgid"], kernel_offsets["real_parent"]
    if parent_at + 8 > task.size:
        pytest.fail(f"the task_struct stand-in ({task.size} bytes) is smaller than the kernel's layout")
    task.view[tgid_at : tgid_at + 4] = struct.pack("<I", 4242)
    task.view[parent_at : parent_at + 8] = struct.pack("<Q", task.address)
    # Decoys at the local offsets: a program left unrelocated would read these.
    task.view[4:8] = struct.pack("<I", 7)
    try:
        result = relocated.programs["record_parent"].test_run(ctx_in=bytes(168))
        assert result.retval == 0
        entries = {entry.key: entry.value for entry in relocated.map_entries("parent_of")}
        assert entries == {struct.pack("<I", 4242): struct.pack("<I", 4242)}
    finally:
        task.view[:] = bytes(task.size)
