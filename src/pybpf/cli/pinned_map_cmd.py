"""``pybpf map update|delete|push|pop|peek --pinned PATH``: change a pinned map from this process.

The library does the work (:class:`pybpf.hooks.pinning.PinnedMap`): an array is written in the
pin file, a hash map or LPM trie is changed by the process that pinned it (or, once that
process has exited, a hash map in the file under its lock), a queue or stack is pushed and
popped under the file's lock. Keys and values are hex (``01 00 00 00``) or ``@FILE``.
"""

from __future__ import annotations

import argparse
import json
from typing import Any, TextIO

from pybpf.cli.prog_cmd import read_bytes_arg
from pybpf.platform.uapi_generated import BpfUpdateFlag

UPDATE_FLAGS = {"any": BpfUpdateFlag.ANY, "noexist": BpfUpdateFlag.NOEXIST, "exist": BpfUpdateFlag.EXIST}


def _write(out: TextIO, args: argparse.Namespace, record: dict[str, Any], text: str) -> None:
    out.write((json.dumps(record) if args.json else text) + "\n")


def _update(args: argparse.Namespace, out: TextIO) -> int:
    from pybpf.hooks.pinning import open_pinned_map

    key = read_bytes_arg(args.key, "KEY")
    value = read_bytes_arg(args.value, "VALUE")
    with open_pinned_map(args.pinned) as pinned:
        pinned.update(key, value, UPDATE_FLAGS[args.flags])
    _write(out, args, {"updated": key.hex()}, f"updated key {key.hex()}")
    return 0


def _delete(args: argparse.Namespace, out: TextIO) -> int:
    from pybpf.hooks.pinning import open_pinned_map

    key = read_bytes_arg(args.key, "KEY")
    with open_pinned_map(args.pinned) as pinned:
        pinned.delete(key)
    _write(out, args, {"deleted": key.hex()}, f"deleted key {key.hex()}")
    return 0


def _push(args: argparse.Namespace, out: TextIO) -> int:
    from pybpf.hooks.pinning import open_pinned_map

    value = read_bytes_arg(args.value, "VALUE")
    with open_pinned_map(args.pinned) as pinned:
        pinned.push(value, UPDATE_FLAGS[args.flags])
    _write(out, args, {"pushed": value.hex()}, f"pushed {value.hex()}")
    return 0


def _pop_or_peek(args: argparse.Namespace, out: TextIO) -> int:
    from pybpf.hooks.pinning import open_pinned_map

    with open_pinned_map(args.pinned) as pinned:
        value = pinned.pop() if args.map_command == "pop" else pinned.peek()
    _write(out, args, {"value": value.hex()}, value.hex())
    return 0


def register_pinned_map_commands(map_commands: Any) -> None:
    """Add the commands that change a pinned map to ``pybpf map``'s subcommands."""

    def pinned_parser(name: str, help_text: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = map_commands.add_parser(name, help=help_text)
        parser.add_argument(
            "--pinned", required=True, metavar="PATH", help="the pinned map (relative to the pin root unless absolute)"
        )
        parser.add_argument("--json", action="store_true", help="print the result as JSON")
        return parser

    update = pinned_parser("update", "update an element of a pinned map while its process runs")
    update.add_argument("key", metavar="KEY", help="key: hex bytes or @FILE")
    update.add_argument("value", metavar="VALUE", help="value (all CPUs' copies for per-CPU maps): hex or @FILE")
    update.add_argument("--flags", choices=sorted(UPDATE_FLAGS), default="any", help="BPF_ANY, BPF_NOEXIST, BPF_EXIST")
    update.set_defaults(func=_update)
    delete = pinned_parser("delete", "delete an element of a pinned hash map or LPM trie")
    delete.add_argument("key", metavar="KEY", help="key: hex bytes or @FILE")
    delete.set_defaults(func=_delete)
    push = pinned_parser("push", "push a value onto a pinned queue or stack")
    push.add_argument("value", metavar="VALUE", help="value: hex bytes or @FILE")
    push.add_argument("--flags", choices=("any", "exist"), default="any", help="exist: overwrite the oldest when full")
    push.set_defaults(func=_push)
    pop = pinned_parser("pop", "pop a value from a pinned queue or stack")
    pop.set_defaults(func=_pop_or_peek)
    peek = pinned_parser("peek", "read the value a pop would return, without removing it")
    peek.set_defaults(func=_pop_or_peek)
