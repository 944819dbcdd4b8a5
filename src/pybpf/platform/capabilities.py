"""The capabilities ``bpf(2)`` checks before it creates a map or loads a program.

``bpf_prog_load`` and ``map_create`` (kernel/bpf/syscall.c, 6.18) refuse with ``EPERM``, before
any verification, a loader that lacks what the program type or map type needs: only socket
filters and cgroup skb programs, and only plain arrays, hashes, ring buffers and cgroup storage,
are open to a loader without capabilities (and then only when the
``kernel.unprivileged_bpf_disabled`` sysctl allows unprivileged ``bpf()`` at all). The tables
that say which type needs what live with the types: :mod:`pybpf.platform.progtypes` and
:mod:`pybpf.platform.maptypes`.
"""

from __future__ import annotations

from enum import Enum


class Capability(Enum):
    """A Linux capability ``bpf(2)`` checks (``bpf_token_capable``), by its ``capabilities(7)`` name."""

    BPF = "CAP_BPF"
    NET_ADMIN = "CAP_NET_ADMIN"
    PERFMON = "CAP_PERFMON"


def describe(capabilities: tuple[Capability, ...]) -> str:
    """``CAP_BPF and CAP_NET_ADMIN``: the names joined as a message says them."""
    names = [capability.value for capability in capabilities]
    return " and ".join([", ".join(names[:-1]), names[-1]] if len(names) > 2 else names)
