"""Vocabulary of kfunc prototypes: the kernel's KF_* flags, argument and return kinds, kfunc sets.

A kfunc is a kernel function a BPF program calls by BTF id (``call`` with ``src_reg = 2``).
Unlike helpers, the kernel derives a kfunc's signature from its BTF prototype and a few naming
conventions (``include/linux/btf.h``, ``kernel/bpf/verifier.c`` ``check_kfunc_args``): a
parameter named ``*__sz`` is the byte size of the memory argument before it, ``*__szk`` a
constant size, ``*__k`` a constant scalar, ``*__ign`` is not checked at all, and a pointer to
``struct bpf_iter_<name>`` is an open-coded iterator on the stack. The flags the kernel attaches
when it registers the function (``BTF_ID_FLAGS(func, name, KF_...)``) say how it acquires and
releases references, whether it may return NULL, and what it does to an iterator.

We restate each kfunc we support as a :class:`KfuncProto` whose argument kinds already apply
those conventions, so neither the verifier nor the runtime needs kernel BTF.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, IntFlag, auto

from pybpf.platform.uapi_generated import BpfProgType


class KfuncFlag(IntFlag):
    """``KF_*`` (include/linux/btf.h), with the kernel's bit values."""

    NONE = 0
    ACQUIRE = 1 << 0  # returns a reference the program must release
    RELEASE = 1 << 1  # releases the reference its (first referenced) argument holds
    RET_NULL = 1 << 2  # may return NULL: r0 must be checked before use
    TRUSTED_ARGS = 1 << 4  # pointer arguments must be trusted (not walked from another object)
    SLEEPABLE = 1 << 5  # only sleepable programs may call it
    DESTRUCTIVE = 1 << 6  # needs CAP_SYS_BOOT (crash_kexec and friends)
    RCU = 1 << 7  # pointer arguments may be RCU-protected
    ITER_NEW = 1 << 8  # constructor of an open-coded iterator
    ITER_NEXT = 1 << 9  # next() of an open-coded iterator (a loop head for the verifier)
    ITER_DESTROY = 1 << 10  # destructor of an open-coded iterator
    RCU_PROTECTED = 1 << 11  # only inside an RCU read-side section
    FASTCALL = 1 << 12  # preserves r1-r5 (an optimisation; the verifier still clobbers them)
    ARENA_RET = 1 << 13  # returns an arena pointer (address space 1; BTF and tooling only)
    ARENA_ARG1 = 1 << 14  # first argument is an arena pointer (likewise)
    ARENA_ARG2 = 1 << 15  # second argument is an arena pointer (likewise)


class KfuncArgKind(Enum):
    """What one kfunc parameter accepts (``enum kfunc_ptr_arg_type`` plus the scalar kinds)."""

    SCALAR = auto()  # any initialised scalar
    CONST_SCALAR = auto()  # ``__k``: a scalar known at verification time
    IGNORED = auto()  # ``__ign``: not checked (the kfunc reads it with fault handling)
    CTX = auto()  # the program's context pointer
    MEM = auto()  # pointer to memory; its size is the next argument (``__sz``) or ``size``
    MEM_SIZE = auto()  # ``__sz``: byte size of the preceding MEM argument
    CONST_MEM_SIZE = auto()  # ``__szk``: constant byte size of the preceding MEM argument
    ITER = auto()  # pointer to a ``struct bpf_iter_<iter_type>`` on the stack
    DYNPTR = auto()  # pointer to a ``struct bpf_dynptr`` on the stack
    BTF_ID = auto()  # pointer to a kernel object of struct ``btf_type``
    MAP = auto()  # ``__map``: a map pointer (``CONST_PTR_TO_MAP``)
    # Program-allocated objects and the graphs they form (``KF_ARG_PTR_TO_ALLOC_BTF_ID``...):
    ALLOC_OBJ = auto()  # ``p__alloc``: an owning reference to a bpf_obj_new object
    REFCOUNTED_KPTR = auto()  # ``p__refcounted_kptr``: an owning or non-owning ref to a refcounted one
    LIST_HEAD = auto()  # ``struct bpf_list_head *`` in a map value or an allocated object
    LIST_NODE = auto()  # ``struct bpf_list_node *`` in an allocated object
    RB_ROOT = auto()  # ``struct bpf_rb_root *`` in a map value or an allocated object
    RB_NODE = auto()  # ``struct bpf_rb_node *`` in an allocated object
    CALLBACK = auto()  # a pointer to one of the program's functions (``bpf_rbtree_add``'s ``less``)


@dataclass(frozen=True, slots=True)
class KfuncArg:
    """One parameter. ``name`` is the kernel's parameter name (its suffix carried the kind)."""

    name: str
    kind: KfuncArgKind
    nullable: bool = False  # ``__nullable`` / ``__opt``: NULL accepted
    readonly: bool = False  # MEM: the kfunc only reads it
    uninit: bool = False  # MEM/DYNPTR: the kfunc initialises it (``__uninit``)
    size: int = 0  # MEM without a size argument: the pointee's fixed size in bytes
    btf_type: str = ""  # BTF_ID: the struct's name
    iter_type: str = ""  # ITER: ``num`` for ``struct bpf_iter_num``
    iter_slots: int = 1  # ITER: the iterator's size in 8-byte stack slots

    @property
    def is_pointer(self) -> bool:
        return self.kind not in _SCALAR_KINDS


_SCALAR_KINDS = frozenset({
    KfuncArgKind.SCALAR, KfuncArgKind.CONST_SCALAR, KfuncArgKind.IGNORED, KfuncArgKind.MEM_SIZE,
    KfuncArgKind.CONST_MEM_SIZE,
})


class KfuncRetKind(Enum):
    """What a kfunc leaves in r0 (derived by the kernel from its BTF return type)."""

    VOID = auto()  # nothing: r0 is unreadable afterwards
    SCALAR = auto()  # an integer
    MEM = auto()  # a pointer to ``KfuncProto.ret_size`` bytes (a pointer to a scalar type)
    BTF_ID = auto()  # a pointer to kernel struct ``KfuncProto.ret_btf_type``
    # A pointer to a program-allocated object (``PTR_TO_BTF_ID | MEM_ALLOC``) whose type the
    # verifier finds from the arguments: bpf_obj_new's type id, the object bpf_refcount_acquire
    # was given, or the node type a list head / rb-tree root contains (pointing at the node).
    ALLOC_OBJ = auto()


class KfuncSet(Enum):
    """The kfunc id sets of kernel/bpf/helpers.c, each registered for some program types.

    ``prog_types`` None means every program type (registered for ``BPF_PROG_TYPE_UNSPEC``)."""

    COMMON = "common"  # common_kfunc_set
    GENERIC = "generic"  # generic_kfunc_set
    SKB = "skb"  # bpf_kfunc_set_skb (net/core/filter.c)
    XDP = "xdp"  # bpf_kfunc_set_xdp (net/core/filter.c)
    CPUMASK = "cpumask"  # cpumask_kfunc_set (kernel/bpf/cpumask.c)

    @property
    def prog_types(self) -> frozenset[BpfProgType] | None:
        return _SET_PROG_TYPES[self]


_SET_PROG_TYPES: dict[KfuncSet, frozenset[BpfProgType] | None] = {
    KfuncSet.COMMON: None,
    # kernel/bpf/helpers.c kfunc_init(): register_btf_kfunc_id_set for each of these.
    KfuncSet.GENERIC: frozenset({
        BpfProgType.TRACING, BpfProgType.SCHED_CLS, BpfProgType.XDP, BpfProgType.STRUCT_OPS,
        BpfProgType.SYSCALL, BpfProgType.CGROUP_SKB, BpfProgType.SCHED_ACT,
    }),
    # net/core/filter.c bpf_kfunc_init(): the skb set for these, the xdp set for XDP.
    KfuncSet.SKB: frozenset({
        BpfProgType.SCHED_CLS, BpfProgType.SCHED_ACT, BpfProgType.SK_SKB, BpfProgType.SOCKET_FILTER,
        BpfProgType.CGROUP_SKB, BpfProgType.LWT_OUT, BpfProgType.LWT_IN, BpfProgType.LWT_XMIT,
        BpfProgType.LWT_SEG6LOCAL, BpfProgType.TRACING,  # and BPF_PROG_TYPE_NETFILTER (not in our uapi table)
    }),
    KfuncSet.XDP: frozenset({BpfProgType.XDP}),
    # kernel/bpf/cpumask.c cpumask_kfunc_init().
    KfuncSet.CPUMASK: frozenset({BpfProgType.TRACING, BpfProgType.STRUCT_OPS, BpfProgType.SYSCALL}),
}


@dataclass(frozen=True, slots=True)
class KfuncProto:
    """One kfunc as the verifier and runtime see it.

    ``id`` is pybpf's own number for it (the ``imm`` of a user-space ``call`` with
    ``src_reg = 2``; the kernel backend uses the vmlinux BTF id instead); ids are dense, from 1.
    """

    id: int
    name: str  # the kernel symbol: ``bpf_iter_num_new``
    args: tuple[KfuncArg, ...]
    ret: KfuncRetKind
    description: str
    flags: KfuncFlag = KfuncFlag.NONE
    kfunc_set: KfuncSet = KfuncSet.COMMON
    ret_size: int = 0  # MEM returns: the pointee's size
    ret_btf_type: str = ""  # BTF_ID returns: the struct's name
    ret_readonly: bool = False  # MEM returns: MEM_RDONLY

    def has(self, flag: KfuncFlag) -> bool:
        # On the members' int values: IntFlag's own ``&`` runs Python code and builds a member
        # (the verifier asks this several times per kfunc call it steps).
        return bool(self.flags._value_ & flag._value_)

    def allowed_for(self, prog_type: BpfProgType | int) -> bool:
        """Whether a program of ``prog_type`` may call it (its kfunc set is registered there)."""
        allowed = self.kfunc_set.prog_types
        if prog_type == BpfProgType.LSM:
            # bpf_prog_type_to_kfunc_hook: LSM programs use the sets registered for tracing.
            prog_type = BpfProgType.TRACING
        return allowed is None or prog_type in allowed

    @property
    def iter_arg(self) -> KfuncArg | None:
        """The iterator argument of an iterator kfunc (always the first, as the kernel requires)."""
        if self.args and self.args[0].kind is KfuncArgKind.ITER:
            return self.args[0]
        return None
