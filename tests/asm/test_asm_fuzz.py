"""Whatever the text, assembling raises AssemblerError or succeeds: never another exception."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from pybpf.asm import assemble, parse_data_file
from pybpf.asm.conformance import parse_conformance
from pybpf.asm.llvm import parse_llvm
from pybpf.errors import AssemblerError

TOKENS = [
    "r0", "w1", "r10", "r11", "%r1", "%r50", "=", "+=", "s>>=", "*(u32 *)", "*(s64 *)", "(r1 + 0x4)", "skb[",
    "]", "[", "[%r1+2]", "[%r10-8]", "0x", "0xffffffff", "-0x1", "+3", "2147483648", "ll", "if", "goto", "gotol",
    "call", "callx", "exit", "lock", "fetch", "add", "cmpxchg", "mov", "mov32", "lddw", "map[fd:3]", "[0]+4",
    "func", "pc+0x3", "kfunc", "ld_pseudo", "<unknown>", "<LBB0_1>", "LBB0_1:", "label:", ",", " ", "\t", "\n",
    "#", ";", "  12:", "b7 00 00 00 01 00 00 00", "18 00 00 00 01 00 00 00 00 00 00 00 00 00 00 00", "(s8)",
    "atomic_fetch_add(", "(u64 *)", ")", "load_acquire(", "store_release(", "be16", "-", "-- asm", "-- raw",
    "-- result", "0x1", "jeq", "ja", "ldxb", "stw", "ldabsh", "ldindw", "call local", "movsx864", "neg",
]  # fmt: skip

texts = st.lists(st.sampled_from(TOKENS), max_size=14).map("".join) | st.text(max_size=40)


@settings(max_examples=800, deadline=None)
@given(texts)
def test_assemblers_only_raise_assembler_errors(text: str) -> None:
    for parse in (assemble, parse_llvm, parse_conformance):
        try:
            parse(text)
        except AssemblerError as error:
            assert error.line >= 1
            assert error.column >= 1


@settings(max_examples=300, deadline=None)
@given(texts)
def test_data_file_parser_only_raises_assembler_errors(text: str) -> None:
    try:
        parse_data_file(text)
    except AssemblerError as error:
        assert error.line >= 1
