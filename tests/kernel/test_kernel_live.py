"""The kernel layer against the running kernel: loads, test runs, maps, pins, BTF.

Skipped, with the probe's reason, where bpf(2) does not work. Nothing here attaches to
anything: programs only run through BPF_PROG_TEST_RUN, and pins live in a private bpffs.
"""

from __future__ import annotations

import errno
import os
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from pybpf import errors
from pybpf.kernel import (
    BpfMapType,
    BpfProgType,
    BpfUpdateFlag,
    Fd,
    available,
    btf_data,
    btf_info,
    btf_load,
    enable_stats,
    map_create,
    map_delete,
    map_freeze,
    map_get_next_key,
    map_info,
    map_keys,
    map_lookup,
    map_lookup_and_delete,
    map_lookup_batch,
    map_update,
    map_update_batch,
    obj_get,
    obj_pin,
    prog_fd_by_id,
    prog_ids,
    prog_info,
    prog_load,
    prog_load_with_log,
    prog_test_run,
    prog_xlated_insns,
)
from pybpf.kernel.bpffs import is_bpffs, private_bpffs

_OK, _REASON = available()
pytestmark = [
    pytest.mark.kernel,
    pytest.mark.skipif(not _OK, reason=f"bpf() unavailable: {_REASON}"),
]


def insn(opcode: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    """One encoded instruction (little-endian host)."""
    return struct.pack("<BBhi", opcode, (src << 4) | dst, off, imm)


# Opcodes spelled from their parts (class | size/op | source), see RFC 9669.
MOV64_IMM = 0x07 | 0xB0  # BPF_ALU64 | BPF_MOV | BPF_K
MOV64_REG = 0x07 | 0xB0 | 0x08  # BPF_ALU64 | BPF_MOV | BPF_X
ADD64_IMM = 0x07 | 0x00  # BPF_ALU64 | BPF_ADD | BPF_K
LDX_W = 0x01 | 0x60 | 0x00  # BPF_LDX | BPF_MEM | BPF_W
LDX_B = 0x01 | 0x60 | 0x10  # BPF_LDX | BPF_MEM | BPF_B
JGT_REG = 0x05 | 0x20 | 0x08  # BPF_JMP | BPF_JGT | BPF_X
EXIT = 0x05 | 0x90  # BPF_JMP | BPF_EXIT

R0_42_EXIT = b"\xb7\x00\x00\x00\x2a\x00\x00\x00" + b"\x95" + bytes(7)


def test_socket_filter_returns_42() -> None:
    assert insn(MOV64_IMM, 0, imm=42) + insn(EXIT) == R0_42_EXIT
    with prog_load(BpfProgType.SOCKET_FILTER, R0_42_EXIT, name="r0_42") as fd:
        run = prog_test_run(fd, bytes(64))
        assert run.retval == 42
        assert run.data_out == bytes(64)


# xdp: r2 = ctx->data; r3 = ctx->data_end; if r2 + 1 > r3 return 0; return *(u8 *)r2.
XDP_FIRST_BYTE = b"".join(
    [
        insn(LDX_W, 2, 1, 0),  # struct xdp_md.data
        insn(LDX_W, 3, 1, 4),  # struct xdp_md.data_end
        insn(MOV64_REG, 4, 2),
        insn(ADD64_IMM, 4, imm=1),
        insn(JGT_REG, 4, 3, off=2),
        insn(LDX_B, 0, 2, 0),
        insn(EXIT),
        insn(MOV64_IMM, 0, imm=0),
        insn(EXIT),
    ]
)


@pytest.mark.parametrize("first", [0x00, 0x03, 0x7F, 0xFF])
def test_xdp_program_reads_the_first_packet_byte(first: int) -> None:
    packet = bytes([first]) + bytes(range(1, 64))
    with prog_load(BpfProgType.XDP, XDP_FIRST_BYTE) as fd:
        run = prog_test_run(fd, packet)
    assert run.retval == first
    assert run.data_out == packet


def test_uninitialised_r0_is_rejected_with_the_log() -> None:
    with pytest.raises(errors.VerifierRejectedError) as caught:
        prog_load(BpfProgType.SOCKET_FILTER, insn(EXIT))
    error = caught.value
    assert "R0 !read_ok" in error.log
    assert "R0 !read_ok" in str(error).splitlines()[0]
    assert error.errno == errno.EACCES
    assert error.command == "BPF_PROG_LOAD"


def test_requested_log_is_returned_on_success() -> None:
    loaded = prog_load_with_log(BpfProgType.SOCKET_FILTER, R0_42_EXIT, log_level=2)
    with loaded.fd:
        assert "processed 2 insns" in loaded.log


def test_a_log_larger_than_the_cap_does_not_fail_a_good_program() -> None:
    loaded = prog_load_with_log(BpfProgType.SOCKET_FILTER, R0_42_EXIT, log_level=2, log_cap=128)
    with loaded.fd:
        # The level-2 log of even this program is longer than 128 bytes: what is kept is a
        # truncated log, and the program was loaded again without one.
        assert 0 < len(loaded.log) < 128
        assert prog_test_run(loaded.fd, bytes(20)).retval == 42


def test_prog_info_reports_size_and_runs() -> None:
    with enable_stats(), prog_load(BpfProgType.SOCKET_FILTER, R0_42_EXIT, name="counted") as fd:
        prog_test_run(fd, bytes(32), repeat=5)
        prog_test_run(fd, bytes(32), repeat=2)
        info = prog_info(fd)
        assert info.type is BpfProgType.SOCKET_FILTER
        assert info.name == "counted"
        assert info.xlated_prog_len == len(R0_42_EXIT)
        assert info.run_cnt == 7
        assert info.verified_insns == 2
        assert info.gpl_compatible
        assert prog_xlated_insns(fd) == R0_42_EXIT
        assert info.id in set(prog_ids())
        with prog_fd_by_id(info.id) as again:
            assert prog_info(again).tag == info.tag


def key32(value: int) -> bytes:
    return value.to_bytes(4, "little")


def value64(value: int) -> bytes:
    return value.to_bytes(8, "little")


def test_hash_map_roundtrip() -> None:
    with map_create(BpfMapType.HASH, 4, 8, 8, name="pybpf_hash") as fd:
        for i in range(1, 6):
            map_update(fd, key32(i), value64(i * 1000))
        assert map_lookup(fd, key32(3), 8) == value64(3000)
        assert sorted(map_keys(fd, 4)) == [key32(i) for i in range(1, 6)]
        with pytest.raises(errors.AlreadyExistsError):
            map_update(fd, key32(3), value64(0), BpfUpdateFlag.NOEXIST)
        with pytest.raises(errors.ObjectNotFoundError):
            map_update(fd, key32(99), value64(0), BpfUpdateFlag.EXIST)
        map_update(fd, key32(3), value64(7), BpfUpdateFlag.EXIST)
        assert map_lookup(fd, key32(3), 8) == value64(7)
        map_delete(fd, key32(3))
        with pytest.raises(errors.ObjectNotFoundError):
            map_lookup(fd, key32(3), 8)
        with pytest.raises(errors.ObjectNotFoundError):
            map_delete(fd, key32(3))
        assert sorted(map_lookup_batch(fd, 4, 8)) == [(key32(i), value64(i * 1000)) for i in (1, 2, 4, 5)]
        info = map_info(fd)
        assert (info.type, info.key_size, info.value_size, info.max_entries, info.name) == (
            BpfMapType.HASH,
            4,
            8,
            8,
            "pybpf_hash",
        )


def test_hash_map_full_raises_e2big() -> None:
    with map_create(BpfMapType.HASH, 4, 8, 2) as fd:
        map_update(fd, key32(1), value64(1))
        map_update(fd, key32(2), value64(2))
        with pytest.raises(errors.ArgumentTooBigError):
            map_update(fd, key32(3), value64(3))


def test_array_map_iteration_and_freeze() -> None:
    with map_create(BpfMapType.ARRAY, 4, 8, 4) as fd:
        assert map_lookup(fd, key32(2), 8) == bytes(8)
        assert list(map_keys(fd, 4)) == [key32(i) for i in range(4)]
        assert map_get_next_key(fd, key32(3), 4) is None
        assert map_update_batch(fd, [(key32(i), value64(i + 10)) for i in range(4)], 4, 8) == 4
        assert map_lookup(fd, key32(1), 8) == value64(11)
        with pytest.raises(errors.InvalidArgumentError):
            map_delete(fd, key32(1))
        with pytest.raises(errors.ObjectNotFoundError):
            map_lookup(fd, key32(4), 8)
        map_freeze(fd)
        with pytest.raises(errors.PermissionDeniedError, match="frozen"):
            map_update(fd, key32(0), value64(1))
        assert map_lookup(fd, key32(0), 8) == value64(10)


def test_queue_map_pops_in_order() -> None:
    with map_create(BpfMapType.QUEUE, 0, 4, 4) as fd:
        for i in (5, 6, 7):
            map_update(fd, b"", key32(i))
        assert [map_lookup_and_delete(fd, None, 4) for _ in range(3)] == [key32(i) for i in (5, 6, 7)]
        with pytest.raises(errors.ObjectNotFoundError):
            map_lookup_and_delete(fd, None, 4)


@pytest.fixture
def bpffs() -> Iterator[Path]:
    try:
        with private_bpffs() as directory:
            yield directory
    except errors.BpfCommandError as error:
        pytest.skip(f"cannot mount a private bpffs: {error}")


def test_pin_and_get_back_in_a_private_bpffs(bpffs: Path) -> None:
    assert is_bpffs(bpffs)
    path = bpffs / "pinned_map"
    with map_create(BpfMapType.HASH, 4, 8, 4) as fd:
        map_update(fd, key32(1), value64(0xABCDEF))
        obj_pin(fd, path)
        original_id = map_info(fd).id
    assert path.exists()
    with obj_get(path) as again:
        assert map_info(again).id == original_id
        assert map_lookup(again, key32(1), 8) == value64(0xABCDEF)
        with pytest.raises(errors.AlreadyExistsError):
            obj_pin(again, path)
    with pytest.raises(errors.ObjectNotFoundError):
        obj_get(bpffs / "missing")
    path.unlink()


def test_private_bpffs_is_unmounted_and_removed() -> None:
    try:
        with private_bpffs() as directory:
            assert is_bpffs(directory)
    except errors.BpfCommandError as error:
        pytest.skip(f"cannot mount a private bpffs: {error}")
    assert not directory.exists()


def minimal_btf(int_bits: int = 32) -> bytes:
    """A BTF blob holding one type: ``int`` (4 bytes, signed)."""
    strings = b"\0int\0"
    btf_kind_int = 1
    int_type = struct.pack(
        "<IIII",
        1,  # name_off: "int"
        btf_kind_int << 24,  # info: kind INT, vlen 0
        4,  # size
        (1 << 24) | int_bits,  # BTF_INT_SIGNED encoding, offset 0, bits
    )
    header = struct.pack(
        "<HBBIIIII",
        0xEB9F,  # magic
        1,  # version
        0,  # flags
        24,  # hdr_len
        0,  # type_off
        len(int_type),  # type_len
        len(int_type),  # str_off
        len(strings),  # str_len
    )
    return header + int_type + strings


def test_btf_load_of_a_minimal_blob() -> None:
    blob = minimal_btf()
    with btf_load(blob) as fd:
        info = btf_info(fd)
        assert info.id > 0
        assert info.btf_size == len(blob)
        assert btf_data(fd) == blob


def test_btf_load_rejection_carries_the_log() -> None:
    with pytest.raises(errors.InvalidArgumentError) as caught:
        btf_load(minimal_btf(int_bits=40))  # more bits than the 4-byte size holds
    assert caught.value.log.strip()
    assert caught.value.command == "BPF_BTF_LOAD"


def test_fd_is_closed_by_its_owner() -> None:
    fd = map_create(BpfMapType.ARRAY, 4, 4, 1)
    number = fd.fileno()
    assert isinstance(fd, Fd)
    fd.close()
    with pytest.raises(OSError):
        os.fstat(number)
