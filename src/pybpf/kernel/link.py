"""Attachments through BPF links: ``Link``, XDP and tcx attachment (BPF_LINK_CREATE).

A link holds its program on its hook for as long as the link's descriptor (or a pin of it) lives;
``detach()`` takes the program off at once, ``close()`` (or leaving a ``with`` block) releases
the link. This attaches to the live system: pybpf's tests only ever do it on veth pairs inside a
network namespace they created.
"""

from __future__ import annotations

import os
import socket
from enum import IntEnum, IntFlag
from types import TracebackType

from pybpf.errors import InvalidArgumentError
from pybpf.kernel.fd import Fd, FdLike
from pybpf.kernel.objects import link_create, link_detach
from pybpf.kernel.pin import pin
from pybpf.kernel.syscall import RawSyscall
from pybpf.kernel.uapi import BpfAttachType


class XdpFlags(IntFlag):
    """``XDP_FLAGS_*`` (include/uapi/linux/if_link.h): how an XDP program attaches."""

    UPDATE_IF_NOEXIST = 1 << 0
    SKB_MODE = 1 << 1  # generic XDP, in the stack: works on every interface
    DRV_MODE = 1 << 2  # native XDP, in the driver
    HW_MODE = 1 << 3


class TcxAttachType(IntEnum):
    """``BPF_TCX_INGRESS``/``BPF_TCX_EGRESS`` (Linux 6.6), newer than the generated uapi tables."""

    TCX_INGRESS = 46
    TCX_EGRESS = 47


_TCX_DIRECTIONS = {"ingress": TcxAttachType.TCX_INGRESS, "egress": TcxAttachType.TCX_EGRESS}

_XDP_MODES = {"generic": XdpFlags.SKB_MODE, "driver": XdpFlags.DRV_MODE, None: XdpFlags(0)}


class Link:
    """A BPF link, owned through its :class:`Fd`.

    ``owned`` are further descriptors the attachment holds and releases with the link (the perf
    event a kprobe, uprobe or tracepoint link runs on).
    """

    def __init__(
        self,
        fd: Fd,
        *,
        description: str = "",
        syscall: RawSyscall | None = None,
        owned: tuple[Fd, ...] = (),
    ) -> None:
        self.fd = fd
        self.description = description
        self._syscall = syscall
        self.owned = owned

    def __repr__(self) -> str:
        return f"Link({self.description!r}, fd={self.fd!r})"

    def detach(self) -> None:
        """BPF_LINK_DETACH: the program leaves its hook now (the link stays open, defunct)."""
        link_detach(self.fd, syscall=self._syscall)

    def pin(self, path: str | os.PathLike[str]) -> None:
        """Pin the link on a bpffs so that it outlives this process."""
        pin(self.fd, path, syscall=self._syscall)

    def close(self) -> None:
        """Release the link (an unpinned link detaches when its last descriptor closes)."""
        self.fd.close()
        for fd in self.owned:
            fd.close()

    def __enter__(self) -> Link:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def interface_index(interface: str | int) -> int:
    """The ifindex of ``interface`` (a name, or an index given as is) in this network namespace."""
    if isinstance(interface, int):
        return interface
    try:
        return socket.if_nametoindex(interface)
    except OSError as error:
        raise InvalidArgumentError(f"no network interface {interface!r} here: {error}", error.errno or 0) from error


def attach_xdp(
    prog_fd: FdLike,
    interface: str | int,
    *,
    mode: str | None = "generic",
    syscall: RawSyscall | None = None,
) -> Link:
    """Attach an XDP program to ``interface`` through a link; ``mode`` is generic, driver or None
    (let the kernel choose)."""
    if mode not in _XDP_MODES:
        raise InvalidArgumentError(f"XDP mode must be 'generic', 'driver' or None, not {mode!r}", 22)
    ifindex = interface_index(interface)
    fd = link_create(prog_fd, ifindex, BpfAttachType.XDP, flags=int(_XDP_MODES[mode]), syscall=syscall)
    return Link(fd, description=f"xdp on ifindex {ifindex} ({mode or 'any'} mode)", syscall=syscall)


def attach_tcx(
    prog_fd: FdLike,
    interface: str | int,
    *,
    direction: str = "ingress",
    syscall: RawSyscall | None = None,
) -> Link:
    """Attach a tc (SCHED_CLS) program to ``interface``'s ingress or egress through a tcx link
    (appended after the programs already there)."""
    attach_type = _TCX_DIRECTIONS.get(direction)
    if attach_type is None:
        raise InvalidArgumentError(f"tcx direction must be 'ingress' or 'egress', not {direction!r}", 22)
    ifindex = interface_index(interface)
    fd = link_create(prog_fd, ifindex, attach_type, syscall=syscall)
    return Link(fd, description=f"tcx {direction} on ifindex {ifindex}", syscall=syscall)
