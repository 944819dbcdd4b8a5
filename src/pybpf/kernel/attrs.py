"""ctypes mirrors of the ``union bpf_attr`` variants and the ``bpf_*_info`` structures.

Each command gets its own Structure, laid out as its member of ``union bpf_attr`` in
include/uapi/linux/bpf.h. We pass ``sizeof`` of that one structure as the attr size: the kernel
copies that many bytes, zero-fills the rest of its own union, and insists that any bytes past
the fields it knows be zero, so a structure that carries fields newer than the running kernel
still works as long as those fields stay zero.

``__aligned_u64`` fields hold user-space addresses (``ctypes.addressof`` of a buffer the
caller keeps alive during the call). ``tests/kernel/test_attrs_layout.py`` checks every offset
and size here against numbers derived from the uapi header.
"""

from __future__ import annotations

import ctypes

from pybpf.kernel.uapi import BPF_OBJ_NAME_LEN, BPF_TAG_SIZE

u8 = ctypes.c_uint8
u32 = ctypes.c_uint32
s32 = ctypes.c_int32
u64 = ctypes.c_uint64
ObjName = ctypes.c_char * BPF_OBJ_NAME_LEN


class MapCreateAttr(ctypes.Structure):
    """BPF_MAP_CREATE."""

    _fields_ = [
        ("map_type", u32),
        ("key_size", u32),
        ("value_size", u32),
        ("max_entries", u32),
        ("map_flags", u32),
        ("inner_map_fd", u32),
        ("numa_node", u32),
        ("map_name", ObjName),
        ("map_ifindex", u32),
        ("btf_fd", u32),
        ("btf_key_type_id", u32),
        ("btf_value_type_id", u32),
        ("btf_vmlinux_value_type_id", u32),
        ("map_extra", u64),
        # 6.9+: BTF object of btf_vmlinux_value_type_id, and BPF token.
        ("value_type_btf_obj_fd", s32),
        ("map_token_fd", s32),
    ]


class _ValueOrNextKey(ctypes.Union):
    _fields_ = [("value", u64), ("next_key", u64)]


class MapElemAttr(ctypes.Structure):
    """BPF_MAP_{LOOKUP,UPDATE,DELETE}_ELEM, BPF_MAP_GET_NEXT_KEY, BPF_MAP_LOOKUP_AND_DELETE_ELEM.

    BPF_MAP_FREEZE uses only ``map_fd``.
    """

    _anonymous_ = ("_value_or_next_key",)
    _fields_ = [
        ("map_fd", u32),
        ("key", u64),  # u64 alignment puts this at offset 8, as __aligned_u64 does
        ("_value_or_next_key", _ValueOrNextKey),
        ("flags", u64),
    ]


class MapBatchAttr(ctypes.Structure):
    """BPF_MAP_{LOOKUP,LOOKUP_AND_DELETE,UPDATE,DELETE}_BATCH (``batch`` in the union)."""

    _fields_ = [
        ("in_batch", u64),
        ("out_batch", u64),
        ("keys", u64),
        ("values", u64),
        ("count", u32),
        ("map_fd", u32),
        ("elem_flags", u64),
        ("flags", u64),
    ]


class _AttachProgOrBtfObj(ctypes.Union):
    _fields_ = [("attach_prog_fd", u32), ("attach_btf_obj_fd", u32)]


class ProgLoadAttr(ctypes.Structure):
    """BPF_PROG_LOAD."""

    _anonymous_ = ("_attach_target",)
    _fields_ = [
        ("prog_type", u32),
        ("insn_cnt", u32),
        ("insns", u64),
        ("license", u64),
        ("log_level", u32),
        ("log_size", u32),
        ("log_buf", u64),
        ("kern_version", u32),
        ("prog_flags", u32),
        ("prog_name", ObjName),
        ("prog_ifindex", u32),
        ("expected_attach_type", u32),
        ("prog_btf_fd", u32),
        ("func_info_rec_size", u32),
        ("func_info", u64),
        ("func_info_cnt", u32),
        ("line_info_rec_size", u32),
        ("line_info", u64),
        ("line_info_cnt", u32),
        ("attach_btf_id", u32),
        ("_attach_target", _AttachProgOrBtfObj),
        ("core_relo_cnt", u32),
        ("fd_array", u64),
        ("core_relos", u64),
        ("core_relo_rec_size", u32),
        # 6.4+: output, the size the whole log needs (NUL included).
        ("log_true_size", u32),
        # 6.9+ and 6.13+.
        ("prog_token_fd", s32),
        ("fd_array_cnt", u32),
    ]


class ObjAttr(ctypes.Structure):
    """BPF_OBJ_PIN and BPF_OBJ_GET."""

    _fields_ = [
        ("pathname", u64),
        ("bpf_fd", u32),
        ("file_flags", u32),
        ("path_fd", s32),  # 6.5+, used only with BPF_F_PATH_FD in file_flags
    ]


class TestRunAttr(ctypes.Structure):
    """BPF_PROG_TEST_RUN (``test`` in the union)."""

    _fields_ = [
        ("prog_fd", u32),
        ("retval", u32),
        ("data_size_in", u32),
        ("data_size_out", u32),
        ("data_in", u64),
        ("data_out", u64),
        ("repeat", u32),
        ("duration", u32),
        ("ctx_size_in", u32),
        ("ctx_size_out", u32),
        ("ctx_in", u64),
        ("ctx_out", u64),
        ("flags", u32),
        ("cpu", u32),
        ("batch_size", u32),
    ]


class _StartId(ctypes.Union):
    _fields_ = [
        ("start_id", u32),
        ("prog_id", u32),
        ("map_id", u32),
        ("btf_id", u32),
        ("link_id", u32),
    ]


class GetIdAttr(ctypes.Structure):
    """BPF_{PROG,MAP,BTF,LINK}_GET_NEXT_ID and BPF_{PROG,MAP,BTF,LINK}_GET_FD_BY_ID."""

    _anonymous_ = ("_id",)
    _fields_ = [
        ("_id", _StartId),
        ("next_id", u32),
        ("open_flags", u32),
    ]


class InfoAttr(ctypes.Structure):
    """BPF_OBJ_GET_INFO_BY_FD (``info`` in the union)."""

    _fields_ = [
        ("bpf_fd", u32),
        ("info_len", u32),
        ("info", u64),
    ]


class BtfLoadAttr(ctypes.Structure):
    """BPF_BTF_LOAD."""

    _fields_ = [
        ("btf", u64),
        ("btf_log_buf", u64),
        ("btf_size", u32),
        ("btf_log_size", u32),
        ("btf_log_level", u32),
        # 6.4+: output, the size the whole log needs (NUL included).
        ("btf_log_true_size", u32),
        # 6.9+.
        ("btf_flags", u32),
        ("btf_token_fd", s32),
    ]


class _LinkIter(ctypes.Structure):
    _fields_ = [("iter_info", u64), ("iter_info_len", u32)]


class _LinkPerfEvent(ctypes.Structure):
    _fields_ = [("bpf_cookie", u64)]


class _LinkKprobeMulti(ctypes.Structure):
    _fields_ = [
        ("flags", u32),
        ("cnt", u32),
        ("syms", u64),
        ("addrs", u64),
        ("cookies", u64),
    ]


class _LinkTracing(ctypes.Structure):
    _fields_ = [("target_btf_id", u32), ("cookie", u64)]


class _LinkUprobeMulti(ctypes.Structure):
    _fields_ = [
        ("path", u64),
        ("offsets", u64),
        ("ref_ctr_offsets", u64),
        ("cookies", u64),
        ("cnt", u32),
        ("flags", u32),
        ("pid", u32),
    ]


class _LinkRelative(ctypes.Structure):
    """tcx / netkit / cgroup: anchor relative to another program or link."""

    _fields_ = [("relative_fd", u32), ("expected_revision", u64)]


class _LinkTarget(ctypes.Union):
    _fields_ = [
        ("target_btf_id", u32),
        ("iter", _LinkIter),
        ("perf_event", _LinkPerfEvent),
        ("kprobe_multi", _LinkKprobeMulti),
        ("tracing", _LinkTracing),
        ("uprobe_multi", _LinkUprobeMulti),
        ("tcx", _LinkRelative),
    ]


class LinkCreateAttr(ctypes.Structure):
    """BPF_LINK_CREATE (``link_create``); ``prog_fd`` doubles as ``map_fd`` for struct_ops."""

    _anonymous_ = ("_target",)
    _fields_ = [
        ("prog_fd", u32),
        ("target_fd", u32),  # also target_ifindex
        ("attach_type", u32),
        ("flags", u32),
        ("_target", _LinkTarget),
    ]


class LinkDetachAttr(ctypes.Structure):
    """BPF_LINK_DETACH."""

    _fields_ = [("link_fd", u32)]


class BpfProgInfo(ctypes.Structure):
    """``struct bpf_prog_info`` (the BPF_OBJ_GET_INFO_BY_FD result for a program)."""

    _fields_ = [
        ("type", u32),
        ("id", u32),
        ("tag", u8 * BPF_TAG_SIZE),
        ("jited_prog_len", u32),
        ("xlated_prog_len", u32),
        ("jited_prog_insns", u64),
        ("xlated_prog_insns", u64),
        ("load_time", u64),
        ("created_by_uid", u32),
        ("nr_map_ids", u32),
        ("map_ids", u64),
        ("name", ObjName),
        ("ifindex", u32),
        ("gpl_compatible", u32, 1),
        ("_pad_gpl", u32, 31),
        ("netns_dev", u64),
        ("netns_ino", u64),
        ("nr_jited_ksyms", u32),
        ("nr_jited_func_lens", u32),
        ("jited_ksyms", u64),
        ("jited_func_lens", u64),
        ("btf_id", u32),
        ("func_info_rec_size", u32),
        ("func_info", u64),
        ("nr_func_info", u32),
        ("nr_line_info", u32),
        ("line_info", u64),
        ("jited_line_info", u64),
        ("nr_jited_line_info", u32),
        ("line_info_rec_size", u32),
        ("jited_line_info_rec_size", u32),
        ("nr_prog_tags", u32),
        ("prog_tags", u64),
        ("run_time_ns", u64),
        ("run_cnt", u64),
        ("recursion_misses", u64),
        ("verified_insns", u32),
        ("attach_btf_obj_id", u32),
        ("attach_btf_id", u32),
        ("_pad_end", u32),
    ]


class BpfMapInfo(ctypes.Structure):
    """``struct bpf_map_info``."""

    _fields_ = [
        ("type", u32),
        ("id", u32),
        ("key_size", u32),
        ("value_size", u32),
        ("max_entries", u32),
        ("map_flags", u32),
        ("name", ObjName),
        ("ifindex", u32),
        ("btf_vmlinux_value_type_id", u32),
        ("netns_dev", u64),
        ("netns_ino", u64),
        ("btf_id", u32),
        ("btf_key_type_id", u32),
        ("btf_value_type_id", u32),
        ("_pad", u32),
        ("map_extra", u64),
    ]


class BpfBtfInfo(ctypes.Structure):
    """``struct bpf_btf_info``."""

    _fields_ = [
        ("btf", u64),
        ("btf_size", u32),
        ("id", u32),
        ("name", u64),
        ("name_len", u32),
        ("kernel_btf", u32),
    ]


class EnableStatsAttr(ctypes.Structure):
    """BPF_ENABLE_STATS (``enable_stats``)."""

    _fields_ = [("type", u32)]
