"""XDP metadata limits against the kernel: ctx_in metadata lengths and bpf_xdp_adjust_meta deltas.

Linux 6.16 raised the metadata limit from 32 bytes to what skb_shared_info.meta_len (a u8) holds;
struct xdp_frame must still fit in the headroom. Both engines and the kernel must agree on every
length, accepted or refused.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import pytest
from jit_build import build_object

import pybpf
from pybpf.errors import PybpfError

SOURCE = r"""
#include "bpf_helpers.h"

static long (*bpf_xdp_adjust_meta)(struct xdp_md *ctx, int delta) = (void *)BPF_FUNC_xdp_adjust_meta;

/* The first packet byte is a (signed) adjust_meta delta; returns the helper's result, or the
   metadata length when it succeeded. */
SEC("xdp")
int meta(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	signed char *delta = data;
	if ((void *)(delta + 1) > end)
		return 1000;
	long ret = bpf_xdp_adjust_meta(ctx, *delta);
	if (ret)
		return (int)ret;
	return (int)((long)ctx->data - (long)ctx->data_meta);
}
char LICENSE[] SEC("license") = "GPL";
"""

LENGTHS = (0, 4, 32, 36, 64, 128, 212, 216, 220, 252, 256, 6)
DELTAS = (0, -4, -32, -36, -100, -128, 8)


def outcome(program: Any, data: bytes, ctx_in: bytes | None) -> tuple[str, int]:
    try:
        return "ran", program.test_run(data, ctx_in=ctx_in).retval
    except PybpfError:
        return "refused", 0


@pytest.fixture(scope="module")
def objects(tmp_path_factory: pytest.TempPathFactory) -> Any:
    path: Path = build_object(SOURCE, tmp_path_factory.mktemp("xdp_meta"))
    try:
        kernel = pybpf.load(path, backend="kernel")
    except (PybpfError, OSError) as error:
        pytest.skip(f"the kernel cannot load the program here: {type(error).__name__}: {error}")
    with kernel, pybpf.load(path, engine="interp") as interp, pybpf.load(path, engine="jit") as jit:
        yield kernel.program("meta"), interp.program("meta"), jit.program("meta")


def test_ctx_in_metadata_lengths_agree_with_the_kernel(objects: Any) -> None:
    kernel, interp, jit = objects
    for length in LENGTHS:
        data = bytes(length + 60)
        ctx_in = struct.pack("<6I", length, len(data), 0, 0, 0, 0)
        expected = outcome(kernel, data, ctx_in)
        assert outcome(interp, data, ctx_in) == expected, length
        assert outcome(jit, data, ctx_in) == expected, length
    assert outcome(kernel, bytes(276), struct.pack("<6I", 216, 276, 0, 0, 0, 0))[0] == "ran"


def test_adjust_meta_deltas_agree_with_the_kernel(objects: Any) -> None:
    kernel, interp, jit = objects
    for delta in DELTAS:
        data = bytes([delta & 0xFF]) + bytes(59)
        expected = outcome(kernel, data, None)
        assert outcome(interp, data, None) == expected, delta
        assert outcome(jit, data, None) == expected, delta
        assert outcome(jit, data, None) == expected, delta
    assert outcome(kernel, bytes([(-100) & 0xFF]) + bytes(59), None) == ("ran", 100)
