"""bpf_loop with a callback run by the interpreter, probe_read, time/PRNG/task, XDP and skb packet helpers."""

from __future__ import annotations

import os
import threading

import pytest
from helper_harness import U64, Harness, labeled, make_harness, neg

from pybpf.isa import Bin, BinOp, Call, Cond, Exit, Imm, Instruction, Jump, Load, LoadImm64, PseudoSrc, Reg, Size, Store
from pybpf.platform import HelperId, XdpAction
from pybpf.runtime.helpers import PacketContext, PacketKind, RunState, TaskInfo, default_helpers
from pybpf.vm import Interpreter

HELPERS = default_helpers()
EINVAL, EFAULT, E2BIG = neg(22), neg(14), neg(7)


def call(harness: Harness, helper: HelperId, *args: int) -> int:
    return HELPERS[helper](harness.env, *[*args, 0, 0, 0, 0, 0][:5])


def mov(reg: Reg, value: int) -> Bin:
    return Bin(BinOp.MOV, reg, Imm(value), True)


def loop_program(nr_loops: int, flags: int = 0) -> list[Instruction]:
    return [
        LoadImm64.constant(Reg.R1, nr_loops),  # pc 0-1
        LoadImm64(Reg.R2, 11, 0, PseudoSrc.FUNC),  # pc 2-3: callback at pc 14
        Store(Size.DW, Reg.R10, -8, Imm(0)),  # 4
        Bin(BinOp.MOV, Reg.R3, Reg.R10, True),  # 5
        Bin(BinOp.ADD, Reg.R3, Imm(-8), True),  # 6
        mov(Reg.R4, flags),  # 7
        Call(HelperId.LOOP),  # 8
        Bin(BinOp.MOV, Reg.R6, Reg.R0, True),  # 9
        Load(Size.DW, Reg.R0, Reg.R10, -8),  # 10
        Bin(BinOp.MUL, Reg.R0, Imm(1000), True),  # 11
        Bin(BinOp.ADD, Reg.R0, Reg.R6, True),  # 12
        Exit(),  # 13
        # callback(index, ctx): *ctx += index; stop (return 1) at index 3
        Load(Size.DW, Reg.R3, Reg.R2, 0),  # 14
        Bin(BinOp.ADD, Reg.R3, Reg.R1, True),  # 15
        Store(Size.DW, Reg.R2, 0, Reg.R3),  # 16
        mov(Reg.R0, 0),  # 17
        Jump(Cond.JNE, Reg.R1, Imm(3), 1, False),  # 18
        mov(Reg.R0, 1),  # 19
        Exit(),  # 20
    ]


@pytest.mark.parametrize(
    ("nr_loops", "flags", "expected"),
    [
        (5, 0, 6 * 1000 + 4),  # stops after index 3: 4 iterations, sum 0+1+2+3
        (3, 0, 3 * 1000 + 3),  # runs out first
        (0, 0, 0),
        (5, 1, EINVAL),  # flags must be 0
        ((1 << 23) + 1, 0, E2BIG),
        ((1 << 32) + 2, 0, 1 * 1000 + 2),  # nr_loops is a u32
    ],
)
def test_bpf_loop_calls_the_callback_in_the_interpreter(nr_loops: int, flags: int, expected: int) -> None:
    harness = make_harness()
    program = Interpreter(labeled(loop_program(nr_loops, flags)), helpers=HELPERS, memory=harness.memory)
    result = program.run(user=harness.state)
    assert result.r0 == expected


def test_probe_read_copies_or_faults_and_zeroes() -> None:
    harness = make_harness()
    src = harness.region(b"0123456789")
    dst = harness.region(b"\xaa" * 8)
    assert call(harness, HelperId.PROBE_READ_KERNEL, dst.address, 4, src.address + 2) == 0
    assert harness.read(dst.address, 8) == b"2345" + b"\xaa" * 4
    assert call(harness, HelperId.PROBE_READ_USER, dst.address, 8, src.address + 6) == EFAULT  # runs off the end
    assert harness.read(dst.address, 8) == bytes(8)
    assert call(harness, HelperId.PROBE_READ, dst.address, 8, 0x100) == EFAULT


def test_probe_read_str() -> None:
    harness = make_harness()
    src = harness.region(b"hi\0there")
    dst = harness.region(b"\xaa" * 8)
    assert call(harness, HelperId.PROBE_READ_KERNEL_STR, dst.address, 8, src.address) == 3
    assert harness.read(dst.address, 3) == b"hi\0"
    assert call(harness, HelperId.PROBE_READ_USER_STR, dst.address, 4, src.address + 3) == 4  # truncated
    assert harness.read(dst.address, 4) == b"the\0"
    assert call(harness, HelperId.PROBE_READ_STR, dst.address, 8, src.address + 3) == EFAULT  # no NUL before the end
    assert harness.read(dst.address, 8) == bytes(8)
    assert call(harness, HelperId.PROBE_READ_STR, dst.address, 0, src.address) == 0


def test_pid_tgid_uid_gid_and_comm_are_this_process() -> None:
    harness = make_harness(task=None)
    harness.services.task = TaskInfo.current()
    value = call(harness, HelperId.GET_CURRENT_PID_TGID)
    assert value >> 32 == os.getpid()
    assert value & 0xFFFFFFFF == threading.get_native_id()
    assert call(harness, HelperId.GET_CURRENT_UID_GID) == (os.getgid() << 32) | os.getuid()
    buf = harness.region(b"\xaa" * 16)
    assert call(harness, HelperId.GET_CURRENT_COMM, buf.address, 16) == 0
    with open("/proc/self/comm", "rb") as comm:
        expected = comm.read().rstrip(b"\n")[:15]
    assert harness.read(buf.address, 16) == expected + bytes(16 - len(expected))
    task = call(harness, HelperId.GET_CURRENT_TASK)
    assert harness.memory.find(task, 8) is not None


def test_prandom_is_deterministic_when_seeded() -> None:
    first = [call(h, HelperId.GET_PRANDOM_U32) for h in [make_harness(seed=7)] for _ in range(5)]
    second = [call(h, HelperId.GET_PRANDOM_U32) for h in [make_harness(seed=7)] for _ in range(5)]
    other = [call(h, HelperId.GET_PRANDOM_U32) for h in [make_harness(seed=8)] for _ in range(5)]
    assert first == second != other
    assert all(0 <= v <= 0xFFFFFFFF for v in first)


def test_clock_cpu_and_misc() -> None:
    harness = make_harness()
    assert call(harness, HelperId.KTIME_GET_NS) == 1_000_000_000
    harness.clock.advance(5)
    assert call(harness, HelperId.KTIME_GET_BOOT_NS) == 1_000_000_005
    harness.state.cpu = 3
    assert call(harness, HelperId.GET_SMP_PROCESSOR_ID) == 3
    harness.state.func_ip, harness.state.attach_cookie = 0xFFFF1234, 77
    assert call(harness, HelperId.GET_FUNC_IP) == 0xFFFF1234
    assert call(harness, HelperId.GET_ATTACH_COOKIE) == 77
    assert call(harness, HelperId.OVERRIDE_RETURN, 0, neg(1)) == 0
    assert harness.state.override_return == neg(1)


def test_spin_lock_marks_the_word_and_rejects_double_lock() -> None:
    harness = make_harness()
    value = harness.region(8)
    assert call(harness, HelperId.SPIN_LOCK, value.address) == 0
    assert harness.read(value.address, 4) == b"\1\0\0\0"
    with pytest.raises(Exception, match="held"):
        call(harness, HelperId.SPIN_LOCK, value.address)
    assert call(harness, HelperId.SPIN_UNLOCK, value.address) == 0
    assert harness.read(value.address, 4) == bytes(4)


def xdp(harness: Harness, data: bytes) -> PacketContext:
    packet = PacketContext(harness.memory, data, kind=PacketKind.XDP)
    harness.state.packet = packet
    return packet


def test_xdp_adjust_head_moves_data_and_notifies() -> None:
    harness = make_harness()
    packet = xdp(harness, bytes(range(64)))
    seen: list[int] = []
    packet.add_listener(lambda p: seen.append(p.data))
    start = packet.data
    assert call(harness, HelperId.XDP_ADJUST_HEAD, 0, (-16) & U64) == 0
    assert packet.data == start - 16 and packet.length == 80 and seen == [packet.data]
    assert call(harness, HelperId.XDP_ADJUST_HEAD, 0, 16 + 14) == 0
    assert packet.packet_bytes() == bytes(range(14, 64))
    assert call(harness, HelperId.XDP_ADJUST_HEAD, 0, 64) == EINVAL  # would leave less than ETH_HLEN
    assert call(harness, HelperId.XDP_ADJUST_HEAD, 0, (-1000) & U64) == EINVAL


def test_xdp_adjust_meta_and_tail() -> None:
    harness = make_harness()
    packet = xdp(harness, bytes(60))
    assert call(harness, HelperId.XDP_ADJUST_META, 0, (-8) & U64) == 0
    assert packet.data - packet.data_meta == 8
    assert call(harness, HelperId.XDP_ADJUST_META, 0, (-2) & U64) == neg(13)  # length not a multiple of 4
    # Linux 6.16+ allows up to 252 bytes (meta_len is a u8); the headroom must keep struct xdp_frame.
    assert call(harness, HelperId.XDP_ADJUST_META, 0, (-40) & U64) == 0
    assert packet.data - packet.data_meta == 48
    assert call(harness, HelperId.XDP_ADJUST_META, 0, (-172) & U64) == EINVAL  # 220 bytes: over struct xdp_frame
    assert call(harness, HelperId.XDP_ADJUST_META, 0, (-168) & U64) == 0
    assert packet.data - packet.data_meta == 216
    assert call(harness, HelperId.XDP_ADJUST_META, 0, 216) == 0
    assert call(harness, HelperId.XDP_ADJUST_TAIL, 0, (-40) & U64) == 0
    assert packet.length == 20
    assert call(harness, HelperId.XDP_ADJUST_TAIL, 0, (-7) & U64) == EINVAL
    assert call(harness, HelperId.XDP_ADJUST_TAIL, 0, 100) == 0 and packet.packet_bytes() == bytes(120)
    assert call(harness, HelperId.XDP_ADJUST_TAIL, 0, 4096) == EINVAL


def test_redirect_records_the_target() -> None:
    harness = make_harness()
    xdp(harness, bytes(60))
    assert call(harness, HelperId.REDIRECT, 7, 0) == XdpAction.REDIRECT
    assert harness.state.redirect is not None and harness.state.redirect.ifindex == 7
    assert call(harness, HelperId.REDIRECT, 7, 1) == XdpAction.ABORTED


def skb(harness: Harness, data: bytes) -> PacketContext:
    packet = PacketContext(harness.memory, data, kind=PacketKind.SKB)
    harness.state.packet = packet
    return packet


def eth_ipv4(payload: bytes = b"") -> bytes:
    return bytes(12) + b"\x08\x00" + bytes([0x45]) + bytes(19) + payload


def test_skb_load_and_store_bytes() -> None:
    harness = make_harness()
    packet = skb(harness, eth_ipv4(b"payload!"))
    buf = harness.region(b"\xaa" * 8)
    assert call(harness, HelperId.SKB_LOAD_BYTES, 0, 34, buf.address, 8) == 0
    assert harness.read(buf.address, 8) == b"payload!"
    assert call(harness, HelperId.SKB_LOAD_BYTES, 0, 40, buf.address, 8) == EFAULT
    assert harness.read(buf.address, 8) == bytes(8)
    new = harness.region(b"PAY")
    assert call(harness, HelperId.SKB_STORE_BYTES, 0, 34, new.address, 3, 0) == 0
    assert packet.read(34, 8) == b"PAYload!"
    assert call(harness, HelperId.SKB_STORE_BYTES, 0, 34, new.address, 3, 4) == EINVAL
    assert call(harness, HelperId.SKB_STORE_BYTES, 0, 40, new.address, 3, 0) == neg(12)


def test_skb_change_head_tail_and_adjust_room() -> None:
    harness = make_harness()
    frame = eth_ipv4(b"abcd")
    packet = skb(harness, frame)
    assert call(harness, HelperId.SKB_CHANGE_TAIL, 0, 30, 0) == 0
    assert packet.packet_bytes() == frame[:30]
    assert call(harness, HelperId.SKB_CHANGE_TAIL, 0, 40, 0) == 0
    assert packet.packet_bytes() == frame[:30] + bytes(10)
    assert call(harness, HelperId.SKB_CHANGE_TAIL, 0, 10, 0) == EINVAL  # below the network header
    assert call(harness, HelperId.SKB_CHANGE_HEAD, 0, 100, 0) == 0  # more than the headroom: the buffer moves
    assert packet.packet_bytes() == bytes(100) + frame[:30] + bytes(10)
    assert call(harness, HelperId.SKB_CHANGE_HEAD, 0, 4, 1) == EINVAL
    harness2 = make_harness()
    packet2 = skb(harness2, frame)
    assert call(harness2, HelperId.SKB_ADJUST_ROOM, 0, 8, 1, 0) == 0  # MAC mode: room after the MAC header
    assert packet2.length == len(frame) + 8
    assert packet2.read(0, 14) == frame[:14] and packet2.read(22, len(frame) - 14) == frame[14:]
    assert call(harness2, HelperId.SKB_ADJUST_ROOM, 0, (-8) & U64, 1, 0) == 0
    assert packet2.packet_bytes() == frame
    assert call(harness2, HelperId.SKB_ADJUST_ROOM, 0, 8, 9, 0) == neg(524)


def test_vlan_push_then_pop_round_trips() -> None:
    harness = make_harness()
    frame = eth_ipv4(b"xy")
    packet = skb(harness, frame)
    proto = int.from_bytes(b"\x81\x00", "little")  # htons(ETH_P_8021Q) as the program holds it
    assert call(harness, HelperId.SKB_VLAN_PUSH, 0, proto, 10) == 0
    assert packet.skb.vlan_present and packet.packet_bytes() == frame  # the first tag is out of band
    assert call(harness, HelperId.SKB_VLAN_PUSH, 0, proto, 20) == 0
    assert packet.read(12, 4) == b"\x81\x00\x00\x0a" and packet.skb.vlan_tci == 20
    assert call(harness, HelperId.SKB_VLAN_POP, 0) == 0
    assert packet.skb.vlan_tci == 10 and packet.packet_bytes() == frame
    assert call(harness, HelperId.SKB_VLAN_POP, 0) == 0
    assert not packet.skb.vlan_present


def test_hash_recalc_is_stable_per_flow() -> None:
    harness = make_harness()
    skb(harness, eth_ipv4(b"abcd"))
    first = call(harness, HelperId.GET_HASH_RECALC)
    assert first != 0 and call(harness, HelperId.GET_HASH_RECALC) == first


def test_packet_helper_needs_a_packet() -> None:
    harness = make_harness()
    harness.state = RunState(harness.services)
    harness.env.user = harness.state
    with pytest.raises(Exception, match="PacketContext"):
        call(harness, HelperId.SKB_LOAD_BYTES, 0, 0, 0, 1)
