"""The object and graph kfuncs (kernel/bpf/helpers.c) for user-space runs: :func:`object_kfuncs`.

``bpf_obj_new_impl`` receives the program's BTF type id (libbpf's ``bpf_core_type_id_local``;
the kernel's verifier rewrites it into the size, which user space does not), so the functions
are bound per program to its BTF. Objects, lists and trees live in the runtime's
:class:`~pybpf.runtime.objects.ObjectHeap` (``RuntimeServices.heap``). ``bpf_rbtree_add``
calls the program's ``less`` through :meth:`~pybpf.vm.execution.ExecutionContext.call_function`
(a bpf-to-bpf frame on the interpreter, whichever engine runs the program).
"""

# Every kfunc takes (env, r1..r5): the helper ABI fixes six positional parameters.
# ruff: noqa: PLR0917

from __future__ import annotations

from pybpf.btf.btf import Btf
from pybpf.btf.types import Struct
from pybpf.errors import HelperError
from pybpf.platform.kfuncs import KFUNC_BY_NAME
from pybpf.platform.uapi_generated import BpfProgType
from pybpf.runtime.helpers._common import EINVAL, U64
from pybpf.runtime.helpers.services import run_state
from pybpf.runtime.objects import ObjectHeap
from pybpf.vm.execution import ExecutionContext, HelperFn, kfunc_key


def _heap(env: ExecutionContext) -> ObjectHeap:
    return run_state(env).services.heap


def obj_drop(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    """bpf_obj_drop_impl(p__alloc, meta__ign)."""
    _heap(env).drop(r1)
    return 0


def refcount_acquire(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    """bpf_refcount_acquire_impl(p__refcounted_kptr, meta__ign)."""
    return _heap(env).acquire(r1)


def list_push_front(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    """bpf_list_push_front_impl(head, node, meta__ign, off)."""
    return 0 if _heap(env).push(r1, r2, front=True) else EINVAL


def list_push_back(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    """bpf_list_push_back_impl(head, node, meta__ign, off)."""
    return 0 if _heap(env).push(r1, r2, front=False) else EINVAL


def list_pop_front(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    return _heap(env).pop(r1, front=True)


def list_pop_back(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    return _heap(env).pop(r1, front=False)


def list_front(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    return _heap(env).peek(r1, front=True)


def list_back(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    return _heap(env).peek(r1, front=False)


def rbtree_add(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    """bpf_rbtree_add_impl(root, node, less, meta__ign, off): less(new, existing) true goes left."""
    def less(a: int, b: int) -> bool:
        return bool(env.call_function(r3, a, b) & U64)

    return 0 if _heap(env).add(r1, r2, less) else EINVAL


def rbtree_remove(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    """bpf_rbtree_remove(root, node): the node, or NULL when this tree does not hold it."""
    return _heap(env).remove(r1, r2)


def rbtree_first(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    heap = _heap(env)
    return heap.tree(r1).first()


def rbtree_root(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    root = _heap(env).tree(r1).root
    return root.address if root is not None else 0


def _child(env: ExecutionContext, root: int, node: int, left: bool) -> int:
    heap = _heap(env)
    if heap.owner(node) != root:
        return 0
    return heap.tree(root).child(node, left)


def rbtree_left(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    return _child(env, r1, r2, True)


def rbtree_right(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    return _child(env, r1, r2, False)


_FIXED: dict[str, HelperFn] = {
    "bpf_obj_drop_impl": obj_drop,
    "bpf_refcount_acquire_impl": refcount_acquire,
    "bpf_list_push_front_impl": list_push_front,
    "bpf_list_push_back_impl": list_push_back,
    "bpf_list_pop_front": list_pop_front,
    "bpf_list_pop_back": list_pop_back,
    "bpf_list_front": list_front,
    "bpf_list_back": list_back,
    "bpf_rbtree_add_impl": rbtree_add,
    "bpf_rbtree_remove": rbtree_remove,
    "bpf_rbtree_first": rbtree_first,
    "bpf_rbtree_root": rbtree_root,
    "bpf_rbtree_left": rbtree_left,
    "bpf_rbtree_right": rbtree_right,
}


def _obj_new(btf: Btf | None) -> HelperFn:
    """bpf_obj_new_impl(local_type_id__k, meta__ign) for a program of this BTF."""
    def obj_new(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
        struct = btf[r1] if btf is not None and 0 < r1 < len(btf) else None
        if not isinstance(struct, Struct):
            raise HelperError(f"bpf_obj_new: type id {r1} is not a struct of the program's BTF", env.helper_pc)
        return _heap(env).allocate(struct.size, struct.name)

    return obj_new


def object_kfuncs(btf: Btf | None, prog_type: BpfProgType | int) -> dict[int, HelperFn]:
    """The object and graph kfuncs a program of ``prog_type`` whose BTF is ``btf`` may call,
    keyed for the helper table."""
    table = dict(_FIXED)
    table["bpf_obj_new_impl"] = _obj_new(btf)
    return {kfunc_key(KFUNC_BY_NAME[name].id): fn for name, fn in table.items()
            if KFUNC_BY_NAME[name].allowed_for(prog_type)}


__all__ = ["object_kfuncs"]
