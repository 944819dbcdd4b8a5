"""A loaded object in the kernel: ``KernelProgram`` and ``KernelObject``.

They answer to the same calls as the runtime's ``Program`` and ``Object`` (``program(name)``,
``maps``, ``map_entries``, ``test_run`` returning :class:`~pybpf.platform.test_run.TestRunResult`,
context-manager use) and add what only the kernel has: pinning, object info, the verifier log.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator, Mapping
from types import TracebackType
from typing import Any

from pybpf.btf import Btf
from pybpf.errors import (
    ArgumentTooBigError,
    InvalidArgumentError,
    LoadError,
    NoSpaceError,
    NotSupportedError,
    TestRunError,
)
from pybpf.kernel.fd import Fd
from pybpf.kernel.link import Link, attach_tcx, attach_xdp
from pybpf.kernel.map_api import KernelMap, MapEntry
from pybpf.kernel.objects import ProgInfo, prog_info
from pybpf.kernel.perf_event import PerfEventSystem
from pybpf.kernel.pin import pin
from pybpf.kernel.progs import prog_test_run
from pybpf.kernel.section_attach import attach_section
from pybpf.kernel.syscall import RawSyscall
from pybpf.kernel.trace_attach import (
    attach_cgroup,
    attach_kprobe,
    attach_raw_tracepoint,
    attach_tracepoint,
    attach_uprobe,
)
from pybpf.kernel.uapi import BpfAttachType, BpfProgType, BpfTestRunFlag
from pybpf.obj import ObjectSpec, ProgramSpec
from pybpf.platform.test_run import TestRunResult

U32 = 0xFFFF_FFFF


class KernelProgram:
    """A program loaded by BPF_PROG_LOAD, owned through its :class:`Fd`.

    ``perf`` replaces perf_event_open, its ioctls and the sysfs/tracefs roots for the probe and
    tracepoint attachments (tests pass fakes; None is the real system).
    """

    def __init__(
        self,
        spec: ProgramSpec | None,
        fd: Fd,
        *,
        prog_type: BpfProgType | int,
        kernel_name: str,
        log: str = "",
        syscall: RawSyscall | None = None,
        perf: PerfEventSystem | None = None,
    ) -> None:
        self.spec = spec  # None for a program opened from a pin
        self.name = spec.name if spec is not None else kernel_name
        self.kernel_name = kernel_name
        self.prog_type = prog_type
        self.fd = fd
        self.log = log
        self._syscall = syscall
        self._perf = perf

    def __repr__(self) -> str:
        type_name = self.prog_type.name if isinstance(self.prog_type, BpfProgType) else str(self.prog_type)
        return f"KernelProgram({self.name!r}, {type_name}, fd={self.fd!r})"

    @property
    def id(self) -> int:
        """The kernel's program id."""
        return self.info().id

    def fileno(self) -> int:
        return self.fd.fileno()

    def test_run(
        self,
        data_in: bytes = b"",
        ctx_in: bytes | None = None,
        repeat: int = 1,
        *,
        cpu: int | None = None,
        instruction_limit: int | None = None,
    ) -> TestRunResult:
        """BPF_PROG_TEST_RUN on ``data_in``/``ctx_in``, ``repeat`` times.

        ``instruction_limit`` exists for signature parity with the runtime; the kernel has no
        such knob, so only None is accepted. ``ctx_out`` is None when no ``ctx_in`` was given
        (the kernel copies no context back then, where the runtime reports its own); ``r0`` is the
        u32 retval, ``instructions`` 0. Input the kernel refuses (EINVAL, ENOSPC, E2BIG) raises
        TestRunError, as the runtime does.
        """
        if instruction_limit is not None:
            raise TestRunError("the kernel backend cannot limit the instructions of a test run")
        if repeat < 0:
            raise TestRunError(f"repeat must not be negative, got {repeat}")
        flags, on_cpu = 0, 0
        if cpu is not None:
            flags, on_cpu = int(BpfTestRunFlag.RUN_ON_CPU), cpu
        try:
            result = prog_test_run(
                self.fd, bytes(data_in), ctx_in=ctx_in, repeat=repeat, flags=flags, cpu=on_cpu, syscall=self._syscall
            )
        except (InvalidArgumentError, NoSpaceError, ArgumentTooBigError) as error:
            # Input the kernel refuses to run on: the runtime's TestRunError, the errno in __cause__.
            raise TestRunError(f"{self.name}: {error}") from error
        ctx_out = result.ctx_out if ctx_in is not None else None
        retval = result.retval & U32
        return TestRunResult(retval, result.data_out, ctx_out, float(result.duration_ns), retval, 0)

    def pin(self, path: str | os.PathLike[str]) -> None:
        """BPF_OBJ_PIN at ``path`` (which must be on a bpffs)."""
        pin(self.fd, path, syscall=self._syscall)

    def attach_xdp(self, interface: str | int, *, mode: str | None = "generic") -> Link:
        """Attach this XDP program to ``interface`` through a link (see :func:`attach_xdp`)."""
        return attach_xdp(self.fd, interface, mode=mode, syscall=self._syscall)

    def attach_tc(self, interface: str | int, *, direction: str = "ingress") -> Link:
        """Attach this tc program to ``interface`` through a tcx link (see :func:`attach_tcx`)."""
        return attach_tcx(self.fd, interface, direction=direction, syscall=self._syscall)

    def attach_kprobe(self, function: str, retprobe: bool = False, *, offset: int = 0) -> Link:
        """Attach this KPROBE program to kernel function ``function`` (its return if ``retprobe``)."""
        return attach_kprobe(
            self.fd, function, offset=offset, retprobe=retprobe, syscall=self._syscall, system=self._perf
        )

    def attach_uprobe(
        self,
        binary: str | os.PathLike[str],
        offset: int | str,
        retprobe: bool = False,
        *,
        pid: int | None = None,
    ) -> Link:
        """Attach to ``binary`` at file offset ``offset``, or at the function symbol it names."""
        return attach_uprobe(
            self.fd, binary, offset, retprobe=retprobe, pid=pid, syscall=self._syscall, system=self._perf
        )

    def attach_tracepoint(self, category: str, name: str) -> Link:
        """Attach this TRACEPOINT program to tracepoint ``category:name``."""
        return attach_tracepoint(self.fd, category, name, syscall=self._syscall, system=self._perf)

    def attach_raw_tracepoint(self, name: str) -> Link:
        """Attach this RAW_TRACEPOINT program to raw tracepoint ``name``."""
        return attach_raw_tracepoint(self.fd, name, syscall=self._syscall)

    def attach_cgroup(self, path: str | os.PathLike[str], attach_type: BpfAttachType | int | None = None) -> Link:
        """Attach this cgroup program to the cgroup v2 directory ``path``; the attach type comes
        from the program's section unless given."""
        if attach_type is None:
            attach_type = self.spec.attach_type if self.spec is not None else None
        if attach_type is None:
            raise InvalidArgumentError(
                f"{self.name}: no cgroup attach type in its section; pass attach_type", errno.EINVAL
            )
        return attach_cgroup(self.fd, path, attach_type, syscall=self._syscall)

    def attach(self, target: str | int | os.PathLike[str] | None = None) -> Link:
        """Attach where the program's section says (``kprobe/do_unlinkat``, ``tp/sched/sched_switch``,
        ``uprobe//bin/bash:readline``...). ``target`` replaces the section's target, and names the
        cgroup directory or the interface for cgroup, XDP and tc programs."""
        if self.spec is None:
            raise NotSupportedError(f"{self.name}: opened from a pin, it has no section to attach by")
        return attach_section(self.fd, self.spec, target, syscall=self._syscall, system=self._perf)

    def info(self) -> ProgInfo:
        """BPF_OBJ_GET_INFO_BY_FD: xlated/jited sizes, verified_insns, run counts..."""
        return prog_info(self.fd, syscall=self._syscall)

    def close(self) -> None:
        self.fd.close()


class KernelTracePipe:
    """The runtime's ``Object.trace_pipe`` for kernel objects: always empty.

    bpf_trace_printk in the kernel writes to the system-wide trace pipe, shared with every other
    program on the machine; pybpf does not read or drain it.
    """

    def drain(self) -> list[Any]:
        return []


class KernelObject:
    """What ``pybpf.load(..., backend="kernel")`` returns: programs and maps living in the kernel.

    ``btf_fd`` is the object's BTF as loaded (None when the object has none, or the kernel refused
    it and the object was loaded without, as libbpf does).
    """

    def __init__(
        self,
        spec: ObjectSpec,
        programs: Mapping[str, KernelProgram],
        maps: Mapping[str, KernelMap],
        *,
        btf_fd: Fd | None,
    ) -> None:
        self.spec = spec
        self.name = spec.name
        self.programs = dict(programs)
        self.maps = dict(maps)
        self.btf: Btf | None = spec.btf
        self.license = spec.license
        self.btf_fd = btf_fd
        self.trace_pipe = KernelTracePipe()

    def __repr__(self) -> str:
        return f"KernelObject({self.name!r}, programs={sorted(self.programs)}, maps={sorted(self.maps)})"

    def program(self, name: str) -> KernelProgram:
        try:
            return self.programs[name]
        except KeyError:
            known = ", ".join(sorted(self.programs)) or "none"
            raise LoadError(f"no program named {name!r} (programs: {known})", file=self.spec.elf.file) from None

    def map(self, name: str) -> KernelMap:
        found = self.maps.get(name)
        if found is None:
            known = ", ".join(sorted(self.maps)) or "none"
            raise LoadError(f"no map named {name!r} (maps: {known})", file=self.spec.elf.file)
        return found

    def map_entries(self, name: str) -> Iterator[MapEntry]:
        """Every element of map ``name`` as user space sees it (per-CPU values split per CPU)."""
        return self.map(name).entries()

    def close(self) -> None:
        """Close every descriptor; the kernel frees what no pin or attachment still holds."""
        for program in self.programs.values():
            program.close()
        for found in self.maps.values():
            found.close()
        if self.btf_fd is not None:
            self.btf_fd.close()

    def __enter__(self) -> KernelObject:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
