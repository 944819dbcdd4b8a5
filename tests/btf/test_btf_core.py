"""CO-RE relocation resolution against the running kernel's BTF and against a second object whose
types share names but not layouts. Expected numbers come from independent sources: bpftool's raw
dump text (parsed here, not by pybpf) and clang's own offsetof/sizeof recorded in the target."""

from __future__ import annotations

import random
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, replace

import pytest
from btf_compiled import CompiledObject

from pybpf.btf import Btf
from pybpf.btf.core import CoreReloResult, CoreResolver, resolve_core_relo
from pybpf.btf.core_match import essential_name
from pybpf.btf.ext import BtfExt, CoreRelo, CoreReloKind
from pybpf.errors import CoreReloError

Compile = Callable[[str], CompiledObject]
K = CoreReloKind
U64 = (1 << 64) - 1
# Local accesses in core_local.c, by (root type, access string): the member path they name.
TASK = "task_struct___local"
SKB = "sk_buff___local"
PID, TGID, COMM, MM, STATE = "0:0", "0:1", "0:2", "0:3", "0:4"
RESET_ON_FORK, IN_EXECVE, FORK_CLASS, REAL_PARENT, MISSING = "0:5", "0:6", "0:7", "0:8", "0:9"
BITFIELDS = {RESET_ON_FORK: "sched_reset_on_fork", IN_EXECVE: "in_execve", FORK_CLASS: "init_private_fork_class"}


@dataclass
class Local:
    btf: Btf
    relos: dict[tuple[str, CoreReloKind, str], CoreRelo]

    def relo(self, root: str, kind: CoreReloKind, access: str) -> CoreRelo:
        return self.relos[(root, kind, access)]


@pytest.fixture(scope="module")
def local(compile_prog: Compile) -> Local:
    obj = compile_prog("core_local")
    btf = Btf.from_bytes(obj.btf_bytes)
    ext = BtfExt.from_bytes(obj.btf_ext_bytes, btf)
    relos = {}
    for records in ext.core_relos.values():
        for relo in records:
            relos[(btf[relo.type_id].name, relo.kind, relo.access_str)] = relo
    return Local(btf, relos)


def _bitfield_extracts(result: dict[CoreReloKind, int], bit_offset: int, bit_size: int) -> None:
    """Load byte_size bytes at byte_offset, shift left then right: that must yield the field,
    whatever the surrounding bits are (what BPF_CORE_READ_BITFIELD does)."""
    rng = random.Random(bit_offset)
    byte_offset, byte_size = result[K.FIELD_BYTE_OFFSET], result[K.FIELD_BYTE_SIZE]
    assert byte_size in (1, 2, 4, 8) and byte_offset % byte_size == 0
    for _ in range(8):
        memory = rng.getrandbits(8 * (byte_offset + 16))
        value = rng.getrandbits(bit_size)
        mask = ((1 << bit_size) - 1) << bit_offset
        memory = (memory & ~mask) | (value << bit_offset)
        raw = memory.to_bytes(byte_offset + 16, "little")
        loaded = int.from_bytes(raw[byte_offset : byte_offset + byte_size], "little")
        assert ((loaded << result[K.FIELD_LSHIFT_U64]) & U64) >> result[K.FIELD_RSHIFT_U64] == value


def _bitfield_results(local: Local, resolver: CoreResolver, access: str) -> dict[CoreReloKind, int]:
    template = next(r for (root, _, acc), r in local.relos.items() if root == TASK and acc == access)
    out = {}
    for kind in (K.FIELD_BYTE_OFFSET, K.FIELD_BYTE_SIZE, K.FIELD_LSHIFT_U64, K.FIELD_RSHIFT_U64):
        result = resolver.resolve(local.btf, replace(template, kind=kind))
        assert not result.poison
        out[kind] = result.value
    return out


# -- against the running kernel ------------------------------------------------------------------


@dataclass
class RawType:
    kind: str
    name: str
    attrs: dict[str, str]
    members: list[tuple[str, int, int, int]]  # name, type id, bit offset, bitfield size


def _parse_bpftool_raw(text: str) -> dict[int, RawType]:
    types: dict[int, RawType] = {}
    current: RawType | None = None
    for line in text.splitlines():
        head = re.match(r"\[(\d+)\] (\w+) '([^']*)'(.*)", line)
        if head:
            current = RawType(head[2], head[3], dict(re.findall(r"(\w+)=([^\s,]+)", head[4])), [])
            types[int(head[1])] = current
            continue
        member = re.match(r"\t'([^']*)' (?:type_id|val)=(-?\d+)(?: bits_offset=(\d+))?(?: bitfield_size=(\d+))?", line)
        if member and current is not None:
            current.members.append((member[1], int(member[2]), int(member[3] or 0), int(member[4] or 0)))
    return types


@dataclass
class Reference:
    types: dict[int, RawType]

    def struct_id(self, name: str) -> int:
        return next(i for i, t in self.types.items() if t.kind == "STRUCT" and t.name == name)

    def member(self, type_id: int, name: str) -> tuple[int, int, int] | None:
        """(bit offset, bitfield size, type id) of a member, searching anonymous members too."""
        for m_name, m_type, bits, bitfield in self.types[type_id].members:
            if m_name == name:
                return bits, bitfield, m_type
            if m_name == "(anon)" and self.types[m_type].kind in ("STRUCT", "UNION"):
                inner = self.member(m_type, name)
                if inner is not None:
                    return bits + inner[0], inner[1], inner[2]
        return None

    def offset(self, struct: str, name: str) -> int:
        found = self.member(self.struct_id(struct), name)
        assert found is not None and found[1] == 0
        return found[0] // 8


@pytest.fixture(scope="module")
def reference(bpftool: str, vmlinux_bytes: bytes) -> Reference:
    text = subprocess.run(
        [bpftool, "btf", "dump", "file", "/sys/kernel/btf/vmlinux", "format", "raw"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return Reference(_parse_bpftool_raw(text))


def test_field_offsets_follow_vmlinux(local: Local, vmlinux_btf: Btf, reference: Reference) -> None:
    resolver = CoreResolver(vmlinux_btf)

    def value(root: str, kind: CoreReloKind, access: str) -> CoreReloResult:
        result = resolver.resolve(local.btf, local.relo(root, kind, access))
        assert not result.poison, result.reason
        return result

    expected = {
        (TASK, PID): reference.offset("task_struct", "pid"),
        (TASK, TGID): reference.offset("task_struct", "tgid"),
        (TASK, MM): reference.offset("task_struct", "mm"),
        (TASK, STATE): reference.offset("task_struct", "__state"),
        (TASK, REAL_PARENT): reference.offset("task_struct", "real_parent"),
        (TASK, "0:2:3"): reference.offset("task_struct", "comm") + 3,
        ("mm_struct___local", "0:0"): reference.offset("mm_struct", "start_code"),
        (SKB, "0:0"): reference.offset("sk_buff", "len"),
        (SKB, "0:1"): reference.offset("sk_buff", "dev"),
        (SKB, "0:2"): reference.offset("sk_buff", "protocol"),
        (SKB, "0:3"): reference.offset("sk_buff", "mark"),
    }
    for (root, access), offset in expected.items():
        result = value(root, K.FIELD_BYTE_OFFSET, access)
        assert result.value == offset, (root, access)
        assert result.target_type_id == reference.struct_id(essential_name(root))
    assert value(TASK, K.FIELD_BYTE_OFFSET, PID).local_value == 0
    assert value(TASK, K.FIELD_BYTE_SIZE, COMM).value == 16
    assert value(TASK, K.FIELD_SIGNED, PID).value == 1
    assert value(TASK, K.FIELD_SIGNED, STATE).value == 0


def test_bitfields_follow_vmlinux(local: Local, vmlinux_btf: Btf, reference: Reference) -> None:
    resolver = CoreResolver(vmlinux_btf)
    task = reference.struct_id("task_struct")
    for access, name in BITFIELDS.items():
        found = reference.member(task, name)
        assert found is not None and found[1] > 0
        _bitfield_extracts(_bitfield_results(local, resolver, access), found[0], found[1])


def test_type_enum_and_missing_relocations_vmlinux(local: Local, vmlinux_btf: Btf, reference: Reference) -> None:
    resolver = CoreResolver(vmlinux_btf)

    def resolve(root: str, kind: CoreReloKind, access: str) -> CoreReloResult:
        return resolver.resolve(local.btf, local.relo(root, kind, access))

    task_id = reference.struct_id("task_struct")
    assert resolve(TASK, K.TYPE_EXISTS, "0").value == 1
    assert resolve(TASK, K.TYPE_SIZE, "0").value == int(reference.types[task_id].attrs["size"])
    assert resolve(TASK, K.TYPE_ID_TARGET, "0").value == task_id
    type_id_local = resolve(TASK, K.TYPE_ID_LOCAL, "0")
    assert type_id_local.value == local.relo(TASK, K.TYPE_ID_LOCAL, "0").type_id
    missing_type = resolve("not_in_kernel___x", K.TYPE_EXISTS, "0")
    assert (missing_type.value, missing_type.poison, missing_type.found) == (0, False, False)
    assert "not_in_kernel" in missing_type.reason

    pid_type = next(i for i, t in reference.types.items() if t.kind == "ENUM" and t.name == "pid_type")
    tgid_value = next(v for name, v, _, _ in reference.types[pid_type].members if name == "PIDTYPE_TGID")
    assert resolve("pid_type___local", K.ENUMVAL_EXISTS, "1").value == 1
    assert resolve("pid_type___local", K.ENUMVAL_VALUE, "1").value == tgid_value
    assert resolve("pid_type___local", K.ENUMVAL_EXISTS, "2").value == 0

    exists = resolve(TASK, K.FIELD_EXISTS, MISSING)
    assert (exists.value, exists.poison, exists.local_value) == (0, False, 1)
    offset = resolve(TASK, K.FIELD_BYTE_OFFSET, MISSING)
    assert offset.poison and not offset.found and offset.reason
    # The kernel's mm_struct keeps start_code inside an anonymous struct: not a TYPE_MATCHES match.
    assert resolve("mm_struct___local", K.TYPE_MATCHES, "0").value == 0


# -- against a second object with another layout ------------------------------------------------


@pytest.fixture(scope="module")
def target(compile_prog: Compile) -> tuple[CompiledObject, Btf]:
    obj = compile_prog("core_target")
    return obj, Btf.from_bytes(obj.btf_bytes)


def test_field_offsets_follow_target_object(local: Local, target: tuple[CompiledObject, Btf]) -> None:
    obj, target_btf = target
    expected = {
        (TASK, PID): obj.layout("pid"),
        (TASK, TGID): obj.layout("tgid"),
        (TASK, MM): obj.layout("mm"),
        (TASK, STATE): obj.layout("state"),
        (TASK, REAL_PARENT): obj.layout("real_parent"),
        (TASK, "0:2:3"): obj.layout("comm") + 3,
        ("mm_struct___local", "0:0"): obj.layout("start_code"),
        (SKB, "0:0"): obj.layout("skb_len"),
        (SKB, "0:1"): obj.layout("skb_dev"),
        (SKB, "0:2"): obj.layout("skb_protocol"),
        (SKB, "0:3"): obj.layout("skb_mark"),
    }
    for (root, access), offset in expected.items():
        result = resolve_core_relo(local.btf, local.relo(root, K.FIELD_BYTE_OFFSET, access), target_btf)
        assert (result.value, result.poison) == (offset, False), (root, access)
    # pid now lives in an anonymous struct inside an anonymous union: the target spec records it.
    pid = resolve_core_relo(local.btf, local.relo(TASK, K.FIELD_BYTE_OFFSET, PID), target_btf)
    assert pid.target_spec is not None and len(pid.target_spec.raw) == 4
    size = resolve_core_relo(local.btf, local.relo(TASK, K.TYPE_SIZE, "0"), target_btf)
    assert size.value == obj.layout("sizeof_task")
    comm = resolve_core_relo(local.btf, local.relo(TASK, K.FIELD_BYTE_SIZE, COMM), target_btf)
    assert comm.value == obj.layout("sizeof_comm")
    enum_value = resolve_core_relo(local.btf, local.relo("pid_type___local", K.ENUMVAL_VALUE, "1"), target_btf)
    assert enum_value.value == obj.layout("pidtype_tgid")
    target_id = resolve_core_relo(local.btf, local.relo(TASK, K.TYPE_ID_TARGET, "0"), target_btf)
    assert target_btf[target_id.value].name == "task_struct"
    matches = resolve_core_relo(local.btf, local.relo("mm_struct___local", K.TYPE_MATCHES, "0"), target_btf)
    assert matches.value == 1


def test_bitfields_follow_target_object(local: Local, target: tuple[CompiledObject, Btf]) -> None:
    obj, target_btf = target
    resolver = CoreResolver(target_btf)
    g_task = obj.symbol_bytes("g_task")
    for access, value in ((RESET_ON_FORK, 1), (IN_EXECVE, 1), (FORK_CLASS, 0xA)):
        result = _bitfield_results(local, resolver, access)
        start, size = result[K.FIELD_BYTE_OFFSET], result[K.FIELD_BYTE_SIZE]
        loaded = int.from_bytes(g_task[start : start + size], "little")
        assert ((loaded << result[K.FIELD_LSHIFT_U64]) & U64) >> result[K.FIELD_RSHIFT_U64] == value, access


def test_ambiguous_candidates_are_an_error(local: Local, target: tuple[CompiledObject, Btf]) -> None:
    _, target_btf = target
    relo = local.relo("dup___local", K.FIELD_BYTE_OFFSET, "0:0")
    assert len(CoreResolver(target_btf).candidates(local.btf, relo.type_id)) == 2
    with pytest.raises(CoreReloError, match="ambiguity"):
        resolve_core_relo(local.btf, relo, target_btf)


def test_default_target_is_the_program_itself(local: Local) -> None:
    for relo in local.relos.values():
        if relo.kind.is_field_based and relo.access_str != MISSING:
            result = resolve_core_relo(local.btf, relo)
            assert result.value == result.local_value, relo


def test_malformed_relocations(local: Local) -> None:
    relo = local.relo(TASK, K.FIELD_BYTE_OFFSET, PID)
    for access in ("", "0:x", "0:99", "0::1", "0:0:0"):
        with pytest.raises(CoreReloError):
            resolve_core_relo(local.btf, replace(relo, access_str=access))
    with pytest.raises(CoreReloError):
        resolve_core_relo(local.btf, replace(relo, kind=K.TYPE_SIZE))  # type relocations need "0"
