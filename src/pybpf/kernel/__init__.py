"""pybpf.kernel: the only code in pybpf that calls bpf(2).

Layers, lowest first: :mod:`~pybpf.kernel.syscall` (the one chokepoint, errno -> errors),
:mod:`~pybpf.kernel.attrs` (ctypes ``union bpf_attr`` variants), :mod:`~pybpf.kernel.fd`
(owned descriptors), then typed commands in :mod:`~pybpf.kernel.maps`,
:mod:`~pybpf.kernel.progs` and :mod:`~pybpf.kernel.objects`; :mod:`~pybpf.kernel.probe`
says whether bpf(2) works here and :mod:`~pybpf.kernel.bpffs` mounts a private bpffs.

On top of the commands, the kernel backend of ``pybpf.load``: :func:`load` instantiates an
object file in the kernel (:mod:`~pybpf.kernel.loader`) as a :class:`KernelObject` whose maps
(:class:`KernelMap`) and programs (:class:`KernelProgram`) have the user-space runtime's API;
:func:`open_pinned` reopens pins and :func:`features` probes what the running kernel supports.

Attachment: :mod:`~pybpf.kernel.link` (XDP, tcx), :mod:`~pybpf.kernel.trace_attach` (kprobes,
uprobes, tracepoints over :mod:`~pybpf.kernel.perf_event`, raw tracepoints, cgroups) and
:mod:`~pybpf.kernel.section_attach` (``KernelProgram.attach()`` by section name).

Every command takes a keyword ``syscall``: a fake ``(cmd, attr) -> result | -errno`` makes
it testable without root.
"""

from pybpf.kernel.btf_fixup import Kind as BtfKind
from pybpf.kernel.fd import BadFdError, ClosedFdError, Fd, FdLike, fd_number
from pybpf.kernel.features import KernelFeatures, features
from pybpf.kernel.inventory import loaded_maps, loaded_programs
from pybpf.kernel.link import Link, TcxAttachType, XdpFlags, attach_tcx, attach_xdp
from pybpf.kernel.loader import KernelLoadError, kernel_map_name, load
from pybpf.kernel.map_api import KernelMap, MapEntry, ValueCodec, possible_cpus
from pybpf.kernel.maps import (
    map_create,
    map_delete,
    map_freeze,
    map_get_next_key,
    map_keys,
    map_lookup,
    map_lookup_and_delete,
    map_lookup_batch,
    map_update,
    map_update_batch,
)
from pybpf.kernel.object import KernelObject, KernelProgram
from pybpf.kernel.objects import (
    BtfInfo,
    MapInfo,
    ProgInfo,
    btf_data,
    btf_fd_by_id,
    btf_ids,
    btf_info,
    btf_load,
    enable_stats,
    get_next_id,
    link_create,
    link_detach,
    map_fd_by_id,
    map_ids,
    map_info,
    obj_get,
    obj_pin,
    prog_fd_by_id,
    prog_ids,
    prog_info,
    prog_map_ids,
    prog_xlated_insns,
)
from pybpf.kernel.perf_buffer import KernelPerfBuffer
from pybpf.kernel.perf_event import PerfEventSystem
from pybpf.kernel.pin import NotOnBpffsError, pin
from pybpf.kernel.pinned import open_pinned
from pybpf.kernel.probe import available
from pybpf.kernel.progs import (
    KernelTestRun,
    LoadedProgram,
    prog_load,
    prog_load_with_log,
    prog_test_run,
)
from pybpf.kernel.ringbuf import KernelRingBufferConsumer, RingBufferReader
from pybpf.kernel.syscall import BpfCmd, RawSyscall, bpf, libc_syscall
from pybpf.kernel.trace_attach import (
    PerfEventLink,
    TracingLink,
    attach_cgroup,
    attach_kprobe,
    attach_raw_tracepoint,
    attach_tracepoint,
    attach_uprobe,
)
from pybpf.kernel.uapi import (
    BpfAttachType,
    BpfMapFlag,
    BpfMapType,
    BpfProgLoadFlag,
    BpfProgType,
    BpfTestRunFlag,
    BpfUpdateFlag,
)

__all__ = [
    "BadFdError",
    "BpfAttachType",
    "BpfCmd",
    "BpfMapFlag",
    "BpfMapType",
    "BpfProgLoadFlag",
    "BpfProgType",
    "BpfTestRunFlag",
    "BpfUpdateFlag",
    "BtfInfo",
    "BtfKind",
    "ClosedFdError",
    "Fd",
    "FdLike",
    "KernelFeatures",
    "KernelLoadError",
    "KernelMap",
    "KernelObject",
    "KernelPerfBuffer",
    "KernelProgram",
    "KernelRingBufferConsumer",
    "KernelTestRun",
    "Link",
    "LoadedProgram",
    "MapEntry",
    "MapInfo",
    "NotOnBpffsError",
    "PerfEventLink",
    "PerfEventSystem",
    "ProgInfo",
    "RawSyscall",
    "RingBufferReader",
    "TcxAttachType",
    "TracingLink",
    "ValueCodec",
    "XdpFlags",
    "attach_cgroup",
    "attach_kprobe",
    "attach_raw_tracepoint",
    "attach_tcx",
    "attach_tracepoint",
    "attach_uprobe",
    "attach_xdp",
    "available",
    "bpf",
    "btf_data",
    "btf_fd_by_id",
    "btf_ids",
    "btf_info",
    "btf_load",
    "enable_stats",
    "fd_number",
    "features",
    "get_next_id",
    "kernel_map_name",
    "libc_syscall",
    "link_create",
    "link_detach",
    "load",
    "loaded_maps",
    "loaded_programs",
    "map_create",
    "map_delete",
    "map_fd_by_id",
    "map_freeze",
    "map_get_next_key",
    "map_ids",
    "map_info",
    "map_keys",
    "map_lookup",
    "map_lookup_and_delete",
    "map_lookup_batch",
    "map_update",
    "map_update_batch",
    "obj_get",
    "obj_pin",
    "open_pinned",
    "pin",
    "possible_cpus",
    "prog_fd_by_id",
    "prog_ids",
    "prog_info",
    "prog_load",
    "prog_load_with_log",
    "prog_map_ids",
    "prog_test_run",
    "prog_xlated_insns",
]
