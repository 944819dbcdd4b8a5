"""The uapi numbers the syscall layer puts on the wire.

The enums come from :mod:`pybpf.platform.uapi_generated` (generated from bpf.h; platform is a
lower layer), re-exported here so kernel callers have one import. Members drop the uapi
prefix: ``BpfProgType.SOCKET_FILTER`` is ``BPF_PROG_TYPE_SOCKET_FILTER``. Values the running
kernel reports but the generated tables lack (newer types) stay plain ints in info records.

Only what platform does not carry is defined here.
"""

from __future__ import annotations

from enum import IntEnum, IntFlag

from pybpf.platform.uapi_generated import (
    BpfAttachType,
    BpfCmd,
    BpfLinkType,
    BpfMapFlag,
    BpfMapType,
    BpfProgLoadFlag,
    BpfProgType,
    BpfUpdateFlag,
)

__all__ = [
    "BPF_OBJ_NAME_LEN",
    "BPF_TAG_SIZE",
    "BpfAttachType",
    "BpfCmd",
    "BpfLinkType",
    "BpfLogLevel",
    "BpfMapFlag",
    "BpfMapType",
    "BpfProgLoadFlag",
    "BpfProgType",
    "BpfStatsType",
    "BpfTestRunFlag",
    "BpfUpdateFlag",
]

BPF_OBJ_NAME_LEN = 16
"""Bytes in a map or program name, including the terminating NUL."""

BPF_TAG_SIZE = 8
"""Bytes in a program tag (a truncated SHA-1 of the instructions)."""


class BpfTestRunFlag(IntFlag):
    """``flags`` of BPF_PROG_TEST_RUN (``BPF_F_TEST_*``)."""

    RUN_ON_CPU = 1 << 0
    XDP_LIVE_FRAMES = 1 << 1


class BpfLogLevel(IntFlag):
    """``log_level`` of BPF_PROG_LOAD and ``btf_log_level`` of BPF_BTF_LOAD."""

    NONE = 0
    LEVEL1 = 1
    LEVEL2 = 2
    STATS = 4


class BpfStatsType(IntEnum):
    """``enum bpf_stats_type`` (BPF_ENABLE_STATS)."""

    RUN_TIME = 0
