"""load_spec on the committed test programs (tests/progs/*.o): programs, maps, relocations, lines."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from pybpf.btf import Struct
from pybpf.isa import (
    Bin,
    CallLocal,
    Endian,
    EndianOrder,
    Imm,
    LabeledInsn,
    Load,
    LoadImm64,
    PacketLoad,
    PseudoSrc,
    encode_program,
)
from pybpf.obj import MapKind, ObjectSpec, ProgramSpec, load_spec
from pybpf.platform.uapi_generated import BpfMapFlag, BpfMapType, BpfProgType

PROGS = Path(__file__).resolve().parent.parent / "progs"
ALL_OBJECTS = sorted(p.name for p in PROGS.glob("*.o"))


def load(name: str) -> ObjectSpec:
    return load_spec(PROGS / name)


def at(program: ProgramSpec, pc: int) -> LabeledInsn:
    for item in program.instructions:
        if item.pc == pc:
            return item
    raise AssertionError(f"no instruction at pc {pc}")


def line_before(program: ProgramSpec, pc: int) -> str:
    """Text of the source line in effect at ``pc`` (the last line_info at or before it)."""
    texts = [info.source.text for info in program.line_info if info.pc <= pc]
    return texts[-1] if texts else ""


@pytest.mark.parametrize("name", ALL_OBJECTS)
def test_every_object_loads_with_consistent_records(name: str) -> None:
    spec = load(name)
    assert spec.programs
    assert spec.license.startswith(("GPL", "Dual"))
    for program in spec.programs.values():
        pcs = [item.pc for item in program.instructions]
        assert pcs[0] == 0 and pcs == sorted(pcs)
        # Every map reference points at an lddw carrying the pseudo source it announces.
        for ref in program.map_references:
            insn = at(program, ref.pc).insn
            assert isinstance(insn, LoadImm64) and insn.src is ref.src
            assert ref.map_name in spec.maps
        # Line info is attached to the instructions and names the C file.
        assert program.line_info
        for info in program.line_info:
            assert at(program, info.pc).line == info.source
            assert info.source.file.endswith(".c")
        assert program.func_info[0].pc == 0 and program.func_info[0].name == program.name
        # The linked program re-encodes to exactly slot_count slots.
        assert len(encode_program(program.instructions)) == 8 * program.slot_count


def test_loading_is_deterministic_from_path_or_bytes() -> None:
    data = (PROGS / "bpf2bpf.o").read_bytes()
    from_path = load("bpf2bpf.o")
    from_bytes = load_spec(data, name="bpf2bpf")
    assert from_path.programs == from_bytes.programs
    assert from_path.maps == from_bytes.maps
    assert from_path.name == from_bytes.name == "bpf2bpf"
    assert load_spec(data).name == "object"


def test_xdp_firewall_lpm_trie() -> None:
    spec = load("xdp_firewall.o")
    program = spec.programs["xdp_firewall"]
    assert program.section == "xdp" and program.prog_type is BpfProgType.XDP
    assert program.section_info.spec.prog_type is BpfProgType.XDP
    deny = spec.maps["deny_v4"]
    assert deny.type is BpfMapType.LPM_TRIE
    assert (deny.key_size, deny.value_size, deny.max_entries) == (8, 4, 1024)
    assert deny.map_flags == BpfMapFlag.NO_PREALLOC
    assert spec.btf is not None and deny.btf_key_type_id is not None
    key_type = spec.btf.resolved(deny.btf_key_type_id)
    assert isinstance(key_type, Struct) and key_type.name == "lpm_v4_key"
    counts = spec.maps["verdict_count"]
    assert (counts.type, counts.key_size, counts.value_size, counts.max_entries) == (
        BpfMapType.PERCPU_ARRAY,
        4,
        8,
        2,
    )
    by_map = {ref.map_name for ref in program.map_references}
    assert by_map == {"deny_v4", "verdict_count"}
    for ref in program.map_references:
        assert ref.src is PseudoSrc.MAP_FD
        assert ref.map_name in line_before(program, ref.pc)


def test_xdp_lb_rewrites_and_returns_tx() -> None:
    program = load("xdp_lb.o").programs["xdp_lb"]
    texts = [info.source.text for info in program.line_info]
    assert any("__builtin_memcpy(eth->h_dest, be->mac" in text for text in texts)
    assert any("bpf_csum_diff" in text for text in texts)
    (ref,) = program.map_references
    assert ref.map_name == "backends" and "&backends" in line_before(program, ref.pc)


def test_v4_variant_uses_v4_instructions() -> None:
    def is_v4_only(item: LabeledInsn) -> bool:
        insn = item.insn
        return (
            (isinstance(insn, Endian) and insn.order is EndianOrder.SWAP)
            or (isinstance(insn, Load) and insn.sign_extend)
            or (isinstance(insn, Bin) and insn.op.name.startswith(("MOVSX", "SDIV", "SMOD")))
        )

    v3 = load("bpf2bpf.o").programs["count_scaled"]
    v4 = load("bpf2bpf.v4.o").programs["count_scaled"]
    assert not any(is_v4_only(item) for item in v3.instructions)
    assert any(is_v4_only(item) for item in v4.instructions)
    # Same structure either way: the same subprograms appended in the same order.
    assert [s.name for s in v3.subprograms] == [s.name for s in v4.subprograms]


def test_tc_mark_section_and_helper_line() -> None:
    program = load("tc_mark.o").programs["tc_mark"]
    assert program.section == "tc" and program.prog_type is BpfProgType.SCHED_CLS
    assert any("bpf_skb_load_bytes" in info.source.text for info in program.line_info)
    assert program.map_references == ()


def test_socket_filter_uses_legacy_packet_loads() -> None:
    program = load("socket_filter.o").programs["udp_only"]
    assert program.prog_type is BpfProgType.SOCKET_FILTER
    loads = [item.insn for item in program.instructions if isinstance(item.insn, PacketLoad)]
    assert {load.imm for load in loads} == {12, 23}


def test_kprobe_percpu_hash_and_ringbuf() -> None:
    spec = load("kprobe_count.o")
    program = spec.programs["count_openat"]
    assert program.prog_type is BpfProgType.KPROBE
    assert program.section == "kprobe/do_sys_openat2" and program.attach_to == "do_sys_openat2"
    calls, events = spec.maps["calls"], spec.maps["events"]
    assert (calls.type, calls.key_size, calls.value_size, calls.max_entries) == (BpfMapType.PERCPU_HASH, 4, 8, 4096)
    assert (events.type, events.max_entries) == (BpfMapType.RINGBUF, 256 * 1024)
    assert (events.key_size, events.value_size) == (0, 0)
    assert [ref.map_name for ref in program.map_references] == ["calls", "calls", "events"]


def test_global_data_maps_and_value_offsets() -> None:
    spec = load("global_data.o")
    rodata, data, bss, stats = (spec.maps[n] for n in (".rodata", ".data", ".bss", ".data.stats"))
    assert all(m.kind is MapKind.DATA and m.type is BpfMapType.ARRAY and m.max_entries == 1 for m in (rodata, data))
    assert rodata.frozen and not data.frozen and not bss.frozen and not stats.frozen
    assert rodata.map_flags == BpfMapFlag.RDONLY_PROG and data.map_flags == 0
    assert rodata.contents is not None and data.contents is not None and stats.contents is not None
    max_len, drop_proto = struct.unpack_from("<II", rodata.contents)
    assert (max_len, drop_proto) == (1500, 17)
    assert rodata.contents[8:16] == b"pybpf\0\0\0"
    assert struct.unpack("<Q", data.contents) == (7,)
    assert struct.unpack("<QQ", stats.contents) == (1, 2)
    assert bss.contents == bytes(4) and bss.value_size == 4
    program = spec.programs["global_filter"]
    refs = {(ref.map_name, ref.offset) for ref in program.map_references}
    assert refs == {(".data", 0), (".bss", 0), (".data.stats", 0), (".rodata", 0), (".rodata", 4), (".rodata", 8)}
    for ref in program.map_references:
        assert ref.src is PseudoSrc.MAP_VALUE
        insn = at(program, ref.pc).insn
        assert isinstance(insn, LoadImm64) and insn.next_imm == ref.offset


def _call_targets(program: ProgramSpec) -> dict[int, int]:
    return {item.pc: item.pc + 1 + item.insn.off for item in program.instructions if isinstance(item.insn, CallLocal)}


def test_bpf2bpf_subprograms_appended_and_calls_fixed() -> None:
    spec = load("bpf2bpf.o")
    for name, expected in (("count_len", ["add_total", "clamp"]), ("count_scaled", ["scale", "add_total"])):
        program = spec.programs[name]
        assert [sub.name for sub in program.subprograms] == expected
        starts = {sub.start: sub.name for sub in program.subprograms}
        main_end = program.subprograms[0].start
        # Every call lands on the first instruction of an appended subprogram.
        targets = _call_targets(program)
        assert targets and set(targets.values()) <= set(starts)
        main_calls = {starts[t] for pc, t in targets.items() if pc < main_end}
        assert main_calls == {expected[0]} | ({"add_total"} if name == "count_scaled" else {"clamp"})
        # func_info names each subprogram at its new start.
        named = {(info.pc, info.name) for info in program.func_info[1:]}
        assert named == {(sub.start, sub.name) for sub in program.subprograms}
        # The subprogram's map reference was rebased into the program.
        (ref,) = program.map_references
        add_total = next(s for s in program.subprograms if s.name == "add_total")
        assert add_total.start <= ref.pc < add_total.end
    assert spec.programs["xdp_no_calls"].subprograms == ()


def test_bpf_loop_callback_is_a_function_address() -> None:
    program = load("loop_callback.o").programs["xdp_loop"]
    (callback,) = program.subprograms
    assert callback.name == "add_index"
    funcs = [
        item for item in program.instructions if isinstance(item.insn, LoadImm64) and item.insn.src is PseudoSrc.FUNC
    ]
    assert len(funcs) == 1
    item = funcs[0]
    assert isinstance(item.insn, LoadImm64) and item.pc + 1 + item.insn.imm == callback.start
    assert "bpf_loop" in line_before(program, item.pc)


def test_tail_call_prog_array_initial_values() -> None:
    spec = load("tail_calls.o")
    table = spec.maps["jump_table"]
    assert table.type is BpfMapType.PROG_ARRAY
    assert (table.key_size, table.value_size, table.max_entries) == (4, 4, 4)
    assert [(init.index, init.symbol) for init in table.slot_inits] == [(1, "tail_ipv4"), (3, "tail_ipv6")]
    assert all(init.symbol in spec.programs for init in table.slot_inits)
    assert {p.name for p in spec.programs.values() if p.section == "tc"} == {"tail_ipv4", "tail_ipv6", "dispatch"}
    (ref,) = spec.programs["dispatch"].map_references
    assert ref.map_name == "jump_table"


def test_core_relocations_point_at_field_offsets() -> None:
    spec = load("core_read.o")
    program = spec.programs["record_parent"]
    assert program.attach_to == "do_exit"
    assert spec.btf is not None and program.core_relocations
    offsets = {"0:1": 4, "0:2": 8}  # tgid and real_parent in the local struct task_struct
    for relo in program.core_relocations:
        root = spec.btf.resolved(relo.type_id)
        assert isinstance(root, Struct) and root.name == "task_struct"
        insn = at(program, relo.pc).insn
        # clang's local guess is an immediate add of the field offset (what CO-RE rewrites).
        assert isinstance(insn, Bin) and insn.src == Imm(offsets[relo.access])


def test_legacy_maps_section_and_version() -> None:
    spec = load("legacy_maps.o")
    assert spec.kern_version == 0x060C00
    counts, flags = spec.maps["legacy_counts"], spec.maps["legacy_flags"]
    assert counts.kind is MapKind.LEGACY and counts.section == "maps"
    assert (counts.type, counts.key_size, counts.value_size, counts.max_entries) == (BpfMapType.HASH, 4, 8, 256)
    assert (flags.type, flags.key_size, flags.value_size, flags.max_entries) == (BpfMapType.ARRAY, 4, 4, 1)
    program = spec.programs["legacy_filter"]
    assert program.kern_version == 0x060C00
    assert [ref.map_name for ref in program.map_references] == ["legacy_flags", "legacy_counts", "legacy_counts"]
