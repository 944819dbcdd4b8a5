"""``struct perf_event_attr``, the perf ioctl numbers and the attach attrs have the uapi layout.

The expected numbers are derived by hand from include/uapi/linux/perf_event.h and bpf.h; a
second test compiles ``offsetof``/``sizeof``/the ioctl macros against the host's headers with
gcc and compares, and a third sets each named bitfield in C and checks the bit we assign it.
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from pybpf.kernel import attrs
from pybpf.kernel.perf_event import (
    PERF_ATTR_SIZE_VER7,
    PerfEventAttr,
    PerfEventAttrFlag,
    PerfEventIoc,
    PerfFlag,
    PerfType,
)
from pybpf.kernel.trace_attach import RawTracepointOpenAttr

# (python field, offset, size): every field of the header up to sig_data, union members too.
PERF_FIELDS: list[tuple[str, int, int]] = [
    ("type", 0, 4),
    ("size", 4, 4),
    ("config", 8, 8),
    ("sample_period", 16, 8),
    ("sample_freq", 16, 8),
    ("sample_type", 24, 8),
    ("read_format", 32, 8),
    # 40: the 64-bit bitfield word (no offsetof in C: checked bit by bit below)
    ("wakeup_events", 48, 4),
    ("wakeup_watermark", 48, 4),
    ("bp_type", 52, 4),
    ("bp_addr", 56, 8),
    ("kprobe_func", 56, 8),
    ("uprobe_path", 56, 8),
    ("config1", 56, 8),
    ("bp_len", 64, 8),
    ("kprobe_addr", 64, 8),
    ("probe_offset", 64, 8),
    ("config2", 64, 8),
    ("branch_sample_type", 72, 8),
    ("sample_regs_user", 80, 8),
    ("sample_stack_user", 88, 4),
    ("clockid", 92, 4),
    ("sample_regs_intr", 96, 8),
    ("aux_watermark", 104, 4),
    ("sample_max_stack", 108, 2),
    ("aux_sample_size", 112, 4),
    ("sig_data", 120, 8),
]


def _offset_and_size(structure: type[ctypes.Structure], name: str) -> tuple[int, int]:
    """Offset and size of ``name``, looking through anonymous unions."""
    direct = getattr(structure, name)
    fields: dict[str, Any] = {entry[0]: entry[1] for entry in structure._fields_}
    for anonymous in getattr(structure, "_anonymous_", ()):
        outer = getattr(structure, anonymous)
        member_type = fields[anonymous]
        if name in {entry[0] for entry in member_type._fields_}:
            inner = getattr(member_type, name)
            return outer.offset + inner.offset, inner.size
    return direct.offset, direct.size


@pytest.mark.parametrize(("name", "offset", "size"), PERF_FIELDS, ids=[f[0] for f in PERF_FIELDS])
def test_perf_event_attr_field_by_hand(name: str, offset: int, size: int) -> None:
    assert _offset_and_size(PerfEventAttr, name) == (offset, size)


def test_perf_event_attr_size_is_ver7() -> None:
    assert ctypes.sizeof(PerfEventAttr) == PERF_ATTR_SIZE_VER7 == 128
    assert _offset_and_size(PerfEventAttr, "flags") == (40, 8)


def test_raw_tracepoint_open_attr_layout() -> None:
    assert _offset_and_size(RawTracepointOpenAttr, "name") == (0, 8)
    assert _offset_and_size(RawTracepointOpenAttr, "prog_fd") == (8, 4)
    assert _offset_and_size(RawTracepointOpenAttr, "cookie") == (16, 8)  # 6.10+, not in a 6.1 header
    assert ctypes.sizeof(RawTracepointOpenAttr) == 24


def test_link_create_perf_event_and_cgroup_fields() -> None:
    assert _offset_and_size(attrs.LinkCreateAttr, "target_fd") == (4, 4)
    perf = attrs.LinkCreateAttr.perf_event
    assert (perf.offset, perf.size) == (16, 8)


def test_perf_constants_by_hand() -> None:
    # _IO('$', 0), _IO('$', 1), _IOW('$', 8, __u32) in the asm-generic encoding.
    assert int(PerfEventIoc.PERF_EVENT_IOC_ENABLE) == 0x2400
    assert int(PerfEventIoc.PERF_EVENT_IOC_DISABLE) == 0x2401
    assert int(PerfEventIoc.PERF_EVENT_IOC_SET_BPF) == 0x40042408
    assert int(PerfFlag.PERF_FLAG_FD_CLOEXEC) == 8
    assert int(PerfType.PERF_TYPE_TRACEPOINT) == 2


HEADER = Path("/usr/include/linux/perf_event.h")
BPF_HEADER = Path("/usr/include/linux/bpf.h")
needs_gcc = pytest.mark.skipif(
    shutil.which("gcc") is None or not HEADER.exists() or not BPF_HEADER.exists(),
    reason="needs gcc and the uapi headers <linux/perf_event.h>, <linux/bpf.h>",
)

_FLAG_BITS = [flag.name for flag in PerfEventAttrFlag if flag.name is not None]


def _compile_and_run(tmp_path: Path, body: str) -> dict[str, int]:
    source = tmp_path / "layout.c"
    source.write_text(
        "#include <stddef.h>\n#include <stdio.h>\n#include <string.h>\n"
        "#include <linux/perf_event.h>\n#include <linux/bpf.h>\n"
        "int main(void) {\n" + body + "return 0;\n}\n"
    )
    binary = tmp_path / "layout"
    subprocess.run(["gcc", "-o", str(binary), str(source)], check=True, capture_output=True)
    output = subprocess.run([str(binary)], check=True, capture_output=True, text=True).stdout
    return {key: int(value, 0) for key, value in (line.split() for line in output.splitlines())}


@needs_gcc
def test_layout_matches_the_host_header(tmp_path: Path) -> None:
    lines = []
    for name, _, _ in PERF_FIELDS:
        lines.append(f'printf("off.{name} %zu\\n", offsetof(struct perf_event_attr, {name}));')
        lines.append(f'printf("size.{name} %zu\\n", sizeof(((struct perf_event_attr *)0)->{name}));')
    lines.append('printf("sizeof %zu\\n", sizeof(struct perf_event_attr));')
    lines.append('printf("ver7 %d\\n", PERF_ATTR_SIZE_VER7);')
    for request in PerfEventIoc:
        lines.append(f'printf("ioc.{request.name} %lu\\n", (unsigned long){request.name});')
    for flag in PerfFlag:
        lines.append(f'printf("flag.{flag.name} %lu\\n", (unsigned long){flag.name});')
    for perf_type in PerfType:
        lines.append(f'printf("type.{perf_type.name} %d\\n", (int){perf_type.name});')
    for name in ("name", "prog_fd"):
        lines.append(f'printf("rawtp.{name} %zu\\n", offsetof(union bpf_attr, raw_tracepoint.{name}));')
    lines.append('printf("link.bpf_cookie %zu\\n", offsetof(union bpf_attr, link_create.perf_event.bpf_cookie));')
    lines.append('printf("link.target_fd %zu\\n", offsetof(union bpf_attr, link_create.target_fd));')
    lines.append('printf("attach.BPF_PERF_EVENT %d\\n", (int)BPF_PERF_EVENT);')
    facts = _compile_and_run(tmp_path, "\n".join(lines) + "\n")
    for name, _, _ in PERF_FIELDS:
        assert _offset_and_size(PerfEventAttr, name) == (facts[f"off.{name}"], facts[f"size.{name}"]), name
    assert ctypes.sizeof(PerfEventAttr) == facts["sizeof"] == facts["ver7"]
    for request in PerfEventIoc:
        assert int(request) == facts[f"ioc.{request.name}"]
    for flag in PerfFlag:
        assert int(flag) == facts[f"flag.{flag.name}"]
    for perf_type in PerfType:
        assert int(perf_type) == facts[f"type.{perf_type.name}"]
    assert _offset_and_size(RawTracepointOpenAttr, "name")[0] == facts["rawtp.name"]
    assert _offset_and_size(RawTracepointOpenAttr, "prog_fd")[0] == facts["rawtp.prog_fd"]
    assert attrs.LinkCreateAttr.perf_event.offset == facts["link.bpf_cookie"]
    assert _offset_and_size(attrs.LinkCreateAttr, "target_fd")[0] == facts["link.target_fd"]
    from pybpf.kernel.uapi import BpfAttachType

    assert facts["attach.BPF_PERF_EVENT"] == BpfAttachType.PERF_EVENT


@needs_gcc
def test_flag_bits_match_the_header_bitfields(tmp_path: Path) -> None:
    # Set one named bitfield at a time and read back the 64-bit word at offset 40.
    lines = ["struct perf_event_attr attr; unsigned long long word;"]
    lines.append('printf("word_offset %zu\\n", offsetof(struct perf_event_attr, read_format) + 8);')
    for name in _FLAG_BITS:
        lines.append(f"memset(&attr, 0, sizeof attr); attr.{name} = 1;")
        lines.append("memcpy(&word, (char *)&attr + 40, 8);")
        lines.append(f'printf("{name} %llu\\n", word);')
    facts = _compile_and_run(tmp_path, "\n".join(lines) + "\n")
    assert facts["word_offset"] == 40
    for name in _FLAG_BITS:
        assert int(PerfEventAttrFlag[name]) == facts[name], name
