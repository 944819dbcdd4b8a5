"""The map-type table shared by the loader, verifier and runtime.

For each ``BpfMapType``: the key/value size rules the kernel's ``map_alloc_check`` callbacks
enforce, whether values are per CPU, which element operations and which special helpers
programs may use on it (the verifier's ``check_map_func_compatibility``), and which
``map_flags`` BPF_MAP_CREATE accepts.  :func:`check_map_spec` applies the rules to a map
definition so the loader rejects what the kernel would.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Flag, auto
from types import MappingProxyType

from pybpf.errors import MapError, NotSupportedError
from pybpf.platform.capabilities import Capability
from pybpf.platform.uapi_generated import BpfMapFlag, BpfMapType, HelperId

__all__ = ["MAP_TYPES", "MapOp", "MapTypeSpec", "check_map_spec", "map_type_spec"]

H = HelperId
M = BpfMapType
MF = BpfMapFlag

MAX_BPF_STACK = 512  # keys are built on the program's stack
PAGE_SIZE = 4096


class MapOp(Flag):
    """Element operations a program may perform through the generic map helpers."""

    NONE = 0
    LOOKUP = auto()
    UPDATE = auto()
    DELETE = auto()
    PUSH = auto()
    POP = auto()
    PEEK = auto()
    FOR_EACH = auto()


# The generic map helpers and the element operation each performs (built once: the verifier
# asks for every helper call with a map argument).
_GENERIC_OPS: Mapping[int, MapOp] = MappingProxyType({
    H.MAP_LOOKUP_ELEM: MapOp.LOOKUP,
    H.MAP_UPDATE_ELEM: MapOp.UPDATE,
    H.MAP_DELETE_ELEM: MapOp.DELETE,
    H.MAP_PUSH_ELEM: MapOp.PUSH,
    H.MAP_POP_ELEM: MapOp.POP,
    H.MAP_PEEK_ELEM: MapOp.PEEK,
    H.FOR_EACH_MAP_ELEM: MapOp.FOR_EACH,
})
_HASHLIKE_OPS = MapOp.LOOKUP | MapOp.UPDATE | MapOp.DELETE | MapOp.FOR_EACH
_QUEUE_OPS = MapOp.PUSH | MapOp.POP | MapOp.PEEK
# Flags nearly every map accepts: NUMA placement and access restrictions.
_COMMON_FLAGS = MF.NUMA_NODE | MF.RDONLY | MF.WRONLY | MF.RDONLY_PROG | MF.WRONLY_PROG
_NO_FLAGS = BpfMapFlag(0)


@dataclass(frozen=True, slots=True)
class MapTypeSpec:
    map_type: BpfMapType
    name: str
    description: str
    key_size: int | None  # exact size required, or None for "any size > 0"
    value_size: int | tuple[int, ...] | None  # exact size(s), or None for "any size > 0"
    program_ops: MapOp = MapOp.NONE
    special_helpers: frozenset[HelperId] = frozenset()  # helpers that take this map type only
    per_cpu: bool = False
    allowed_flags: BpfMapFlag = _COMMON_FLAGS
    required_flags: BpfMapFlag = _NO_FLAGS
    max_key_size: int | None = None
    max_value_size: int | None = None
    # Lookup from a program yields a pointer to the value (False: fd maps, whose values are
    # kernel objects; lookup yields the object or is refused).
    lookup_returns_value: bool = True
    is_fd_map: bool = False  # values written from user space are fds (prog, map, socket...)
    max_entries_power_of_two_pages: bool = False  # ringbufs: a power of 2 and a page multiple
    # Generic operations the verifier lets through although they fail at run time (None: the
    # program_ops): check_map_func_compatibility has no rule for arrays, so their
    # bpf_map_delete_elem loads and returns -EINVAL.
    verifier_ops: MapOp | None = None

    @property
    def create_capabilities(self) -> tuple[Capability, ...]:
        """What ``map_create`` (6.18) requires of the creator for this type (``EPERM``
        otherwise): nothing for the types in :data:`UNPRIVILEGED_MAP_TYPES`, CAP_NET_ADMIN
        for the socket and device redirect maps, CAP_BPF for every other type."""
        if self.map_type in UNPRIVILEGED_MAP_TYPES:
            return ()
        if self.map_type in NET_ADMIN_MAP_TYPES:
            return (Capability.NET_ADMIN,)
        return (Capability.BPF,)

    @property
    def mmapable(self) -> bool:
        return bool(self.allowed_flags & MF.MMAPABLE)

    def allows_op(self, op: MapOp) -> bool:
        # On the members' values: Flag's own ``&`` runs Python code and builds a member.
        return bool(self.program_ops._value_ & op._value_) and op is not MapOp.NONE

    def helper_allowed(self, helper_id: int) -> bool:
        """Whether a helper taking a map argument accepts this map type (both directions of
        the verifier's compatibility check: generic ops via ``program_ops``, special helpers
        only with their own map types)."""
        op = _GENERIC_OPS.get(helper_id)
        if op is not None:
            return self.allows_op(op) or bool(self.verifier_ops is not None and self.verifier_ops & op)
        if helper_id == H.MAP_LOOKUP_PERCPU_ELEM:
            return self.per_cpu and self.allows_op(MapOp.LOOKUP)
        return helper_id in self.special_helpers


_HASH_FLAGS = _COMMON_FLAGS | MF.NO_PREALLOC | MF.ZERO_SEED
_LRU_FLAGS = _COMMON_FLAGS | MF.NO_COMMON_LRU | MF.ZERO_SEED
_ARRAY_FLAGS = _COMMON_FLAGS | MF.MMAPABLE | MF.INNER_MAP | MF.PRESERVE_ELEMS

_SPECS: tuple[MapTypeSpec, ...] = (
    MapTypeSpec(M.HASH, "hash", "Hash table.", None, None, _HASHLIKE_OPS,
                allowed_flags=_HASH_FLAGS, max_key_size=MAX_BPF_STACK),
    MapTypeSpec(M.ARRAY, "array", "Array indexed by u32; elements preallocated and zeroed.", 4, None,
                MapOp.LOOKUP | MapOp.UPDATE | MapOp.FOR_EACH,
                allowed_flags=_ARRAY_FLAGS & ~MF.PRESERVE_ELEMS, verifier_ops=MapOp.DELETE),
    MapTypeSpec(M.PROG_ARRAY, "prog_array", "Program fds for bpf_tail_call.", 4, 4,
                special_helpers=frozenset({H.TAIL_CALL}), lookup_returns_value=False, is_fd_map=True,
                allowed_flags=MF.NUMA_NODE | MF.RDONLY | MF.WRONLY),
    MapTypeSpec(M.PERF_EVENT_ARRAY, "perf_event_array", "Per-CPU perf event fds for output.", 4, 4,
                special_helpers=frozenset({H.PERF_EVENT_READ, H.PERF_EVENT_OUTPUT,
                                           H.PERF_EVENT_READ_VALUE, H.SKB_OUTPUT, H.XDP_OUTPUT}),
                lookup_returns_value=False, is_fd_map=True,
                allowed_flags=MF.NUMA_NODE | MF.RDONLY | MF.WRONLY | MF.PRESERVE_ELEMS),
    MapTypeSpec(M.PERCPU_HASH, "percpu_hash", "Hash table with one value per CPU.", None, None,
                _HASHLIKE_OPS, per_cpu=True, allowed_flags=_HASH_FLAGS, max_key_size=MAX_BPF_STACK),
    MapTypeSpec(M.PERCPU_ARRAY, "percpu_array", "Array with one value per CPU.", 4, None,
                MapOp.LOOKUP | MapOp.UPDATE | MapOp.FOR_EACH, per_cpu=True, verifier_ops=MapOp.DELETE),
    MapTypeSpec(M.STACK_TRACE, "stack_trace", "Stack traces keyed by bpf_get_stackid ids.", 4, None,
                MapOp.DELETE, special_helpers=frozenset({H.GET_STACKID}),
                allowed_flags=_COMMON_FLAGS | MF.STACK_BUILD_ID, lookup_returns_value=False),
    MapTypeSpec(M.CGROUP_ARRAY, "cgroup_array", "cgroup fds for skb_under_cgroup.", 4, 4,
                special_helpers=frozenset({H.SKB_UNDER_CGROUP, H.CURRENT_TASK_UNDER_CGROUP}),
                lookup_returns_value=False, is_fd_map=True,
                allowed_flags=MF.NUMA_NODE | MF.RDONLY | MF.WRONLY),
    MapTypeSpec(M.LRU_HASH, "lru_hash", "Hash table evicting least recently used elements.", None, None,
                _HASHLIKE_OPS, allowed_flags=_LRU_FLAGS, max_key_size=MAX_BPF_STACK),
    MapTypeSpec(M.LRU_PERCPU_HASH, "lru_percpu_hash", "LRU hash with one value per CPU.", None, None,
                _HASHLIKE_OPS, per_cpu=True, allowed_flags=_LRU_FLAGS, max_key_size=MAX_BPF_STACK),
    MapTypeSpec(M.LPM_TRIE, "lpm_trie", "Longest-prefix match; key is u32 prefixlen + data.", None, None,
                MapOp.LOOKUP | MapOp.UPDATE | MapOp.DELETE, allowed_flags=_COMMON_FLAGS | MF.NO_PREALLOC,
                required_flags=MF.NO_PREALLOC, max_key_size=4 + 256, max_value_size=MAX_BPF_STACK),
    MapTypeSpec(M.ARRAY_OF_MAPS, "array_of_maps", "Array of inner map fds.", 4, 4, MapOp.LOOKUP,
                lookup_returns_value=False, is_fd_map=True),
    MapTypeSpec(M.HASH_OF_MAPS, "hash_of_maps", "Hash of inner map fds.", None, 4, MapOp.LOOKUP,
                lookup_returns_value=False, is_fd_map=True, allowed_flags=_HASH_FLAGS,
                max_key_size=MAX_BPF_STACK),
    MapTypeSpec(M.DEVMAP, "devmap", "Net devices for XDP redirect (value: ifindex or bpf_devmap_val).",
                4, (4, 8), MapOp.LOOKUP, special_helpers=frozenset({H.REDIRECT_MAP}), is_fd_map=True,
                allowed_flags=_COMMON_FLAGS),
    MapTypeSpec(M.SOCKMAP, "sockmap", "Sockets for sk_skb/sk_msg redirects.", 4, (4, 8),
                MapOp.LOOKUP | MapOp.UPDATE | MapOp.DELETE,
                special_helpers=frozenset({H.SK_REDIRECT_MAP, H.SOCK_MAP_UPDATE, H.MSG_REDIRECT_MAP,
                                           H.SK_SELECT_REUSEPORT}),
                lookup_returns_value=False, is_fd_map=True),
    MapTypeSpec(M.CPUMAP, "cpumap", "CPUs for XDP redirect (value: queue size or bpf_cpumap_val).",
                4, (4, 8), special_helpers=frozenset({H.REDIRECT_MAP}), lookup_returns_value=False),
    MapTypeSpec(M.XSKMAP, "xskmap", "AF_XDP sockets for XDP redirect.", 4, 4, MapOp.LOOKUP,
                special_helpers=frozenset({H.REDIRECT_MAP}), lookup_returns_value=False, is_fd_map=True),
    MapTypeSpec(M.SOCKHASH, "sockhash", "Sockets keyed by arbitrary keys.", None, (4, 8),
                MapOp.LOOKUP | MapOp.UPDATE | MapOp.DELETE,
                special_helpers=frozenset({H.SK_REDIRECT_HASH, H.SOCK_HASH_UPDATE, H.MSG_REDIRECT_HASH,
                                           H.SK_SELECT_REUSEPORT}),
                lookup_returns_value=False, is_fd_map=True, max_key_size=MAX_BPF_STACK),
    MapTypeSpec(M.CGROUP_STORAGE, "cgroup_storage", "Deprecated per-cgroup, per-program storage.",
                None, None, special_helpers=frozenset({H.GET_LOCAL_STORAGE}),
                lookup_returns_value=False),
    MapTypeSpec(M.REUSEPORT_SOCKARRAY, "reuseport_sockarray", "SO_REUSEPORT group sockets.", 4, (4, 8),
                special_helpers=frozenset({H.SK_SELECT_REUSEPORT}), lookup_returns_value=False,
                is_fd_map=True),
    MapTypeSpec(M.PERCPU_CGROUP_STORAGE, "percpu_cgroup_storage", "Per-CPU cgroup storage.", None, None,
                special_helpers=frozenset({H.GET_LOCAL_STORAGE}), per_cpu=True,
                lookup_returns_value=False),
    MapTypeSpec(M.QUEUE, "queue", "FIFO of values (no keys).", 0, None, _QUEUE_OPS),
    MapTypeSpec(M.STACK, "stack", "LIFO of values (no keys).", 0, None, _QUEUE_OPS),
    MapTypeSpec(M.SK_STORAGE, "sk_storage", "Per-socket local storage.", 4, None,
                special_helpers=frozenset({H.SK_STORAGE_GET, H.SK_STORAGE_DELETE}),
                allowed_flags=MF.NO_PREALLOC | MF.CLONE, lookup_returns_value=False, required_flags=MF.NO_PREALLOC),
    MapTypeSpec(M.DEVMAP_HASH, "devmap_hash", "Net devices keyed by arbitrary u32 keys.", 4, (4, 8),
                MapOp.LOOKUP, special_helpers=frozenset({H.REDIRECT_MAP}), is_fd_map=True),
    MapTypeSpec(M.STRUCT_OPS, "struct_ops", "A kernel ops table implemented by BPF programs.", 4, None,
                lookup_returns_value=False),
    MapTypeSpec(M.RINGBUF, "ringbuf", "Multi-producer single-consumer ring buffer.", 0, 0,
                special_helpers=frozenset({H.RINGBUF_OUTPUT, H.RINGBUF_RESERVE, H.RINGBUF_QUERY,
                                           H.RINGBUF_RESERVE_DYNPTR}),
                allowed_flags=MF.NUMA_NODE, lookup_returns_value=False, max_entries_power_of_two_pages=True),
    MapTypeSpec(M.INODE_STORAGE, "inode_storage", "Per-inode local storage.", 4, None,
                special_helpers=frozenset({H.INODE_STORAGE_GET, H.INODE_STORAGE_DELETE}),
                allowed_flags=MF.NO_PREALLOC, lookup_returns_value=False, required_flags=MF.NO_PREALLOC),
    MapTypeSpec(M.TASK_STORAGE, "task_storage", "Per-task local storage.", 4, None,
                special_helpers=frozenset({H.TASK_STORAGE_GET, H.TASK_STORAGE_DELETE}),
                allowed_flags=MF.NO_PREALLOC, lookup_returns_value=False, required_flags=MF.NO_PREALLOC),
    MapTypeSpec(M.BLOOM_FILTER, "bloom_filter", "Bloom filter: push adds, peek tests membership.",
                0, None, MapOp.PUSH | MapOp.PEEK, allowed_flags=_COMMON_FLAGS | MF.ZERO_SEED),
    # No keys, no values: max_entries pages of memory shared by programs and user space (mmap).
    MapTypeSpec(M.ARENA, "arena", "Pages shared by programs (bpf_arena_alloc_pages) and user space (mmap).",
                0, 0, allowed_flags=MF.MMAPABLE | MF.SEGV_ON_FAULT | MF.NO_USER_CONV,
                required_flags=MF.MMAPABLE, lookup_returns_value=False),
    MapTypeSpec(M.USER_RINGBUF, "user_ringbuf", "Ring buffer produced by user space.", 0, 0,
                special_helpers=frozenset({H.USER_RINGBUF_DRAIN}), allowed_flags=BpfMapFlag(0),
                lookup_returns_value=False, max_entries_power_of_two_pages=True),
)


UNPRIVILEGED_MAP_TYPES = frozenset({
    M.ARRAY, M.PERCPU_ARRAY, M.PROG_ARRAY, M.PERF_EVENT_ARRAY, M.CGROUP_ARRAY, M.ARRAY_OF_MAPS, M.HASH,
    M.PERCPU_HASH, M.HASH_OF_MAPS, M.RINGBUF, M.USER_RINGBUF, M.CGROUP_STORAGE, M.PERCPU_CGROUP_STORAGE,
})
"""The map types ``map_create`` creates for a caller without capabilities."""
NET_ADMIN_MAP_TYPES = frozenset({M.SOCKMAP, M.SOCKHASH, M.DEVMAP, M.DEVMAP_HASH, M.XSKMAP})
"""The map types ``map_create`` creates only for a caller with CAP_NET_ADMIN (CAP_BPF is not enough)."""


def _index(specs: tuple[MapTypeSpec, ...]) -> Mapping[BpfMapType, MapTypeSpec]:
    table: dict[BpfMapType, MapTypeSpec] = {}
    for spec in specs:
        if spec.map_type in table:
            raise ValueError(f"duplicate map type {spec.map_type!r}")
        table[spec.map_type] = spec
    return MappingProxyType(table)


MAP_TYPES: Mapping[BpfMapType, MapTypeSpec] = _index(_SPECS)


def map_type_spec(map_type: int) -> MapTypeSpec:
    try:
        # A member is used as it is: the verifier asks for every helper call with a map
        # argument, and converting costs more than the lookup.
        key = map_type if isinstance(map_type, BpfMapType) else BpfMapType(map_type)
        return MAP_TYPES[key]
    except (ValueError, KeyError):
        raise NotSupportedError(f"map type {map_type} is not supported") from None


def _size_ok(rule: int | tuple[int, ...] | None, size: int, limit: int | None) -> bool:
    if rule is None:
        return size > 0 and (limit is None or size <= limit)
    if isinstance(rule, tuple):
        return size in rule
    return size == rule


def check_map_spec(map_type: int, key_size: int, value_size: int, max_entries: int, flags: int = 0) -> None:
    """Raise MapError (errno_name EINVAL, as BPF_MAP_CREATE would) if the definition is invalid."""
    spec = map_type_spec(map_type)
    problems: list[str] = []
    if not _size_ok(spec.key_size, key_size, spec.max_key_size):
        problems.append(f"key_size {key_size} (needs {_describe(spec.key_size, spec.max_key_size)})")
    if not _size_ok(spec.value_size, value_size, spec.max_value_size):
        problems.append(f"value_size {value_size} (needs {_describe(spec.value_size, spec.max_value_size)})")
    if spec.map_type is M.LPM_TRIE and key_size < 5:
        problems.append("lpm_trie keys hold a u32 prefixlen and at least one byte")
    if max_entries <= 0 and spec.map_type not in _NO_MAX_ENTRIES:
        problems.append("max_entries must be positive")
    if spec.max_entries_power_of_two_pages and (
        max_entries <= 0 or max_entries & (max_entries - 1) or max_entries % PAGE_SIZE
    ):
        problems.append(f"max_entries {max_entries} must be a power of 2 and a multiple of {PAGE_SIZE}")
    unknown = BpfMapFlag(flags) & ~spec.allowed_flags if flags >= 0 else BpfMapFlag(0)
    if flags < 0 or unknown:
        problems.append(f"map_flags {flags:#x} not allowed for {spec.name}")
    if spec.required_flags and (flags & spec.required_flags) != spec.required_flags:
        problems.append(f"{spec.name} requires map_flags {spec.required_flags!r}")
    if problems:
        raise MapError(f"invalid {spec.name} map: " + "; ".join(problems), "EINVAL")


# Storage maps are sized by the objects they attach to, not by max_entries (which must be 0).
_NO_MAX_ENTRIES = frozenset(
    {M.CGROUP_STORAGE, M.PERCPU_CGROUP_STORAGE, M.SK_STORAGE, M.INODE_STORAGE, M.TASK_STORAGE}
)


def _describe(rule: int | tuple[int, ...] | None, limit: int | None) -> str:
    if rule is None:
        return f"1..{limit}" if limit is not None else "> 0"
    if isinstance(rule, tuple):
        return " or ".join(str(r) for r in rule)
    return str(rule)
