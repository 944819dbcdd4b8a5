"""Native repeat (``test_run(..., repeat=N)`` loops in native code) and ``Program.run_batch``."""

from __future__ import annotations

import struct
from pathlib import Path

from pybpf.asm import assemble
from pybpf.runtime.loader import load
from pybpf.runtime.object import Object
from pybpf.vm import Region, RegionKind
from pybpf.vm.jit import JitProgram

PROGS = Path(__file__).resolve().parents[1] / "progs"
ETH_IPV4 = bytes.fromhex("00112233445566778899aabb0800")
DENIED = bytes.fromhex("c0a80001")  # 192.168.0.1


def ipv4(source: bytes) -> bytes:
    return ETH_IPV4 + bytes.fromhex("4500002e1234400040110000") + source + bytes.fromhex("c0a800c7") + bytes(26)


XDP_DROP, XDP_PASS = 1, 2
PACKETS = [
    ipv4(DENIED),
    ipv4(bytes.fromhex("0a000001")),
    ETH_IPV4 + bytes(6),  # IPv4 ethertype, truncated header: dropped by the bounds check
    bytes.fromhex("00112233445566778899aabb86dd") + bytes(60),  # not IPv4: passed
] * 64  # a batch of 256


def deny(obj: Object) -> None:
    obj.maps["deny_v4"].update_raw(struct.pack("<I", 32) + DENIED, struct.pack("<I", 1))


def counts(obj: Object) -> list[tuple[bytes, object]]:
    return sorted((entry.key, entry.value) for entry in obj.map_entries("verdict_count"))


def test_native_repeat_runs_n_times_inside_native_code() -> None:
    program = JitProgram(assemble("ldxdw %r0, [%r1]\nadd %r0, 1\nstxdw [%r1], %r0\nexit\n"))
    counter = Region.from_bytes(RegionKind.INPUT, "counter", bytes(8))
    result, elapsed = program.run_repeated(counter, repeat=1000)
    assert result.r0 == 1000  # memory carries over from run to run, as in the kernel's loop
    assert int.from_bytes(counter.view[:8], "little") == 1000
    assert elapsed > 0


def test_native_repeat_starts_every_run_with_the_same_registers() -> None:
    # r6 is changed by each run: a run that saw the previous run's registers would count up.
    program = JitProgram(assemble("mov %r6, %r2\nadd %r6, 5\nmov %r0, %r6\nmov %r2, 0\nexit\n"))
    result, _ = program.run_repeated(Region.from_bytes(RegionKind.INPUT, "in", bytes(16)), repeat=50)
    assert result.r0 == 16 + 5


def test_test_run_repeat_under_the_jit_matches_the_interpreter() -> None:
    with load(PROGS / "xdp_firewall.o") as reference, load(PROGS / "xdp_firewall.o", engine="jit") as native:
        for obj in (reference, native):
            deny(obj)
        expected = reference.program("xdp_firewall").test_run(PACKETS[0], repeat=300)
        got = native.program("xdp_firewall").test_run(PACKETS[0], repeat=300)
        assert (got.retval, got.data_out) == (expected.retval, expected.data_out) == (XDP_DROP, PACKETS[0])
        assert counts(native) == counts(reference)  # 300 drops counted under both
        assert got.duration_ns > 0


def test_test_run_repeat_with_tail_calls_gives_each_run_its_33() -> None:
    with load(PROGS / "tail_chain.o", engine="jit") as obj:
        result = obj.program("chain").test_run(bytes(64), repeat=3)
        depth = next(obj.map_entries("chain_depth")).value
    assert result.retval == 3 * 34
    assert depth == struct.pack("<I", 3 * 34)


def test_run_batch_natively_matches_per_packet_test_runs() -> None:
    with load(PROGS / "xdp_firewall.o") as reference, load(PROGS / "xdp_firewall.o", engine="jit") as native:
        for obj in (reference, native):
            deny(obj)
        program = native.program("xdp_firewall")
        assert program._batches_natively()
        got = program.run_batch(PACKETS)
        expected = [reference.program("xdp_firewall").test_run(packet).retval for packet in PACKETS]
        assert list(got.retvals) == expected
        assert set(expected) == {XDP_DROP, XDP_PASS}
        assert counts(native) == counts(reference)
        assert got.duration_ns > 0


def test_run_batch_with_native_checksum_helpers_matches_the_interpreter() -> None:
    packets = [ipv4(bytes([10, 0, 0, n])) for n in range(8)]
    with load(PROGS / "xdp_lb.o") as reference, load(PROGS / "xdp_lb.o", engine="jit") as native:
        program = native.program("xdp_lb")
        assert program._batches_natively()  # bpf_csum_diff is served natively (tests/jit/test_jit_batch_xdp.py)
        got = program.run_batch(packets)
        expected = reference.program("xdp_lb").run_batch(packets)
    assert list(got.retvals) == list(expected.retvals)
    assert len(got.retvals) == len(packets)


def test_empty_batch() -> None:
    with load(PROGS / "xdp_firewall.o", engine="jit") as obj:
        assert list(obj.program("xdp_firewall").run_batch([]).retvals) == []


def test_native_repeat_goes_on_after_a_run_that_stopped_early() -> None:
    # Count the run in memory, then LD_ABS past the packet: the run ends with r0 = 0, as the
    # kernel's would, and the loop still makes every one of its runs.
    from pybpf.isa import Exit, LabeledInsn, PacketLoad, Size
    from pybpf.isa.opcodes import Mode

    counting = assemble("ldxdw %r0, [%r1]\nadd %r0, 1\nstxdw [%r1], %r0\n")
    insns = [*counting, LabeledInsn(len(counting), PacketLoad(Size.W, Mode.ABS, None, 64))]
    insns.append(LabeledInsn(len(insns), Exit()))
    counter = Region.from_bytes(RegionKind.INPUT, "counter", bytes(8))
    packet = Region.from_bytes(RegionKind.PACKET, "packet", bytes(16))
    result, _ = JitProgram(insns).run_repeated(counter, packet=packet, repeat=7)
    assert result.r0 == 0
    assert int.from_bytes(counter.view[:8], "little") == 7
