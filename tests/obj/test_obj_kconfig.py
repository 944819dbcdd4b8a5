"""Kconfig externs (libbpf's ``.kconfig``): spec layout, value resolution, and both backends agreeing."""

from __future__ import annotations

import itertools
import os
import platform
import shutil
import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest

import pybpf
from pybpf.errors import LoadError, UnsupportedExternError
from pybpf.isa import PseudoSrc
from pybpf.kernel import available
from pybpf.obj import MapKind, load_spec
from pybpf.obj.kconfig import kernel_version_code, parse_kernel_config, resolve_kconfig
from pybpf.obj.spec import KconfigKind
from pybpf.platform.uapi_generated import BpfMapFlag

PROGS = Path(__file__).resolve().parent.parent / "progs"
CLANG = shutil.which("clang-19")

# One program per extern, each returning the value it sees, so a test run shows it directly.
SOURCE = r"""
#include "bpf_helpers.h"
#define __kconfig __attribute__((section(".kconfig")))
#define __weak __attribute__((weak))
enum libbpf_tristate { TRI_NO = 0, TRI_YES = 1, TRI_MODULE = 2 };

extern unsigned int LINUX_KERNEL_VERSION __kconfig;
extern _Bool LINUX_HAS_BPF_COOKIE __kconfig;
extern int CONFIG_HZ __kconfig __weak;
extern enum libbpf_tristate CONFIG_BPF_SYSCALL __kconfig __weak;
extern char CONFIG_PYBPF_TEST_CHAR __kconfig __weak;
extern unsigned long long CONFIG_PYBPF_TEST_ABSENT __kconfig __weak;
extern char CONFIG_PYBPF_TEST_STRING[8] __kconfig __weak;

SEC("socket") int version(struct __sk_buff *skb) { return LINUX_KERNEL_VERSION; }
SEC("socket") int cookie(struct __sk_buff *skb) { return LINUX_HAS_BPF_COOKIE; }
SEC("socket") int hz(struct __sk_buff *skb) { return CONFIG_HZ; }
SEC("socket") int syscall_tri(struct __sk_buff *skb) { return CONFIG_BPF_SYSCALL; }
SEC("socket") int letter(struct __sk_buff *skb) { return CONFIG_PYBPF_TEST_CHAR; }
SEC("socket") int absent(struct __sk_buff *skb) { return CONFIG_PYBPF_TEST_ABSENT != 0 ? 7 : 3; }
SEC("socket") int string0(struct __sk_buff *skb) { return CONFIG_PYBPF_TEST_STRING[0]; }

char LICENSE[] SEC("license") = "GPL";
"""

STRICT = r"""
#include "bpf_helpers.h"
extern int CONFIG_PYBPF_NO_SUCH_OPTION __attribute__((section(".kconfig")));
SEC("socket") int prog(struct __sk_buff *skb) { return CONFIG_PYBPF_NO_SUCH_OPTION; }
char LICENSE[] SEC("license") = "GPL";
"""

KSYM = r"""
#include "bpf_helpers.h"
extern const int bpf_prog_active __attribute__((section(".ksyms")));
SEC("socket") int prog(struct __sk_buff *skb) { return *&bpf_prog_active != 0; }
char LICENSE[] SEC("license") = "GPL";
"""

CONFIG = """\
# comment
CONFIG_HZ=250
CONFIG_BPF_SYSCALL=y
CONFIG_PYBPF_TEST_CHAR=m
# CONFIG_PYBPF_TEST_ABSENT is not set
CONFIG_PYBPF_TEST_STRING="hello, world"
"""


def _compile(tmp_path: Path, name: str, source: str) -> Path:
    if CLANG is None:
        pytest.skip("clang-19 is not installed")
    c_file = tmp_path / f"{name}.c"
    c_file.write_text(source)
    out = tmp_path / f"{name}.o"
    subprocess.run(
        [CLANG, "-target", "bpf", "-O2", "-g", f"-I{PROGS}", f"-I/usr/include/{platform.machine()}-linux-gnu",
         "-c", str(c_file), "-o", str(out)],
        check=True,
        capture_output=True,
    )
    return out


@pytest.fixture(scope="module")
def externs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _compile(tmp_path_factory.mktemp("kconfig"), "externs", SOURCE)


def test_kernel_version_code() -> None:
    assert kernel_version_code("5.15.0-91-generic") == 0x050F00
    assert kernel_version_code("6.18.2") == 0x061202
    assert kernel_version_code("4.9.300-x") == 0x0409FF  # the sublevel saturates at 255
    assert kernel_version_code("6.1") == 0x060100
    with pytest.raises(LoadError):
        kernel_version_code("not-a-version")


def test_parse_kernel_config_skips_unset_options() -> None:
    assert parse_kernel_config(CONFIG) == {
        "CONFIG_HZ": "250",
        "CONFIG_BPF_SYSCALL": "y",
        "CONFIG_PYBPF_TEST_CHAR": "m",
        "CONFIG_PYBPF_TEST_STRING": '"hello, world"',
    }


def test_committed_object_spec() -> None:
    spec = load_spec(PROGS / "kconfig_extern.o")
    kconfig = spec.maps[".kconfig"]
    assert kconfig.kind is MapKind.DATA and kconfig.frozen
    assert kconfig.map_flags & BpfMapFlag.RDONLY_PROG
    assert kconfig.contents == bytes(kconfig.value_size)  # the spec stays host-independent
    extern = spec.kconfig["LINUX_KERNEL_VERSION"]
    assert (extern.offset, extern.size, extern.kind, extern.weak) == (0, 4, KconfigKind.KCFG_INT, False)
    (ref,) = spec.programs["kernel_version_filter"].map_references
    expected = (".kconfig", PseudoSrc.MAP_VALUE, 0, "LINUX_KERNEL_VERSION")
    assert (ref.map_name, ref.src, ref.offset, ref.symbol) == expected


def test_layout_and_kinds(externs: Path) -> None:
    spec = load_spec(externs)
    kinds = {name: (extern.kind, extern.size, extern.weak) for name, extern in spec.kconfig.items()}
    assert kinds["LINUX_HAS_BPF_COOKIE"] == (KconfigKind.KCFG_BOOL, 1, False)
    assert kinds["CONFIG_BPF_SYSCALL"] == (KconfigKind.KCFG_TRISTATE, 4, True)
    assert kinds["CONFIG_PYBPF_TEST_CHAR"] == (KconfigKind.KCFG_CHAR, 1, True)
    assert kinds["CONFIG_PYBPF_TEST_STRING"] == (KconfigKind.KCFG_CHAR_ARR, 8, True)
    assert kinds["CONFIG_PYBPF_TEST_ABSENT"] == (KconfigKind.KCFG_INT, 8, True)
    slots = sorted((extern.offset, extern.offset + extern.size) for extern in spec.kconfig.values())
    assert all(end <= start for (_, end), (start, _) in itertools.pairwise(slots))  # no overlap
    for extern in spec.kconfig.values():
        assert extern.offset % min(extern.size, 8) == 0 or extern.kind is KconfigKind.KCFG_CHAR_ARR
    assert slots[-1][1] <= spec.maps[".kconfig"].value_size


def test_values_from_a_config(externs: Path) -> None:
    spec = resolve_kconfig(load_spec(externs), release="5.15.7", config_text=CONFIG)
    contents = spec.maps[".kconfig"].contents
    assert contents is not None

    def read(name: str) -> bytes:
        extern = spec.kconfig[name]
        return contents[extern.offset : extern.offset + extern.size]

    assert struct.unpack("<I", read("LINUX_KERNEL_VERSION"))[0] == 0x050F07
    assert read("LINUX_HAS_BPF_COOKIE") == b"\x01"
    assert struct.unpack("<i", read("CONFIG_HZ"))[0] == 250
    assert struct.unpack("<I", read("CONFIG_BPF_SYSCALL"))[0] == 1
    assert read("CONFIG_PYBPF_TEST_CHAR") == b"m"
    assert read("CONFIG_PYBPF_TEST_ABSENT") == bytes(8)  # weak and unset: zero
    assert read("CONFIG_PYBPF_TEST_STRING") == b"hello, \0"  # truncated, NUL kept


def test_overrides_win_and_are_checked(externs: Path) -> None:
    spec = load_spec(externs)
    resolved = resolve_kconfig(spec, {"CONFIG_HZ": 1000, "CONFIG_BPF_SYSCALL": "m"}, config_text=CONFIG)
    contents = resolved.maps[".kconfig"].contents
    assert contents is not None
    hz, tri = spec.kconfig["CONFIG_HZ"], spec.kconfig["CONFIG_BPF_SYSCALL"]
    assert struct.unpack_from("<i", contents, hz.offset)[0] == 1000
    assert struct.unpack_from("<I", contents, tri.offset)[0] == 2
    with pytest.raises(LoadError) as info:
        resolve_kconfig(spec, {"LINUX_HAS_BPF_COOKIE": 5}, config_text=CONFIG)
    assert info.value.symbol == "LINUX_HAS_BPF_COOKIE"
    with pytest.raises(LoadError):
        resolve_kconfig(spec, {"CONFIG_HZ": 1 << 40}, config_text=CONFIG)


def test_unknown_non_weak_extern_is_an_error(tmp_path: Path) -> None:
    path = _compile(tmp_path, "strict", STRICT)
    spec = load_spec(path)  # parsing is fine: values are an instantiation matter
    with pytest.raises(LoadError, match="no value") as info:
        resolve_kconfig(spec, config_text=CONFIG)
    assert info.value.symbol == "CONFIG_PYBPF_NO_SUCH_OPTION"
    with pytest.raises(LoadError) as loaded:
        pybpf.load(path)
    assert loaded.value.symbol == "CONFIG_PYBPF_NO_SUCH_OPTION"
    with pybpf.load(path, kconfig={"CONFIG_PYBPF_NO_SUCH_OPTION": 42}) as obj:
        assert obj.program("prog").test_run(bytes(64)).retval == 42


def test_ksyms_stay_unsupported(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedExternError) as info:
        load_spec(_compile(tmp_path, "ksym", KSYM))
    assert info.value.symbol == "bpf_prog_active"


def _run_all(obj: Any, names: list[str]) -> dict[str, int]:
    return {name: int(obj.program(name).test_run(bytes(64)).retval) for name in names}


def test_vm_sees_the_host_values(externs: Path) -> None:
    names = list(load_spec(externs).programs)
    with pybpf.load(externs, kconfig={"CONFIG_PYBPF_TEST_CHAR": "y"}) as obj:
        seen = _run_all(obj, names)
    assert seen["version"] == kernel_version_code(os.uname().release)
    assert seen["letter"] == ord("y")
    assert seen["absent"] == 3
    with pybpf.load(externs, kconfig={"CONFIG_HZ": 123}) as obj:
        assert obj.program("hz").test_run(bytes(64)).retval == 123


def test_vm_matches_the_kernel(externs: Path) -> None:
    ok, reason = available()
    if not ok:
        pytest.skip(f"bpf() unavailable: {reason}")
    names = list(load_spec(externs).programs)
    overrides = {"CONFIG_PYBPF_TEST_STRING": "Zebra"}
    with pybpf.load(externs, kconfig=overrides) as vm_obj:
        ours = _run_all(vm_obj, names)
    with pybpf.load(externs, backend="kernel", kconfig=overrides) as kernel_obj:
        kernels = _run_all(kernel_obj, names)
    assert ours == kernels
    assert ours["string0"] == ord("Z")
    for path in (PROGS / "kconfig_extern.o",):
        with pybpf.load(path) as vm_obj, pybpf.load(path, backend="kernel") as kernel_obj:
            run: dict[str, Any] = {"vm": vm_obj, "kernel": kernel_obj}
            results = {k: o.program("kernel_version_filter").test_run(bytes(64)).retval for k, o in run.items()}
            assert results["vm"] == results["kernel"] != 0  # skb->len: this kernel is newer than 5.15
