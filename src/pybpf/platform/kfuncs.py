"""The kfunc-prototype table shared by the object loader, the verifier, the runtime and the kernel backend.

Each entry restates one kernel function as Linux 6.18 registers it (``BTF_ID_FLAGS(func, name,
flags)`` in kernel/bpf/helpers.c and the kfunc's C prototype): its parameters, with the
kernel's naming conventions already turned into :class:`KfuncArgKind`, what it returns, its
``KF_*`` flags and the kfunc set (hence the program types) it belongs to.

How a kfunc is resolved:

* the object loader (:mod:`pybpf.obj`) turns a call of an ``extern ... __ksym`` function into
  ``call`` ``src_reg = 2`` whose ``imm`` is the entry's :attr:`KfuncProto.id` (0 when the name is
  not in this table; loading such a program in user space is then refused, naming it);
* the verifier (:mod:`pybpf.verifier.kfuncs`) checks the call against the entry; the runtime
  dispatches it to the implementation registered under the same id
  (:mod:`pybpf.runtime.helpers.kfuncs`);
* the kernel backend ignores the ids and resolves every call by name in ``/sys/kernel/btf/vmlinux``.

Adding a kfunc:

1. append a :class:`KfuncProto` to ``_PROTOS`` below (``id=0``: ids are assigned in table order
   when the module loads, so never rely on a number). Name the parameters as the kernel does and
   give each the kind its suffix or type implies (``__sz`` -> ``MEM_SIZE`` after a ``MEM``,
   ``__szk`` -> ``CONST_MEM_SIZE``, ``__k`` -> ``CONST_SCALAR``, ``__ign`` -> ``IGNORED``,
   ``struct bpf_dynptr *`` -> ``DYNPTR``, ``struct bpf_iter_<x> *`` -> ``ITER`` with
   ``iter_type="<x>"``); copy the ``KF_*`` flags from its ``BTF_ID_FLAGS`` line and the set it is
   registered in (:class:`KfuncSet`; add a set with its program types when it is a new one);
2. if the verifier must do more than the generic argument, reference and return checks (a
   dynptr's state, an iterator's), handle it in :mod:`pybpf.verifier.kfuncs`;
3. implement it in :mod:`pybpf.runtime.helpers.kfuncs` (``KFUNC_IMPLS`` by name) so user-space
   runs can call it; declare it in tests/progs/bpf_helpers.h as libbpf's headers do.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from types import MappingProxyType

from pybpf.platform.kfunc_types import (
    KfuncArg,
    KfuncArgKind,
    KfuncFlag,
    KfuncProto,
    KfuncRetKind,
    KfuncSet,
)

__all__ = ["FIRST_MEMBER_STRUCTS", "KFUNC_BY_NAME", "KFUNC_PROTOS", "kfunc_by_name"]

_F = KfuncFlag
_K = KfuncProto
_VOID = KfuncRetKind.VOID
_INT = KfuncRetKind.SCALAR
_BTF = KfuncRetKind.BTF_ID
_ITER_NUM = KfuncArg("it", KfuncArgKind.ITER, iter_type="num")
_TASK = KfuncArg("p", KfuncArgKind.BTF_ID, btf_type="task_struct")
_CGROUP = KfuncArg("cgrp", KfuncArgKind.BTF_ID, btf_type="cgroup")
_BPF_CPUMASK = KfuncArg("cpumask", KfuncArgKind.BTF_ID, btf_type="bpf_cpumask")
_CPUMASK = KfuncArg("cpumask", KfuncArgKind.BTF_ID, btf_type="cpumask")  # const struct cpumask *
_ITER_BITS = KfuncArg("it", KfuncArgKind.ITER, iter_type="bits", iter_slots=2)


def _str(name: str) -> KfuncArg:
    # ``const char *s__ign``: any value; the kfunc reads it byte by byte with fault handling.
    return KfuncArg(name, KfuncArgKind.IGNORED)


def _int(name: str) -> KfuncArg:
    return KfuncArg(name, KfuncArgKind.SCALAR)


# Dynptrs (kernel/bpf/helpers.c, net/core/filter.c): ``const struct bpf_dynptr *p`` is an
# initialised dynptr, ``*__uninit`` one the kfunc builds; the verifier's dynptr rules apply
# (pybpf.verifier.dynptr), and the slices' size is their constant ``buffer__szk`` argument.
_DYNPTR = KfuncArg("p", KfuncArgKind.DYNPTR)
# ``void *p__map`` and the flags every arena kfunc has (KF_TRUSTED_ARGS | KF_SLEEPABLE | KF_ARENA_ARG2).
_ARENA_MAP = KfuncArg("p__map", KfuncArgKind.MAP)
_ARENA_FLAGS = _F.TRUSTED_ARGS | _F.SLEEPABLE | _F.ARENA_ARG2
_SLICE_ARGS = (_DYNPTR, _int("offset"), KfuncArg("buffer__opt", KfuncArgKind.MEM, nullable=True),
               KfuncArg("buffer__szk", KfuncArgKind.CONST_MEM_SIZE))


# Program-allocated objects and their graphs (kernel/bpf/helpers.c, generic set). ``meta__ign``
# and ``off`` are what the kernel's verifier fills in (the type's record, the node's offset):
# programs pass NULL and 0 (bpf_experimental.h's macros).
_META = KfuncArg("meta__ign", KfuncArgKind.IGNORED)
_OFF = KfuncArg("off", KfuncArgKind.SCALAR)
_LIST_HEAD = KfuncArg("head", KfuncArgKind.LIST_HEAD)
_RB_ROOT = KfuncArg("root", KfuncArgKind.RB_ROOT)
_RB_NODE = KfuncArg("node", KfuncArgKind.RB_NODE)
_GENERIC = KfuncSet.GENERIC
_OBJ = KfuncRetKind.ALLOC_OBJ


_PROTOS: tuple[KfuncProto, ...] = (
    # --- open-coded numeric iterator (kernel/bpf/bpf_iter.c, common set) ---
    _K(0, "bpf_iter_num_new", (_ITER_NUM, _int("start"), _int("end")), _INT,
       "Start an iterator over [start, end); 0, or -EINVAL (range too big) leaving it empty.",
       _F.ITER_NEW),
    _K(0, "bpf_iter_num_next", (_ITER_NUM,), KfuncRetKind.MEM,
       "Pointer to the next number of the range, or NULL once it is drained.",
       _F.ITER_NEXT | _F.RET_NULL, ret_size=4),
    _K(0, "bpf_iter_num_destroy", (_ITER_NUM,), _VOID, "Release the iterator.", _F.ITER_DESTROY),
    # --- open-coded bit iterator (6.11+, common set): the set bits of nr_words u64 words,
    # copied from unsafe_ptr at new() (16 bytes of iterator: two stack slots) ---
    _K(0, "bpf_iter_bits_new", (_ITER_BITS, _str("unsafe_ptr__ign"), _int("nr_words")), _INT,
       "Copy nr_words u64 words from unsafe_ptr; 0, or -EINVAL/-E2BIG/-EFAULT/-ERANGE leaving it empty.",
       _F.ITER_NEW),
    _K(0, "bpf_iter_bits_next", (_ITER_BITS,), KfuncRetKind.MEM,
       "Pointer to the index of the next set bit, or NULL once there is none.",
       _F.ITER_NEXT | _F.RET_NULL, ret_size=4),
    _K(0, "bpf_iter_bits_destroy", (_ITER_BITS,), _VOID, "Release the iterator (and its copy).",
       _F.ITER_DESTROY),
    # --- RCU and preemption (common set) ---
    _K(0, "bpf_rcu_read_lock", (), _VOID, "Enter an RCU read-side critical section."),
    _K(0, "bpf_rcu_read_unlock", (), _VOID, "Leave the RCU read-side critical section."),
    _K(0, "bpf_preempt_disable", (), _VOID, "Disable preemption (nests)."),
    _K(0, "bpf_preempt_enable", (), _VOID, "Re-enable preemption."),
    # --- tasks (generic set: tracing, tc, XDP, struct_ops, syscall, cgroup_skb programs) ---
    _K(0, "bpf_task_from_pid", (_int("pid"),), KfuncRetKind.BTF_ID,
       "Acquire the task with this pid (in the root pid namespace), or NULL.",
       _F.ACQUIRE | _F.RET_NULL, KfuncSet.GENERIC, ret_btf_type="task_struct"),
    _K(0, "bpf_task_release", (_TASK,), _VOID, "Release a task reference.", _F.RELEASE, KfuncSet.GENERIC),
    _K(0, "bpf_task_acquire", (_TASK,), _BTF, "Acquire a reference to a trusted or RCU task, or NULL.",
       _F.ACQUIRE | _F.RCU | _F.RET_NULL, KfuncSet.GENERIC, ret_btf_type="task_struct"),
    _K(0, "bpf_task_from_vpid", (_int("vpid"),), _BTF,
       "Acquire the task with this pid in the caller's pid namespace, or NULL.",
       _F.ACQUIRE | _F.RET_NULL, KfuncSet.GENERIC, ret_btf_type="task_struct"),
    # --- cgroups (generic set) ---
    _K(0, "bpf_cgroup_acquire", (_CGROUP,), _BTF, "Acquire a reference to a trusted or RCU cgroup, or NULL.",
       _F.ACQUIRE | _F.RCU | _F.RET_NULL, KfuncSet.GENERIC, ret_btf_type="cgroup"),
    _K(0, "bpf_cgroup_release", (_CGROUP,), _VOID, "Release a cgroup reference.", _F.RELEASE, KfuncSet.GENERIC),
    _K(0, "bpf_cgroup_ancestor", (_CGROUP, _int("level")), _BTF,
       "Acquire the cgroup's ancestor at this level, or NULL.",
       _F.ACQUIRE | _F.RCU | _F.RET_NULL, KfuncSet.GENERIC, ret_btf_type="cgroup"),
    _K(0, "bpf_cgroup_from_id", (_int("cgid"),), _BTF, "Acquire the cgroup with this id, or NULL.",
       _F.ACQUIRE | _F.RET_NULL, KfuncSet.GENERIC, ret_btf_type="cgroup"),
    # --- cpumasks (kernel/bpf/cpumask.c: tracing, struct_ops and syscall programs) ---
    _K(0, "bpf_cpumask_create", (), _BTF, "Allocate an empty cpumask (a reference), or NULL.",
       _F.ACQUIRE | _F.RET_NULL, KfuncSet.CPUMASK, ret_btf_type="bpf_cpumask"),
    _K(0, "bpf_cpumask_release", (_BPF_CPUMASK,), _VOID, "Release a cpumask reference (freed at the last).",
       _F.RELEASE, KfuncSet.CPUMASK),
    _K(0, "bpf_cpumask_acquire", (_BPF_CPUMASK,), _BTF, "Another reference to a trusted cpumask.",
       _F.ACQUIRE | _F.TRUSTED_ARGS, KfuncSet.CPUMASK, ret_btf_type="bpf_cpumask"),
    _K(0, "bpf_cpumask_first", (_CPUMASK,), _INT, "The first set CPU, or nr_cpu_ids when none is.",
       _F.RCU, KfuncSet.CPUMASK),
    _K(0, "bpf_cpumask_weight", (_CPUMASK,), _INT, "How many CPUs are set.", _F.RCU, KfuncSet.CPUMASK),
    _K(0, "bpf_cpumask_test_cpu", (_int("cpu"), _CPUMASK), _INT, "Whether the CPU is set (0 for cpu >= nr_cpu_ids).",
       _F.RCU, KfuncSet.CPUMASK),
    _K(0, "bpf_cpumask_set_cpu", (_int("cpu"), _BPF_CPUMASK), _VOID, "Set the CPU (ignored past nr_cpu_ids).",
       _F.RCU, KfuncSet.CPUMASK),
    _K(0, "bpf_cpumask_clear_cpu", (_int("cpu"), _BPF_CPUMASK), _VOID, "Clear the CPU (ignored past nr_cpu_ids).",
       _F.RCU, KfuncSet.CPUMASK),
    _K(0, "bpf_task_release", (KfuncArg("p", KfuncArgKind.BTF_ID, btf_type="task_struct"),), _VOID,
       "Release a task reference.", _F.RELEASE, KfuncSet.GENERIC),
    # --- program-allocated objects, linked lists and rb-trees (generic set) ---
    _K(0, "bpf_obj_new_impl", (KfuncArg("local_type_id__k", KfuncArgKind.CONST_SCALAR), _META), _OBJ,
       "Allocate a zeroed object of the program's BTF type local_type_id__k (an owning reference), or NULL.",
       _F.ACQUIRE | _F.RET_NULL, _GENERIC),
    _K(0, "bpf_obj_drop_impl", (KfuncArg("p__alloc", KfuncArgKind.ALLOC_OBJ), _META), _VOID,
       "Drop an owning reference: free the object (and what its lists and trees hold) at the last one.",
       _F.RELEASE, _GENERIC),
    _K(0, "bpf_refcount_acquire_impl", (KfuncArg("p__refcounted_kptr", KfuncArgKind.REFCOUNTED_KPTR), _META),
       _OBJ, "A new owning reference to a refcounted object, or NULL when its count already reached 0.",
       _F.ACQUIRE | _F.RET_NULL | _F.RCU, _GENERIC),
    _K(0, "bpf_list_push_front_impl", (_LIST_HEAD, KfuncArg("node", KfuncArgKind.LIST_NODE), _META, _OFF), _INT,
       "Insert the node first (its owning reference becomes non-owning); 0, or -EINVAL when already in a list.",
       _F.NONE, _GENERIC),
    _K(0, "bpf_list_push_back_impl", (_LIST_HEAD, KfuncArg("node", KfuncArgKind.LIST_NODE), _META, _OFF), _INT,
       "Insert the node last (its owning reference becomes non-owning); 0, or -EINVAL when already in a list.",
       _F.NONE, _GENERIC),
    _K(0, "bpf_list_pop_front", (_LIST_HEAD,), _OBJ, "Remove the first node (an owning reference), or NULL.",
       _F.ACQUIRE | _F.RET_NULL, _GENERIC),
    _K(0, "bpf_list_pop_back", (_LIST_HEAD,), _OBJ, "Remove the last node (an owning reference), or NULL.",
       _F.ACQUIRE | _F.RET_NULL, _GENERIC),
    _K(0, "bpf_list_front", (_LIST_HEAD,), _OBJ, "The first node (a non-owning reference), or NULL.",
       _F.RET_NULL, _GENERIC),
    _K(0, "bpf_list_back", (_LIST_HEAD,), _OBJ, "The last node (a non-owning reference), or NULL.",
       _F.RET_NULL, _GENERIC),
    _K(0, "bpf_rbtree_remove", (_RB_ROOT, _RB_NODE), _OBJ,
       "Remove the node from the tree (an owning reference), or NULL when it is not in this tree.",
       _F.ACQUIRE | _F.RET_NULL, _GENERIC),
    _K(0, "bpf_rbtree_add_impl",
       (_RB_ROOT, _RB_NODE, KfuncArg("less", KfuncArgKind.CALLBACK), _META, _OFF), _INT,
       "Insert the node, ordered by the program's less(a, b) (non-owning afterwards); 0, or -EINVAL.",
       _F.NONE, _GENERIC),
    _K(0, "bpf_rbtree_first", (_RB_ROOT,), _OBJ, "The leftmost node (a non-owning reference), or NULL.",
       _F.RET_NULL, _GENERIC),
    _K(0, "bpf_rbtree_root", (_RB_ROOT,), _OBJ, "The tree's root node (a non-owning reference), or NULL.",
       _F.RET_NULL, _GENERIC),
    _K(0, "bpf_rbtree_left", (_RB_ROOT, _RB_NODE), _OBJ,
       "The node's left child (a non-owning reference), or NULL.", _F.RET_NULL, _GENERIC),
    _K(0, "bpf_rbtree_right", (_RB_ROOT, _RB_NODE), _OBJ,
       "The node's right child (a non-owning reference), or NULL.", _F.RET_NULL, _GENERIC),
    # --- user memory (common set, sleepable programs only) ---
    _K(0, "bpf_copy_from_user_str",
       (KfuncArg("dst", KfuncArgKind.MEM), KfuncArg("dst__sz", KfuncArgKind.MEM_SIZE), _str("unsafe_ptr__ign"),
        _int("flags")), _INT,
       "Copy a NUL-terminated user string into dst (BPF_F_PAD_ZEROS pads); its size with the NUL, or -errno.",
       _F.SLEEPABLE),
    # --- dynptrs (common set; the constructors in the skb and xdp sets) ---
    _K(0, "bpf_dynptr_from_skb", (KfuncArg("s", KfuncArgKind.CTX), _int("flags"),
                                  KfuncArg("ptr__uninit", KfuncArgKind.DYNPTR, uninit=True)), _INT,
       "Make an skb dynptr over the packet (0, or -EINVAL for flags with a NULL dynptr).",
       _F.TRUSTED_ARGS, KfuncSet.SKB),
    _K(0, "bpf_dynptr_from_xdp", (KfuncArg("x", KfuncArgKind.CTX), _int("flags"),
                                  KfuncArg("ptr__uninit", KfuncArgKind.DYNPTR, uninit=True)), _INT,
       "Make an xdp dynptr over the packet (0, or -EINVAL for flags with a NULL dynptr).",
       _F.NONE, KfuncSet.XDP),
    _K(0, "bpf_dynptr_slice", _SLICE_ARGS, KfuncRetKind.MEM,
       "Read-only pointer to buffer__szk bytes at offset of a dynptr (maybe copied to the buffer), or NULL.",
       _F.RET_NULL, ret_readonly=True),
    _K(0, "bpf_dynptr_slice_rdwr", _SLICE_ARGS, KfuncRetKind.MEM,
       "Writable pointer to buffer__szk bytes at offset of a dynptr, or NULL (also for a read-only dynptr).",
       _F.RET_NULL),
    _K(0, "bpf_dynptr_adjust", (_DYNPTR, _int("start"), _int("end")), _INT,
       "Narrow the dynptr's view to [start, end) (-EINVAL, -ERANGE)."),
    _K(0, "bpf_dynptr_is_null", (_DYNPTR,), _INT, "Whether the dynptr is NULL."),
    _K(0, "bpf_dynptr_is_rdonly", (_DYNPTR,), _INT, "Whether the dynptr is read-only."),
    _K(0, "bpf_dynptr_size", (_DYNPTR,), _INT, "The size of the dynptr's view (-EINVAL when NULL)."),
    _K(0, "bpf_dynptr_clone", (_DYNPTR, KfuncArg("clone__uninit", KfuncArgKind.DYNPTR, uninit=True)), _INT,
       "Copy the dynptr (a ring buffer clone shares the reference); -EINVAL and a NULL clone when NULL."),
    # --- arenas (kernel/bpf/arena.c, common set; sleepable in 6.18): pages of a BPF_MAP_TYPE_ARENA
    # map; addresses are user-space (address space 1) pointers, 'void __arena *' in C ---
    _K(0, "bpf_arena_alloc_pages",
       (_ARENA_MAP, _str("addr__ign"), _int("page_cnt"), _int("node_id"), _int("flags")), _INT,
       "Allocate page_cnt zeroed pages (at addr when non-NULL); their user address, or NULL.",
       _ARENA_FLAGS | _F.ARENA_RET),
    _K(0, "bpf_arena_free_pages", (_ARENA_MAP, _str("ptr__ign"), _int("page_cnt")), _VOID,
       "Free page_cnt pages from ptr (user space then faults on them, programs read 0).", _ARENA_FLAGS),
    _K(0, "bpf_arena_reserve_pages", (_ARENA_MAP, _str("ptr__ign"), _int("page_cnt")), _INT,
       "Keep page_cnt free pages at ptr from being allocated: 0, -EINVAL, or -EBUSY if one is in use.",
       _ARENA_FLAGS),
    # --- strings (Linux 6.17+, common set): kernel/bpf/helpers.c; -ERANGE for a user address,
    # -EFAULT on a fault, -E2BIG past XATTR_SIZE_MAX bytes, -ENOENT when not found ---
    _K(0, "bpf_strcmp", (_str("s1__ign"), _str("s2__ign")), _INT, "strcmp: -1, 0 or 1."),
    _K(0, "bpf_strcasecmp", (_str("s1__ign"), _str("s2__ign")), _INT, "strcasecmp: -1, 0 or 1."),
    _K(0, "bpf_strchr", (_str("s__ign"), _int("c")), _INT, "Index of the first c, or -ENOENT."),
    _K(0, "bpf_strchrnul", (_str("s__ign"), _int("c")), _INT, "Index of the first c or of the NUL."),
    _K(0, "bpf_strnchr", (_str("s__ign"), _int("count"), _int("c")), _INT,
       "Index of the first c among the first count bytes, or -ENOENT."),
    _K(0, "bpf_strrchr", (_str("s__ign"), _int("c")), _INT, "Index of the last c, or -ENOENT."),
    _K(0, "bpf_strlen", (_str("s__ign"),), _INT, "Length of the string."),
    _K(0, "bpf_strnlen", (_str("s__ign"), _int("count")), _INT, "Length of the string, at most count."),
    _K(0, "bpf_strspn", (_str("s__ign"), _str("accept__ign")), _INT,
       "Length of the prefix made of bytes in accept."),
    _K(0, "bpf_strcspn", (_str("s__ign"), _str("reject__ign")), _INT,
       "Length of the prefix made of bytes not in reject."),
    _K(0, "bpf_strstr", (_str("s1__ign"), _str("s2__ign")), _INT,
       "Index of the first occurrence of s2 in s1, or -ENOENT."),
    _K(0, "bpf_strnstr", (_str("s1__ign"), _str("s2__ign"), _int("len")), _INT,
       "Index of the first occurrence of s2 in the first len bytes of s1, or -ENOENT."),
)

KFUNC_PROTOS: Mapping[int, KfuncProto] = MappingProxyType(
    {index: replace(proto, id=index) for index, proto in enumerate(_PROTOS, start=1)}
)
"""Every kfunc pybpf knows, by its pybpf id."""

KFUNC_BY_NAME: Mapping[str, KfuncProto] = MappingProxyType({proto.name: proto for proto in KFUNC_PROTOS.values()})
"""The same table by kernel symbol name."""

FIRST_MEMBER_STRUCTS: Mapping[str, str] = MappingProxyType({"bpf_cpumask": "cpumask"})
"""Kernel structs whose first member is another struct, by name: a pointer to the outer one is
also one to the inner (``btf_struct_ids_match``'s walk), e.g. a ``struct bpf_cpumask *`` passed
where a kfunc takes a ``const struct cpumask *``."""


def kfunc_by_name(name: str) -> KfuncProto | None:
    """The entry for kernel symbol ``name``, or None when pybpf does not know it."""
    return KFUNC_BY_NAME.get(name)
