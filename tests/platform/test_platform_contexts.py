"""Context layouts agree with the uapi headers, as a C compiler lays them out."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from pybpf.platform import contexts
from pybpf.platform.context import ContextLayout, Conversion, CtxField

CC = shutil.which("gcc") or shutil.which("cc")
HEADERS_PRESENT = Path("/usr/include/linux/bpf.h").exists() and Path("/usr/include/linux/bpf_perf_event.h").exists()
needs_cc = pytest.mark.skipif(
    CC is None or not HEADERS_PRESENT, reason="needs a host C compiler and linux-libc-dev headers"
)

# The arm64 uapi header is not installed on x86-64 hosts; this restates its definition
# (arch/arm64/include/uapi/asm/ptrace.h) so the compiler can lay it out.
ARM64_REGS = "struct user_pt_regs_arm64 { __u64 regs[31]; __u64 sp; __u64 pc; __u64 pstate; };"

# (C type, layout, how a layout field name is spelled in C)
CASES: list[tuple[str, ContextLayout]] = [
    ("struct xdp_md", contexts.XDP_MD),
    ("struct __sk_buff", contexts.SK_BUFF),
    ("struct bpf_sock", contexts.BPF_SOCK),
    ("struct bpf_sock_addr", contexts.BPF_SOCK_ADDR),
    ("struct bpf_sockopt", contexts.BPF_SOCKOPT),
    ("struct bpf_sysctl", contexts.BPF_SYSCTL),
    ("struct bpf_cgroup_dev_ctx", contexts.BPF_CGROUP_DEV_CTX),
    ("struct sk_msg_md", contexts.SK_MSG_MD),
    ("struct bpf_sk_lookup", contexts.BPF_SK_LOOKUP),
    ("struct bpf_flow_keys", contexts.BPF_FLOW_KEYS),
    ("struct bpf_raw_tracepoint_args", contexts.RAW_TRACEPOINT_ARGS),
    ("struct pt_regs", contexts.PT_REGS_X86_64.layout),
    ("struct user_pt_regs_arm64", contexts.PT_REGS_ARM64.layout),
    ("struct bpf_perf_event_data", contexts.perf_event_data(contexts.PT_REGS_X86_64)),
]


def _c_member(ctype: str, name: str) -> str:
    if ctype == "struct user_pt_regs_arm64" and name.startswith("x"):
        return f"regs[{name[1:]}]"
    if ctype == "struct bpf_raw_tracepoint_args":
        return f"args[{name.removeprefix('args')}]"
    if ctype == "struct bpf_perf_event_data" and name not in ("sample_period", "addr"):
        return f"regs.{name}"
    return name


def _sizeof_member(ctype: str, member: str) -> str:
    return f"sizeof((({ctype} *)0)->{member})"


@pytest.fixture(scope="module")
def compiled_offsets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[int, int]]:
    if CC is None:
        pytest.skip("no C compiler")
    lines = [
        "#include <stdio.h>",
        "#include <stddef.h>",
        "#include <linux/bpf.h>",
        "#include <linux/bpf_perf_event.h>",
        "#include <asm/ptrace.h>",
        ARM64_REGS,
        "int main(void) {",
    ]
    for ctype, layout in CASES:
        lines.append(f'printf("{ctype}|sizeof %zu 0\\n", sizeof({ctype}));')
        for field in layout.fields:
            member = _c_member(ctype, field.name)
            lines.append(
                f'printf("{ctype}|{field.name} %zu %zu\\n", offsetof({ctype}, {member}), '
                f"{_sizeof_member(ctype, member)});"
            )
    for name in ("ipv6_src", "ipv6_dst"):
        ctype = "struct bpf_flow_keys"
        lines.append(
            f'printf("{ctype}|{name} %zu %zu\\n", offsetof({ctype}, {name}), {_sizeof_member(ctype, name)});'
        )
    lines += ["return 0;", "}"]
    work = tmp_path_factory.mktemp("ctxoffsets")
    source = work / "offsets.c"
    source.write_text("\n".join(lines) + "\n")
    binary = work / "offsets"
    subprocess.run([CC, "-o", str(binary), str(source)], check=True, capture_output=True)
    result: dict[str, tuple[int, int]] = {}
    for line in subprocess.run([str(binary)], check=True, capture_output=True, text=True).stdout.splitlines():
        key, offset, size = line.rsplit(" ", 2)
        result[key] = (int(offset), int(size))
    return result


@needs_cc
@pytest.mark.parametrize(("ctype", "layout"), CASES, ids=[c for c, _ in CASES])
def test_layout_matches_compiler(
    ctype: str, layout: ContextLayout, compiled_offsets: dict[str, tuple[int, int]]
) -> None:
    compiled_size = compiled_offsets[f"{ctype}|sizeof"][0]
    if ctype == "struct bpf_raw_tracepoint_args":
        # ``__u64 args[0]``: a flexible array; the kernel bounds it by MAX_BPF_FUNC_ARGS.
        assert compiled_size == 0
        assert layout.size == 8 * contexts.MAX_BPF_FUNC_ARGS
    else:
        assert layout.size == compiled_size
    for field in layout.fields:
        offset, size = compiled_offsets[f"{ctype}|{field.name}"]
        # Pointer members are __bpf_md_ptr unions: 8 bytes whatever the host.
        assert (field.offset, field.size) == (offset, size), field.name


@needs_cc
def test_flow_keys_ipv6_union_arm(compiled_offsets: dict[str, tuple[int, int]]) -> None:
    for field in (contexts.FLOW_KEYS_IPV6_SRC, contexts.FLOW_KEYS_IPV6_DST):
        assert (field.offset, field.size) == compiled_offsets[f"struct bpf_flow_keys|{field.name}"]


def test_fields_do_not_overlap_and_fit() -> None:
    for _, layout in CASES:
        previous_end = 0
        for field in layout.fields:
            assert field.offset >= previous_end, (layout.name, field.name)
            previous_end = field.end
        assert previous_end <= layout.size


def test_xdp_pointer_fields_and_access_rules() -> None:
    xdp = contexts.XDP_MD
    assert xdp.field("data").conversion is Conversion.PACKET_DATA
    assert xdp.field("data_end").conversion is Conversion.PACKET_END
    assert xdp.field("data_meta").conversion is Conversion.PACKET_META
    assert xdp.check_access(0, 4, write=False) is xdp.field("data")
    assert xdp.check_access(0, 2, write=False) is None  # half a packet pointer
    assert xdp.check_access(0, 4, write=True) is None
    assert xdp.check_access(12, 4, write=False) is xdp.field("ingress_ifindex")
    assert xdp.check_access(12, 2, write=False) is None  # xdp_md allows only full u32 loads
    assert xdp.check_access(14, 4, write=False) is None  # misaligned
    skb = contexts.SK_BUFF
    assert skb.check_access(skb.field("len").offset + 2, 2, write=False) is skb.field("len")
    assert skb.check_access(skb.field("tstamp").offset, 4, write=False) is None
    assert xdp.check_access(24, 4, write=False) is None  # past the end


def test_restrict_hides_and_freezes_fields() -> None:
    tc_like = contexts.SK_BUFF.restrict(unreadable=["family"], writable=["mark"])
    mark = tc_like.field("mark")
    assert mark.writable
    assert not tc_like.field("priority").writable
    assert not tc_like.field("family").readable
    assert tc_like.check_access(mark.offset, 4, write=True) is mark
    assert tc_like.check_access(mark.offset, 2, write=True) is None  # stores are full width
    with pytest.raises(KeyError):
        contexts.SK_BUFF.restrict(unreadable=["no_such_field"])


def test_pt_regs_argument_mapping() -> None:
    x86 = contexts.PT_REGS_X86_64
    assert [x86.layout.field(n).offset for n in x86.params] == [112, 104, 96, 88, 72]
    assert x86.layout.field(x86.rc).offset == 80
    arm = contexts.PT_REGS_ARM64
    assert [arm.layout.field(n).offset for n in arm.params] == [0, 8, 16, 24, 32]
    assert arm.layout.field(arm.ip).offset == 256


def test_tracepoint_layout() -> None:
    generic = contexts.TRACEPOINT_GENERIC
    assert generic.field("common_pid").offset == 4
    assert generic.check_access(16, 8, write=False) is not None
    assert generic.check_access(16, 8, write=True) is None
    # tp_prog_is_valid_access(): nothing below offset 8 (the common header) is readable.
    for offset, size in ((0, 2), (0, 8), (2, 1), (3, 1), (4, 4)):
        assert generic.check_access(offset, size, write=False) is None, (offset, size)
    assert generic.check_access(8, 8, write=False) is not None
    assert generic.check_access(2044, 4, write=False) is not None
    assert generic.check_access(2048, 1, write=False) is None
    assert generic.check_access(12, 8, write=False) is None  # misaligned
    with pytest.raises(ValueError, match="common header"):
        contexts.tracepoint_layout("bad", (CtxField("x", 4, 4, frozenset({4})),))
