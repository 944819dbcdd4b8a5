"""The README's main job: the shipped XDP example on the shipped packets."""

from __future__ import annotations

import io
import json
from pathlib import Path

from pybpf.cli.main import main

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
PACKETS = ["icmp", "udp", "tcp", "arp"]


def test_xdp_stats_example_verdicts_and_maps() -> None:
    argv = ["prog", "run", str(EXAMPLES / "xdp_stats.o"), "--prog", "xdp_stats", "--dump-maps", "--json"]
    for name in PACKETS:
        argv += ["--data-in", f"@{EXAMPLES / 'packets' / name}.bin"]
    out = io.StringIO()
    assert main(argv, out=out) == 0
    runs = json.loads(out.getvalue())["runs"]
    assert [run["verdict"] for run in runs] == ["XDP_DROP", "XDP_PASS", "XDP_PASS", "XDP_PASS"]
    packets = [(EXAMPLES / "packets" / f"{name}.bin").read_bytes() for name in PACKETS]
    assert [bytes.fromhex(run["data_out"]) for run in runs] == packets  # the program never rewrites
    final = runs[-1]["maps"]
    counts = {
        int.from_bytes(bytes.fromhex(k), "little"): int.from_bytes(bytes.fromhex(v), "little")
        for k, v in final["packets_by_proto"]["entries"]
    }
    assert {proto: n for proto, n in counts.items() if n} == {1: 1, 6: 1, 17: 1}  # ICMP, TCP, UDP; ARP is not IP
    by_source = {
        bytes.fromhex(k): int.from_bytes(bytes.fromhex(v), "little") for k, v in final["bytes_by_source"]["entries"]
    }
    assert by_source == {
        bytes([10, 0, 0, 1]): len(packets[0]) + len(packets[1]),
        bytes([192, 168, 1, 7]): len(packets[2]),
    }


def test_dump_maps_with_a_ring_buffer_lists_it_without_entries() -> None:
    progs = Path(__file__).resolve().parents[1] / "progs"
    out = io.StringIO()
    code = main(
        [
            "prog",
            "run",
            str(progs / "kprobe_count.o"),
            "--prog",
            "count_openat",
            "--ctx-in",
            "00" * 168,
            "--dump-maps",
            "--json",
        ],
        out=out,
    )
    assert code == 0, out.getvalue()
    maps = json.loads(out.getvalue())["runs"][0]["maps"]
    assert maps["events"] == {"type": "ringbuf", "entries": []}
    assert len(maps["calls"]["entries"]) == 1
