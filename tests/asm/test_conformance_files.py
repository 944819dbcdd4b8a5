"""The conformance suite's .data files: every program assembles, raw sections match, negatives fail."""

from __future__ import annotations

import re
import struct
from pathlib import Path

import pytest

from pybpf.asm import DataFileError, assemble, assemble_bytes, format_conformance, parse_data_file
from pybpf.errors import AssemblerError, InvalidInstructionError
from pybpf.isa.codec import decode_program, encode_program
from pybpf.isa.insn import slot_count

SUITE = Path("/work/shared/conformance")
TESTS = sorted((SUITE / "tests").glob("*.data"))
INVALID = sorted((SUITE / "negative").glob("invalid_*.data"))
UNUSED = sorted((SUITE / "negative").glob("unused-*.data"))

pytestmark = pytest.mark.skipif(not TESTS, reason=f"conformance suite not found under {SUITE}")


def _ids(paths: list[Path]) -> list[str]:
    return [path.stem for path in paths]


@pytest.mark.parametrize("path", TESTS, ids=_ids(TESTS))
def test_every_suite_program_assembles_and_reprints(path: Path) -> None:
    data = parse_data_file(path.read_text())
    assert data.asm is not None
    program = data.program()
    bytecode = encode_program(program)
    assert len(bytecode) == 8 * (program[-1].pc + slot_count(program[-1].insn))
    # The pcs are slot indices: consecutive, lddw counting two.
    assert [item.pc for item in decode_program(bytecode, check_jumps=False)] == [item.pc for item in program]
    # Our conformance printer reads back to the same bytes (labels become offsets).
    assert assemble_bytes(format_conformance(program)) == bytecode
    if data.raw is not None:
        assert bytecode == data.raw


def test_the_suite_has_a_raw_section_and_it_is_checked() -> None:
    with_raw = [path for path in TESTS if parse_data_file(path.read_text()).raw is not None]
    assert with_raw, "expected at least one -- raw section in the suite"
    data = parse_data_file((SUITE / "tests" / "lddw.data").read_text())
    # 0x5566778800000018: opcode 0x18 is the low byte of the little-endian word.
    assert data.raw is not None
    assert data.raw[0] == 0x18
    assert data.raw[:8] == struct.pack("<Q", 0x5566778800000018)


@pytest.mark.parametrize("path", INVALID, ids=_ids(INVALID))
def test_invalid_files_are_rejected_with_line_and_column(path: Path) -> None:
    text = path.read_text()
    with pytest.raises(AssemblerError) as caught:
        parse_data_file(text).program()
    error = caught.value
    assert error.line >= 1
    assert error.column >= 1
    assert re.match(r"line \d+, column \d+: \S", str(error))
    # The reported line is a line of the file, and it is not a comment.
    reported = text.splitlines()[error.line - 1]
    assert not reported.lstrip().startswith("#")


EXPECTED_REASONS = {
    "invalid_imm32_dec_range": ("2147483648", "32-bit range"),
    "invalid_imm32_hex_range": ("0x100000000", "32-bit range"),
    "invalid_label": ("NOT_A_LABEL", "undefined label"),
    "invalid_lock": ("operand",),
    "invalid_lock2": ("lock",),
    "invalid_mnemonic": ("ldxq", "unknown mnemonic"),
    "invalid_offset": ("memory operand",),
    "invalid_offset_range": ("16-bit range",),
    "invalid_operand_count": ("operand count", "lddw"),
    "invalid_register": ("%r50", "invalid register"),
    "invalid_unknown_directive": ("unknown directive",),
}


@pytest.mark.parametrize("name", sorted(EXPECTED_REASONS))
def test_invalid_file_reasons(name: str) -> None:
    path = SUITE / "negative" / f"{name}.data"
    if not path.exists():
        pytest.skip(f"{path} is not in this copy of the suite")
    with pytest.raises(AssemblerError) as caught:
        parse_data_file(path.read_text()).program()
    for fragment in EXPECTED_REASONS[name]:
        assert fragment in str(caught.value)


def test_invalid_register_column_points_at_the_register() -> None:
    with pytest.raises(AssemblerError) as caught:
        assemble("mov %r0, 1\nor %r0, %r50\nexit\n")
    assert (caught.value.line, caught.value.column) == (2, 9)


def test_data_file_errors_name_file_lines() -> None:
    text = "# header\n# more\n-- asm\nmov %r0, 1\nldxq %r0, %r1\n-- result\n0x1\n"
    with pytest.raises(AssemblerError) as caught:
        parse_data_file(text).program()
    assert (caught.value.line, caught.value.column) == (5, 1)


@pytest.mark.parametrize("path", UNUSED, ids=_ids(UNUSED))
def test_nonzero_reserved_fields_in_raw_sections_do_not_decode(path: Path) -> None:
    data = parse_data_file(path.read_text())
    assert data.asm is None
    assert data.raw is not None
    assert len(data.raw) == 16
    assert data.error == ""
    with pytest.raises(InvalidInstructionError):
        data.program()


def test_unknown_directive_is_rejected() -> None:
    with pytest.raises(DataFileError, match=r"unknown directive '-- frobnicate'") as caught:
        parse_data_file("-- asm\nexit\n-- frobnicate\n-- result\n0x0\n")
    assert caught.value.line == 3


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "no program"),
        ("# only a header\n-- result\n0x0\n", "no program"),
        ("-- asm\nexit\n", "expects nothing"),
        ("-- asm\nexit\n-- asm\nexit\n-- result\n0\n", "twice"),
        ("-- raw\n0xzz\n-- result\n0\n", "64-bit word"),
        ("-- asm\nexit\n-- mem\n11 2g\n-- result\n0\n", "hex byte"),
        ("-- asm\nexit\n-- result\nlots\n", "not a number"),
    ],
)
def test_malformed_data_files(text: str, fragment: str) -> None:
    with pytest.raises(DataFileError, match=fragment):
        parse_data_file(text)


def test_data_file_fields() -> None:
    text = (
        "# Copyright\r\n-- asm\r\nldxh %r0, [%r1+2]\r\nexit\r\n-- mem\r\n11 22\r\n33 44\r\n"
        "-- result\r\n0x4433\r\n-- no register offset\r\ncall instruction\r\n"
    )
    data = parse_data_file(text)
    assert data.mem == bytes([0x11, 0x22, 0x33, 0x44])
    assert data.result == 0x4433
    assert data.error is None
    assert data.no_register_offset == "call instruction\n"
    assert data.asm_line == 3
    assert data.bytecode() == bytes.fromhex("6910020000000000") + bytes.fromhex("9500000000000000")
    decimal = parse_data_file("-- asm\nexit\n-- result\n17\n-- error\nboom\n")
    assert (decimal.result, decimal.error) == (17, "boom")
