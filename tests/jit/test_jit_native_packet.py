"""Native packet and checksum helpers: JIT == interpreter == (where bpf() works) the kernel's test run.

Each test program takes its helper arguments from the packet (after the Ethernet header), so
hypothesis drives offsets, flags, old/new values and buffer sizes through ordinary test runs;
the return code, the packet after the run and (for tc) the context must match. The native path
must not reach the Python trampoline for these helpers.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jit_build import build_object
from native_calls import python_calls

import pybpf
from pybpf.asm import assemble
from pybpf.errors import MemoryAccessError, PybpfError
from pybpf.platform.uapi_generated import HelperId
from pybpf.runtime.helpers.csum import CSUM_HELPERS, csum_diff
from pybpf.runtime.loader import load
from pybpf.vm import HelperFn, Interpreter
from pybpf.vm.jit import JitProgram

SOURCE = r"""
#include "bpf_helpers.h"

static long (*bpf_l3_csum_replace)(void *skb, __u32 offset, __u64 from, __u64 to, __u64 flags) =
	(void *)BPF_FUNC_l3_csum_replace;
static long (*bpf_l4_csum_replace)(void *skb, __u32 offset, __u64 from, __u64 to, __u64 flags) =
	(void *)BPF_FUNC_l4_csum_replace;
static __s64 (*bpf_csum_update)(void *skb, __u32 csum) = (void *)BPF_FUNC_csum_update;
static long (*bpf_skb_store_bytes)(void *skb, __u32 offset, const void *from, __u32 len, __u64 flags) =
	(void *)BPF_FUNC_skb_store_bytes;

static long (*bpf_skb_change_head)(void *skb, __u32 len, __u64 flags) = (void *)BPF_FUNC_skb_change_head;

/* A Python helper grows the packet at the front (data moves), then the native helper must see
 * the new data and length: the last two bytes exist only after the growth. */
SEC("tc")
int grown(struct __sk_buff *skb)
{
	__u32 before = skb->len;

	if (bpf_skb_change_head(skb, 4, 0) < 0)
		return 1000;
	return bpf_l3_csum_replace(skb, before + 2, 0, 0x1234, 2);
}

struct replace_args {
	__u32 offset;
	__u32 from;
	__u32 to;
	__u32 flags;
	__u32 flags_high;
	__u32 which;
};

SEC("tc")
int replace(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct replace_args *args = data + 14;
	__u64 flags;
	__u32 offset, from, to, which;

	if ((void *)(args + 1) > data_end)
		return 1000;
	offset = args->offset;
	from = args->from;
	to = args->to;
	which = args->which;
	flags = ((__u64)args->flags_high << 32) | args->flags;
	if (which & 1)
		return bpf_l4_csum_replace(skb, offset, from, to, flags);
	if (which & 2)
		return bpf_csum_update(skb, to);
	return bpf_l3_csum_replace(skb, offset, from, to, flags);
}

struct diff_args {
	__u32 from_size;
	__u32 to_size;
	__u32 seed;
	__u8 from[64];
	__u8 to[64];
};

SEC("xdp")
int diff(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct diff_args *args = data;
	__u8 from[64], to[64];
	__u32 from_size, to_size;
	long sum;

	if ((void *)(args + 1) > data_end)
		return 1000;
	__builtin_memcpy(from, args->from, 64);
	__builtin_memcpy(to, args->to, 64);
	from_size = args->from_size;
	to_size = args->to_size;
	if (from_size > 64)
		from_size = 64;
	if (to_size > 64)
		to_size = 64;
	sum = bpf_csum_diff((__be32 *)from, from_size, (__be32 *)to, to_size, args->seed);
	args->seed = (__u32)sum;
	return (int)(sum >> 32) == 0 ? (int)(sum & 0xffff) : -1;
}

struct load_args {
	__u32 offset;
	__u32 size;
};

struct store_args {
	__u32 offset;
	__u32 size;
	__u32 flags;
	__u32 flags_high;
};

SEC("tc")
int store_bytes(struct __sk_buff *skb)
{
	__u8 buf[32];
	struct store_args args;
	__u32 size;
	__u64 flags;

	if (bpf_skb_load_bytes(skb, 14, &args, sizeof(args)) < 0)
		return 1000;
	for (int i = 0; i < 32; i++)
		buf[i] = 0xC0 + i;
	size = (args.size & 31) + 1; /* the length is ARG_CONST_SIZE: never 0 */
	flags = ((__u64)args.flags_high << 32) | args.flags;
	return bpf_skb_store_bytes(skb, args.offset, buf, size, flags);
}

SEC("tc")
int load_bytes(struct __sk_buff *skb)
{
	__u8 buf[32];
	struct load_args args;
	__u32 size;
	long ret;

	if (bpf_skb_load_bytes(skb, 14, &args, sizeof(args)) < 0)
		return 1000;
	__builtin_memset(buf, 0xAA, sizeof(buf));
	size = args.size & 31;
	if (size == 0)
		size = 1;
	ret = bpf_skb_load_bytes(skb, args.offset, buf, size);
	skb->mark = buf[0] | (buf[size - 1] << 8);
	skb->cb[0] = *(__u32 *)&buf[0];
	skb->cb[1] = *(__u32 *)&buf[4];
	return ret;
}
"""
ETH = bytes.fromhex("00112233445566778899aabb0800")
ETH_LOCAL = bytes.fromhex("00112233445566778899aabb88b5")  # an experimental ethertype: no IP header needed
L4 = 1
CSUM_UPDATE = 2
BPF_F_PSEUDO_HDR = 1 << 4
BPF_F_MARK_MANGLED_0 = 1 << 5
BPF_F_MARK_ENFORCE = 1 << 6
BPF_F_IPV6 = 1 << 7
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def packet_object(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_object(SOURCE, tmp_path_factory.mktemp("native_packet"))


@pytest.fixture(scope="module")
def engines(packet_object: Path) -> Iterator[tuple[Any, Any]]:
    with load(packet_object) as reference, load(packet_object, engine="jit") as native:
        yield reference, native


@pytest.fixture(scope="module")
def kernel(packet_object: Path) -> Iterator[Any]:
    try:
        obj = pybpf.load(packet_object, backend="kernel")
    except (PybpfError, OSError) as error:
        pytest.skip(f"the kernel cannot load the test object here: {type(error).__name__}: {error}")
    with obj:
        yield obj


def replace_packet(offset: int, old: int, new: int, flags: int, which: int, tail: bytes) -> bytes:  # noqa: PLR0917
    args = struct.pack("<6I", offset, old, new, flags & 0xFFFF_FFFF, flags >> 32, which)
    return ETH + args + tail


def outcome(result: Any) -> tuple[int, bytes, bytes | None]:
    return result.retval, result.data_out, result.ctx_out


def run_native(native: Any, name: str, packet: bytes) -> tuple[tuple[int, bytes, bytes | None], list[int]]:
    program = native.program(name)
    with python_calls(program.jit) as calls:
        result = program.test_run(packet)
    return outcome(result), calls


field_sizes = st.sampled_from([0, 2, 4, 1, 3, 8, 15])
flag_bits = st.sampled_from(
    [0, BPF_F_PSEUDO_HDR, BPF_F_MARK_MANGLED_0, BPF_F_MARK_ENFORCE, BPF_F_IPV6, 1 << 8, 1 << 40]
)
offsets = st.one_of(st.integers(0, 80), st.sampled_from([0x10000, 0xFFFF, 0xFFFE, 0x8000_0000, 0xFFFF_FFFE]))
words = st.one_of(st.integers(0, 0xFFFF_FFFF), st.sampled_from([0, 0xFFFF, 0xFFFF_0000, 0xFFFF_FFFF]))


@st.composite
def replace_cases(draw: st.DrawFn) -> bytes:
    size = draw(field_sizes)
    flags = size | draw(flag_bits) | draw(flag_bits)
    old = draw(st.one_of(st.just(0), words))
    tail = draw(st.binary(min_size=0, max_size=60))
    # A zero checksum in the packet matters for BPF_F_MARK_MANGLED_0.
    if draw(st.booleans()):
        tail = bytes(len(tail))
    return replace_packet(draw(offsets), old, draw(words), flags, draw(st.sampled_from([0, L4, CSUM_UPDATE])), tail)


@SETTINGS
@given(packet=replace_cases())
def test_csum_replace_native_equals_interpreter(engines: tuple[Any, Any], packet: bytes) -> None:
    reference, native = engines
    expected = outcome(reference.program("replace").test_run(packet))
    got, calls = run_native(native, "replace", packet)
    assert got == expected
    assert calls == []  # served natively: no Python call


@st.composite
def diff_cases(draw: st.DrawFn) -> bytes:
    sizes = st.one_of(st.integers(0, 64), st.sampled_from([0, 4, 64, 65, 0xFFFF_FFFF]))
    seed = draw(st.one_of(words, st.sampled_from([0, 1, 0xFFFF_FFFF, 0xFFFF])))
    head = struct.pack("<3I", draw(sizes), draw(sizes), seed)
    return head + draw(st.binary(min_size=128, max_size=128))


@SETTINGS
@given(packet=diff_cases())
def test_csum_diff_native_equals_interpreter(engines: tuple[Any, Any], packet: bytes) -> None:
    reference, native = engines
    expected = outcome(reference.program("diff").test_run(packet))
    got, calls = run_native(native, "diff", packet)
    assert got == expected
    assert calls == []


@SETTINGS
@given(
    offset=st.one_of(st.integers(0, 100), st.sampled_from([0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF])),
    size=st.integers(0, 40),
    tail=st.binary(min_size=0, max_size=80),
)
def test_skb_load_bytes_native_equals_interpreter(
    engines: tuple[Any, Any], offset: int, size: int, tail: bytes
) -> None:
    reference, native = engines
    packet = ETH_LOCAL + struct.pack("<2I", offset, size) + tail
    expected = outcome(reference.program("load_bytes").test_run(packet))
    got, calls = run_native(native, "load_bytes", packet)
    assert got == expected
    assert calls == []


KERNEL_REPLACE = [
    replace_packet(offset, old, new, flags, which, bytes(range(40)))
    for offset in (0, 14, 24, 25, 58, 0x10000)
    for old, new in ((0, 0x1234_5678), (0xC0A8_0001, 0x0A00_0001), (0xFFFF, 0))
    for flags in (
        0,
        2,
        4,
        3,
        4 | BPF_F_PSEUDO_HDR,
        2 | BPF_F_MARK_MANGLED_0,
        4 | BPF_F_MARK_ENFORCE | BPF_F_MARK_MANGLED_0,
        1 << 9,
    )
    for which in (0, L4)
] + [replace_packet(24, 0, 0, 2 | BPF_F_MARK_MANGLED_0, L4, bytes(40))]


def test_csum_replace_native_equals_the_kernel(engines: tuple[Any, Any], kernel: Any) -> None:
    _, native = engines
    for packet in KERNEL_REPLACE:
        expected = kernel.program("replace").test_run(packet)
        got = native.program("replace").test_run(packet)
        assert (got.retval, got.data_out) == (expected.retval, expected.data_out), packet.hex()


def test_csum_diff_native_equals_the_kernel(engines: tuple[Any, Any], kernel: Any) -> None:
    _, native = engines
    payload = bytes((index * 37 + 11) & 0xFF for index in range(128))
    for from_size, to_size, seed in (
        (0, 0, 0),
        (4, 4, 0xFFFF),
        (0, 20, 7),
        (12, 0, 0xDEAD),
        (7, 13, 0xFFFF_FFFF),
        (64, 64, 1),
    ):
        packet = struct.pack("<3I", from_size, to_size, seed) + payload
        expected = kernel.program("diff").test_run(packet)
        got = native.program("diff").test_run(packet)
        assert (got.retval, got.data_out) == (expected.retval, expected.data_out), (from_size, to_size, seed)


def test_a_helper_that_is_not_the_runtimes_goes_through_python(packet_object: Path) -> None:
    # A replaced csum_diff (say, a test double) must be what the program sees, not native code.
    with load(packet_object, engine="jit") as native:
        program = native.program("diff")
        jit = program.jit
        jit.helpers = {**jit.helpers, HelperId.CSUM_DIFF: lambda env, *args: 0x77}
        packet = struct.pack("<3I", 4, 4, 0) + bytes(128)
        with python_calls(jit) as calls:
            result = program.test_run(packet)
    assert result.retval == 0x77
    assert calls == [HelperId.CSUM_DIFF]


def test_csum_diff_checks_its_buffers_as_the_interpreter_does() -> None:
    # Outside the run's memory, both engines raise the same MemoryAccessError at the call's pc;
    # inside it (the stack), both give the same sum. No runtime needed: csum_diff only reads memory.
    helpers: dict[int, HelperFn] = {HelperId.CSUM_DIFF: CSUM_HELPERS[HelperId.CSUM_DIFF]}
    outside = "mov %r1, 4096\nmov %r2, 8\nmov %r3, 0\nmov %r4, 0\nmov %r5, 0\ncall 28\nexit"
    inside = (
        "stdw [%r10-8], 0x12345678\nstdw [%r10-16], -1\nmov %r1, %r10\nadd %r1, -8\nmov %r2, 8\n"
        "mov %r3, %r10\nadd %r3, -16\nmov %r4, 6\nmov %r5, 99\ncall 28\nexit"
    )
    errors = []
    for engine in (Interpreter(assemble(outside), helpers=helpers), JitProgram(assemble(outside), helpers=helpers)):
        with pytest.raises(MemoryAccessError) as raised:
            engine.run()
        errors.append(str(raised.value).split(": ")[:2])  # the stacks are named differently after that
    assert errors[0] == errors[1] == ["pc 5", "invalid read of 8 byte(s) at 0x1000"]
    sums = [
        engine.run().r0
        for engine in (Interpreter(assemble(inside), helpers=helpers), JitProgram(assemble(inside), helpers=helpers))
    ]
    assert sums[0] == sums[1] == csum_diff(struct.pack("<q", 0x12345678), struct.pack("<q", -1)[:6], 99)


def test_native_helpers_see_the_packet_a_python_helper_reshaped(engines: tuple[Any, Any]) -> None:
    reference, native = engines
    for packet in (ETH_LOCAL + bytes(range(20)), ETH_LOCAL + bytes(21)):
        expected = outcome(reference.program("grown").test_run(packet))
        got, calls = run_native(native, "grown", packet)
        assert got == expected
        assert calls == [HelperId.SKB_CHANGE_HEAD]  # the checksum replace itself stayed native
    assert expected[0] in (0, 2**32 - 14)  # 0 for an even length, -EFAULT for an odd offset


@SETTINGS
@given(
    offset=st.one_of(st.integers(0, 90), st.sampled_from([0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFF0])),
    size=st.integers(0, 31),
    flags=st.sampled_from([0, 1, 2, 3, 4, 1 << 33]),
    tail=st.binary(min_size=0, max_size=80),
)
def test_skb_store_bytes_native_equals_interpreter(
    engines: tuple[Any, Any], offset: int, size: int, flags: int, tail: bytes
) -> None:
    reference, native = engines
    packet = ETH_LOCAL + struct.pack("<4I", offset, size, flags & 0xFFFF_FFFF, flags >> 32) + tail
    expected = outcome(reference.program("store_bytes").test_run(packet))
    got, calls = run_native(native, "store_bytes", packet)
    assert got == expected
    # BPF_F_INVALIDATE_HASH clears the Python skb's hash: a single run asks Python for that.
    assert calls == ([HelperId.SKB_STORE_BYTES] if flags in {2, 3} else [])


def test_skb_store_bytes_native_equals_the_kernel(engines: tuple[Any, Any], kernel: Any) -> None:
    _, native = engines
    for offset, size, flags in ((0, 4, 0), (20, 31, 1), (40, 8, 2), (44, 31, 0), (70, 1, 3), (2**31, 1, 0), (0, 0, 8)):
        packet = ETH_LOCAL + struct.pack("<4I", offset, size, flags, 0) + bytes(range(60))
        expected = kernel.program("store_bytes").test_run(packet)
        got = native.program("store_bytes").test_run(packet)
        assert (got.retval, got.data_out) == (expected.retval, expected.data_out), (offset, size, flags)
