"""Vocabulary of helper prototypes: argument kinds, return kinds and the prototype record.

These mirror the kernel's ``enum bpf_arg_type``, ``enum bpf_return_type`` and the
``bpf_type_flag`` modifiers (``include/linux/bpf.h``), which ``struct bpf_func_proto`` uses to
tell the verifier what a helper accepts and returns.  The kernel composes an argument type from a
base kind plus flags (``ARG_PTR_TO_MEM | MEM_RDONLY``); we keep that split, because the verifier
reasons about the flags (nullable, read-only, uninitialised, released) separately from the kind.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, IntFlag, auto

from pybpf.platform.uapi_generated import HelperId


class ArgType(Enum):
    """Base kind of a helper argument (``ARG_*`` without the type flags)."""

    DONTCARE = auto()  # unused argument slot
    CONST_MAP_PTR = auto()  # a map loaded with ld_imm64 (pseudo map fd), known at verification
    PTR_TO_MAP_KEY = auto()  # pointer to key_size readable bytes (stack, map value or packet)
    PTR_TO_MAP_VALUE = auto()  # pointer to value_size bytes; UNINIT when the helper fills it
    PTR_TO_MEM = auto()  # pointer to memory whose size is the following CONST_SIZE* argument
    PTR_TO_FIXED_SIZE_MEM = auto()  # pointer to ``HelperArg.size`` bytes (was ARG_PTR_TO_LONG)
    CONST_SIZE = auto()  # size of the preceding memory argument; must be > 0
    CONST_SIZE_OR_ZERO = auto()  # as CONST_SIZE, zero allowed
    CONST_ALLOC_SIZE_OR_ZERO = auto()  # size of memory the helper allocates (ringbuf_reserve)
    PTR_TO_CTX = auto()  # the program's context pointer, unmodified
    ANYTHING = auto()  # any initialised scalar (or pointer, where the helper says so)
    PTR_TO_SPIN_LOCK = auto()  # pointer to the bpf_spin_lock inside a map value
    PTR_TO_SOCK_COMMON = auto()  # socket pointer, any flavour
    PTR_TO_SOCKET = auto()  # full socket pointer
    PTR_TO_BTF_ID = auto()  # pointer to a kernel object of BTF type ``HelperArg.btf_type``
    PTR_TO_BTF_ID_SOCK_COMMON = auto()  # any socket pointer, including BTF-typed ones
    PTR_TO_PERCPU_BTF_ID = auto()  # per-cpu kernel variable
    PTR_TO_RINGBUF_MEM = auto()  # a sample from bpf_ringbuf_reserve (with RELEASE: consumed)
    PTR_TO_FUNC = auto()  # ld_imm64 of a BPF subprogram (callback)
    PTR_TO_STACK = auto()  # pointer into the program's stack (callback context)
    PTR_TO_CONST_STR = auto()  # NUL-terminated string in a read-only (frozen) map value
    PTR_TO_TIMER = auto()  # pointer to the bpf_timer inside a map value
    PTR_TO_DYNPTR = auto()  # pointer to a struct bpf_dynptr on the stack
    KPTR_XCHG_DEST = auto()  # pointer to a referenced kptr slot of a map value (bpf_kptr_xchg)

    # Identity hash at C speed (Enum's is a Python call): argument kinds are looked up in sets
    # for every helper call the verifier checks.
    __hash__ = object.__hash__


class ArgFlag(IntFlag):
    """Modifiers of an argument kind (the kernel's ``bpf_type_flag`` bits used on arguments)."""

    NONE = 0
    MAYBE_NULL = auto()  # PTR_MAYBE_NULL: NULL (scalar 0) is accepted too
    RDONLY = auto()  # MEM_RDONLY: the helper only reads the memory
    UNINIT = auto()  # MEM_UNINIT: the memory need not be initialised; the helper fills it
    WRITE = auto()  # MEM_WRITE: the helper writes the memory
    ALIGNED = auto()  # MEM_ALIGNED: the pointer must be aligned to the access size
    RELEASE = auto()  # OBJ_RELEASE: the helper releases the reference this pointer holds
    DYNPTR_LOCAL = auto()  # DYNPTR_TYPE_LOCAL: a PTR_TO_DYNPTR of (or to be made of) that kind
    DYNPTR_RINGBUF = auto()  # DYNPTR_TYPE_RINGBUF


_MAYBE_NULL = ArgFlag.MAYBE_NULL.value
_RELEASE = ArgFlag.RELEASE.value
_RDONLY = ArgFlag.RDONLY.value
_UNINIT = ArgFlag.UNINIT.value


@dataclass(frozen=True, slots=True)
class HelperArg:
    """One argument slot of a helper prototype."""

    type: ArgType
    flags: ArgFlag = ArgFlag.NONE
    size: int | None = None  # byte size for PTR_TO_FIXED_SIZE_MEM
    btf_type: str | None = None  # kernel struct name for PTR_TO_BTF_ID

    # On the flags' int values: ``IntFlag & IntFlag`` builds a new flag member through the
    # enum machinery (a Python call), and the verifier asks these for every helper argument.
    @property
    def maybe_null(self) -> bool:
        return bool(self.flags._value_ & _MAYBE_NULL)

    @property
    def is_release(self) -> bool:
        return bool(self.flags._value_ & _RELEASE)

    @property
    def readonly(self) -> bool:
        return bool(self.flags._value_ & _RDONLY)

    @property
    def uninit(self) -> bool:
        return bool(self.flags._value_ & _UNINIT)

    @property
    def is_pointer(self) -> bool:
        return self.type not in _SCALAR_ARG_TYPES


_SCALAR_ARG_TYPES = frozenset(
    {
        ArgType.DONTCARE,
        ArgType.CONST_SIZE,
        ArgType.CONST_SIZE_OR_ZERO,
        ArgType.CONST_ALLOC_SIZE_OR_ZERO,
        ArgType.ANYTHING,
    }
)


class RetType(Enum):
    """What a helper leaves in r0 (the kernel's ``enum bpf_return_type`` with its flag combos)."""

    INTEGER = auto()  # a scalar
    VOID = auto()  # nothing: r0 is unreadable afterwards
    PTR_TO_MAP_VALUE_OR_NULL = auto()  # value_size bytes of the map argument, or NULL
    PTR_TO_SOCKET_OR_NULL = auto()  # acquired full socket reference, or NULL
    PTR_TO_TCP_SOCK_OR_NULL = auto()
    PTR_TO_SOCK_COMMON_OR_NULL = auto()  # acquired sock_common reference, or NULL
    PTR_TO_MEM_OR_NULL = auto()  # ringbuf sample of ``ret_size_arg`` bytes (MEM_RINGBUF), or NULL
    PTR_TO_MEM_OR_BTF_ID = auto()  # per-cpu variable address
    PTR_TO_BTF_ID = auto()  # trusted pointer to kernel struct ``ret_btf_type``
    PTR_TO_BTF_ID_OR_NULL = auto()
    PTR_TO_DYNPTR_MEM_OR_NULL = auto()  # a slice of the dynptr argument, ``len`` bytes, or NULL

    @property
    def maybe_null(self) -> bool:
        return self.name.endswith("_OR_NULL")


@dataclass(frozen=True, slots=True)
class HelperProto:
    """The verifier-facing signature of one helper (``struct bpf_func_proto``) plus facts the
    runtime and verifier share about its effects."""

    id: HelperId
    name: str  # the uapi name without ``bpf_``: ``map_lookup_elem``
    ret: RetType
    args: tuple[HelperArg, ...]  # at most five; DONTCARE slots are left out
    description: str
    gpl_only: bool = False
    pkt_access: bool = False  # packet pointers may be passed as memory arguments
    acquires_ref: bool = False  # the returned pointer is a reference the program must release
    might_sleep: bool = False  # only sleepable programs may call it
    changes_pkt_data: bool = False  # packet pointers are invalid after the call
    ret_size_arg: int | None = None  # 0-based index of the argument giving the returned mem size
    ret_btf_type: str | None = None  # kernel struct for PTR_TO_BTF_ID returns

    @property
    def releases_ref(self) -> bool:
        return any(arg.is_release for arg in self.args)

    @property
    def release_arg(self) -> int | None:
        """0-based index of the argument whose reference the call releases."""
        for index, arg in enumerate(self.args):
            if arg.is_release:
                return index
        return None

    @property
    def arg_count(self) -> int:
        return len(self.args)
