"""Map commands: create, element operations, iteration, batches, freeze.

Keys and values are raw bytes exactly as the kernel stores them; encoding them (and the
per-CPU layout, where a value is ``round_up(value_size, 8) * possible_cpus`` bytes) is the
caller's business. Element commands copy through buffers that live for the call only.
"""

from __future__ import annotations

import ctypes
import errno as errno_codes
from collections.abc import Iterator, Sequence

from pybpf.errors import InvalidArgumentError, NoSpaceError, ObjectNotFoundError
from pybpf.kernel.attrs import MapBatchAttr, MapCreateAttr, MapElemAttr
from pybpf.kernel.fd import Fd, FdLike, fd_number
from pybpf.kernel.syscall import BpfCmd, RawSyscall, bpf, command_name
from pybpf.kernel.uapi import BPF_OBJ_NAME_LEN, BpfMapType, BpfUpdateFlag


def encode_obj_name(name: str, command: BpfCmd) -> bytes:
    """A map or program name as the kernel accepts it: ASCII letters, digits, '_' and '.'.

    The kernel rejects anything else with EINVAL; checking here names the culprit.
    """
    raw = name.encode("ascii", errors="replace")
    if len(raw) >= BPF_OBJ_NAME_LEN:
        raise InvalidArgumentError(
            f"{command_name(command)}: name {name!r} is longer than {BPF_OBJ_NAME_LEN - 1} bytes",
            errno_codes.EINVAL,
            command=command_name(command),
        )
    if not all(chr(c).isalnum() or c in b"_." for c in raw):
        raise InvalidArgumentError(
            f"{command_name(command)}: name {name!r} may hold only letters, digits, '_' and '.'",
            errno_codes.EINVAL,
            command=command_name(command),
        )
    return raw


def _check_size(what: str, data: bytes, size: int, command: BpfCmd) -> None:
    if len(data) != size:
        raise InvalidArgumentError(
            f"{command_name(command)}: {what} is {len(data)} bytes, the map's is {size}",
            errno_codes.EINVAL,
            command=command_name(command),
        )


def map_create(
    map_type: BpfMapType | int,
    key_size: int,
    value_size: int,
    max_entries: int,
    *,
    map_flags: int = 0,
    name: str = "",
    inner_map_fd: FdLike | None = None,
    numa_node: int = 0,
    btf_fd: FdLike | None = None,
    btf_key_type_id: int = 0,
    btf_value_type_id: int = 0,
    btf_vmlinux_value_type_id: int = 0,
    map_extra: int = 0,
    map_ifindex: int = 0,
    syscall: RawSyscall | None = None,
) -> Fd:
    """BPF_MAP_CREATE: a new map, owned by the returned :class:`Fd`."""
    attr = MapCreateAttr(
        map_type=int(map_type),
        key_size=key_size,
        value_size=value_size,
        max_entries=max_entries,
        map_flags=map_flags,
        numa_node=numa_node,
        map_name=encode_obj_name(name, BpfCmd.MAP_CREATE),
        map_ifindex=map_ifindex,
        btf_key_type_id=btf_key_type_id,
        btf_value_type_id=btf_value_type_id,
        btf_vmlinux_value_type_id=btf_vmlinux_value_type_id,
        map_extra=map_extra,
    )
    if inner_map_fd is not None:
        attr.inner_map_fd = fd_number(inner_map_fd)
    if btf_fd is not None:
        attr.btf_fd = fd_number(btf_fd)
    return Fd(bpf(BpfCmd.MAP_CREATE, attr, syscall=syscall))


def _buffer(data: bytes) -> ctypes.Array[ctypes.c_char]:
    # create_string_buffer(bytes) appends a NUL we never pass on: sizes are given explicitly.
    return ctypes.create_string_buffer(data, max(len(data), 1))


def _key_address(buffer: ctypes.Array[ctypes.c_char], key: bytes) -> int:
    # Maps without keys (queue, stack, bloom filter: key_size 0) want a NULL key pointer;
    # the kernel answers EINVAL to any other.
    return ctypes.addressof(buffer) if key else 0


def map_lookup(
    fd: FdLike,
    key: bytes,
    value_size: int,
    *,
    flags: int = 0,
    syscall: RawSyscall | None = None,
) -> bytes:
    """BPF_MAP_LOOKUP_ELEM: the value under ``key``; ObjectNotFoundError when absent.

    ``key`` must be exactly the map's key size (``b""`` for maps without keys, where this
    peeks at the head); the kernel reads that many bytes from it.
    """
    key_buffer = _buffer(key)
    value_buffer = ctypes.create_string_buffer(max(value_size, 1))
    attr = MapElemAttr(
        map_fd=fd_number(fd),
        key=_key_address(key_buffer, key),
        flags=flags,
    )
    attr.value = ctypes.addressof(value_buffer)
    bpf(BpfCmd.MAP_LOOKUP_ELEM, attr, syscall=syscall)
    return value_buffer.raw[:value_size]


def map_update(
    fd: FdLike,
    key: bytes,
    value: bytes,
    flags: BpfUpdateFlag | int = BpfUpdateFlag.ANY,
    *,
    syscall: RawSyscall | None = None,
) -> None:
    """BPF_MAP_UPDATE_ELEM: store ``value`` under ``key`` (BPF_ANY, BPF_NOEXIST, BPF_EXIST).

    ``key`` and ``value`` must be exactly the map's sizes (``b""`` key to push onto a queue
    or stack): the kernel reads that many bytes and cannot tell a short buffer.
    """
    key_buffer = _buffer(key)
    value_buffer = _buffer(value)
    attr = MapElemAttr(map_fd=fd_number(fd), key=_key_address(key_buffer, key), flags=int(flags))
    attr.value = ctypes.addressof(value_buffer)
    bpf(BpfCmd.MAP_UPDATE_ELEM, attr, syscall=syscall)


def map_delete(fd: FdLike, key: bytes, *, syscall: RawSyscall | None = None) -> None:
    """BPF_MAP_DELETE_ELEM: remove ``key``; ObjectNotFoundError when absent."""
    key_buffer = _buffer(key)
    attr = MapElemAttr(map_fd=fd_number(fd), key=_key_address(key_buffer, key))
    bpf(BpfCmd.MAP_DELETE_ELEM, attr, syscall=syscall)


def map_get_next_key(
    fd: FdLike,
    key: bytes | None,
    key_size: int,
    *,
    syscall: RawSyscall | None = None,
) -> bytes | None:
    """BPF_MAP_GET_NEXT_KEY: the key after ``key`` (the first key for None); None at the end.

    A ``key`` no longer in a hash map restarts from the first key, as the kernel does.
    """
    next_buffer = ctypes.create_string_buffer(max(key_size, 1))
    key_buffer = _buffer(key) if key else None
    attr = MapElemAttr(map_fd=fd_number(fd))
    if key_buffer is not None:
        attr.key = ctypes.addressof(key_buffer)
    attr.next_key = ctypes.addressof(next_buffer)
    try:
        bpf(BpfCmd.MAP_GET_NEXT_KEY, attr, syscall=syscall)
    except ObjectNotFoundError:
        return None
    return next_buffer.raw[:key_size]


def map_keys(fd: FdLike, key_size: int, *, syscall: RawSyscall | None = None) -> Iterator[bytes]:
    """Every key of the map, by repeated BPF_MAP_GET_NEXT_KEY."""
    key = map_get_next_key(fd, None, key_size, syscall=syscall)
    while key is not None:
        yield key
        key = map_get_next_key(fd, key, key_size, syscall=syscall)


def map_lookup_and_delete(
    fd: FdLike,
    key: bytes | None,
    value_size: int,
    *,
    flags: int = 0,
    syscall: RawSyscall | None = None,
) -> bytes:
    """BPF_MAP_LOOKUP_AND_DELETE_ELEM: pop ``key`` (None for queue and stack maps)."""
    value_buffer = ctypes.create_string_buffer(max(value_size, 1))
    key_buffer = _buffer(key) if key else None
    attr = MapElemAttr(map_fd=fd_number(fd), flags=flags)
    if key_buffer is not None:
        attr.key = ctypes.addressof(key_buffer)
    attr.value = ctypes.addressof(value_buffer)
    bpf(BpfCmd.MAP_LOOKUP_AND_DELETE_ELEM, attr, syscall=syscall)
    return value_buffer.raw[:value_size]


def map_freeze(fd: FdLike, *, syscall: RawSyscall | None = None) -> None:
    """BPF_MAP_FREEZE: make the map read-only for user space from now on."""
    bpf(BpfCmd.MAP_FREEZE, MapElemAttr(map_fd=fd_number(fd)), syscall=syscall)


def map_update_batch(
    fd: FdLike,
    items: Sequence[tuple[bytes, bytes]],
    key_size: int,
    value_size: int,
    *,
    elem_flags: int = 0,
    syscall: RawSyscall | None = None,
) -> int:
    """BPF_MAP_UPDATE_BATCH: store every ``(key, value)``; returns how many were stored."""
    for key, value in items:
        _check_size("key", key, key_size, BpfCmd.MAP_UPDATE_BATCH)
        _check_size("value", value, value_size, BpfCmd.MAP_UPDATE_BATCH)
    keys = _buffer(b"".join(key for key, _ in items))
    values = _buffer(b"".join(value for _, value in items))
    attr = MapBatchAttr(
        keys=ctypes.addressof(keys),
        values=ctypes.addressof(values),
        count=len(items),
        map_fd=fd_number(fd),
        elem_flags=elem_flags,
    )
    bpf(BpfCmd.MAP_UPDATE_BATCH, attr, syscall=syscall)
    return int(attr.count)


def map_lookup_batch(
    fd: FdLike,
    key_size: int,
    value_size: int,
    *,
    chunk: int = 64,
    delete: bool = False,
    syscall: RawSyscall | None = None,
) -> list[tuple[bytes, bytes]]:
    """BPF_MAP_LOOKUP_BATCH (or ..._AND_DELETE_BATCH): every ``(key, value)`` of the map.

    ENOENT ends the walk (with the last entries still returned in that call); ENOSPC, which a
    hash map returns when one bucket holds more than ``chunk`` entries, doubles the chunk.
    """
    command = BpfCmd.MAP_LOOKUP_AND_DELETE_BATCH if delete else BpfCmd.MAP_LOOKUP_BATCH
    # The batch token is opaque; the kernel documents that it needs at most key_size bytes
    # (hash maps use a u32 bucket index), so key_size (at least 4) always fits.
    token_size = max(key_size, 4)
    in_batch = ctypes.create_string_buffer(token_size)
    out_batch = ctypes.create_string_buffer(token_size)
    entries: list[tuple[bytes, bytes]] = []
    first = True
    while True:
        keys = ctypes.create_string_buffer(max(key_size * chunk, 1))
        values = ctypes.create_string_buffer(max(value_size * chunk, 1))
        attr = MapBatchAttr(
            in_batch=0 if first else ctypes.addressof(in_batch),
            out_batch=ctypes.addressof(out_batch),
            keys=ctypes.addressof(keys),
            values=ctypes.addressof(values),
            count=chunk,
            map_fd=fd_number(fd),
        )
        done = False
        try:
            bpf(command, attr, syscall=syscall)
        except ObjectNotFoundError:
            done = True
        except NoSpaceError:
            if int(attr.count) != 0:
                raise
            chunk *= 2
            continue
        count = int(attr.count)
        raw_keys = keys.raw
        raw_values = values.raw
        entries.extend(
            (
                raw_keys[i * key_size : (i + 1) * key_size],
                raw_values[i * value_size : (i + 1) * value_size],
            )
            for i in range(count)
        )
        if done:
            return entries
        ctypes.memmove(in_batch, out_batch, token_size)
        first = False
