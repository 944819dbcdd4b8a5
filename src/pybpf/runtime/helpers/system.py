"""Time, randomness, CPU and current-task helpers.

The JIT serves ktime_get_ns, get_smp_processor_id, get_current_pid_tgid/uid_gid/comm and
get_prandom_u32 in native code when a program calls these very functions
(:mod:`pybpf.vm.jit.natives`): the answers here and there come from the same place
(:func:`~pybpf.runtime.helpers.services.native_task_of`, the services' per-CPU generator state).
"""

# Every helper takes (env, r1..r5): the helper ABI fixes six positional parameters.
# ruff: noqa: PLR0917

from __future__ import annotations

from pybpf.platform.uapi_generated import HelperId
from pybpf.runtime.helpers._common import EINVAL, U32, U64, write
from pybpf.runtime.helpers.services import TASK_COMM_LEN, native_task_of, run_state
from pybpf.vm.execution import ExecutionContext, HelperFn


def ktime_get_ns(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    return run_state(env).services.clock.monotonic_ns() & U64


def ktime_get_boot_ns(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    return run_state(env).services.clock.boottime_ns() & U64


def ktime_get_coarse_ns(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    return run_state(env).services.clock.coarse_ns() & U64


def ktime_get_tai_ns(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    return run_state(env).services.clock.tai_ns() & U64


def jiffies64(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    return run_state(env).services.clock.jiffies64() & U64


def get_prandom_u32(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    state = run_state(env)
    return state.services.prandom_u32(state.current_cpu) & U32


def get_smp_processor_id(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    return run_state(env).current_cpu & U32


def get_numa_node_id(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    return run_state(env).services.numa_node & U32


def get_current_pid_tgid(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    return native_task_of(run_state(env).services.task).pid_tgid


def get_current_uid_gid(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    return native_task_of(run_state(env).services.task).uid_gid


def get_current_comm(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    """strscpy_pad(buf, comm, size): at most size - 1 characters, NUL, zero padding; 0."""
    size = r2 & U32
    if size == 0:
        return EINVAL  # ARG_CONST_SIZE forbids 0; never reached after verification
    comm = run_state(env).services.task.comm[: min(size - 1, TASK_COMM_LEN - 1)]
    write(env, r1, comm + bytes(size - len(comm)))
    return 0


def get_current_task(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    """An opaque address standing for current's task_struct (a zeroed read-only region)."""
    return run_state(env).services.task_struct.address


def get_current_cgroup_id(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    return run_state(env).services.task.cgroup_id & U64


SYSTEM_HELPERS: dict[HelperId, HelperFn] = {
    HelperId.KTIME_GET_NS: ktime_get_ns,
    HelperId.KTIME_GET_BOOT_NS: ktime_get_boot_ns,
    HelperId.KTIME_GET_COARSE_NS: ktime_get_coarse_ns,
    HelperId.KTIME_GET_TAI_NS: ktime_get_tai_ns,
    HelperId.JIFFIES64: jiffies64,
    HelperId.GET_PRANDOM_U32: get_prandom_u32,
    HelperId.GET_SMP_PROCESSOR_ID: get_smp_processor_id,
    HelperId.GET_NUMA_NODE_ID: get_numa_node_id,
    HelperId.GET_CURRENT_PID_TGID: get_current_pid_tgid,
    HelperId.GET_CURRENT_UID_GID: get_current_uid_gid,
    HelperId.GET_CURRENT_COMM: get_current_comm,
    HelperId.GET_CURRENT_TASK: get_current_task,
    HelperId.GET_CURRENT_TASK_BTF: get_current_task,  # the same stand-in, typed task_struct for the verifier
    HelperId.GET_CURRENT_CGROUP_ID: get_current_cgroup_id,
}
