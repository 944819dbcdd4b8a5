"""What the running kernel supports, asked of the kernel itself (libbpf's feature probes).

Each probe is one cheap command: a program of a type loaded as ``r0 = 0; exit``, a small map
of a type created, a tiny BTF blob using one kind loaded, a program calling one helper loaded
(the verifier names an unknown or forbidden helper in its log). Nothing is cached: a caller
that needs the answers often keeps the :class:`KernelFeatures` it got.
"""

from __future__ import annotations

import errno as errno_codes
import struct
from collections.abc import Iterable
from dataclasses import dataclass

from pybpf.errors import BpfCommandError, VerifierRejectedError
from pybpf.kernel.btf_fixup import BTF_MAGIC, Kind
from pybpf.kernel.maps import map_create
from pybpf.kernel.objects import btf_load
from pybpf.kernel.progs import prog_load, prog_load_with_log
from pybpf.kernel.syscall import RawSyscall
from pybpf.kernel.uapi import BpfAttachType, BpfMapFlag, BpfMapType, BpfProgType
from pybpf.platform.uapi_generated import HelperId

_EXIT_0 = bytes.fromhex("b7000000000000009500000000000000")  # r0 = 0; exit

DEFAULT_PROG_TYPES: tuple[BpfProgType, ...] = (
    BpfProgType.SOCKET_FILTER,
    BpfProgType.KPROBE,
    BpfProgType.SCHED_CLS,
    BpfProgType.SCHED_ACT,
    BpfProgType.TRACEPOINT,
    BpfProgType.XDP,
    BpfProgType.PERF_EVENT,
    BpfProgType.CGROUP_SKB,
    BpfProgType.CGROUP_SOCK,
    BpfProgType.SOCK_OPS,
    BpfProgType.SK_SKB,
    BpfProgType.SK_MSG,
    BpfProgType.RAW_TRACEPOINT,
    BpfProgType.FLOW_DISSECTOR,
    BpfProgType.SYSCALL,
)

# (type, key_size, value_size, max_entries, flags): the smallest definition each type accepts.
_MAP_PROBES: dict[BpfMapType, tuple[int, int, int, int]] = {
    BpfMapType.HASH: (4, 4, 1, 0),
    BpfMapType.ARRAY: (4, 4, 1, 0),
    BpfMapType.PROG_ARRAY: (4, 4, 1, 0),
    BpfMapType.PERCPU_HASH: (4, 4, 1, 0),
    BpfMapType.PERCPU_ARRAY: (4, 4, 1, 0),
    BpfMapType.LRU_HASH: (4, 4, 1, 0),
    BpfMapType.LPM_TRIE: (8, 4, 1, int(BpfMapFlag.NO_PREALLOC)),
    BpfMapType.QUEUE: (0, 4, 1, 0),
    BpfMapType.STACK: (0, 4, 1, 0),
    BpfMapType.RINGBUF: (0, 0, 4096, 0),
    BpfMapType.BLOOM_FILTER: (0, 4, 1, 0),
}

DEFAULT_HELPERS: tuple[HelperId, ...] = (
    HelperId.KTIME_GET_NS,
    HelperId.GET_PRANDOM_U32,
    HelperId.GET_SMP_PROCESSOR_ID,
    HelperId.KTIME_GET_BOOT_NS,
    HelperId.JIFFIES64,
)

# Log lines with which the verifier refuses a call because of the helper itself (its arguments
# are not the question): unknown id, or not available to this program type.
_HELPER_REFUSALS = ("invalid func ", "unknown func ", "cannot use helper", "cannot call")

_HEADER = struct.Struct("<HBBIIIII")
_TYPE = struct.Struct("<III")
_U32 = struct.Struct("<I")
_S32 = struct.Struct("<i")


def _t(name: int, kind: Kind, vlen: int, size_or_type: int, kind_flag: int = 0) -> bytes:
    return _TYPE.pack(name, (kind_flag << 31) | (int(kind) << 24) | vlen, size_or_type)


# String table shared by the probes; offsets named once.
_STRINGS = b"\0int\0s\0a\0t\0.data\0float\0tag\0"
_INT, _S, _A, _T, _DATA, _FLOAT, _TAG = 1, 5, 7, 9, 11, 17, 23
_BASE_INT = _t(_INT, Kind.INT, 0, 4) + _U32.pack((1 << 24) | 32)  # [1] int: signed, 32 bits
_STRUCT = _t(_S, Kind.STRUCT, 1, 4) + struct.pack("<III", _A, 1, 0)

_BTF_PROBES: dict[Kind, bytes] = {
    Kind.INT: b"",
    Kind.PTR: _t(0, Kind.PTR, 0, 1),
    Kind.ARRAY: _t(0, Kind.ARRAY, 0, 0) + struct.pack("<III", 1, 1, 2),
    Kind.STRUCT: _STRUCT,
    Kind.UNION: _t(_S, Kind.UNION, 1, 4) + struct.pack("<III", _A, 1, 0),
    Kind.ENUM: _t(_S, Kind.ENUM, 1, 4) + struct.pack("<Ii", _A, 0),
    Kind.FWD: _t(_S, Kind.FWD, 0, 0),
    Kind.TYPEDEF: _t(_T, Kind.TYPEDEF, 0, 1),
    Kind.VOLATILE: _t(0, Kind.VOLATILE, 0, 1),
    Kind.CONST: _t(0, Kind.CONST, 0, 1),
    Kind.RESTRICT: _t(0, Kind.PTR, 0, 1) + _t(0, Kind.RESTRICT, 0, 2),
    Kind.FUNC_PROTO: _t(0, Kind.FUNC_PROTO, 1, 1) + struct.pack("<II", _A, 1),
    Kind.FUNC: _t(0, Kind.FUNC_PROTO, 0, 1) + _t(_S, Kind.FUNC, 0, 2),
    Kind.VAR: _t(_A, Kind.VAR, 0, 1) + _U32.pack(0),
    Kind.DATASEC: _t(_A, Kind.VAR, 0, 1) + _U32.pack(1) + _t(_DATA, Kind.DATASEC, 1, 4) + struct.pack("<III", 2, 0, 4),
    Kind.FLOAT: _t(_FLOAT, Kind.FLOAT, 0, 4),
    Kind.DECL_TAG: _STRUCT + _t(_TAG, Kind.DECL_TAG, 0, 2) + _S32.pack(-1),
    Kind.TYPE_TAG: _t(_TAG, Kind.TYPE_TAG, 0, 1) + _t(0, Kind.PTR, 0, 2),
    Kind.ENUM64: _t(_S, Kind.ENUM64, 1, 8) + struct.pack("<III", _A, 0, 0),
}


def btf_blob(types: bytes) -> bytes:
    """A whole BTF blob: header, ``types`` after the base ``int`` (type 1), the probe strings."""
    body = _BASE_INT + types
    header = _HEADER.pack(BTF_MAGIC, 1, 0, _HEADER.size, 0, len(body), len(body), len(_STRINGS))
    return header + body + _STRINGS


def btf_kind_supported(kind: Kind, *, syscall: RawSyscall | None = None) -> bool:
    """Whether BPF_BTF_LOAD accepts BTF that uses ``kind``."""
    try:
        with btf_load(btf_blob(_BTF_PROBES[kind]), syscall=syscall):
            return True
    except BpfCommandError:
        return False


def prog_type_supported(prog_type: BpfProgType, *, syscall: RawSyscall | None = None) -> bool:
    """Whether a trivial program of ``prog_type`` loads (EINVAL or ENOTSUPP means no)."""
    attach = BpfAttachType.CGROUP_INET_INGRESS if prog_type is BpfProgType.CGROUP_SKB else None
    flags = 1 << 4 if prog_type is BpfProgType.SYSCALL else 0  # SYSCALL programs must be sleepable
    try:
        with prog_load(prog_type, _EXIT_0, expected_attach_type=attach, prog_flags=flags, syscall=syscall):
            return True
    except BpfCommandError as error:
        if error.errno in (errno_codes.EPERM, errno_codes.EACCES):
            raise
        return False


def map_type_supported(map_type: BpfMapType, *, syscall: RawSyscall | None = None) -> bool:
    """Whether a small map of ``map_type`` can be created."""
    key_size, value_size, max_entries, flags = _MAP_PROBES.get(map_type, (4, 4, 1, 0))
    try:
        with map_create(map_type, key_size, value_size, max_entries, map_flags=flags, syscall=syscall):
            return True
    except BpfCommandError as error:
        if error.errno in (errno_codes.EPERM, errno_codes.EACCES):
            raise
        return False


def helper_supported(
    helper: HelperId | int, prog_type: BpfProgType = BpfProgType.SOCKET_FILTER, *, syscall: RawSyscall | None = None
) -> bool:
    """Whether programs of ``prog_type`` may call ``helper`` (libbpf's probe: read the log)."""
    call = struct.pack("<BBhi", 0x85, 0, 0, int(helper))
    try:
        with prog_load_with_log(prog_type, call + _EXIT_0, log_level=1, syscall=syscall).fd:
            return True
    except VerifierRejectedError as error:
        # A known helper with unsuitable (absent) arguments is still a supported helper.
        return not any(marker in error.log for marker in _HELPER_REFUSALS)
    except BpfCommandError:
        return False


@dataclass(frozen=True, slots=True)
class KernelFeatures:
    """Answers of the probes, each a mapping of the thing probed to True/False."""

    prog_types: dict[BpfProgType, bool]
    map_types: dict[BpfMapType, bool]
    btf_kinds: dict[Kind, bool]
    helpers: dict[HelperId, bool]

    @property
    def missing_btf_kinds(self) -> frozenset[Kind]:
        return frozenset(kind for kind, ok in self.btf_kinds.items() if not ok)


def features(
    *,
    prog_types: Iterable[BpfProgType] = DEFAULT_PROG_TYPES,
    map_types: Iterable[BpfMapType] = tuple(_MAP_PROBES),
    helpers: Iterable[HelperId] = DEFAULT_HELPERS,
    syscall: RawSyscall | None = None,
) -> KernelFeatures:
    """Probe the running kernel (a few dozen cheap bpf(2) calls)."""
    return KernelFeatures(
        prog_types={prog_type: prog_type_supported(prog_type, syscall=syscall) for prog_type in prog_types},
        map_types={map_type: map_type_supported(map_type, syscall=syscall) for map_type in map_types},
        btf_kinds={kind: btf_kind_supported(kind, syscall=syscall) for kind in Kind},
        helpers={helper: helper_supported(helper, syscall=syscall) for helper in helpers},
    )
