"""The kernel backend's loader: every test object loads with both backends, the libbpf details.

The kernel tests skip, with the probe's reason, where bpf(2) does not work. Nothing attaches:
objects are loaded, inspected through BPF_OBJ_GET_INFO_BY_FD, and closed.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

import pybpf
from pybpf.btf import Btf, Datasec, Var
from pybpf.errors import MapPermissionError, PermissionDeniedError
from pybpf.kernel import BpfMapType, BpfProgType, KernelMap, available, btf_load, kernel_map_name
from pybpf.kernel.btf_fixup import Kind, RawBtf, fix_datasecs, sanitize
from pybpf.kernel.features import btf_blob, features
from pybpf.obj import MapKind, MapSpec, load_spec
from pybpf.obj.elf import read_elf

PROGS = Path(__file__).resolve().parents[1] / "progs"
OBJECTS = sorted(PROGS.glob("*.o"))
# Refused by the spec stage for both backends (none now: kfuncs resolve, kernel variables are not used here).
REFUSED: dict[str, type[Exception]] = {}


@pytest.fixture(scope="module")
def kernel() -> None:
    ok, reason = available()
    if not ok:
        pytest.skip(f"bpf() unavailable: {reason}")


# -- pure parts (no kernel) -------------------------------------------------------------------------


def _data_spec(name: str) -> MapSpec:
    return MapSpec(name, BpfMapType.ARRAY, 4, 8, 1, kind=MapKind.DATA, section=name)


@pytest.mark.parametrize(
    ("object_name", "section", "expected"),
    [
        ("global_data", ".rodata", "global_d.rodata"),
        ("global_data", ".data", "global_d.data"),
        ("global_data", ".bss", "global_d.bss"),
        ("global_data", ".data.stats", ".data.stats"),
        ("x", ".data", "x.data"),
        ("my-obj", ".bss", "my_obj.bss"),
    ],
)
def test_kernel_map_names_follow_libbpf(object_name: str, section: str, expected: str) -> None:
    assert kernel_map_name(object_name, _data_spec(section)) == expected


def test_long_map_names_are_capped_at_15() -> None:
    spec = MapSpec("a_very_long_map_name_indeed", BpfMapType.HASH, 4, 4, 1)
    assert kernel_map_name("obj", spec) == "a_very_long_map"


def _fixed_btf(path: Path) -> RawBtf:
    spec = load_spec(path)
    elf = read_elf(path.read_bytes(), str(path))
    assert spec.elf.btf_raw is not None
    raw = RawBtf(spec.elf.btf_raw)
    index = {section.name: section.index for section in elf.sections}
    symbols = {(symbol.shndx, symbol.name): symbol.value for symbol in elf.symbols}
    fix_datasecs(
        raw,
        {section.name: section.size for section in elf.sections},
        lambda section, name: symbols.get((index[section], name)) if section in index else None,
    )
    return raw


def _datasec(btf: Btf, name: str) -> Datasec:
    type_id = btf.find(name)
    assert type_id is not None, f"no BTF type named {name}"
    found = btf[type_id]
    assert isinstance(found, Datasec)
    return found


def test_datasec_sizes_and_offsets_come_from_the_elf() -> None:
    path = PROGS / "global_data.o"
    before = load_spec(path).btf
    assert before is not None
    rodata_before = _datasec(before, ".rodata")
    assert rodata_before.size == 0  # what clang writes, and what the kernel refuses
    fixed = Btf.from_bytes(_fixed_btf(path).to_bytes())
    elf = read_elf(path.read_bytes(), str(path))
    sizes = {section.name: section.size for section in elf.sections}
    rodata_index = next(section.index for section in elf.sections if section.name == ".rodata")
    symbols = {symbol.name: symbol.value for symbol in elf.symbols if symbol.shndx == rodata_index}
    for name in (".rodata", ".data", ".bss", ".data.stats"):
        datasec = _datasec(fixed, name)
        assert datasec.size == sizes[name] > 0
    rodata = _datasec(fixed, ".rodata")
    offsets = []
    for secinfo in rodata.vars:
        var = fixed[secinfo.type_id]
        assert isinstance(var, Var)
        assert secinfo.offset == symbols[var.name]
        offsets.append(secinfo.offset)
    assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets) > 1


def test_sanitize_leaves_no_new_kinds() -> None:
    raw = _fixed_btf(PROGS / "global_data.o")
    missing = {Kind.VAR, Kind.DATASEC, Kind.FUNC, Kind.FUNC_PROTO, Kind.FLOAT, Kind.DECL_TAG, Kind.TYPE_TAG}
    sanitize(raw, missing)
    sanitized = Btf.from_bytes(raw.to_bytes())
    assert len(sanitized) == len(Btf.from_bytes(_fixed_btf(PROGS / "global_data.o").to_bytes()))
    assert not any(isinstance(record, Var | Datasec) for record in sanitized)


# -- both backends ------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", OBJECTS, ids=[path.name for path in OBJECTS])
def test_every_object_loads_with_both_backends(kernel: None, path: Path) -> None:
    refused = REFUSED.get(path.name)
    if refused is not None:
        for backend in ("vm", "kernel"):
            with pytest.raises(refused):
                pybpf.load(path, backend=backend)
        return
    if not path.exists():
        pytest.skip(f"{path.name} vanished (being rebuilt)")
    spec = load_spec(path)
    try:
        kernel_object = pybpf.load(path, backend="kernel")
    except PermissionDeniedError:
        # This kernel refuses LSM programs even to root (BPF LSM inactive); libbpf fails the same way.
        if any(program.prog_type is BpfProgType.LSM for program in spec.programs.values()):
            pytest.skip(f"{path.name}: this kernel refuses LSM programs (bpftool too)")
        raise
    with pybpf.load(path) as user, kernel_object:
        assert sorted(kernel_object.programs) == sorted(user.programs)
        assert sorted(kernel_object.maps) == sorted(user.maps)
        for name, program in kernel_object.programs.items():
            info = program.info()
            assert info.xlated_prog_len > 0 and info.verified_insns > 0, name
            assert info.type == user.programs[name].prog_type
            assert info.btf_id != 0, f"{name} loaded without the object's BTF"
        for name, found in kernel_object.maps.items():
            map_info = found.info()
            assert (map_info.key_size, map_info.value_size, map_info.max_entries) == (
                found.key_size,
                found.value_size,
                found.max_entries,
            ), name


def test_legacy_maps_section_loads(kernel: None) -> None:
    # libbpf 1.x refuses SEC("maps"); this loader creates them as libbpf 0.x did.
    with pybpf.load(PROGS / "legacy_maps.o", backend="kernel") as obj:
        assert {found.info().type for found in obj.maps.values()} == {BpfMapType.HASH, BpfMapType.ARRAY}


def test_global_data_maps(kernel: None) -> None:
    spec = load_spec(PROGS / "global_data.o")
    with pybpf.load(PROGS / "global_data.o", backend="kernel") as obj:
        for name, map_spec in spec.maps.items():
            found = obj.maps[name]
            info = found.info()
            assert info.name == kernel_map_name("global_data", map_spec)
            assert info.btf_key_type_id == 0 and info.btf_value_type_id == map_spec.btf_value_type_id
            assert found.lookup_raw(bytes(4)) == map_spec.contents, name
        rodata = obj.maps[".rodata"]
        assert rodata.frozen
        with pytest.raises(MapPermissionError):
            rodata.update_raw(bytes(4), bytes(rodata.value_size))
        data = obj.maps[".data"]
        data.update_raw(bytes(4), struct.pack("<Q", 41))
        assert data.lookup_raw(bytes(4)) == struct.pack("<Q", 41)


def test_btf_typed_maps_and_func_line_info(kernel: None) -> None:
    with pybpf.load(PROGS / "xdp_firewall.o", backend="kernel") as obj:
        counts = obj.maps["verdict_count"]
        assert isinstance(counts, KernelMap)
        info = counts.info()
        assert info.btf_key_type_id != 0 and info.btf_value_type_id != 0
        # Typed values, per-CPU lists of the kernel's possible CPUs: as the runtime gives them.
        assert counts[0] == [0] * counts.ncpus
        counts[1] = list(range(counts.ncpus))
        assert counts[1] == list(range(counts.ncpus))


def test_prog_array_slots_filled_after_load(kernel: None) -> None:
    with pybpf.load(PROGS / "tail_calls.o", backend="kernel") as obj:
        jump_table = obj.maps["jump_table"]
        # A prog array reads back program ids, not the fds written.
        ids = {int.from_bytes(key, "little"): int.from_bytes(value, "little") for key, value in jump_table.items()}
        assert ids == {1: obj.programs["tail_ipv4"].id, 3: obj.programs["tail_ipv6"].id}


def test_features_report_this_kernel(kernel: None) -> None:
    found = features()
    assert found.prog_types and all(found.prog_types.values())  # Linux 6.x has every probed type
    assert found.btf_kinds[Kind.DATASEC] and found.missing_btf_kinds == frozenset()
    assert found.map_types[BpfMapType.RINGBUF]


def test_btf_probe_blobs_are_refused_when_broken(kernel: None) -> None:
    # The probe must be able to say no: a DATASEC of size 0 (clang's raw output) is refused.
    broken = btf_blob(
        struct.pack("<III", 7, (int(Kind.VAR) << 24), 1)
        + struct.pack("<I", 1)
        + struct.pack("<III", 11, (int(Kind.DATASEC) << 24) | 1, 0)
        + struct.pack("<III", 2, 0, 4)
    )
    from pybpf.errors import BpfCommandError

    with pytest.raises(BpfCommandError):
        btf_load(broken)


def test_core_relocated_against_the_running_kernel(kernel: None) -> None:
    vmlinux = Path("/sys/kernel/btf/vmlinux")
    if not vmlinux.exists():
        pytest.skip("this kernel publishes no BTF (/sys/kernel/btf/vmlinux)")
    from pybpf.btf import BtfKind, CoreResolver, Struct
    from pybpf.isa import Bin, Imm
    from pybpf.kernel.relocate import apply_core

    target = Btf.from_bytes(vmlinux.read_bytes())
    task = target.find("task_struct", BtfKind.STRUCT)
    assert task is not None
    record = target[task]
    assert isinstance(record, Struct)
    offsets = {member.name: member.bit_offset // 8 for member in record.members}
    spec = load_spec(PROGS / "core_read.o")
    program = spec.programs["record_parent"]
    patched = apply_core(program, program.instructions, spec.btf, CoreResolver(target))
    by_pc = {item.pc: item.insn for item in patched}
    assert spec.btf is not None
    checked = 0
    for relocation in program.core_relocations:
        insn = by_pc[relocation.pc]
        assert isinstance(insn, Bin) and isinstance(insn.src, Imm)
        local = spec.btf[relocation.type_id]
        assert isinstance(local, Struct)
        member = local.members[int(relocation.access.split(":")[1])].name
        # The object's own struct task_struct is tiny (offsets 4 and 8); the kernel's is not.
        assert insn.src.value == offsets[member] > 8, member
        checked += 1
    assert checked == 2
    with pybpf.load(PROGS / "core_read.o", backend="kernel") as obj:
        assert obj.program("record_parent").info().verified_insns > 0


@pytest.mark.parametrize("name", ["global_data.o", "tail_calls.o", "xdp_firewall.o", "bpf2bpf.o"])
def test_sanitized_btf_is_accepted_by_the_kernel(kernel: None, name: str) -> None:
    # What an old kernel without these kinds would be given must still be valid BTF.
    raw = _fixed_btf(PROGS / name)
    sanitize(raw, {Kind.VAR, Kind.DATASEC, Kind.FUNC, Kind.FUNC_PROTO, Kind.FLOAT, Kind.DECL_TAG, Kind.TYPE_TAG})
    with btf_load(raw.to_bytes()):
        pass


def test_a_kernel_without_datasec_gets_sanitised_btf(kernel: None) -> None:
    # A real kernel behind a syscall that refuses what a pre-5.2 kernel did not know (VAR, DATASEC).
    import ctypes

    from pybpf.kernel import BpfCmd, libc_syscall

    refused: list[int] = []

    def old_kernel(cmd: BpfCmd, attr: ctypes.Structure) -> int:
        if cmd == BpfCmd.BTF_LOAD:
            blob = ctypes.string_at(attr.btf, attr.btf_size)
            if {record.kind for record in RawBtf(blob).records} & {Kind.VAR, Kind.DATASEC}:
                refused.append(len(blob))
                return -22
        return libc_syscall(cmd, attr)

    path = PROGS / "global_data.o"
    with pybpf.load(path, backend="kernel", syscall=old_kernel) as obj, pybpf.load(path) as user:
        assert refused, "the object's BTF was never offered with DATASECs"
        assert obj.btf_fd is not None
        program = obj.program("global_filter")
        assert program.info().btf_id != 0  # func_info/line_info still went in
        assert program.test_run(bytes(64)).retval == user.program("global_filter").test_run(bytes(64)).retval
