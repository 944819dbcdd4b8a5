#!/usr/bin/env python3
"""Generate ``src/pybpf/platform/uapi_generated.py`` from the Linux uapi headers.

The kernel's ``include/uapi/linux/bpf.h`` is the single source of truth for helper ids, program,
map, attach and link type numbers and the flag values; hand-typing them invites silent drift, so
this script parses the header and writes Python enums (as cilium/ebpf generates its constants).

Usage::

    python tools/gen_uapi.py [--bpf-h PATH] [--pkt-cls-h PATH] [-o OUTPUT]

``--bpf-h`` defaults to ``/usr/include/linux/bpf.h`` (Debian's linux-libc-dev); pass a newer
kernel tree's ``include/uapi/linux/bpf.h`` to pick up newer ids.  ``--pkt-cls-h`` (default
``/usr/include/linux/pkt_cls.h``) supplies the TC_ACT_* values; when it is absent the TcAct
enum is left out.  With ``-o -`` the module is written to stdout.

Only the standard library is used, and parsing is deliberately small: comments are stripped,
then ``enum`` bodies, ``#define NAME value`` lines and the ``__BPF_FUNC_MAPPER`` list are read.
"""

from __future__ import annotations

import argparse
import ast
import keyword
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

DEFAULT_BPF_H = "/usr/include/linux/bpf.h"
DEFAULT_PKT_CLS_H = "/usr/include/linux/pkt_cls.h"
DEFAULT_OUTPUT = "src/pybpf/platform/uapi_generated.py"


class HeaderParseError(Exception):
    """The header does not have the shape this script expects."""


@dataclass(frozen=True, slots=True)
class EnumBlock:
    """One ``enum [tag] { ... }`` body, its members evaluated in order."""

    tag: str | None
    members: tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True)
class OutputEnum:
    """How one Python enum is derived from the header."""

    class_name: str
    base: str  # "IntEnum" or "IntFlag"
    doc: str
    prefix: str
    select: Callable[[ParsedHeader], list[tuple[str, int]] | None]


_COMMENT_RE = re.compile(r"/\*.*?\*/|//[^\n]*", re.S)
_ENUM_RE = re.compile(r"\benum\s+(\w+)?\s*\{(.*?)\}", re.S)
_DEFINE_RE = re.compile(r"^#define\s+(\w+)\s+(.+?)\s*$", re.M)
# Linux <= 6.1: ``FN(map_lookup_elem),``; newer: ``FN(map_lookup_elem, 1, ##ctx)``.
_MAPPER_START_RE = re.compile(r"#define\s+_{2,3}BPF_FUNC_MAPPER\(FN(?:,\s*ctx\.\.\.)?\)")
_FN_RE = re.compile(r"\bFN\((\w+)(?:\s*,\s*(\d+))?")
_INT_SUFFIX_RE = re.compile(r"\b(0[xX][0-9a-fA-F]+|\d+)(?:[uU]?[lL]{0,2}|[lL]{1,2}[uU])\b")


def strip_comments(text: str) -> str:
    return _COMMENT_RE.sub(" ", text)


def eval_c_int(expr: str, known: dict[str, int]) -> int:
    """Evaluate a C integer constant expression made of literals, known names and + - ~ << | ( )."""
    cleaned = _INT_SUFFIX_RE.sub(lambda m: m.group(1), expr.strip())
    cleaned = re.sub(r"\(\s*__u(?:8|16|32|64)\s*\)", "", cleaned)
    tree = ast.parse(cleaned, mode="eval")

    def walk(node: ast.AST) -> int:
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        if isinstance(node, ast.Name):
            if node.id not in known:
                raise HeaderParseError(f"unknown name {node.id!r} in {expr!r}")
            return known[node.id]
        if isinstance(node, ast.UnaryOp):
            operand = walk(node.operand)
            if isinstance(node.op, ast.USub):
                return -operand
            if isinstance(node.op, ast.UAdd):
                return operand
            if isinstance(node.op, ast.Invert):
                return ~operand
        if isinstance(node, ast.BinOp):
            left, right = walk(node.left), walk(node.right)
            ops: dict[type[ast.operator], Callable[[int, int], int]] = {
                ast.LShift: lambda a, b: a << b,
                ast.RShift: lambda a, b: a >> b,
                ast.BitOr: lambda a, b: a | b,
                ast.BitAnd: lambda a, b: a & b,
                ast.Add: lambda a, b: a + b,
                ast.Sub: lambda a, b: a - b,
            }
            func = ops.get(type(node.op))
            if func is not None:
                return func(left, right)
        raise HeaderParseError(f"unsupported constant expression {expr!r}")

    return walk(tree.body)


@dataclass(frozen=True, slots=True)
class ParsedHeader:
    enums: tuple[EnumBlock, ...]
    defines: dict[str, str]
    helpers: tuple[tuple[str, int], ...]

    def named_enum(self, tag: str) -> list[tuple[str, int]] | None:
        for block in self.enums:
            if block.tag == tag:
                return list(block.members)
        return None

    def enum_containing(self, member: str) -> list[tuple[str, int]] | None:
        for block in self.enums:
            if any(name == member for name, _ in block.members):
                return list(block.members)
        return None

    def defines_named(self, names: list[str]) -> list[tuple[str, int]] | None:
        known: dict[str, int] = {}
        out: list[tuple[str, int]] = []
        for name in names:
            if name in self.defines:
                value = eval_c_int(self.defines[name], known)
                known[name] = value
                out.append((name, value))
        return out or None

    def defines_matching(self, pattern: str) -> list[tuple[str, int]] | None:
        known: dict[str, int] = {}
        out: list[tuple[str, int]] = []
        for name, expr in self.defines.items():
            if not re.fullmatch(pattern, name):
                continue
            try:
                value = eval_c_int(expr, known)
            except (HeaderParseError, SyntaxError):
                continue  # function-like or aliasing macros are not values of their own
            known[name] = value
            out.append((name, value))
        return out or None


def parse_enums(text: str) -> tuple[EnumBlock, ...]:
    blocks: list[EnumBlock] = []
    known: dict[str, int] = {}
    for match in _ENUM_RE.finditer(text):
        tag, body = match.group(1), match.group(2)
        members: list[tuple[str, int]] = []
        next_value: int | None = 0
        for raw in body.split(","):
            item = raw.strip()
            if not item or item.startswith("#"):
                continue
            # An enum body may carry preprocessor lines (the helper mapper); skip anything odd.
            if "=" in item:
                name, expr = (part.strip() for part in item.split("=", 1))
                try:
                    value = eval_c_int(expr, known)
                except (HeaderParseError, SyntaxError):
                    # Enums we do not emit may refer to macros; leave them (and what follows
                    # implicitly) out rather than guess a value.
                    next_value = None
                    continue
            elif next_value is None:
                continue
            else:
                name, value = item, next_value
            if not re.fullmatch(r"\w+", name):
                continue
            members.append((name, value))
            known[name] = value
            next_value = value + 1
        blocks.append(EnumBlock(tag, tuple(members)))
    return tuple(blocks)


def parse_helpers(raw_text: str) -> tuple[tuple[str, int], ...]:
    start = _MAPPER_START_RE.search(raw_text)
    if start is None:
        raise HeaderParseError("no __BPF_FUNC_MAPPER definition found")
    # The macro body runs over backslash-continued lines; it ends at the first line without one.
    lines = raw_text[start.end() :].splitlines()
    body: list[str] = []
    for line in lines:
        body.append(line)
        if not line.rstrip().endswith("\\"):
            break
    helpers: list[tuple[str, int]] = []
    for index, match in enumerate(_FN_RE.finditer(strip_comments("\n".join(body)))):
        number = int(match.group(2)) if match.group(2) is not None else index
        helpers.append((match.group(1), number))
    if not helpers or helpers[0][0] != "unspec":
        raise HeaderParseError("helper mapper does not start with FN(unspec)")
    return tuple(helpers)


def parse_header(raw_text: str) -> ParsedHeader:
    text = strip_comments(raw_text)
    defines = {m.group(1): m.group(2) for m in _DEFINE_RE.finditer(text)}
    helpers = parse_helpers(raw_text) if _MAPPER_START_RE.search(raw_text) else ()
    return ParsedHeader(parse_enums(text), defines, helpers)


def _drop_sentinels(members: list[tuple[str, int]] | None) -> list[tuple[str, int]] | None:
    if members is None:
        return None
    return [(n, v) for n, v in members if not n.startswith("__") and not n.startswith("MAX_")]


BPF_ENUMS: tuple[OutputEnum, ...] = (
    OutputEnum(
        "HelperId",
        "IntEnum",
        "Helper function ids (``enum bpf_func_id``): the ``imm`` of a ``call`` instruction.",
        "",
        lambda h: [(name.upper(), num) for name, num in h.helpers] or None,
    ),
    OutputEnum(
        "BpfCmd", "IntEnum", "bpf(2) commands (``enum bpf_cmd``).", "BPF_", lambda h: h.named_enum("bpf_cmd")
    ),
    OutputEnum(
        "BpfMapType",
        "IntEnum",
        "Map types (``enum bpf_map_type``).",
        "BPF_MAP_TYPE_",
        lambda h: _drop_sentinels(h.named_enum("bpf_map_type")),
    ),
    OutputEnum(
        "BpfProgType",
        "IntEnum",
        "Program types (``enum bpf_prog_type``).",
        "BPF_PROG_TYPE_",
        lambda h: _drop_sentinels(h.named_enum("bpf_prog_type")),
    ),
    OutputEnum(
        "BpfAttachType",
        "IntEnum",
        "Attach types (``enum bpf_attach_type``).",
        "BPF_",
        lambda h: _drop_sentinels(h.named_enum("bpf_attach_type")),
    ),
    OutputEnum(
        "BpfLinkType",
        "IntEnum",
        "Link types (``enum bpf_link_type``).",
        "BPF_LINK_TYPE_",
        lambda h: _drop_sentinels(h.named_enum("bpf_link_type")),
    ),
    OutputEnum(
        "BpfMapFlag",
        "IntFlag",
        "``map_flags`` of BPF_MAP_CREATE.",
        "BPF_F_",
        lambda h: h.enum_containing("BPF_F_NO_PREALLOC"),
    ),
    OutputEnum(
        "BpfUpdateFlag",
        "IntEnum",
        "``flags`` of BPF_MAP_UPDATE_ELEM and bpf_map_update_elem() (F_LOCK may be or-ed in).",
        "BPF_",
        lambda h: h.enum_containing("BPF_NOEXIST"),
    ),
    OutputEnum(
        "BpfProgLoadFlag",
        "IntFlag",
        "``prog_flags`` of BPF_PROG_LOAD.",
        "BPF_F_",
        lambda h: h.defines_named(
            [
                "BPF_F_STRICT_ALIGNMENT",
                "BPF_F_ANY_ALIGNMENT",
                "BPF_F_TEST_RND_HI32",
                "BPF_F_TEST_STATE_FREQ",
                "BPF_F_SLEEPABLE",
                "BPF_F_XDP_HAS_FRAGS",
                "BPF_F_XDP_DEV_BOUND_ONLY",
                "BPF_F_TEST_REG_INVARIANTS",
            ]
        ),
    ),
    OutputEnum(
        "BpfRingbufFlag",
        "IntFlag",
        "Flags of bpf_ringbuf_output/submit/discard.",
        "BPF_RB_",
        lambda h: h.enum_containing("BPF_RB_NO_WAKEUP"),
    ),
    OutputEnum(
        "BpfRingbufQuery",
        "IntEnum",
        "``flags`` selector of bpf_ringbuf_query().",
        "BPF_RB_",
        lambda h: h.enum_containing("BPF_RB_AVAIL_DATA"),
    ),
    OutputEnum(
        "BpfPerfEventFlag",
        "IntEnum",
        "Index flags of bpf_perf_event_output/read (CURRENT_CPU aliases INDEX_MASK).",
        "BPF_F_",
        lambda h: h.enum_containing("BPF_F_INDEX_MASK"),
    ),
    OutputEnum(
        "XdpAction",
        "IntEnum",
        "XDP program return codes (``enum xdp_action``).",
        "XDP_",
        lambda h: h.named_enum("xdp_action"),
    ),
    OutputEnum(
        "SkAction",
        "IntEnum",
        "sk_skb / sk_msg / sk_reuseport verdicts (``enum sk_action``).",
        "SK_",
        lambda h: h.named_enum("sk_action"),
    ),
    OutputEnum(
        "BpfRetCode",
        "IntEnum",
        "LWT and flow dissector return codes (``enum bpf_ret_code``).",
        "BPF_",
        lambda h: h.named_enum("bpf_ret_code"),
    ),
)

PKT_CLS_ENUMS: tuple[OutputEnum, ...] = (
    OutputEnum(
        "TcAct",
        "IntEnum",
        "tc classifier/action verdicts (``TC_ACT_*`` from linux/pkt_cls.h).",
        "TC_ACT_",
        lambda h: [
            (n, v)
            for n, v in (h.defines_matching(r"TC_ACT_[A-Z_0-9]+") or [])
            if n not in {"TC_ACT_VALUE_MAX", "TC_ACT_EXT_VAL_MASK", "TC_ACT_EXT_OPCODE_MAX"}
        ]
        or None,
    ),
)


def _member_name(full: str, prefix: str) -> str:
    if not full.startswith(prefix):
        raise HeaderParseError(f"{full} does not start with {prefix}")
    name = full[len(prefix) :]
    if not name.isidentifier() or keyword.iskeyword(name):
        raise HeaderParseError(f"{full} gives invalid Python name {name!r}")
    return name


# Members of kernels newer than the header (Debian's is 6.1), added when the header lacks them:
# BPF arenas (6.9: the map type and its two creation flags).
NEWER_MEMBERS: dict[str, tuple[tuple[str, int], ...]] = {
    "BpfMapType": (("BPF_MAP_TYPE_ARENA", 33),),
    "BpfMapFlag": (("BPF_F_SEGV_ON_FAULT", 1 << 17), ("BPF_F_NO_USER_CONV", 1 << 18)),
}


def render_enum(spec: OutputEnum, members: list[tuple[str, int]]) -> list[str]:
    lines = ["", "", f"class {spec.class_name}({spec.base}):", f'    """{spec.doc}"""', ""]
    for full, value in members:
        lines.append(f"    {_member_name(full, spec.prefix)} = {value}")
    known = {full for full, _ in members}
    newer = [(full, value) for full, value in NEWER_MEMBERS.get(spec.class_name, ()) if full not in known]
    if newer:
        lines.append("    # newer kernels than the header (tools/gen_uapi.py NEWER_MEMBERS)")
        lines += [f"    {_member_name(full, spec.prefix)} = {value}" for full, value in newer]
    return lines


def generate(bpf_h: Path, pkt_cls_h: Path | None, command: str) -> str:
    bpf = parse_header(bpf_h.read_text())
    pkt_cls = parse_header(pkt_cls_h.read_text()) if pkt_cls_h is not None and pkt_cls_h.exists() else None
    sources = [str(bpf_h)] + ([str(pkt_cls_h)] if pkt_cls is not None else [])
    out = [
        f'"""Linux uapi constants for BPF, generated from {", ".join(sources)}.',
        "",
        "GENERATED FILE - DO NOT EDIT. Regenerate with:",
        "",
        f"    {command}",
        '"""',
        "",
        "from __future__ import annotations",
        "",
        "from enum import IntEnum, IntFlag",
        "",
        f"UAPI_SOURCES: tuple[str, ...] = {tuple(sources)!r}",
    ]
    if len(sources) == 1:
        out[-1] = f"UAPI_SOURCES: tuple[str, ...] = ({sources[0]!r},)"
    for spec in BPF_ENUMS:
        members = spec.select(bpf)
        if members is None:
            raise HeaderParseError(f"{bpf_h}: nothing found for {spec.class_name}")
        out.extend(render_enum(spec, members))
    if pkt_cls is not None:
        for spec in PKT_CLS_ENUMS:
            members = spec.select(pkt_cls)
            if members is None:
                raise HeaderParseError(f"{pkt_cls_h}: nothing found for {spec.class_name}")
            out.extend(render_enum(spec, members))
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bpf-h", default=DEFAULT_BPF_H, help="path of include/uapi/linux/bpf.h")
    parser.add_argument("--pkt-cls-h", default=DEFAULT_PKT_CLS_H, help="path of linux/pkt_cls.h")
    parser.add_argument("-o", "--output", default=DEFAULT_OUTPUT, help="output file, '-' for stdout")
    args = parser.parse_args(argv)
    command = f"python tools/gen_uapi.py --bpf-h {args.bpf_h} --pkt-cls-h {args.pkt_cls_h}"
    text = generate(Path(args.bpf_h), Path(args.pkt_cls_h), command)
    if args.output == "-":
        sys.stdout.write(text)
    else:
        Path(args.output).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
