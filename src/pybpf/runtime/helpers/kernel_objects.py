"""The kfuncs and the helper that hand out, take, release and move referenced kernel objects.

Objects are counted by the services' :class:`~pybpf.runtime.helpers.objects.KernelObjects`;
``bpf_kptr_xchg`` moves a reference between a program and a map's kptr without counting. Only
``current``'s task exists in user space (``bpf_get_current_task_btf``'s stand-in, uncounted):
``bpf_task_from_vpid`` and the cgroup lookups find nothing (NULL).

``struct bpf_cpumask`` is laid out as the kernel's begins: its ``struct cpumask`` (one bit per
possible CPU, in u64 words) at offset 0; ``nr_cpu_ids`` is the services' number of CPUs.
"""

# Every kfunc takes (env, r1..r5): the helper ABI fixes six positional parameters.
# ruff: noqa: PLR0917

from __future__ import annotations

import struct
from collections.abc import Mapping

from pybpf.platform.uapi_generated import HelperId
from pybpf.runtime.helpers._common import U32, U64, read, write
from pybpf.runtime.helpers.objects import KernelObjects
from pybpf.runtime.helpers.services import run_state
from pybpf.vm.execution import ExecutionContext, HelperFn

_WORD = struct.Struct("<Q")


def _objects(env: ExecutionContext) -> KernelObjects:
    return run_state(env).services.objects


# -- bpf_kptr_xchg -------------------------------------------------------------------------------


def kptr_xchg(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    """Store r2 in the kptr at r1 and return what it held (the reference moves: no counting).
    A run is single-threaded, so the read and the write are one atomic exchange."""
    old: int = _WORD.unpack(read(env, r1, 8))[0]
    write(env, r1, _WORD.pack(r2 & U64))
    return old


# -- tasks and cgroups: only current's task exists in user space ---------------------------------


def task_acquire(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    return _objects(env).acquire(r1)


def release(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    _objects(env).release(r1)
    return 0


def no_object(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    return 0  # NULL: user space has no such kernel object to hand out


# -- cpumasks ------------------------------------------------------------------------------------


def _mask_words(env: ExecutionContext) -> int:
    return (run_state(env).services.cpus + 63) // 64


def _mask(env: ExecutionContext, address: int) -> int:
    return int.from_bytes(read(env, address, _mask_words(env) * 8), "little")


def _set_mask(env: ExecutionContext, address: int, bits: int) -> None:
    write(env, address, bits.to_bytes(_mask_words(env) * 8, "little"))


def cpumask_create(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    return _objects(env).create("bpf_cpumask", _mask_words(env) * 8 + 8)  # the mask, then refcount_t usage


def cpumask_acquire(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    return _objects(env).acquire(r1)


def cpumask_set_cpu(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    cpu = r1 & U32
    if cpu < run_state(env).services.cpus:
        _set_mask(env, r2, _mask(env, r2) | 1 << cpu)
    return 0


def cpumask_clear_cpu(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    cpu = r1 & U32
    if cpu < run_state(env).services.cpus:
        _set_mask(env, r2, _mask(env, r2) & ~(1 << cpu))
    return 0


def cpumask_test_cpu(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    cpu = r1 & U32
    return int(cpu < run_state(env).services.cpus and bool(_mask(env, r2) >> cpu & 1))


def cpumask_first(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    bits = _mask(env, r1)
    return (bits & -bits).bit_length() - 1 if bits else run_state(env).services.cpus


def cpumask_weight(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    return _mask(env, r1).bit_count()


OBJECT_KFUNC_IMPLS: Mapping[str, HelperFn] = {
    "bpf_task_acquire": task_acquire,
    "bpf_task_release": release,
    "bpf_task_from_vpid": no_object,
    "bpf_cgroup_acquire": task_acquire,
    "bpf_cgroup_release": release,
    "bpf_cgroup_ancestor": no_object,
    "bpf_cgroup_from_id": no_object,
    "bpf_cpumask_create": cpumask_create,
    "bpf_cpumask_release": release,
    "bpf_cpumask_acquire": cpumask_acquire,
    "bpf_cpumask_set_cpu": cpumask_set_cpu,
    "bpf_cpumask_clear_cpu": cpumask_clear_cpu,
    "bpf_cpumask_test_cpu": cpumask_test_cpu,
    "bpf_cpumask_first": cpumask_first,
    "bpf_cpumask_weight": cpumask_weight,
}
"""The kfuncs that hand out, take or release referenced kernel objects, by kernel name."""

KPTR_HELPERS: Mapping[HelperId, HelperFn] = {HelperId.KPTR_XCHG: kptr_xchg}

__all__ = ["KPTR_HELPERS", "OBJECT_KFUNC_IMPLS", "kptr_xchg"]
