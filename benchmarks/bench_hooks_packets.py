"""Per-packet cost of pcap replay (:func:`pybpf.hooks.packets.replay`) for small XDP and tc programs.

Run with ``python benchmarks/bench_hooks_packets.py [--packets N] [--runs R] [--engine interp|jit]``
(the programs' engine; default: what ``pybpf.load`` picks). The programs are
the committed test objects ``tests/progs/xdp_firewall.o`` (an LPM-trie lookup and a per-CPU
counter, about 36 instructions per IPv4 packet) and ``tests/progs/xdp_lb.o`` (a rewrite with an
incremental checksum, then XDP_TX), and ``tests/progs/tc_mark.o`` (bpf_skb_load_bytes of the IPv4
protocol, then a store to ``skb->mark``). The capture is built in memory: 64-byte IPv4/UDP frames
from rotating sources, a quarter of them denied by the firewall. For comparison the table also
gives ``Program.test_run`` on the same frames (one BPF_PROG_TEST_RUN per packet), which shares
the per-packet path, and the part of each packet spent running the program itself (its engine;
the JIT counts no instructions, so "insns/pkt" is 0 under it). Under the JIT a replay runs
native batches where the program allows ("batch ns/pkt"); "1-by-1 ns/pkt" is the same replay
forced to one test run per packet (``replay(..., batch=False)``), the path every replay took before.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import struct
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pybpf import load
from pybpf.hooks.packets import replay
from pybpf.hooks.packets.replay import batch_blocker
from pybpf.runtime.object import Object

PROGS = Path(__file__).resolve().parents[1] / "tests" / "progs"


def frame(source: int) -> bytes:
    header = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 50, 1, 0, 64, 17, 0, source.to_bytes(4, "big"), socket.inet_aton("10.0.0.1")
    )
    return b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00" + header + struct.pack("!HHHH", 1, 2, 30, 0) + bytes(22)


def capture(count: int) -> list[bytes]:
    return [frame(0x0A010000 + i % 256) for i in range(count)]


def setup_firewall(obj: Object) -> None:
    for i in range(0, 256, 4):  # a quarter of the sources are denied
        key = struct.pack("<I", 32) + (0x0A010000 + i).to_bytes(4, "big")
        obj.maps["deny_v4"].update_raw(key, struct.pack("<I", 1))


def no_setup(obj: Object) -> None:
    del obj


def setup_lb(obj: Object) -> None:
    for i in range(8):
        obj.maps["backends"].update_raw(struct.pack("<I", i), socket.inet_aton(f"10.9.0.{i + 1}") + bytes(8))


def measure(
    name: str, setup: Callable[[Object], None], packets: list[bytes], runs: int, options: dict[str, Any]
) -> dict[str, float]:
    with load(PROGS / f"{name}.o", **options) as obj:
        setup(obj)
        program = obj.program(name)
        replay(program, packets[:64])  # warm-up
        replay(program, packets[:64], batch=False)
        per_packet, single, in_program, instructions = [], [], [], 0.0
        for _ in range(runs):  # the two paths interleaved, so both see the same machine load
            report = replay(program, packets, keep_outputs=True)
            per_packet.append(report.ns_per_packet)
            instructions = report.instructions / report.packets
            single.append(replay(program, packets, keep_outputs=True, batch=False).ns_per_packet)
        blocker = batch_blocker(program)
        started = time.perf_counter_ns()
        for data in packets:
            in_program.append(program.test_run(data).duration_ns)
        test_run_ns = (time.perf_counter_ns() - started) / len(packets)
    return {
        "replay_ns": min(per_packet),  # the least disturbed run (timeit's advice on a shared machine)
        "single_ns": min(single),
        "test_run_ns": test_run_ns,
        "interpreter_ns": statistics.median(in_program),
        "instructions": instructions,
        "engine": program.engine,
        "batched": blocker is None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packets", type=int, default=2000, help="frames per replay (default 2000)")
    parser.add_argument("--runs", type=int, default=3, help="replays per program; the best is shown (default 3)")
    parser.add_argument("--engine", choices=("interp", "jit"), default=None, help="default: pybpf.load's choice")
    args = parser.parse_args(argv)
    options: dict[str, Any] = {} if args.engine is None else {"engine": args.engine}
    packets = capture(args.packets)
    print(f"pcap replay, {args.packets} packets of 64 bytes, best of {args.runs} runs")
    header = f"{'program':<14}{'engine':>7}{'insns/pkt':>10}{'batch ns/pkt':>13}{'pkt/s':>11}{'1-by-1 ns/pkt':>15}"
    print(f"{header}{'pkt/s':>9}{'speed-up':>9}{'test_run ns':>12}{'run ns':>9}")
    for name, setup in (("xdp_firewall", setup_firewall), ("xdp_lb", setup_lb), ("tc_mark", no_setup)):
        result = measure(name, setup, packets, args.runs, options)
        batch_ns = f"{result['replay_ns']:>13.0f}" if result["batched"] else f"{'(1-by-1)':>13}"
        print(
            f"{name:<14}{result['engine']:>7}{result['instructions']:>10.1f}{batch_ns}"
            f"{1e9 / result['replay_ns']:>11.0f}{result['single_ns']:>15.0f}{1e9 / result['single_ns']:>9.0f}"
            f"{result['single_ns'] / result['replay_ns']:>8.0f}x"
            f"{result['test_run_ns']:>12.0f}{result['interpreter_ns']:>9.0f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
