"""The verifier corpus: small programs in a compact text format, each with its expected verdict.

A file under ``corpus/`` holds blocks like::

    ### uninit-register
    type: xdp                         (optional; socket_filter by default)
    maps: hash:4:8:16 array:4:8:1:rdonly   (optional; map[fd:N] in the asm names the Nth map)
    license: Dual BSD/GPL            (optional; GPL by default)
    privileged: no                    (optional: verify with the unprivileged rules)
    expect: reject R3 !read_ok        (or: expect: accept)
    kernel: <reason>                  (optional: the kernel's verdict differs, and why)
    kernel-message: <reason>          (optional: same verdict, but the kernel words it differently)
    ---
    r0 = r3
    exit

The asm is LLVM syntax (``pybpf.asm``). A rejection's expected text is the last line of our
reason, and (unless ``kernel-message`` says otherwise) must appear in the kernel's log too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pybpf.isa.insn import LabeledInsn
from pybpf.platform import BpfMapFlag, BpfMapType, BpfProgType
from pybpf.verifier import MapInfo

CORPUS_DIR = Path(__file__).parent / "corpus"


@dataclass(frozen=True, slots=True)
class CorpusCase:
    name: str
    file: str
    prog_type: BpfProgType
    maps: tuple[MapInfo, ...]
    license: str
    expected: str | None  # None: accepted; else the rejection's reason
    kernel_differs: str | None
    kernel_message_differs: str | None
    asm: str
    privileged: bool = True


def _map(text: str) -> MapInfo:
    parts = text.split(":")
    flags = BpfMapFlag.RDONLY_PROG if "rdonly" in parts[4:] else 0
    return MapInfo(BpfMapType[parts[0].upper()], int(parts[1]), int(parts[2]), int(parts[3]), int(flags))


def _parse_block(file: str, block: str) -> CorpusCase:
    header, _, asm = block.partition("\n---\n")
    lines = header.strip().splitlines()
    name = lines[0].strip()
    fields: dict[str, str] = {}
    for line in lines[1:]:
        if line.startswith("#") or not line.strip():
            continue
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    expect = fields.get("expect", "")
    if expect == "accept":
        expected = None
    elif expect.startswith("reject "):
        expected = expect.removeprefix("reject ")
    else:
        raise ValueError(f"{file}: {name}: bad expect line {expect!r}")
    return CorpusCase(
        name=name,
        file=file,
        prog_type=BpfProgType[fields.get("type", "socket_filter").upper()],
        maps=tuple(_map(item) for item in fields.get("maps", "").split()),
        license=fields.get("license", "GPL"),
        expected=expected,
        kernel_differs=fields.get("kernel"),
        kernel_message_differs=fields.get("kernel-message"),
        asm=asm,
        privileged=fields.get("privileged", "yes") != "no",
    )


def load_corpus() -> list[CorpusCase]:
    cases: list[CorpusCase] = []
    for path in sorted(CORPUS_DIR.glob("*.txt")):
        text = path.read_text(encoding="utf-8")
        for block in text.split("\n### ")[1:]:
            cases.append(_parse_block(path.name, block))
    names = [case.name for case in cases]
    duplicates = {name for name in names if names.count(name) > 1}
    if duplicates:
        raise ValueError(f"duplicate corpus names: {sorted(duplicates)}")
    return cases


def assemble_case(case: CorpusCase) -> list[LabeledInsn]:
    from pybpf.asm import Syntax, assemble

    return assemble(case.asm, Syntax.LLVM)
