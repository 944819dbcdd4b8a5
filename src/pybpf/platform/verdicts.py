"""Names for program return values, by program type (XDP_PASS, TC_ACT_SHOT...).

For people reading test runs: a socket filter's return value is a length and a tracing
program's is usually ignored, so only the types whose return value is a verdict get names.
"""

from __future__ import annotations

from enum import IntEnum

from pybpf.platform.uapi_generated import BpfProgType, TcAct, XdpAction

_VERDICTS: dict[BpfProgType, tuple[type[IntEnum], str]] = {
    BpfProgType.XDP: (XdpAction, "XDP_"),
    BpfProgType.SCHED_CLS: (TcAct, "TC_ACT_"),
    BpfProgType.SCHED_ACT: (TcAct, "TC_ACT_"),
}


def verdict_name(prog_type: BpfProgType | int, retval: int) -> str | None:
    """``"XDP_DROP"`` for (XDP, 1); None when the type has no verdicts or the value is not one."""
    try:
        enum, prefix = _VERDICTS[BpfProgType(prog_type)]
    except (KeyError, ValueError):
        return None
    signed = retval - (1 << 32) if retval >= 1 << 31 else retval  # retval is a u32; TC_ACT_UNSPEC is -1
    try:
        return prefix + enum(signed).name
    except ValueError:
        return None
