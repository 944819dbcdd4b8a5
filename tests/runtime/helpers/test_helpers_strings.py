"""trace_printk / trace_vprintk / snprintf formats and errors, strncmp, strtol and strtoul."""

from __future__ import annotations

import struct

import pytest
from helper_harness import U64, Harness, make_harness, neg

from pybpf.platform import HelperId
from pybpf.runtime.helpers import default_helpers

HELPERS = default_helpers()
EINVAL, ERANGE, ENOSPC = neg(22), neg(34), neg(28)


def call(harness: Harness, helper: HelperId, *args: int) -> int:
    padded = [*args, 0, 0, 0, 0, 0][:5]
    return HELPERS[helper](harness.env, *padded)


def snprintf(harness: Harness, fmt: bytes, args: list[int], size: int = 128) -> tuple[int, bytes]:
    out = harness.region(size)
    fmt_region = harness.region(fmt + b"\0", writable=False)
    data = harness.region(struct.pack(f"<{len(args)}Q", *[a & U64 for a in args])) if args else None
    result = call(harness, HelperId.SNPRINTF, out.address, size, fmt_region.address,
                  data.address if data else 0, 8 * len(args))  # fmt: skip
    return result, harness.read(out.address, size)


@pytest.mark.parametrize(
    ("fmt", "args", "expected"),
    [
        (b"%d", [-5], b"-5"),
        (b"%d", [0xFFFFFFFF], b"-1"),
        (b"%u", [0xFFFFFFFF], b"4294967295"),
        (b"%ld", [-5], b"-5"),
        (b"%lld %llu", [-1, -1], b"-1 18446744073709551615"),
        (b"%x %X %lx", [0xABC, 0xABC, 0x1_0000_0000], b"abc ABC 100000000"),
        (b"%i|%5d|%-5d|%05d|%+d", [7, 42, 42, 42, 3], b"7|   42|42   |00042|+3"),
        (b"100%% %c", [ord("z")], b"100% z"),
        (b"%px", [0x1234], b"0000000000001234"),
        (b"%pS", [0xFFFF], b"0xffff"),
    ],
)
def test_snprintf_formats_like_the_kernel(fmt: bytes, args: list[int], expected: bytes) -> None:
    harness = make_harness()
    result, out = snprintf(harness, fmt, args)
    assert result == len(expected) + 1
    assert out[: len(expected) + 1] == expected + b"\0"


def test_snprintf_strings_and_addresses() -> None:
    harness = make_harness()
    text = harness.region(b"hello\0junk")
    addr = harness.region(bytes([192, 168, 1, 20]))
    result, out = snprintf(harness, b"[%s] %pI4 %pi4 [%-7s]", [text.address, addr.address, addr.address, text.address])
    expected = b"[hello] 192.168.1.20 192.168.001.020 [hello  ]"
    assert out[:result] == expected + b"\0"


def test_snprintf_bad_string_pointer_prints_empty() -> None:
    harness = make_harness()
    result, out = snprintf(harness, b"<%s>", [0x10])
    assert out[:result] == b"<>\0"


def test_snprintf_truncates_but_returns_full_length() -> None:
    harness = make_harness()
    result, out = snprintf(harness, b"abcdef%d", [12345], size=4)
    assert result == len(b"abcdef12345") + 1
    assert out == b"abc\0"


@pytest.mark.parametrize(
    ("fmt", "nargs"),
    [
        (b"%d %d", 1),  # more conversions than arguments
        (b"%q", 1),  # unknown conversion
        (b"%.3s", 1),  # precision is not accepted
        (b"%sx", 1),  # %s must be followed by space, punctuation or the end
        (b"%pZ", 1),  # unsupported pointer kind
        (b"bell\x07", 0),  # non-printable
        (b"caf\xe9", 0),  # non-ASCII
        (b"%hd", 1),  # no h modifier
    ],
)
def test_snprintf_rejects_formats_with_einval(fmt: bytes, nargs: int) -> None:
    harness = make_harness()
    result, _ = snprintf(harness, fmt, [0] * nargs)
    assert result == EINVAL


def test_snprintf_data_len_rules() -> None:
    harness = make_harness()
    out = harness.region(16)
    fmt = harness.region(b"x\0")
    data = harness.region(8 * 13)
    assert call(harness, HelperId.SNPRINTF, out.address, 16, fmt.address, data.address, 12) == EINVAL  # not 8k
    assert call(harness, HelperId.SNPRINTF, out.address, 16, fmt.address, data.address, 8 * 13) == EINVAL  # > 12
    assert call(harness, HelperId.SNPRINTF, out.address, 16, fmt.address, 0, 8) == EINVAL  # NULL with a length
    assert call(harness, HelperId.SNPRINTF, out.address, 16, fmt.address, data.address, 8 * 12) == 2


def test_snprintf_string_arguments_share_a_512_byte_buffer() -> None:
    harness = make_harness()
    long_text = harness.region(b"a" * 600 + b"\0")
    result, _ = snprintf(harness, b"%s%d", [long_text.address, 1], size=1024)
    assert result == ENOSPC


def test_trace_printk_writes_to_the_pipe() -> None:
    harness = make_harness()
    fmt = harness.region(b"pid %d comm %s\n\0")
    comm = harness.region(b"abc\0")
    result = call(harness, HelperId.TRACE_PRINTK, fmt.address, fmt.size, 42, comm.address)
    assert result == len(b"pid 42 comm abc\n")
    assert harness.services.trace_pipe.messages() == ["pid 42 comm abc"]
    event = harness.services.trace_pipe.events[0]
    assert event.pid == harness.services.task.pid
    assert "bpf_trace_printk: pid 42 comm abc" in event.format()
    assert len(harness.services.trace_pipe.drain()) == 1
    assert len(harness.services.trace_pipe) == 0


def test_trace_printk_limits_and_errors() -> None:
    harness = make_harness()
    four = harness.region(b"%d %d %d %d\0")
    assert call(harness, HelperId.TRACE_PRINTK, four.address, four.size, 1, 2, 3) == EINVAL
    unterminated = harness.region(b"%d")
    assert call(harness, HelperId.TRACE_PRINTK, unterminated.address, 2, 1) == EINVAL
    assert len(harness.services.trace_pipe) == 0


def test_trace_vprintk_takes_up_to_twelve_arguments() -> None:
    harness = make_harness()
    fmt = harness.region(b" ".join([b"%d"] * 12) + b"\0")
    args = harness.region(struct.pack("<12Q", *range(12)))
    assert call(harness, HelperId.TRACE_VPRINTK, fmt.address, fmt.size, args.address, 96) > 0
    assert harness.services.trace_pipe.messages() == [" ".join(str(i) for i in range(12))]
    assert call(harness, HelperId.TRACE_VPRINTK, fmt.address, fmt.size, args.address, 88) == EINVAL


def test_strncmp_returns_sign() -> None:
    harness = make_harness()
    s1 = harness.region(b"abcd")
    for other, expected in [(b"abcd\0", 0), (b"abce\0", U64), (b"abca\0", 1), (b"ab\0", 1), (b"abcdzz\0", 0)]:
        s2 = harness.region(other)
        assert call(harness, HelperId.STRNCMP, s1.address, 4, s2.address) == expected, other


@pytest.mark.parametrize(
    ("text", "flags", "result", "value"),
    [
        (b"123", 0, 3, 123),
        (b"  -42xyz", 0, 5, -42),
        (b"0x1f", 0, 4, 31),
        (b"0x1f", 16, 4, 31),
        (b"1f", 16, 2, 31),
        (b"017", 0, 3, 15),
        (b"0x", 0, 1, 0),  # base 0 with no hex digit after "0x": octal "0"
        (b"9223372036854775807", 10, 19, (1 << 63) - 1),
        (b"-9223372036854775808", 10, 20, -(1 << 63)),
        (b"\xa0 7", 10, 3, 7),  # the kernel's isspace includes 0xA0
    ],
)
def test_strtol(text: bytes, flags: int, result: int, value: int) -> None:
    harness = make_harness()
    buf = harness.region(text)
    out = harness.region(b"\xff" * 8)
    assert call(harness, HelperId.STRTOL, buf.address, len(text), flags, out.address) == result
    assert int.from_bytes(harness.read(out.address, 8), "little", signed=True) == value


@pytest.mark.parametrize(
    ("text", "flags", "error"),
    [
        (b"9223372036854775808", 10, ERANGE),
        (b"-9223372036854775809", 10, ERANGE),
        (b"99999999999999999999", 10, ERANGE),
        (b"abc", 10, EINVAL),
        (b"   ", 0, EINVAL),
        (b"-", 0, EINVAL),
        (b"12", 7, EINVAL),  # base must be 0, 8, 10 or 16
        (b"12", 0x20, EINVAL),  # unknown flag bits
        (b"0xg", 16, EINVAL),
    ],
)
def test_strtol_errors_zero_the_result(text: bytes, flags: int, error: int) -> None:
    harness = make_harness()
    buf = harness.region(text)
    out = harness.region(b"\xff" * 8)
    assert call(harness, HelperId.STRTOL, buf.address, len(text), flags, out.address) == error
    assert harness.read(out.address, 8) == bytes(8)


def test_strtoul() -> None:
    harness = make_harness()
    out = harness.region(8)
    big = harness.region(b"18446744073709551615")
    assert call(harness, HelperId.STRTOUL, big.address, big.size, 10, out.address) == 20
    assert harness.read(out.address, 8) == b"\xff" * 8
    minus = harness.region(b"-1")
    assert call(harness, HelperId.STRTOUL, minus.address, 2, 0, out.address) == EINVAL
    over = harness.region(b"18446744073709551616")
    assert call(harness, HelperId.STRTOUL, over.address, over.size, 10, out.address) == ERANGE
