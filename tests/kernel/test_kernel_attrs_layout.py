"""The ctypes bpf_attr variants and info structs have the uapi layout, byte for byte.

Every expected offset below is derived by hand from include/uapi/linux/bpf.h: fields are
__u32 (4 bytes) or __u64/__aligned_u64 (8 bytes, 8-aligned), names are char[16], and each
struct is padded to a multiple of 8. Where a C compiler and the host's <linux/bpf.h> exist,
a second test compiles offsetof() for the same fields and compares (fields newer than the
host header have no C expression there and are checked against the hand numbers only).
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from pybpf.kernel import attrs

# (structure, dotted python field, C member expression or None if newer than 6.1, offset)
FIELDS: list[tuple[type[ctypes.Structure], str, str | None, int]] = [
    # BPF_MAP_CREATE: seven u32, a 16-byte name at 28, five u32 from 44, then u64 at 64.
    (attrs.MapCreateAttr, "map_type", "map_type", 0),
    (attrs.MapCreateAttr, "key_size", "key_size", 4),
    (attrs.MapCreateAttr, "value_size", "value_size", 8),
    (attrs.MapCreateAttr, "max_entries", "max_entries", 12),
    (attrs.MapCreateAttr, "map_flags", "map_flags", 16),
    (attrs.MapCreateAttr, "inner_map_fd", "inner_map_fd", 20),
    (attrs.MapCreateAttr, "numa_node", "numa_node", 24),
    (attrs.MapCreateAttr, "map_name", "map_name", 28),
    (attrs.MapCreateAttr, "map_ifindex", "map_ifindex", 44),
    (attrs.MapCreateAttr, "btf_fd", "btf_fd", 48),
    (attrs.MapCreateAttr, "btf_key_type_id", "btf_key_type_id", 52),
    (attrs.MapCreateAttr, "btf_value_type_id", "btf_value_type_id", 56),
    (attrs.MapCreateAttr, "btf_vmlinux_value_type_id", "btf_vmlinux_value_type_id", 60),
    (attrs.MapCreateAttr, "map_extra", "map_extra", 64),
    (attrs.MapCreateAttr, "value_type_btf_obj_fd", None, 72),
    (attrs.MapCreateAttr, "map_token_fd", None, 76),
    # BPF_MAP_*_ELEM: u32 map_fd, then aligned u64 key at 8, value/next_key union, flags.
    (attrs.MapElemAttr, "map_fd", "map_fd", 0),
    (attrs.MapElemAttr, "key", "key", 8),
    (attrs.MapElemAttr, "value", "value", 16),
    (attrs.MapElemAttr, "next_key", "next_key", 16),
    (attrs.MapElemAttr, "flags", "flags", 24),
    # batch: four u64, two u32, two u64.
    (attrs.MapBatchAttr, "in_batch", "batch.in_batch", 0),
    (attrs.MapBatchAttr, "out_batch", "batch.out_batch", 8),
    (attrs.MapBatchAttr, "keys", "batch.keys", 16),
    (attrs.MapBatchAttr, "values", "batch.values", 24),
    (attrs.MapBatchAttr, "count", "batch.count", 32),
    (attrs.MapBatchAttr, "map_fd", "batch.map_fd", 36),
    (attrs.MapBatchAttr, "elem_flags", "batch.elem_flags", 40),
    (attrs.MapBatchAttr, "flags", "batch.flags", 48),
    # BPF_PROG_LOAD.
    (attrs.ProgLoadAttr, "prog_type", "prog_type", 0),
    (attrs.ProgLoadAttr, "insn_cnt", "insn_cnt", 4),
    (attrs.ProgLoadAttr, "insns", "insns", 8),
    (attrs.ProgLoadAttr, "license", "license", 16),
    (attrs.ProgLoadAttr, "log_level", "log_level", 24),
    (attrs.ProgLoadAttr, "log_size", "log_size", 28),
    (attrs.ProgLoadAttr, "log_buf", "log_buf", 32),
    (attrs.ProgLoadAttr, "kern_version", "kern_version", 40),
    (attrs.ProgLoadAttr, "prog_flags", "prog_flags", 44),
    (attrs.ProgLoadAttr, "prog_name", "prog_name", 48),
    (attrs.ProgLoadAttr, "prog_ifindex", "prog_ifindex", 64),
    (attrs.ProgLoadAttr, "expected_attach_type", "expected_attach_type", 68),
    (attrs.ProgLoadAttr, "prog_btf_fd", "prog_btf_fd", 72),
    (attrs.ProgLoadAttr, "func_info_rec_size", "func_info_rec_size", 76),
    (attrs.ProgLoadAttr, "func_info", "func_info", 80),
    (attrs.ProgLoadAttr, "func_info_cnt", "func_info_cnt", 88),
    (attrs.ProgLoadAttr, "line_info_rec_size", "line_info_rec_size", 92),
    (attrs.ProgLoadAttr, "line_info", "line_info", 96),
    (attrs.ProgLoadAttr, "line_info_cnt", "line_info_cnt", 104),
    (attrs.ProgLoadAttr, "attach_btf_id", "attach_btf_id", 108),
    (attrs.ProgLoadAttr, "attach_prog_fd", "attach_prog_fd", 112),
    (attrs.ProgLoadAttr, "attach_btf_obj_fd", "attach_btf_obj_fd", 112),
    (attrs.ProgLoadAttr, "core_relo_cnt", "core_relo_cnt", 116),
    (attrs.ProgLoadAttr, "fd_array", "fd_array", 120),
    (attrs.ProgLoadAttr, "core_relos", "core_relos", 128),
    (attrs.ProgLoadAttr, "core_relo_rec_size", "core_relo_rec_size", 136),
    (attrs.ProgLoadAttr, "log_true_size", None, 140),
    (attrs.ProgLoadAttr, "prog_token_fd", None, 144),
    (attrs.ProgLoadAttr, "fd_array_cnt", None, 148),
    # BPF_OBJ_*.
    (attrs.ObjAttr, "pathname", "pathname", 0),
    (attrs.ObjAttr, "bpf_fd", "bpf_fd", 8),
    (attrs.ObjAttr, "file_flags", "file_flags", 12),
    (attrs.ObjAttr, "path_fd", None, 16),
    # BPF_PROG_TEST_RUN.
    (attrs.TestRunAttr, "prog_fd", "test.prog_fd", 0),
    (attrs.TestRunAttr, "retval", "test.retval", 4),
    (attrs.TestRunAttr, "data_size_in", "test.data_size_in", 8),
    (attrs.TestRunAttr, "data_size_out", "test.data_size_out", 12),
    (attrs.TestRunAttr, "data_in", "test.data_in", 16),
    (attrs.TestRunAttr, "data_out", "test.data_out", 24),
    (attrs.TestRunAttr, "repeat", "test.repeat", 32),
    (attrs.TestRunAttr, "duration", "test.duration", 36),
    (attrs.TestRunAttr, "ctx_size_in", "test.ctx_size_in", 40),
    (attrs.TestRunAttr, "ctx_size_out", "test.ctx_size_out", 44),
    (attrs.TestRunAttr, "ctx_in", "test.ctx_in", 48),
    (attrs.TestRunAttr, "ctx_out", "test.ctx_out", 56),
    (attrs.TestRunAttr, "flags", "test.flags", 64),
    (attrs.TestRunAttr, "cpu", "test.cpu", 68),
    (attrs.TestRunAttr, "batch_size", "test.batch_size", 72),
    # BPF_*_GET_*_ID.
    (attrs.GetIdAttr, "start_id", "start_id", 0),
    (attrs.GetIdAttr, "prog_id", "prog_id", 0),
    (attrs.GetIdAttr, "map_id", "map_id", 0),
    (attrs.GetIdAttr, "next_id", "next_id", 4),
    (attrs.GetIdAttr, "open_flags", "open_flags", 8),
    # BPF_OBJ_GET_INFO_BY_FD.
    (attrs.InfoAttr, "bpf_fd", "info.bpf_fd", 0),
    (attrs.InfoAttr, "info_len", "info.info_len", 4),
    (attrs.InfoAttr, "info", "info.info", 8),
    # BPF_BTF_LOAD.
    (attrs.BtfLoadAttr, "btf", "btf", 0),
    (attrs.BtfLoadAttr, "btf_log_buf", "btf_log_buf", 8),
    (attrs.BtfLoadAttr, "btf_size", "btf_size", 16),
    (attrs.BtfLoadAttr, "btf_log_size", "btf_log_size", 20),
    (attrs.BtfLoadAttr, "btf_log_level", "btf_log_level", 24),
    (attrs.BtfLoadAttr, "btf_log_true_size", None, 28),
    (attrs.BtfLoadAttr, "btf_flags", None, 32),
    (attrs.BtfLoadAttr, "btf_token_fd", None, 36),
    # BPF_LINK_CREATE: four u32, then the per-kind union at 16.
    (attrs.LinkCreateAttr, "prog_fd", "link_create.prog_fd", 0),
    (attrs.LinkCreateAttr, "target_fd", "link_create.target_fd", 4),
    (attrs.LinkCreateAttr, "attach_type", "link_create.attach_type", 8),
    (attrs.LinkCreateAttr, "flags", "link_create.flags", 12),
    (attrs.LinkCreateAttr, "target_btf_id", "link_create.target_btf_id", 16),
    (attrs.LinkCreateAttr, "iter.iter_info", "link_create.iter_info", 16),
    (attrs.LinkCreateAttr, "iter.iter_info_len", "link_create.iter_info_len", 24),
    (attrs.LinkCreateAttr, "perf_event.bpf_cookie", "link_create.perf_event.bpf_cookie", 16),
    (attrs.LinkCreateAttr, "kprobe_multi.flags", "link_create.kprobe_multi.flags", 16),
    (attrs.LinkCreateAttr, "kprobe_multi.cnt", "link_create.kprobe_multi.cnt", 20),
    (attrs.LinkCreateAttr, "kprobe_multi.syms", "link_create.kprobe_multi.syms", 24),
    (attrs.LinkCreateAttr, "kprobe_multi.addrs", "link_create.kprobe_multi.addrs", 32),
    (attrs.LinkCreateAttr, "kprobe_multi.cookies", "link_create.kprobe_multi.cookies", 40),
    (attrs.LinkCreateAttr, "tracing.target_btf_id", "link_create.tracing.target_btf_id", 16),
    (attrs.LinkCreateAttr, "tracing.cookie", "link_create.tracing.cookie", 24),
    (attrs.LinkCreateAttr, "uprobe_multi.path", None, 16),
    (attrs.LinkCreateAttr, "uprobe_multi.cookies", None, 40),
    (attrs.LinkCreateAttr, "uprobe_multi.cnt", None, 48),
    (attrs.LinkCreateAttr, "uprobe_multi.pid", None, 56),
    (attrs.LinkCreateAttr, "tcx.relative_fd", None, 16),
    (attrs.LinkCreateAttr, "tcx.expected_revision", None, 24),
    (attrs.LinkDetachAttr, "link_fd", "link_detach.link_fd", 0),
    (attrs.EnableStatsAttr, "type", "enable_stats.type", 0),
    # struct bpf_prog_info: tag[8] at 8, a run of u64 pointers, name at 64, the gpl bitfield
    # shares a u32 at 84 and the rest follows 8-aligned.
    (attrs.BpfProgInfo, "type", "type", 0),
    (attrs.BpfProgInfo, "id", "id", 4),
    (attrs.BpfProgInfo, "tag", "tag", 8),
    (attrs.BpfProgInfo, "jited_prog_len", "jited_prog_len", 16),
    (attrs.BpfProgInfo, "xlated_prog_len", "xlated_prog_len", 20),
    (attrs.BpfProgInfo, "jited_prog_insns", "jited_prog_insns", 24),
    (attrs.BpfProgInfo, "xlated_prog_insns", "xlated_prog_insns", 32),
    (attrs.BpfProgInfo, "load_time", "load_time", 40),
    (attrs.BpfProgInfo, "created_by_uid", "created_by_uid", 48),
    (attrs.BpfProgInfo, "nr_map_ids", "nr_map_ids", 52),
    (attrs.BpfProgInfo, "map_ids", "map_ids", 56),
    (attrs.BpfProgInfo, "name", "name", 64),
    (attrs.BpfProgInfo, "ifindex", "ifindex", 80),
    (attrs.BpfProgInfo, "netns_dev", "netns_dev", 88),
    (attrs.BpfProgInfo, "netns_ino", "netns_ino", 96),
    (attrs.BpfProgInfo, "nr_jited_ksyms", "nr_jited_ksyms", 104),
    (attrs.BpfProgInfo, "nr_jited_func_lens", "nr_jited_func_lens", 108),
    (attrs.BpfProgInfo, "jited_ksyms", "jited_ksyms", 112),
    (attrs.BpfProgInfo, "jited_func_lens", "jited_func_lens", 120),
    (attrs.BpfProgInfo, "btf_id", "btf_id", 128),
    (attrs.BpfProgInfo, "func_info_rec_size", "func_info_rec_size", 132),
    (attrs.BpfProgInfo, "func_info", "func_info", 136),
    (attrs.BpfProgInfo, "nr_func_info", "nr_func_info", 144),
    (attrs.BpfProgInfo, "nr_line_info", "nr_line_info", 148),
    (attrs.BpfProgInfo, "line_info", "line_info", 152),
    (attrs.BpfProgInfo, "jited_line_info", "jited_line_info", 160),
    (attrs.BpfProgInfo, "nr_jited_line_info", "nr_jited_line_info", 168),
    (attrs.BpfProgInfo, "line_info_rec_size", "line_info_rec_size", 172),
    (attrs.BpfProgInfo, "jited_line_info_rec_size", "jited_line_info_rec_size", 176),
    (attrs.BpfProgInfo, "nr_prog_tags", "nr_prog_tags", 180),
    (attrs.BpfProgInfo, "prog_tags", "prog_tags", 184),
    (attrs.BpfProgInfo, "run_time_ns", "run_time_ns", 192),
    (attrs.BpfProgInfo, "run_cnt", "run_cnt", 200),
    (attrs.BpfProgInfo, "recursion_misses", "recursion_misses", 208),
    (attrs.BpfProgInfo, "verified_insns", "verified_insns", 216),
    (attrs.BpfProgInfo, "attach_btf_obj_id", "attach_btf_obj_id", 220),
    (attrs.BpfProgInfo, "attach_btf_id", "attach_btf_id", 224),
    # struct bpf_map_info.
    (attrs.BpfMapInfo, "type", "type", 0),
    (attrs.BpfMapInfo, "id", "id", 4),
    (attrs.BpfMapInfo, "key_size", "key_size", 8),
    (attrs.BpfMapInfo, "value_size", "value_size", 12),
    (attrs.BpfMapInfo, "max_entries", "max_entries", 16),
    (attrs.BpfMapInfo, "map_flags", "map_flags", 20),
    (attrs.BpfMapInfo, "name", "name", 24),
    (attrs.BpfMapInfo, "ifindex", "ifindex", 40),
    (attrs.BpfMapInfo, "btf_vmlinux_value_type_id", "btf_vmlinux_value_type_id", 44),
    (attrs.BpfMapInfo, "netns_dev", "netns_dev", 48),
    (attrs.BpfMapInfo, "netns_ino", "netns_ino", 56),
    (attrs.BpfMapInfo, "btf_id", "btf_id", 64),
    (attrs.BpfMapInfo, "btf_key_type_id", "btf_key_type_id", 68),
    (attrs.BpfMapInfo, "btf_value_type_id", "btf_value_type_id", 72),
    (attrs.BpfMapInfo, "map_extra", "map_extra", 80),
    # struct bpf_btf_info.
    (attrs.BpfBtfInfo, "btf", "btf", 0),
    (attrs.BpfBtfInfo, "btf_size", "btf_size", 8),
    (attrs.BpfBtfInfo, "id", "id", 12),
    (attrs.BpfBtfInfo, "name", "name", 16),
    (attrs.BpfBtfInfo, "name_len", "name_len", 24),
    (attrs.BpfBtfInfo, "kernel_btf", "kernel_btf", 28),
]

# Sizes: last field's end rounded up to the alignment (8 when the struct has a u64).
SIZES: dict[type[ctypes.Structure], int] = {
    attrs.MapCreateAttr: 80,  # map_token_fd ends at 80
    attrs.MapElemAttr: 32,
    attrs.MapBatchAttr: 56,
    attrs.ProgLoadAttr: 152,  # fd_array_cnt ends at 152
    attrs.ObjAttr: 24,  # path_fd ends at 20, padded to 24
    attrs.TestRunAttr: 80,  # batch_size ends at 76, padded to 80
    attrs.GetIdAttr: 12,  # u32 only
    attrs.InfoAttr: 16,
    attrs.BtfLoadAttr: 40,
    attrs.LinkCreateAttr: 64,  # uprobe_multi (4 u64 + 3 u32 -> 48) is the largest member
    attrs.LinkDetachAttr: 4,
    attrs.EnableStatsAttr: 4,
    attrs.BpfProgInfo: 232,  # attach_btf_id ends at 228, then a __u32 :32 pad
    attrs.BpfMapInfo: 88,
    attrs.BpfBtfInfo: 32,
}

# Which C aggregate holds each structure's fields.
C_CONTAINERS: dict[type[ctypes.Structure], str] = {
    attrs.BpfProgInfo: "struct bpf_prog_info",
    attrs.BpfMapInfo: "struct bpf_map_info",
    attrs.BpfBtfInfo: "struct bpf_btf_info",
}


def _field_type(cls: type[Any], name: str) -> tuple[Any, int] | None:
    """(type, offset) of ``name`` in ``cls``, looking inside anonymous members."""
    for field in cls._fields_:
        field_name, field_type = field[0], field[1]
        if field_name == name:
            return field_type, getattr(cls, field_name).offset
    for anonymous in getattr(cls, "_anonymous_", ()):
        inner = dict((f[0], f[1]) for f in cls._fields_)[anonymous]
        found = _field_type(inner, name)
        if found is not None:
            return found[0], getattr(cls, anonymous).offset + found[1]
    return None


def offset_of(cls: type[ctypes.Structure], dotted: str) -> int:
    total = 0
    current: Any = cls
    for part in dotted.split("."):
        found = _field_type(current, part)
        if found is None:
            raise AttributeError(f"{current.__name__} has no field {part!r}")
        current, offset = found
        total += offset
    return total


@pytest.mark.parametrize(
    ("cls", "field", "expected"),
    [(cls, field, offset) for cls, field, _, offset in FIELDS],
    ids=[f"{cls.__name__}.{field}" for cls, field, _, _ in FIELDS],
)
def test_field_offset(cls: type[ctypes.Structure], field: str, expected: int) -> None:
    assert offset_of(cls, field) == expected


@pytest.mark.parametrize(("cls", "expected"), list(SIZES.items()), ids=[cls.__name__ for cls in SIZES])
def test_struct_size(cls: type[ctypes.Structure], expected: int) -> None:
    assert ctypes.sizeof(cls) == expected


def test_every_attr_struct_has_its_size_checked() -> None:
    structures = {
        value
        for name, value in vars(attrs).items()
        if isinstance(value, type) and issubclass(value, ctypes.Structure) and not name.startswith("_")
    }
    assert structures == set(SIZES)


def test_gpl_compatible_is_bit_zero_of_the_word_after_ifindex() -> None:
    info = attrs.BpfProgInfo()
    ctypes.memmove(ctypes.addressof(info) + 84, (1).to_bytes(4, "little"), 4)
    assert info.gpl_compatible == 1
    assert info.ifindex == 0


def test_elem_value_and_next_key_alias() -> None:
    attr = attrs.MapElemAttr()
    attr.next_key = 0x1122334455667788
    assert attr.value == 0x1122334455667788


BPF_H = Path("/usr/include/linux/bpf.h")


@pytest.mark.skipif(
    shutil.which("cc") is None or not BPF_H.exists(),
    reason="needs a C compiler and the host's <linux/bpf.h> (linux-libc-dev)",
)
def test_offsets_match_the_host_header(tmp_path: Path) -> None:
    checked = [entry for entry in FIELDS if entry[2] is not None]
    lines = ["#include <stdio.h>", "#include <stddef.h>", "#include <linux/bpf.h>", "int main(void) {"]
    for cls, _, c_member, _ in checked:
        container = C_CONTAINERS.get(cls, "union bpf_attr")
        lines.append(f'  printf("%zu\\n", offsetof({container}, {c_member}));')
    for container in C_CONTAINERS.values():
        lines.append(f'  printf("%zu\\n", sizeof({container}));')
    lines += ["  return 0;", "}"]
    source = tmp_path / "offsets.c"
    source.write_text("\n".join(lines))
    binary = tmp_path / "offsets"
    subprocess.run(["cc", "-o", str(binary), str(source)], check=True, capture_output=True)
    output = subprocess.run([str(binary)], check=True, capture_output=True, text=True).stdout
    numbers = [int(line) for line in output.split()]
    c_offsets = numbers[: len(checked)]
    mismatches = [
        (f"{cls.__name__}.{field}", c_member, offset_of(cls, field), c_offset)
        for (cls, field, c_member, _), c_offset in zip(checked, c_offsets, strict=True)
        if offset_of(cls, field) != c_offset
    ]
    assert mismatches == []
    c_sizes = dict(zip(C_CONTAINERS, numbers[len(checked) :], strict=True))
    assert {cls: ctypes.sizeof(cls) for cls in C_CONTAINERS} == c_sizes
