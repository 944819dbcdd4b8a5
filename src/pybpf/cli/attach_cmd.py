"""``pybpf attach xdp|tc OBJ --prog NAME --dev IFACE [--duration S]``: a packet program on a live interface.

The program runs in user space on a copy of every frame the interface receives
(:func:`pybpf.hooks.packets.attach_xdp`); the kernel's stack still gets every frame. The command
runs for ``--duration`` seconds, or until interrupted (Ctrl-C), then prints the link's counters
(and ``--dump-maps``: the maps). ``--json`` output never goes through rich.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import threading
from typing import Any, TextIO

from pybpf.cli.prog_cmd import _write_map_text, map_dump
from pybpf.runtime.loader import load


def _attach(args: argparse.Namespace, out: TextIO) -> int:
    from pybpf.hooks.packets import attach_tc, attach_xdp

    attach = attach_xdp if args.hook == "xdp" else attach_tc
    with load(args.object) as obj:
        program = obj.program(args.prog)
        with attach(program, args.dev) as link:
            # Ctrl-C is how an attachment without --duration ends: a normal stop, not an error.
            with contextlib.suppress(KeyboardInterrupt):
                threading.Event().wait(args.duration)
            counters = link.counters()
        maps = {name: map_dump(obj, name) for name in sorted(obj.maps)} if args.dump_maps else {}
    if args.json:
        record = {"hook": args.hook, "program": args.prog, "dev": args.dev, **counters.to_json()}
        if args.dump_maps:
            record["maps"] = maps
        out.write(json.dumps(record) + "\n")
        return 0
    out.write(f"{args.hook} {args.prog} on {args.dev}: {counters.received} packets received\n")
    for verdict, count in counters.verdicts.items():
        out.write(f"  {verdict:<20} {count:>8}\n")
    out.write(f"transmitted: {counters.transmitted}, send errors: {counters.send_errors}\n")
    if counters.refused or counters.errors:
        out.write(f"refused: {counters.refused}, program errors: {counters.errors}\n")
    if counters.last_error:
        out.write(f"last error: {counters.last_error}\n")
    for name, dumped in maps.items():
        _write_map_text(out, name, dumped)
    return 0


def register(subparsers: Any) -> None:
    attach = subparsers.add_parser("attach", help="run a packet program on a live interface (user space, AF_PACKET)")
    hooks = attach.add_subparsers(dest="hook", metavar="HOOK", required=True)
    for hook, text in (("xdp", "an XDP program"), ("tc", "a tc (sched_cls) program, ingress")):
        parser = hooks.add_parser(hook, help=f"attach {text}")
        parser.add_argument("object", metavar="OBJ", help="BPF ELF object file")
        parser.add_argument("--prog", required=True, metavar="NAME", help="program (function) name")
        parser.add_argument("--dev", required=True, metavar="IFACE", help="network interface to receive from")
        parser.add_argument(
            "--duration", type=float, default=None, metavar="S", help="seconds to stay attached (default: until Ctrl-C)"
        )
        parser.add_argument("--dump-maps", action="store_true", help="print every map when detached")
        parser.add_argument("--json", action="store_true", help="print the counters as JSON")
        parser.set_defaults(func=_attach)
