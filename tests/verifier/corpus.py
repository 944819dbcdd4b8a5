"""The verifier corpus: small programs in a compact text format, each with its expected verdict.

A file under ``corpus/`` holds blocks like::

    ### uninit-register
    type: xdp                         (optional; socket_filter by default)
    maps: hash:4:8:16 array:4:8:1:rdonly   (optional; map[fd:N] in the asm names the Nth map;
                                      arena:0:0:PAGES:mmapable for an arena, mapped for the kernel)
    license: Dual BSD/GPL            (optional; GPL by default)
    privileged: no                    (optional: verify with the unprivileged rules)
    expect: reject R3 !read_ok        (or: expect: accept)
    kernel: <reason>                  (optional: the kernel's verdict differs, and why)
    kernel-message: <reason>          (optional: same verdict, but the kernel words it differently)
    value-btf: 0: bpf_spin_lock@0; 1:  (optional: these maps' values have BTF, see below)
    func-info: yes                    (optional: the program comes with BTF func_info, see below)
    global-funcs: 1: ctx nonnull:u64  (optional: these functions are global, with these arguments)
    ---
    r0 = r3
    exit

The asm is LLVM syntax (``pybpf.asm``). A rejection's expected text is the last line of our
reason, and (unless ``kernel-message`` says otherwise) must appear in the kernel's log too.

Raw instructions carry no BTF, but some rules need it; a case describes the BTF it needs and
:func:`case_btf` builds it (encoded with :func:`pybpf.btf.encode.encode_btf`), so the kernel loads
the same case with real BTF and we read the same types back:

* ``value-btf: N: field@offset ...`` (several maps separated by ``;``): map N is created with BTF,
  its value a struct of the map's value size holding these kernel objects (``bpf_spin_lock``,
  ``bpf_timer``, ``bpf_wq``) at these byte offsets (none: a value with BTF but no such field);
  its key a u32 (or a byte array of the key size);
* ``func-info: yes``: the program is loaded with BTF func_info, every function (the main program
  and each callee or callback) a static ``int fN(void)``: what the kernel needs to accept
  callbacks, and what tells it (and us) that functions have BTF;
* ``global-funcs: N: arg ...`` (several functions separated by ``;``, implies ``func-info``):
  function N (in pc order, 0 being the main program) is a global ``int fN(...)`` whose
  parameters are, in order: ``int``; ``u8``/``u32``/``u64``, a pointer to one; ``ctx``, a
  pointer to the program type's context struct; ``void``, a ``void *``; ``dynptr``, a
  ``struct bpf_dynptr *``; each optionally prefixed by decl tags (``nonnull:u64`` is
  ``u64 *p __arg_nonnull``, ``ctx:void`` is ``void *ctx __arg_ctx``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from pybpf.btf import Btf
from pybpf.btf.encode import encode_btf
from pybpf.btf.record import special_fields
from pybpf.btf.types import (
    Array,
    BtfType,
    DeclTag,
    Func,
    FuncLinkage,
    FuncProto,
    Int,
    IntEncoding,
    Member,
    Param,
    Ptr,
    Struct,
)
from pybpf.isa.insn import LabeledInsn
from pybpf.platform import BpfMapFlag, BpfMapType, BpfProgType, kfunc_by_name, prog_type_spec
from pybpf.verifier import MapInfo, VerifierReport, verify
from pybpf.verifier.global_funcs import global_funcs_of

CORPUS_DIR = Path(__file__).parent / "corpus"


# -- BTF a case describes ------------------------------------------------------------------------

_U32, _U64, _U8, _INT, _U64X2, _PROTO = 1, 2, 3, 4, 5, 6
_SPECIAL_STRUCTS = {"bpf_spin_lock": 7, "bpf_timer": 8, "bpf_wq": 9}
_BASE_TYPES: tuple[BtfType, ...] = (
    Int("unsigned int", 4, IntEncoding(0), 0, 32),
    Int("unsigned long long", 8, IntEncoding(0), 0, 64),
    Int("unsigned char", 1, IntEncoding(0), 0, 8),
    Int("int", 4, IntEncoding.SIGNED, 0, 32),
    Array("", _U64, _U32, 2),
    FuncProto("", _INT, ()),
    # The kernel's own layouts (include/uapi/linux/bpf.h): it checks each special struct's size.
    Struct("bpf_spin_lock", 4, (Member("val", _U32, 0),)),
    Struct("bpf_timer", 16, (Member("__opaque", _U64X2, 0),)),
    Struct("bpf_wq", 16, (Member("__opaque", _U64X2, 0),)),
)


@dataclass(frozen=True, slots=True)
class CaseBtf:
    """The BTF a case's ``value-btf``/``func-info`` lines describe: the blob handed to the kernel,
    the same types decoded (what our verifier reads, as it reads an object's), the key and value
    type ids of each described map, and the (pc, FUNC type id) func_info records."""

    blob: bytes
    btf: Btf
    map_types: dict[int, tuple[int, int]]
    funcs: tuple[tuple[int, int], ...]


def _parse_value_btf(text: str) -> tuple[tuple[int, tuple[tuple[str, int], ...]], ...]:
    layouts = []
    for part in filter(None, (item.strip() for item in text.split(";"))):
        index, _, fields = part.partition(":")
        placed = []
        for field in fields.split():
            name, _, offset = field.partition("@")
            if name not in _SPECIAL_STRUCTS:
                raise ValueError(f"value-btf: unknown field {name!r} (known: {sorted(_SPECIAL_STRUCTS)})")
            placed.append((name, int(offset)))
        layouts.append((int(index), tuple(placed)))
    return tuple(layouts)


def _parse_global_funcs(text: str) -> dict[int, tuple[str, ...]]:
    found: dict[int, tuple[str, ...]] = {}
    for part in filter(None, (item.strip() for item in text.split(";"))):
        index, _, args = part.partition(":")
        found[int(index)] = tuple(args.split())
    return found


# The context struct each program type's global functions name (btf_is_prog_ctx_type).
_CTX_STRUCTS = {BpfProgType.SOCKET_FILTER: "__sk_buff", BpfProgType.SCHED_CLS: "__sk_buff",
                BpfProgType.XDP: "xdp_md", BpfProgType.KPROBE: "pt_regs"}
_POINTEES = {"u8": _U8, "u32": _U32, "u64": _U64}


def _param_type(types: list[BtfType], kind: str, prog_type: BpfProgType) -> int:
    """The type id of one ``global-funcs`` parameter, appending the types it needs."""
    if kind == "int":
        return _INT
    if kind in _POINTEES:
        types.append(Ptr("", _POINTEES[kind]))
    elif kind == "void":
        types.append(Ptr("", 0))
    elif kind == "ctx" and prog_type in _CTX_STRUCTS:
        types.append(Struct(_CTX_STRUCTS[prog_type], 0, ()))
        types.append(Ptr("", len(types)))
    elif kind == "dynptr":
        types.append(Struct("bpf_dynptr", 16, (Member("__opaque", _U64X2, 0),)))
        types.append(Ptr("", len(types)))
    else:
        raise ValueError(f"global-funcs: unknown argument {kind!r}")
    return len(types)


def _function_starts(asm: str) -> list[int]:
    from pybpf.asm import Syntax, assemble
    from pybpf.verifier.cfg import call_target

    starts = {0}
    for labeled in assemble(asm, Syntax.LLVM):
        target = call_target(labeled.pc, labeled.insn)
        if target is not None:
            starts.add(target)
    return sorted(starts)


def case_btf(maps: Sequence[MapInfo], value_btf: tuple[tuple[int, tuple[tuple[str, int], ...]], ...],
             func_info: bool, asm: str, *, global_funcs: dict[int, tuple[str, ...]] | None = None,
             prog_type: BpfProgType = BpfProgType.SOCKET_FILTER) -> CaseBtf | None:
    """Build the BTF a case describes (None when it describes none)."""
    global_funcs = global_funcs or {}
    func_info = func_info or bool(global_funcs)
    if not value_btf and not func_info:
        return None
    types: list[BtfType] = list(_BASE_TYPES)
    map_types: dict[int, tuple[int, int]] = {}
    for index, placed in value_btf:
        info = maps[index]
        if info.key_size == 4:
            key = _U32  # an array map's key must be a 32-bit int
        else:
            types.append(Array("", _U8, _U32, info.key_size))
            key = len(types)
        members = tuple(Member(name.removeprefix("bpf_"), _SPECIAL_STRUCTS[name], offset * 8)
                        for name, offset in placed)
        types.append(Struct(f"value{index}", info.value_size, members))
        map_types[index] = (key, len(types))
    funcs: list[tuple[int, int]] = []
    if func_info:
        for number, start in enumerate(_function_starts(asm)):
            args = global_funcs.get(number)
            if args is None:
                types.append(Func(f"f{number}", _PROTO, FuncLinkage.STATIC))
                funcs.append((start, len(types)))
                continue
            params: list[Param] = []
            tags: list[tuple[str, int]] = []
            for index, token in enumerate(args):
                *names, kind = token.split(":")
                params.append(Param(f"a{index}", _param_type(types, kind, prog_type)))
                tags.extend((name, index) for name in names)
            types.append(FuncProto("", _INT, tuple(params)))
            types.append(Func(f"f{number}", len(types), FuncLinkage.GLOBAL))
            func_id = len(types)
            types.extend(DeclTag(f"arg:{name}", func_id, index) for name, index in tags)
            funcs.append((start, func_id))
    blob = encode_btf(types)
    return CaseBtf(blob, Btf.from_bytes(blob), map_types, tuple(funcs))


def with_btf(maps: tuple[MapInfo, ...], value_btf: str, func_info: bool, asm: str, *, global_funcs: str = "",
             prog_type: BpfProgType = BpfProgType.SOCKET_FILTER) -> tuple[tuple[MapInfo, ...], CaseBtf | None]:
    """The maps with the special fields their ``value-btf`` text gives them (read back from the
    encoded BTF as we read an object's), and the case's BTF (None when it describes none)."""
    btf = case_btf(maps, _parse_value_btf(value_btf), func_info, asm, global_funcs=_parse_global_funcs(global_funcs),
                   prog_type=prog_type)
    if btf is None:
        return maps, None
    return tuple(replace(info, fields=special_fields(btf.btf, btf.map_types[index][1]))
                 if index in btf.map_types else info for index, info in enumerate(maps)), btf


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
    btf: CaseBtf | None = None  # the BTF value-btf/func-info describe


def _map(text: str) -> MapInfo:
    parts = text.split(":")
    flags = (BpfMapFlag.RDONLY_PROG if "rdonly" in parts[4:] else 0) | (
        BpfMapFlag.MMAPABLE if "mmapable" in parts[4:] else 0)
    return MapInfo(BpfMapType[parts[0].upper()], int(parts[1]), int(parts[2]), int(parts[3]), int(flags))


_KFUNC_NAME = re.compile(r"\bcall kfunc ([A-Za-z_]\w*)")


def resolve_kfunc_names(asm: str) -> str:
    """``call kfunc bpf_iter_num_new`` -> ``call kfunc <pybpf's id>``: cases name kfuncs, because
    the ids follow the kfunc table's order and change as it grows."""

    def number(match: re.Match[str]) -> str:
        proto = kfunc_by_name(match[1])
        if proto is None:
            raise ValueError(f"unknown kfunc {match[1]!r}")
        return f"call kfunc {proto.id}"

    return _KFUNC_NAME.sub(number, asm)


def _parse_block(file: str, block: str) -> CorpusCase:
    header, _, asm = block.partition("\n---\n")
    asm = resolve_kfunc_names(asm)
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
    prog_type = BpfProgType[fields.get("type", "socket_filter").upper()]
    maps, btf = with_btf(tuple(_map(item) for item in fields.get("maps", "").split()), fields.get("value-btf", ""),
                         fields.get("func-info", "no") == "yes", asm, global_funcs=fields.get("global-funcs", ""),
                         prog_type=prog_type)
    return CorpusCase(
        name=name,
        file=file,
        prog_type=prog_type,
        maps=maps,
        license=fields.get("license", "GPL"),
        expected=expected,
        kernel_differs=fields.get("kernel"),
        kernel_message_differs=fields.get("kernel-message"),
        asm=asm,
        privileged=fields.get("privileged", "yes") != "no",
        btf=btf,
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


def verify_case(case: CorpusCase) -> VerifierReport:
    """Our verdict on a case, with the maps, license, privileges and BTF it describes."""
    starts = frozenset(pc for pc, _ in case.btf.funcs) if case.btf is not None and case.btf.funcs else None
    globals_ = (global_funcs_of(case.btf.btf, case.btf.funcs, prog_type_spec(case.prog_type))
                if case.btf is not None and case.btf.funcs else None)
    return verify(assemble_case(case), prog_type=case.prog_type, maps=list(case.maps), license=case.license,
                  privileged=case.privileged, func_info=starts is not None, scalar_returns=starts,
                  global_funcs=globals_)
