"""Test runs of syscall, raw_tp and flow_dissector programs, in user space and against the kernel.

The program is compiled at test time with clang (skipped without it); the kernel comparison
loads it with bpftool into a private bpffs and test-runs it there (skipped without bpf()).
A compile or kernel-load failure fails the tests: only missing tools or kernel support skip.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

import pybpf
from pybpf.errors import PybpfError, TestRunError
from pybpf.kernel.bpffs import private_bpffs
from pybpf.kernel.objects import obj_get
from pybpf.kernel.probe import available
from pybpf.kernel.progs import prog_test_run
from pybpf.runtime.object import Object

PROGS = Path(__file__).resolve().parents[1] / "progs"
SOURCE = r"""
#include "bpf_helpers.h"
#include <linux/if_ether.h>
struct args { __u64 a; __u64 b; __u64 sum; };
SEC("syscall")
int add_args(struct args *ctx)
{
	ctx->sum = ctx->a + ctx->b;
	return (int)(ctx->a * 3);
}
SEC("raw_tp/sys_enter")
int raw_args(unsigned long long *ctx)
{
	return (int)(ctx[0] ^ ctx[1]);
}
SEC("flow_dissector")
int dissect(struct __sk_buff *skb)
{
	struct bpf_flow_keys *keys = skb->flow_keys;
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end)
		return BPF_DROP;
	keys->thoff = keys->nhoff + 20 + (eth->h_source[0] & 0x3f);
	keys->ip_proto = 17;
	keys->sport = 0x1234;
	return BPF_OK;
}
char LICENSE[] SEC("license") = "GPL";
"""
FRAMES = [
    b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00" + bytes(30),
    b"\x02" * 6 + b"\x3f" * 6 + b"\x86\xdd" + bytes(50),  # thoff past the end: the kernel clamps it
    b"\x02" * 6 + b"\x04" * 6 + b"\x08\x06",
]


@pytest.fixture(scope="module")
def object_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    clang = shutil.which("clang-19") or shutil.which("clang")
    if clang is None:
        pytest.skip("clang is not installed")
    directory = tmp_path_factory.mktemp("progtypes")
    (directory / "kinds.c").write_text(SOURCE)
    arch_include = f"/usr/include/{os.uname().machine}-linux-gnu"
    result = subprocess.run(
        [clang, "-O2", "-g", "-target", "bpf", "-mcpu=v3", f"-I{PROGS}", f"-I{arch_include}",
         "-c", str(directory / "kinds.c"), "-o", str(directory / "kinds.o")],
        capture_output=True, text=True, check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"clang could not build the test object: {result.stderr[-300:]}")
    return directory / "kinds.o"


@pytest.fixture
def user(object_file: Path) -> Iterator[Object]:
    with pybpf.load(object_file) as obj:
        yield obj


def test_syscall_program_reads_and_writes_its_context(user: Object) -> None:
    result = user.programs["add_args"].test_run(ctx_in=struct.pack("<QQQ", 5, 7, 0))
    assert result.retval == 15
    assert result.ctx_out == struct.pack("<QQQ", 5, 7, 12)
    with pytest.raises(TestRunError):
        user.programs["add_args"].test_run(b"\x01", struct.pack("<QQQ", 5, 7, 0))
    with pytest.raises(TestRunError, match="repeatedly"):
        user.programs["add_args"].test_run(ctx_in=bytes(24), repeat=2)


def test_raw_tracepoint_arguments(user: Object) -> None:
    assert user.programs["raw_args"].test_run(ctx_in=struct.pack("<QQ", 5, 7)).retval == 2
    with pytest.raises(TestRunError, match="at most 96"):
        user.programs["raw_args"].test_run(ctx_in=bytes(104))


def test_flow_dissector_fills_and_clamps_flow_keys(user: Object) -> None:
    result = user.programs["dissect"].test_run(FRAMES[0])
    assert result.retval == 0  # BPF_OK
    nhoff, thoff = struct.unpack_from("<HH", result.data_out)
    assert (nhoff, thoff) == (14, 14 + 20 + 4)  # h_source[0] is 0x04
    assert result.data_out[9] == 17  # ip_proto
    clamped = user.programs["dissect"].test_run(FRAMES[1])
    assert struct.unpack_from("<H", clamped.data_out, 2)[0] == len(FRAMES[1])


@pytest.fixture(scope="module")
def kernel_progs(object_file: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("needs root for bpf() and mounting bpffs")
    ok, reason = available()
    if not ok:
        pytest.skip(f"bpf() unavailable: {reason}")
    if shutil.which("bpftool") is None:
        pytest.skip("bpftool is not installed")
    try:
        with private_bpffs() as directory:
            result = subprocess.run(
                ["bpftool", "prog", "loadall", str(object_file), str(directory / "progs")],
                capture_output=True, text=True, check=False,
            )
            if result.returncode != 0:
                pytest.fail(f"bpftool could not load the object: {result.stderr[-300:]}")
            yield directory / "progs"
    except PybpfError as error:
        pytest.skip(f"cannot mount a private bpffs: {error}")


@pytest.mark.kernel
@pytest.mark.parametrize("frame", FRAMES, ids=["ipv4", "clamped", "short"])
def test_flow_dissector_matches_the_kernel(kernel_progs: Path, user: Object, frame: bytes) -> None:
    with obj_get(kernel_progs / "dissect") as fd:
        expected = prog_test_run(fd, frame)
    result = user.programs["dissect"].test_run(frame)
    assert (result.retval, result.data_out) == (expected.retval, expected.data_out)


@pytest.mark.kernel
def test_syscall_and_raw_tp_match_the_kernel(kernel_progs: Path, user: Object) -> None:
    ctx = struct.pack("<QQQ", 11, 30, 0)
    with obj_get(kernel_progs / "add_args") as fd:
        # The kernel takes no ctx_out for syscall programs (it writes the context back over ctx_in).
        expected = prog_test_run(fd, ctx_in=ctx, ctx_size_out=0, repeat=0)
    result = user.programs["add_args"].test_run(ctx_in=ctx)
    assert result.retval == expected.retval == 33
    args = struct.pack("<QQ", 0xF0, 0x0F)
    with obj_get(kernel_progs / "raw_args") as fd:
        expected = prog_test_run(fd, ctx_in=args, ctx_size_out=0, repeat=0)
    assert user.programs["raw_args"].test_run(ctx_in=args).retval == expected.retval
