"""fentry/fexit-style (BPF_PROG_TYPE_TRACING) programs on Python functions: the u64 args array.

The object is compiled at test time (the running kernel refuses to load fentry programs here, so
it is not one of the committed, kernel-verified objects); skipped without clang.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import pytest

import pybpf
from pybpf.hooks.link import HookRuntime, LinkKind
from pybpf.hooks.probes import attach_probe

PROGS = Path(__file__).resolve().parents[1] / "progs"
SOURCE = r"""
#include "bpf_helpers.h"
struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 4); __type(key, __u32); __type(value, __u64); }
    seen SEC(".maps");
static __always_inline void put(__u32 slot, __u64 value)
{
    __u64 *found = bpf_map_lookup_elem(&seen, &slot);
    if (found)
        *found = value;
}
SEC("fentry/do_unlinkat")
int on_entry(__u64 *ctx) { put(0, ctx[0] + 10 * ctx[1]); return 0; }
SEC("fexit/do_unlinkat")
int on_exit(__u64 *ctx) { put(1, ctx[2]); put(2, ctx[0]); return 0; }
char LICENSE[] SEC("license") = "GPL";
"""


@pytest.fixture(scope="module")
def tracing_object(tmp_path_factory: pytest.TempPathFactory) -> Path:
    clang = shutil.which("clang-19") or shutil.which("clang")
    if clang is None:
        pytest.skip("clang is not installed")
    workdir = tmp_path_factory.mktemp("fentry")
    source = workdir / "fentry.c"
    source.write_text(SOURCE)
    target = workdir / "fentry.o"
    arch = subprocess.run(["uname", "-m"], capture_output=True, text=True, check=True).stdout.strip()
    command = [clang, "-O2", "-g", "-target", "bpf", f"-I{PROGS}", f"-I/usr/include/{arch}-linux-gnu"]
    result = subprocess.run(
        [*command, "-c", str(source), "-o", str(target)], check=False, capture_output=True, text=True
    )
    if result.returncode:
        pytest.skip(f"clang cannot build BPF objects here: {result.stderr[-300:]}")
    return target


def test_fentry_and_fexit_get_args_then_return_value(tracing_object: Path) -> None:
    runtime = HookRuntime()

    def add(a: int, b: int) -> int:
        return a + b

    with pybpf.load(tracing_object) as obj:
        entry = attach_probe(obj.program("on_entry"), add, runtime=runtime, install=False)
        exit_ = attach_probe(obj.program("on_exit"), entry.wrapper, runtime=runtime, install=False)
        assert (entry.kind, exit_.kind) == (LinkKind.FENTRY, LinkKind.FEXIT)
        assert exit_.wrapper(3, 4) == 7
        assert entry.errors == exit_.errors == 0
        values = [struct.unpack("<Q", obj.maps["seen"].lookup_raw(i.to_bytes(4, "little")))[0] for i in range(3)]
        assert values == [3 + 40, 7, 3]
        exit_.wrapper(-1, 0)
        (returned,) = struct.unpack("<q", obj.maps["seen"].lookup_raw((1).to_bytes(4, "little")))
        assert returned == -1  # a negative int is its two's complement u64
