"""Section-driven attachment: what ``KernelProgram.attach()`` does with ``SEC("...")``.

The section name says where a program goes, the way libbpf's auto-attach reads it:

- ``kprobe/<function>[+<offset>]``, ``kretprobe/<function>``;
  ``ksyscall/<name>``, ``kretsyscall/<name>`` (the arch's syscall wrapper function);
- ``uprobe/<binary>:<symbol>[+<offset>]`` or ``uprobe/<binary>:<offset>``, the same for
  ``uretprobe`` and the sleepable ``.s`` forms (the binary path may itself contain ``/``);
- ``tracepoint/<category>/<name>`` and ``tp/<category>/<name>``;
- ``raw_tracepoint/<name>``, ``raw_tp/<name>`` (and the writable ``.w`` forms);
- cgroup sections (``cgroup_skb/ingress``, ``cgroup/connect4``...): the section gives the attach
  type, the caller gives the cgroup directory;
- ``xdp`` and ``tc``/``tcx`` sections: the caller gives the interface.

``target`` given to :func:`attach_section` replaces the section's own target for probes and
tracepoints. Anything else (fentry/fexit, lsm, iterators, kprobe.multi, usdt...) raises
NotSupportedError naming the section.
"""

from __future__ import annotations

import errno as errno_codes
import os
import re

from pybpf.errors import InvalidArgumentError, NotSupportedError
from pybpf.kernel.fd import FdLike
from pybpf.kernel.link import Link, attach_tcx, attach_xdp
from pybpf.kernel.perf_event import PerfEventSystem
from pybpf.kernel.syscall import RawSyscall
from pybpf.kernel.trace_attach import (
    attach_cgroup,
    attach_kprobe,
    attach_raw_tracepoint,
    attach_tracepoint,
    attach_uprobe,
    syscall_function_name,
)
from pybpf.kernel.uapi import BpfProgType
from pybpf.kernel.uprobe_symbols import symbol_file_offset
from pybpf.obj import ProgramSpec

__all__ = ["attach_section", "parse_kprobe_target", "parse_tracepoint_target", "parse_uprobe_target"]

_NUMBER = r"(?:0[xX][0-9a-fA-F]+|[0-9]+)"
_KPROBE_TARGET = re.compile(rf"^(?P<function>[^\s+]+)(?:\+(?P<offset>{_NUMBER}))?$")
_UPROBE_LOCATION = re.compile(rf"^(?:(?P<offset>{_NUMBER})|(?P<symbol>[^\s+]+)(?:\+(?P<extra>{_NUMBER}))?)$")

_CGROUP_TYPES = frozenset(
    {
        BpfProgType.CGROUP_SKB,
        BpfProgType.CGROUP_SOCK,
        BpfProgType.CGROUP_SOCK_ADDR,
        BpfProgType.CGROUP_SOCKOPT,
        BpfProgType.CGROUP_SYSCTL,
        BpfProgType.CGROUP_DEVICE,
        BpfProgType.SOCK_OPS,
    }
)


def _invalid(section_kind: str, text: str, expected: str) -> InvalidArgumentError:
    return InvalidArgumentError(f"{section_kind} target {text!r}: expected {expected}", errno_codes.EINVAL)


def parse_kprobe_target(text: str) -> tuple[str, int]:
    """``function[+offset]`` -> (function, offset)."""
    found = _KPROBE_TARGET.match(text)
    if found is None:
        raise _invalid("kprobe", text, "'<function>[+<offset>]'")
    offset = found.group("offset")
    return found.group("function"), int(offset, 0) if offset else 0


def parse_uprobe_target(text: str) -> tuple[str, int | str, int]:
    """``binary:symbol[+offset]`` or ``binary:offset`` -> (binary, symbol or offset, extra offset).

    The binary is everything before the last ``:``, so paths with ``/`` work.
    """
    binary, separator, location = text.rpartition(":")
    found = _UPROBE_LOCATION.match(location) if separator and binary else None
    if found is None:
        raise _invalid("uprobe", text, "'<binary>:<symbol>[+<offset>]' or '<binary>:<offset>'")
    if found.group("offset") is not None:
        return binary, int(found.group("offset"), 0), 0
    extra = found.group("extra")
    return binary, found.group("symbol"), int(extra, 0) if extra else 0


def parse_tracepoint_target(text: str) -> tuple[str, str]:
    """``category/name`` -> (category, name)."""
    category, separator, name = text.partition("/")
    if not separator or not category or not name or "/" in name:
        raise _invalid("tracepoint", text, "'<category>/<name>'")
    return category, name


def _section_kind(spec: ProgramSpec) -> str:
    # The pattern without libbpf's "+" marker and the sleepable/writable suffixes: "kprobe",
    # "uretprobe", "raw_tp", "cgroup/connect4"...
    pattern = spec.section_info.definition.pattern.removesuffix("+").removesuffix("/")
    for suffix in (".s", ".w"):
        pattern = pattern.removesuffix(suffix)
    return pattern


def _text_target(spec: ProgramSpec, target: str | int | os.PathLike[str] | None) -> str:
    text = spec.attach_to if target is None else os.fsdecode(target) if not isinstance(target, int) else str(target)
    if not text:
        raise InvalidArgumentError(
            f"section {spec.section!r} names no attach target: pass one to attach()", errno_codes.EINVAL
        )
    return text


def attach_section(
    prog_fd: FdLike,
    spec: ProgramSpec,
    target: str | int | os.PathLike[str] | None = None,
    *,
    syscall: RawSyscall | None = None,
    system: PerfEventSystem | None = None,
) -> Link:
    """Attach the program loaded from ``spec`` where its section says (see the module doc)."""
    kind = _section_kind(spec)
    match kind:
        case "kprobe" | "kretprobe":
            function, offset = parse_kprobe_target(_text_target(spec, target))
            retprobe = kind == "kretprobe"
            return attach_kprobe(prog_fd, function, offset=offset, retprobe=retprobe, syscall=syscall, system=system)
        case "ksyscall" | "kretsyscall":
            function = syscall_function_name(_text_target(spec, target))
            return attach_kprobe(prog_fd, function, retprobe=kind == "kretsyscall", syscall=syscall, system=system)
        case "uprobe" | "uretprobe":
            binary, location, extra = parse_uprobe_target(_text_target(spec, target))
            if isinstance(location, str) and extra:
                location = symbol_file_offset(binary, location) + extra
            retprobe = kind == "uretprobe"
            return attach_uprobe(prog_fd, binary, location, retprobe=retprobe, syscall=syscall, system=system)
        case "tracepoint" | "tp":
            category, name = parse_tracepoint_target(_text_target(spec, target))
            return attach_tracepoint(prog_fd, category, name, syscall=syscall, system=system)
        case "raw_tracepoint" | "raw_tp":
            return attach_raw_tracepoint(prog_fd, _text_target(spec, target), syscall=syscall)
    if spec.prog_type in _CGROUP_TYPES:
        if target is None or isinstance(target, int):
            raise InvalidArgumentError(
                f"section {spec.section!r}: attach() needs the cgroup directory", errno_codes.EINVAL
            )
        if spec.attach_type is None:
            raise InvalidArgumentError(f"section {spec.section!r} names no cgroup attach type", errno_codes.EINVAL)
        return attach_cgroup(prog_fd, target, spec.attach_type, syscall=syscall)
    if spec.prog_type == BpfProgType.XDP and kind in {"xdp", "xdp.frags"}:
        if target is None:
            raise InvalidArgumentError(f"section {spec.section!r}: attach() needs the interface", errno_codes.EINVAL)
        return attach_xdp(prog_fd, target if isinstance(target, int) else os.fsdecode(target), syscall=syscall)
    if spec.prog_type == BpfProgType.SCHED_CLS:
        if target is None:
            raise InvalidArgumentError(f"section {spec.section!r}: attach() needs the interface", errno_codes.EINVAL)
        direction = spec.section_info.definition.attach_point or "ingress"
        interface = target if isinstance(target, int) else os.fsdecode(target)
        return attach_tcx(prog_fd, interface, direction=direction, syscall=syscall)
    raise NotSupportedError(f"section {spec.section!r}: pybpf cannot attach this kind of program by its section yet")
