"""The kernel structs a map value's kptr may point to, as Linux 6.18 registers them.

A ``struct T __kptr *`` field of a map value names its pointee by struct name. The kernel looks
the name up in vmlinux (``bpf_find_btf_id``): found, the kptr holds a kernel object; not found,
a program-allocated object of the program's own type (``bpf_obj_new``). A *referenced* kptr of a
kernel type also needs the destructor the kernel registered for it
(``register_btf_id_dtor_kfuncs``), which the map calls on the object it still holds when an
element is deleted or overwritten or the map is freed: without one the map cannot be created.
Loading a referenced kernel kptr inside an RCU read-side section gives an RCU-protected pointer
only for the types in the kernel's ``rcu_protected_types``.

pybpf has no vmlinux BTF at verification time, so this table is its list of the kernel types
such fields name: the ones with destructors, plus the other structs pybpf models
(:data:`~pybpf.platform.kernel_types.KERNEL_STRUCTS`), which an unreferenced kptr may name. A
struct name in neither is taken as a program-local type.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from pybpf.platform.kernel_types import KERNEL_STRUCTS


@dataclass(frozen=True, slots=True)
class KptrKernelType:
    """A kernel struct a kptr may hold: its destructor kfunc (``""``: none, so only an
    unreferenced kptr may name it) and whether it is RCU-protected (``rcu_protected_object``)."""

    name: str
    dtor: str = ""
    rcu_protected: bool = False


_TYPES = (
    # kernel/bpf/helpers.c generic_dtor_ids, kernel/bpf/cpumask.c, kernel/bpf/crypto.c
    KptrKernelType("task_struct", "bpf_task_release_dtor", rcu_protected=True),
    KptrKernelType("cgroup", "bpf_cgroup_release_dtor", rcu_protected=True),
    KptrKernelType("bpf_cpumask", "bpf_cpumask_release_dtor", rcu_protected=True),
    KptrKernelType("bpf_crypto_ctx", "bpf_crypto_ctx_release_dtor", rcu_protected=True),
    # Kernel structs without a destructor that programs commonly point to.
    KptrKernelType("sock"),
    KptrKernelType("file"),
    KptrKernelType("cpumask"),
)

KPTR_KERNEL_TYPES: Mapping[str, KptrKernelType] = MappingProxyType(
    {**{name: KptrKernelType(name) for name in KERNEL_STRUCTS}, **{kind.name: kind for kind in _TYPES}}
)
"""The kernel structs pybpf knows a kptr may name, by struct name."""


def kptr_kernel_type(name: str) -> KptrKernelType | None:
    """The kernel struct ``name`` as a kptr target; None: a program-local type."""
    return KPTR_KERNEL_TYPES.get(name)


__all__ = ["KPTR_KERNEL_TYPES", "KptrKernelType", "kptr_kernel_type"]
