"""The generated uapi module matches its header, and its numbering matches the header's text."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from enum import IntEnum
from pathlib import Path
from types import ModuleType

import pytest

from pybpf.platform import uapi_generated as uapi

ROOT = Path(__file__).resolve().parents[2]
GENERATOR = ROOT / "tools" / "gen_uapi.py"
GENERATED = ROOT / "src" / "pybpf" / "platform" / "uapi_generated.py"
BPF_H = Path(uapi.UAPI_SOURCES[0])
PKT_CLS_H = Path(uapi.UAPI_SOURCES[1]) if len(uapi.UAPI_SOURCES) > 1 else Path("/usr/include/linux/pkt_cls.h")

needs_header = pytest.mark.skipif(not BPF_H.exists(), reason=f"{BPF_H} is not installed (linux-libc-dev)")


def _load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_uapi", GENERATOR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["gen_uapi"] = module
    spec.loader.exec_module(module)
    return module


@needs_header
def test_regenerating_gives_no_diff(tmp_path: Path) -> None:
    out = tmp_path / "uapi_generated.py"
    args = ["--bpf-h", str(BPF_H), "--pkt-cls-h", str(PKT_CLS_H), "-o", str(out)]
    subprocess.run(
        [sys.executable, str(GENERATOR), *args],
        check=True,
        cwd=ROOT,
    )
    assert out.read_text() == GENERATED.read_text(), "run tools/gen_uapi.py (see the generated file's header)"


def test_header_comment_says_generated() -> None:
    head = GENERATED.read_text().splitlines()[:6]
    assert any("DO NOT EDIT" in line for line in head)
    assert any("tools/gen_uapi.py" in line and "--bpf-h" in line for line in head)


def _enum_body(text: str, tag: str) -> list[str]:
    body = re.search(rf"enum {tag} \{{(.*?)\}}", text, re.S)
    assert body is not None
    names = []
    for raw in re.sub(r"/\*.*?\*/", "", body.group(1), flags=re.S).split(","):
        item = raw.strip().split("=")[0].strip()
        if item:
            names.append(item)
    return names


@needs_header
@pytest.mark.parametrize(
    ("tag", "enum", "prefix"),
    [
        ("bpf_prog_type", uapi.BpfProgType, "BPF_PROG_TYPE_"),
        ("bpf_map_type", uapi.BpfMapType, "BPF_MAP_TYPE_"),
        ("bpf_attach_type", uapi.BpfAttachType, "BPF_"),
    ],
)
def test_implicit_enum_numbering_follows_declaration_order(tag: str, enum: type[IntEnum], prefix: str) -> None:
    # These enums number their members implicitly, so position in the header is the value.
    names = [n for n in _enum_body(BPF_H.read_text(), tag) if not n.startswith("__")]
    for position, full in enumerate(names):
        assert enum[full.removeprefix(prefix)] == position, full


@needs_header
def test_helper_ids_follow_the_mapper_list() -> None:
    text = BPF_H.read_text()
    mapper = text[text.index("BPF_FUNC_MAPPER(FN") :]
    mapper = mapper[: mapper.index("/* */")]
    names = re.findall(r"FN\((\w+)", mapper)
    assert len(names) == len(uapi.HelperId)
    for position, name in enumerate(names):
        assert uapi.HelperId[name.upper()] == position


def test_spot_checks() -> None:
    # Values that have been ABI since they were introduced; a parser slip would move them.
    assert int(uapi.HelperId.MAP_LOOKUP_ELEM) == 1
    assert int(uapi.HelperId.TAIL_CALL) == 12
    assert int(uapi.HelperId.RINGBUF_RESERVE) == 131
    assert int(uapi.HelperId.LOOP) == 181
    assert int(uapi.BpfProgType.XDP) == 6
    assert int(uapi.BpfProgType.SCHED_CLS) == 3
    assert int(uapi.BpfMapType.HASH) == 1
    assert int(uapi.BpfMapType.RINGBUF) == 27
    assert int(uapi.BpfAttachType.CGROUP_INET_INGRESS) == 0
    assert int(uapi.BpfAttachType.XDP) == 37
    assert int(uapi.BpfLinkType.XDP) == 6
    assert int(uapi.BpfMapFlag.NO_PREALLOC) == 1
    assert int(uapi.BpfMapFlag.RDONLY_PROG) == 1 << 7
    assert int(uapi.BpfMapFlag.MMAPABLE) == 1 << 10
    assert int(uapi.BpfUpdateFlag.ANY) == 0
    assert int(uapi.BpfUpdateFlag.F_LOCK) == 4
    assert int(uapi.BpfProgLoadFlag.SLEEPABLE) == 1 << 4
    assert int(uapi.XdpAction.PASS) == 2
    assert int(uapi.XdpAction.REDIRECT) == 4
    assert int(uapi.BpfCmd.PROG_LOAD) == 5


@pytest.mark.skipif(not PKT_CLS_H.exists(), reason=f"{PKT_CLS_H} is not installed")
def test_tc_actions() -> None:
    text = PKT_CLS_H.read_text()
    for name in ("OK", "SHOT", "REDIRECT", "UNSPEC"):
        match = re.search(rf"#define TC_ACT_{name}\s+\(?(-?\d+)\)?", text)
        assert match is not None
        assert uapi.TcAct[name] == int(match.group(1))


def test_generator_handles_newer_mapper_syntax() -> None:
    # Linux >= 6.2 numbers the helpers explicitly: FN(name, id, ##ctx).
    gen = _load_generator()
    header = (
        "#define ___BPF_FUNC_MAPPER(FN, ctx...)\t\\\n"
        "\tFN(unspec, 0, ##ctx)\t\\\n\tFN(map_lookup_elem, 1, ##ctx)\t\\\n"
        "\tFN(made_up_helper, 300, ##ctx)\t\\\n\t/* */\n"
    )
    assert gen.parse_helpers(header) == (("unspec", 0), ("map_lookup_elem", 1), ("made_up_helper", 300))


def test_generator_evaluates_constant_expressions() -> None:
    gen = _load_generator()
    blocks = gen.parse_enums("enum { A = (1U << 3), B, C = A | 1ULL, D = (-1L) };")
    assert blocks[0].members == (("A", 8), ("B", 9), ("C", 9), ("D", -1))
