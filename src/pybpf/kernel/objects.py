"""Object commands: pinning, object info, BTF loading, id walks, links.

Info queries return frozen records with the kernel's numbers; the enum-typed fields fall
back to plain ints for values newer than :mod:`pybpf.kernel.uapi`.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Iterator
from dataclasses import dataclass

from pybpf.errors import ObjectNotFoundError
from pybpf.kernel.attrs import (
    BpfBtfInfo,
    BpfMapInfo,
    BpfProgInfo,
    BtfLoadAttr,
    EnableStatsAttr,
    GetIdAttr,
    InfoAttr,
    LinkCreateAttr,
    LinkDetachAttr,
    ObjAttr,
)
from pybpf.kernel.fd import Fd, FdLike, fd_number
from pybpf.kernel.logbuf import LogCapture, load_with_log, summarize_log
from pybpf.kernel.progs import DEFAULT_LOG_CAP, INSN_SIZE
from pybpf.kernel.syscall import BpfCmd, RawSyscall, bpf, error_for, libc_syscall
from pybpf.kernel.uapi import BpfAttachType, BpfMapType, BpfProgType, BpfStatsType


def _path_buffer(path: str | os.PathLike[str]) -> ctypes.Array[ctypes.c_char]:
    return ctypes.create_string_buffer(os.fsencode(path))


def obj_pin(fd: FdLike, path: str | os.PathLike[str], *, syscall: RawSyscall | None = None) -> None:
    """BPF_OBJ_PIN: pin a map, program or link at ``path`` (inside a bpffs mount)."""
    path_buffer = _path_buffer(path)
    attr = ObjAttr(pathname=ctypes.addressof(path_buffer), bpf_fd=fd_number(fd))
    bpf(BpfCmd.OBJ_PIN, attr, syscall=syscall)


def obj_get(
    path: str | os.PathLike[str],
    *,
    file_flags: int = 0,
    syscall: RawSyscall | None = None,
) -> Fd:
    """BPF_OBJ_GET: a new descriptor for the object pinned at ``path``."""
    path_buffer = _path_buffer(path)
    attr = ObjAttr(pathname=ctypes.addressof(path_buffer), file_flags=file_flags)
    return Fd(bpf(BpfCmd.OBJ_GET, attr, syscall=syscall))


def _get_info(fd: FdLike, info: ctypes.Structure, syscall: RawSyscall | None) -> int:
    attr = InfoAttr(
        bpf_fd=fd_number(fd),
        info_len=ctypes.sizeof(info),
        info=ctypes.addressof(info),
    )
    bpf(BpfCmd.OBJ_GET_INFO_BY_FD, attr, syscall=syscall)
    return int(attr.info_len)


def _name(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("ascii", errors="replace")


def _prog_type(value: int) -> BpfProgType | int:
    try:
        return BpfProgType(value)
    except ValueError:
        return value


def _map_type(value: int) -> BpfMapType | int:
    try:
        return BpfMapType(value)
    except ValueError:
        return value


@dataclass(frozen=True, slots=True)
class ProgInfo:
    """The useful part of ``struct bpf_prog_info``.

    ``run_cnt`` and ``run_time_ns`` count BPF_PROG_TEST_RUN runs, and real runs only while
    the kernel's BPF statistics are enabled. ``xlated_prog_len`` and ``jited_prog_len`` are
    bytes (0 when ``kernel.bpf_stats``-style restrictions hide them from this caller).
    """

    type: BpfProgType | int
    id: int
    tag: bytes
    name: str
    jited_prog_len: int
    xlated_prog_len: int
    load_time: int
    created_by_uid: int
    nr_map_ids: int
    gpl_compatible: bool
    btf_id: int
    run_time_ns: int
    run_cnt: int
    recursion_misses: int
    verified_insns: int
    attach_btf_obj_id: int
    attach_btf_id: int


def prog_info(fd: FdLike, *, syscall: RawSyscall | None = None) -> ProgInfo:
    """BPF_OBJ_GET_INFO_BY_FD for a program."""
    info = BpfProgInfo()
    _get_info(fd, info, syscall)
    return ProgInfo(
        type=_prog_type(int(info.type)),
        id=int(info.id),
        tag=bytes(info.tag),
        name=_name(bytes(info.name)),
        jited_prog_len=int(info.jited_prog_len),
        xlated_prog_len=int(info.xlated_prog_len),
        load_time=int(info.load_time),
        created_by_uid=int(info.created_by_uid),
        nr_map_ids=int(info.nr_map_ids),
        gpl_compatible=bool(info.gpl_compatible),
        btf_id=int(info.btf_id),
        run_time_ns=int(info.run_time_ns),
        run_cnt=int(info.run_cnt),
        recursion_misses=int(info.recursion_misses),
        verified_insns=int(info.verified_insns),
        attach_btf_obj_id=int(info.attach_btf_obj_id),
        attach_btf_id=int(info.attach_btf_id),
    )


def prog_xlated_insns(fd: FdLike, *, syscall: RawSyscall | None = None) -> bytes:
    """The program as the verifier rewrote it (``xlated_prog_insns``), 8 bytes per slot."""
    size = prog_info(fd, syscall=syscall).xlated_prog_len
    buffer = ctypes.create_string_buffer(max(size, INSN_SIZE))
    info = BpfProgInfo(xlated_prog_len=size, xlated_prog_insns=ctypes.addressof(buffer))
    _get_info(fd, info, syscall)
    return buffer.raw[: min(size, int(info.xlated_prog_len))]


def prog_map_ids(fd: FdLike, *, syscall: RawSyscall | None = None) -> tuple[int, ...]:
    """Ids of the maps the program uses."""
    count = prog_info(fd, syscall=syscall).nr_map_ids
    ids = (ctypes.c_uint32 * max(count, 1))()
    info = BpfProgInfo(nr_map_ids=count, map_ids=ctypes.addressof(ids))
    _get_info(fd, info, syscall)
    return tuple(ids[: min(count, int(info.nr_map_ids))])


@dataclass(frozen=True, slots=True)
class MapInfo:
    """``struct bpf_map_info``."""

    type: BpfMapType | int
    id: int
    key_size: int
    value_size: int
    max_entries: int
    map_flags: int
    name: str
    btf_id: int
    btf_key_type_id: int
    btf_value_type_id: int
    btf_vmlinux_value_type_id: int
    map_extra: int


def map_info(fd: FdLike, *, syscall: RawSyscall | None = None) -> MapInfo:
    """BPF_OBJ_GET_INFO_BY_FD for a map."""
    info = BpfMapInfo()
    _get_info(fd, info, syscall)
    return MapInfo(
        type=_map_type(int(info.type)),
        id=int(info.id),
        key_size=int(info.key_size),
        value_size=int(info.value_size),
        max_entries=int(info.max_entries),
        map_flags=int(info.map_flags),
        name=_name(bytes(info.name)),
        btf_id=int(info.btf_id),
        btf_key_type_id=int(info.btf_key_type_id),
        btf_value_type_id=int(info.btf_value_type_id),
        btf_vmlinux_value_type_id=int(info.btf_vmlinux_value_type_id),
        map_extra=int(info.map_extra),
    )


@dataclass(frozen=True, slots=True)
class BtfInfo:
    """``struct bpf_btf_info`` (without the blob: see :func:`btf_data`)."""

    id: int
    btf_size: int
    kernel_btf: bool


def btf_info(fd: FdLike, *, syscall: RawSyscall | None = None) -> BtfInfo:
    """BPF_OBJ_GET_INFO_BY_FD for a BTF object."""
    info = BpfBtfInfo()
    _get_info(fd, info, syscall)
    return BtfInfo(id=int(info.id), btf_size=int(info.btf_size), kernel_btf=bool(info.kernel_btf))


def btf_data(fd: FdLike, *, syscall: RawSyscall | None = None) -> bytes:
    """The raw BTF blob the kernel holds for a BTF object."""
    size = btf_info(fd, syscall=syscall).btf_size
    buffer = ctypes.create_string_buffer(max(size, 1))
    info = BpfBtfInfo(btf=ctypes.addressof(buffer), btf_size=size)
    _get_info(fd, info, syscall)
    return buffer.raw[: min(size, int(info.btf_size))]


def btf_load(
    raw_btf: bytes,
    *,
    log_level: int = 0,
    log_cap: int = DEFAULT_LOG_CAP,
    syscall: RawSyscall | None = None,
) -> Fd:
    """BPF_BTF_LOAD: load a BTF blob (header, types, strings) into the kernel.

    On failure the load is repeated with a log, and the raised error (the errno's class)
    carries it in ``.log``, its last line in the message.
    """
    raw = libc_syscall if syscall is None else syscall
    blob = ctypes.create_string_buffer(raw_btf, max(len(raw_btf), 1))
    attr = BtfLoadAttr(btf=ctypes.addressof(blob), btf_size=len(raw_btf))

    def attempt(capture: LogCapture | None) -> int:
        if capture is None:
            attr.btf_log_level, attr.btf_log_size, attr.btf_log_buf = 0, 0, 0
        else:
            attr.btf_log_level = capture.level
            attr.btf_log_size = capture.size
            attr.btf_log_buf = capture.address
        attr.btf_log_true_size = 0
        result = raw(BpfCmd.BTF_LOAD, attr)
        if capture is not None:
            capture.true_size = int(attr.btf_log_true_size)
        return result

    outcome = load_with_log(attempt, log_level=log_level, log_cap=log_cap)
    if outcome.result >= 0:
        return Fd(outcome.result)
    detail = summarize_log(outcome.log).cause if outcome.log.strip() else ""
    raise error_for(BpfCmd.BTF_LOAD, -outcome.result, detail=detail, log=outcome.log)


def get_next_id(cmd: BpfCmd, start_id: int, *, syscall: RawSyscall | None = None) -> int | None:
    """BPF_*_GET_NEXT_ID: the smallest id above ``start_id``, None when there is none."""
    attr = GetIdAttr(start_id=start_id)
    try:
        bpf(cmd, attr, syscall=syscall)
    except ObjectNotFoundError:
        return None
    return int(attr.next_id)


def _ids(cmd: BpfCmd, syscall: RawSyscall | None) -> Iterator[int]:
    current = get_next_id(cmd, 0, syscall=syscall)
    while current is not None:
        yield current
        current = get_next_id(cmd, current, syscall=syscall)


def prog_ids(*, syscall: RawSyscall | None = None) -> Iterator[int]:
    """Ids of every program loaded in the kernel (needs CAP_SYS_ADMIN)."""
    return _ids(BpfCmd.PROG_GET_NEXT_ID, syscall)


def map_ids(*, syscall: RawSyscall | None = None) -> Iterator[int]:
    """Ids of every map in the kernel (needs CAP_SYS_ADMIN)."""
    return _ids(BpfCmd.MAP_GET_NEXT_ID, syscall)


def btf_ids(*, syscall: RawSyscall | None = None) -> Iterator[int]:
    """Ids of every BTF object in the kernel (needs CAP_SYS_ADMIN)."""
    return _ids(BpfCmd.BTF_GET_NEXT_ID, syscall)


def _fd_by_id(cmd: BpfCmd, object_id: int, open_flags: int, syscall: RawSyscall | None) -> Fd:
    attr = GetIdAttr(start_id=object_id, open_flags=open_flags)
    return Fd(bpf(cmd, attr, syscall=syscall))


def prog_fd_by_id(prog_id: int, *, syscall: RawSyscall | None = None) -> Fd:
    """BPF_PROG_GET_FD_BY_ID."""
    return _fd_by_id(BpfCmd.PROG_GET_FD_BY_ID, prog_id, 0, syscall)


def map_fd_by_id(map_id: int, *, open_flags: int = 0, syscall: RawSyscall | None = None) -> Fd:
    """BPF_MAP_GET_FD_BY_ID (``open_flags``: BPF_F_RDONLY / BPF_F_WRONLY)."""
    return _fd_by_id(BpfCmd.MAP_GET_FD_BY_ID, map_id, open_flags, syscall)


def btf_fd_by_id(btf_id: int, *, syscall: RawSyscall | None = None) -> Fd:
    """BPF_BTF_GET_FD_BY_ID."""
    return _fd_by_id(BpfCmd.BTF_GET_FD_BY_ID, btf_id, 0, syscall)


def link_create(
    prog_fd: FdLike,
    target_fd: int,
    attach_type: BpfAttachType | int,
    *,
    flags: int = 0,
    target_btf_id: int = 0,
    syscall: RawSyscall | None = None,
) -> Fd:
    """BPF_LINK_CREATE: attach a program through a link owned by the returned Fd.

    This attaches to the live system; pybpf's tests never call it on the host.
    """
    attr = LinkCreateAttr(
        prog_fd=fd_number(prog_fd),
        target_fd=target_fd,
        attach_type=int(attach_type),
        flags=flags,
    )
    attr.target_btf_id = target_btf_id
    return Fd(bpf(BpfCmd.LINK_CREATE, attr, syscall=syscall))


def link_detach(link_fd: FdLike, *, syscall: RawSyscall | None = None) -> None:
    """BPF_LINK_DETACH: detach the link's program; the link fd stays open but defunct."""
    bpf(BpfCmd.LINK_DETACH, LinkDetachAttr(link_fd=fd_number(link_fd)), syscall=syscall)


def enable_stats(stats_type: BpfStatsType | int = BpfStatsType.RUN_TIME, *, syscall: RawSyscall | None = None) -> Fd:
    """BPF_ENABLE_STATS: kernel-wide run counting while the returned Fd stays open.

    Without it (or the ``kernel.bpf_stats_enabled`` sysctl) ``run_cnt`` and ``run_time_ns``
    stay 0. Closing the Fd switches the counting off again.
    """
    return Fd(bpf(BpfCmd.ENABLE_STATS, EnableStatsAttr(type=int(stats_type)), syscall=syscall))
