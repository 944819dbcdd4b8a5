"""The context-access conversion: which accesses are rewritten, which are refused, and why."""

from __future__ import annotations

import pytest

from pybpf.asm import assemble
from pybpf.errors import ContextAccessError
from pybpf.isa import Load, Size
from pybpf.platform import contexts
from pybpf.platform.context import ContextLayout
from pybpf.platform.progtypes import prog_type_spec
from pybpf.platform.uapi_generated import BpfProgType
from pybpf.runtime.context import InternalLayout, RewriteResult, convert_ctx_access

XDP = contexts.XDP_MD
SOCKET = prog_type_spec(BpfProgType.SOCKET_FILTER).context
TC = prog_type_spec(BpfProgType.SCHED_CLS).context


def convert(text: str, layout: ContextLayout = XDP) -> RewriteResult:
    return convert_ctx_access(assemble(text), layout)


def test_pointer_field_load_becomes_an_8_byte_load_of_its_slot() -> None:
    result = convert("r2 = *(u32 *)(r1 + 0)\nr3 = *(u32 *)(r1 + 4)\nr0 = 0\nexit")
    layout = InternalLayout.of(XDP)
    first, second = result.insns[0].insn, result.insns[1].insn
    assert isinstance(first, Load)
    assert isinstance(second, Load)
    assert first == Load(Size.DW, first.dst, first.src, layout.pointer_slots["data"])
    assert second.size is Size.DW
    assert second.off == layout.pointer_slots["data_end"]
    assert [a.field for a in result.accesses] == ["data", "data_end"]
    assert [item.pc for item in result.insns] == [0, 1, 2, 3]  # pc numbering unchanged


def test_plain_field_keeps_its_uapi_offset() -> None:
    result = convert("r2 = *(u32 *)(r1 + 12)\nr0 = 0\nexit")
    assert result.insns[0].insn == assemble("r2 = *(u32 *)(r1 + 12)")[0].insn
    assert result.accesses[0].field == "ingress_ifindex"


def test_ctx_followed_through_moves_constant_adds_and_spills() -> None:
    text = """
        r6 = r1
        *(u64 *)(r10 - 8) = r6
        r7 = *(u64 *)(r10 - 8)
        r8 = r7
        r8 += 4
        r2 = *(u32 *)(r8 + 0)
        r0 = 0
        exit
    """
    result = convert(text)
    insn = result.insns[5].insn
    assert isinstance(insn, Load)
    assert insn.size is Size.DW
    assert insn.off == InternalLayout.of(XDP).pointer_slots["data_end"] - 4


def test_a_register_that_is_not_the_ctx_is_left_alone() -> None:
    text = "r1 = r10\nr1 += -8\nr2 = *(u32 *)(r1 + 0)\nr0 = 0\nexit"
    result = convert(text)
    assert result.accesses == ()


def test_overwritten_spill_no_longer_holds_ctx() -> None:
    text = """
        *(u64 *)(r10 - 8) = r1
        *(u32 *)(r10 - 8) = r0
        r2 = *(u64 *)(r10 - 8)
        r3 = *(u32 *)(r2 + 0)
        r0 = 0
        exit
    """
    assert convert(text).accesses == ()


def test_subprogram_receives_ctx_in_r1() -> None:
    text = """
        call pc+2
        r0 = 0
        exit
        r0 = *(u32 *)(r1 + 0)
        exit
    """
    result = convert(text)
    assert [(a.pc, a.field) for a in result.accesses] == [(3, "data")]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("r2 = *(u64 *)(r1 + 0)\nr0 = 0\nexit", r"8-byte read of xdp_md\.data"),
        ("r2 = *(u16 *)(r1 + 12)\nr0 = 0\nexit", r"2-byte read of xdp_md\.ingress_ifindex"),
        ("*(u32 *)(r1 + 12) = r2\nr0 = 0\nexit", r"xdp_md\.ingress_ifindex"),
        ("r2 = *(u32 *)(r1 + 24)\nr0 = 0\nexit", "no field there"),
        ("*(u32 *)(r1 + 12) = 1\nr0 = 0\nexit", "BPF_ST"),
        ("lock *(u32 *)(r1 + 12) += r2\nr0 = 0\nexit", "atomic"),
    ],
    ids=["wide-pointer", "narrow-xdp", "read-only", "past-end", "st-imm", "atomic"],
)
def test_refused_accesses_name_the_pc(text: str, message: str) -> None:
    with pytest.raises(ContextAccessError, match=message) as raised:
        convert(text)
    assert raised.value.pc == 0
    assert str(raised.value).startswith("pc 0:")


def test_ctx_on_some_paths_only_is_refused() -> None:
    text = """
        if r2 == 0 goto +1
        r1 = r10
        r3 = *(u32 *)(r1 - 4)
        r0 = 0
        exit
    """
    with pytest.raises(ContextAccessError, match="some paths") as raised:
        convert(text)
    assert raised.value.pc == 2


def test_program_type_restrictions_apply() -> None:
    # data is readable by tc but not by socket filters; mark writable by tc only.
    convert("r2 = *(u32 *)(r1 + 76)\n*(u32 *)(r1 + 8) = r2\nr0 = 0\nexit", TC)
    with pytest.raises(ContextAccessError, match=r"__sk_buff\.data"):
        convert("r2 = *(u32 *)(r1 + 76)\nr0 = 0\nexit", SOCKET)
    with pytest.raises(ContextAccessError, match=r"__sk_buff\.mark"):
        convert("*(u32 *)(r1 + 8) = r2\nr0 = 0\nexit", SOCKET)
    # Narrow loads of plain __sk_buff fields are fine and untouched.
    result = convert("r2 = *(u8 *)(r1 + 1)\nr0 = 0\nexit", SOCKET)
    assert result.accesses[0].field == "len"


def test_bpf_loop_callback_gets_ctx_from_r3() -> None:
    text = """
        r3 = r1
        r1 = 4
        r2 = 0 ll
        r4 = 0
        call 181
        r0 = 0
        exit
        r0 = *(u32 *)(r2 + 12)
        exit
    """
    # Make the lddw the address of the function at pc 8 (imm is relative to the next slot).
    insns = list(assemble(text))
    from dataclasses import replace

    from pybpf.isa import LoadImm64, PseudoSrc

    lddw = insns[2].insn
    assert isinstance(lddw, LoadImm64)
    insns[2] = replace(insns[2], insn=LoadImm64(lddw.dst, 8 - 3, 0, PseudoSrc.FUNC))
    result = convert_ctx_access(insns, XDP)
    assert [(a.pc, a.field) for a in result.accesses] == [(8, "ingress_ifindex")]
