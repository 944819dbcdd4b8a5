"""Locks and attachment facts: spin_lock/unlock, get_func_ip, get_attach_cookie, override_return."""

# Every helper takes (env, r1..r5): the helper ABI fixes six positional parameters.
# ruff: noqa: PLR0917

from __future__ import annotations

from pybpf.errors import HelperError
from pybpf.platform.uapi_generated import HelperId
from pybpf.runtime.helpers._common import U64
from pybpf.runtime.helpers.services import run_state
from pybpf.vm.execution import ExecutionContext, HelperFn


def spin_lock(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    """Take the bpf_spin_lock at r1 (the lock word reads 1 while held, as the kernel's does)."""
    state = run_state(env)
    if state.held_locks:
        raise HelperError("bpf_spin_lock while another lock is held (the verifier forbids it)", env.helper_pc)
    state.services.locks.acquire(r1)
    env.memory.store(r1, 4, 1, env.helper_pc)
    state.held_locks.append(r1)
    return 0


def spin_unlock(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    state = run_state(env)
    if r1 not in state.held_locks:
        raise HelperError(f"bpf_spin_unlock of {r1:#x}, which this run does not hold", env.helper_pc)
    env.memory.store(r1, 4, 0, env.helper_pc)
    state.held_locks.remove(r1)
    state.services.locks.release(r1)
    return 0


def get_func_ip(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    return run_state(env).func_ip & U64


def get_attach_cookie(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    return run_state(env).attach_cookie & U64


def override_return(env: ExecutionContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    """Record rc as the probed function's return value (the run's ``override_return``); 0."""
    run_state(env).override_return = r2 & U64
    return 0


MISC_HELPERS: dict[HelperId, HelperFn] = {
    HelperId.SPIN_LOCK: spin_lock,
    HelperId.SPIN_UNLOCK: spin_unlock,
    HelperId.GET_FUNC_IP: get_func_ip,
    HelperId.GET_ATTACH_COOKIE: get_attach_cookie,
    HelperId.OVERRIDE_RETURN: override_return,
}
