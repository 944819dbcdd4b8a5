"""``pybpf link list``: the links pinned under the pin root.

Links belong to the process that made them, and a CLI process has none of its own; like
``bpftool link list`` reading the kernel's table, ``link list`` reads the pin root, where
processes pin their links (:func:`pybpf.hooks.pinning.pin_link`), and says whether each pinning
process is still running.
"""

from __future__ import annotations

import argparse
import json
from typing import Any, TextIO

COLUMNS = ("id", "kind", "program", "target", "pid", "alive", "path")


def _link_list(args: argparse.Namespace, out: TextIO) -> int:
    from pybpf.hooks.pinning import pin_root, pinned_links

    links = pinned_links(args.root)
    if args.json:
        out.write(json.dumps({"root": str(pin_root(args.root)), "links": links}) + "\n")
        return 0
    if not links:
        out.write(f"no pinned links under {pin_root(args.root)}\n")
        return 0
    if out.isatty():
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"links pinned under {pin_root(args.root)}")
        for column in COLUMNS:
            table.add_column(column)
        for link in links:
            table.add_row(*(str(link.get(column, "")) for column in COLUMNS))
        Console(file=out).print(table)
        return 0
    for link in links:
        state = "" if link.get("alive") else "  (process gone)"
        out.write(
            f"{link.get('id')}: {link.get('kind')}  prog {link.get('program')!r} (id {link.get('program_id')})"
            f"  target {link.get('target')!r}  pid {link.get('pid')}  pinned {link.get('path')}{state}\n"
        )
    return 0


def register(subparsers: Any) -> None:
    link = subparsers.add_parser("link", help="links (program attachments) pinned under the pin root")
    commands = link.add_subparsers(dest="link_command", metavar="LINK_COMMAND", required=True)
    listing = commands.add_parser("list", help="list the pinned links (a CLI process has no links of its own)")
    listing.add_argument("--root", metavar="DIR", help="pin root (default: $PYBPF_PIN_ROOT or the runtime dir)")
    listing.add_argument("--json", action="store_true", help='print {"root": str, "links": [...]}')
    listing.set_defaults(func=_link_list)
