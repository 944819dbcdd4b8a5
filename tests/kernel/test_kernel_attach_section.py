"""``KernelProgram.attach()``: the section name decides the attachment (fakes only, by policy)."""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from pybpf import errors
from pybpf.kernel import BpfAttachType, BpfCmd, Fd, KernelProgram, RawSyscall
from pybpf.kernel.attrs import LinkCreateAttr
from pybpf.kernel.perf_event import PerfEventAttr, PerfEventSystem, PerfType
from pybpf.kernel.section_attach import parse_kprobe_target, parse_tracepoint_target, parse_uprobe_target
from pybpf.kernel.trace_attach import RawTracepointOpenAttr, syscall_function_name
from pybpf.kernel.uprobe_symbols import symbol_file_offset
from pybpf.obj import ProgramSpec
from pybpf.platform.section import parse_section

KPROBE_TYPE, UPROBE_TYPE, TRACEPOINT_ID = 9, 10, 42


class Recorder:
    """Fake perf_event_open, ioctl and bpf(2) that remember what they were asked."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.opened: list[int] = []
        self.events: list[tuple[int, int, bytes | None, int, int, int]] = []  # type, config, string, offset, pid, cpu
        self.calls: list[tuple[BpfCmd, dict[str, object]]] = []

    def _fd(self) -> int:
        fd = os.open(os.devnull, os.O_RDONLY)
        self.opened.append(fd)
        return fd

    def perf_event_open(self, attr: PerfEventAttr, pid: int, cpu: int, group_fd: int, flags: int) -> int:
        pointer = int(attr.config1)
        string = ctypes.string_at(pointer) if pointer else None
        self.events.append((int(attr.type), int(attr.config), string, int(attr.probe_offset), pid, cpu))
        return self._fd()

    def ioctl(self, fd: int, request: int, arg: int) -> int:
        raise AssertionError("no ioctl expected: the fake kernel has perf links")

    def syscall(self, cmd: BpfCmd, attr: ctypes.Structure) -> int:
        if isinstance(attr, LinkCreateAttr):
            seen: dict[str, object] = {
                "attach_type": int(attr.attach_type),
                "flags": int(attr.flags),
                "target": os.readlink(f"/proc/self/fd/{int(attr.target_fd)}"),
            }
        elif isinstance(attr, RawTracepointOpenAttr):
            seen = {"name": ctypes.string_at(int(attr.name))}
        else:
            seen = {}
        self.calls.append((cmd, seen))
        return self._fd() if cmd in {BpfCmd.LINK_CREATE, BpfCmd.RAW_TRACEPOINT_OPEN} else 0

    @property
    def system(self) -> PerfEventSystem:
        return PerfEventSystem(self.perf_event_open, self.ioctl, self.root / "sys", (self.root / "tracing",))


@pytest.fixture
def recorder(tmp_path: Path) -> Iterator[Recorder]:
    devices = tmp_path / "sys" / "bus" / "event_source" / "devices"
    for pmu, number in (("kprobe", KPROBE_TYPE), ("uprobe", UPROBE_TYPE)):
        (devices / pmu / "format").mkdir(parents=True)
        (devices / pmu / "type").write_text(f"{number}\n")
        (devices / pmu / "format" / "retprobe").write_text("config:0\n")
    tracepoint = tmp_path / "tracing" / "events" / "syscalls" / "sys_enter_openat"
    tracepoint.mkdir(parents=True)
    (tracepoint / "id").write_text(f"{TRACEPOINT_ID}\n")
    found = Recorder(tmp_path)
    yield found
    for fd in found.opened:
        try:
            os.close(fd)
        except OSError:
            continue
        raise AssertionError(f"descriptor {fd} was left open")


def _program(recorder: Recorder, section: str, syscall: RawSyscall | None = None) -> KernelProgram:
    info = parse_section(section)
    spec = ProgramSpec(
        name="prog",
        section=section,
        section_info=info,
        prog_type=info.prog_type,
        attach_type=info.expected_attach_type,
        attach_to=info.target or "",
        instructions=(),
        license="GPL",
    )
    fd = Fd(os.open(os.devnull, os.O_RDONLY))
    return KernelProgram(
        spec,
        fd,
        prog_type=info.prog_type,
        kernel_name="prog",
        syscall=recorder.syscall if syscall is None else syscall,
        perf=recorder.system,
    )


def _attach(recorder: Recorder, section: str, target: str | Path | None = None) -> None:
    program = _program(recorder, section)
    try:
        with program.attach(target):
            pass
    finally:
        program.close()


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        ("kprobe/do_unlinkat", (KPROBE_TYPE, 0, b"do_unlinkat", 0)),
        ("kprobe/tcp_connect+0x1c", (KPROBE_TYPE, 0, b"tcp_connect", 0x1C)),
        ("kretprobe/do_unlinkat", (KPROBE_TYPE, 1, b"do_unlinkat", 0)),
        ("ksyscall/openat", (KPROBE_TYPE, 0, syscall_function_name("openat").encode(), 0)),
        ("kretsyscall/openat", (KPROBE_TYPE, 1, syscall_function_name("openat").encode(), 0)),
        ("tp/syscalls/sys_enter_openat", (PerfType.PERF_TYPE_TRACEPOINT, TRACEPOINT_ID, None, 0)),
        ("tracepoint/syscalls/sys_enter_openat", (PerfType.PERF_TYPE_TRACEPOINT, TRACEPOINT_ID, None, 0)),
    ],
)
def test_probe_and_tracepoint_sections(
    recorder: Recorder, section: str, expected: tuple[int, int, bytes | None, int]
) -> None:
    _attach(recorder, section)
    ((kind, config, string, offset, pid, cpu),) = recorder.events
    assert (kind, config, string, offset) == expected
    assert (pid, cpu) == (-1, 0)
    assert [(cmd, seen["attach_type"]) for cmd, seen in recorder.calls] == [
        (BpfCmd.LINK_CREATE, BpfAttachType.PERF_EVENT)
    ]


def test_target_argument_overrides_the_section(recorder: Recorder) -> None:
    _attach(recorder, "kprobe/do_unlinkat", "vfs_write+8")
    assert recorder.events[0][2:4] == (b"vfs_write", 8)


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc to build a uprobe target")
@pytest.mark.parametrize("retprobe", [False, True])
def test_uprobe_sections(recorder: Recorder, tmp_path: Path, retprobe: bool) -> None:
    source = tmp_path / "t.c"
    source.write_text("__attribute__((noinline, used)) int hook(int x) { return x; }\nint main(void) { return 0; }\n")
    binary = tmp_path / "dir:with:colons" / "t"
    binary.parent.mkdir()
    subprocess.run(["gcc", "-O1", "-o", str(binary), str(source)], check=True)
    kind = "uretprobe" if retprobe else "uprobe"
    base = symbol_file_offset(binary, "hook")
    _attach(recorder, f"{kind}/{binary}:hook")
    _attach(recorder, f"{kind}/{binary}:hook+0x4")
    _attach(recorder, f"{kind}.s/{binary}:0x40")
    path = os.fsencode(binary)
    assert [event[:4] for event in recorder.events] == [
        (UPROBE_TYPE, int(retprobe), path, base),
        (UPROBE_TYPE, int(retprobe), path, base + 4),
        (UPROBE_TYPE, int(retprobe), path, 0x40),
    ]


def test_raw_tracepoint_sections(recorder: Recorder) -> None:
    _attach(recorder, "raw_tp/sched_switch")
    _attach(recorder, "raw_tracepoint.w/sched_wakeup")
    assert recorder.calls[0] == (BpfCmd.RAW_TRACEPOINT_OPEN, {"name": b"sched_switch"})
    assert recorder.calls[1] == (BpfCmd.RAW_TRACEPOINT_OPEN, {"name": b"sched_wakeup"})
    assert recorder.events == []


@pytest.mark.parametrize(
    ("section", "attach_type"),
    [
        ("cgroup_skb/ingress", BpfAttachType.CGROUP_INET_INGRESS),
        ("cgroup/connect4", BpfAttachType.CGROUP_INET4_CONNECT),
        ("cgroup/sysctl", BpfAttachType.CGROUP_SYSCTL),
        ("sockops", BpfAttachType.CGROUP_SOCK_OPS),
    ],
)
def test_cgroup_sections(recorder: Recorder, tmp_path: Path, section: str, attach_type: BpfAttachType) -> None:
    cgroup = tmp_path / "not-a-real-cgroup"
    cgroup.mkdir()
    _attach(recorder, section, cgroup)
    assert recorder.calls[0] == (BpfCmd.LINK_CREATE, {"attach_type": attach_type, "flags": 0, "target": str(cgroup)})


def test_sections_that_need_a_target(recorder: Recorder) -> None:
    for section in ("cgroup_skb/ingress", "kprobe", "xdp", "tcx/ingress"):
        with pytest.raises(errors.InvalidArgumentError):
            _attach(recorder, section)
    with pytest.raises(errors.InvalidArgumentError, match="attach type"):
        _attach(recorder, "cgroup/skb", "/")
    assert recorder.calls == []


@pytest.mark.parametrize("section", ["fentry/do_unlinkat", "lsm/file_open", "kprobe.multi/vfs_*", "usdt/x:y:z"])
def test_unsupported_sections(recorder: Recorder, section: str) -> None:
    with pytest.raises(errors.NotSupportedError, match="cannot attach"):
        _attach(recorder, section)


def test_target_parsers() -> None:
    assert parse_kprobe_target("f") == ("f", 0)
    assert parse_kprobe_target("f+16") == ("f", 16)
    assert parse_uprobe_target("/usr/lib/libc.so.6:malloc") == ("/usr/lib/libc.so.6", "malloc", 0)
    assert parse_uprobe_target("/a:b/c:0x10") == ("/a:b/c", 0x10, 0)
    assert parse_uprobe_target("/bin/x:f+0x8") == ("/bin/x", "f", 8)
    assert parse_tracepoint_target("sched/sched_switch") == ("sched", "sched_switch")
    for bad in ("f+", "f g", "+1"):
        with pytest.raises(errors.InvalidArgumentError):
            parse_kprobe_target(bad)
    for bad in ("nocolon", ":f", "/bin/x:", "/bin/x:f+"):
        with pytest.raises(errors.InvalidArgumentError):
            parse_uprobe_target(bad)
    for bad in ("sched", "a/b/c", "/x"):
        with pytest.raises(errors.InvalidArgumentError):
            parse_tracepoint_target(bad)


def test_errno_from_the_kernel_reaches_attach(recorder: Recorder) -> None:
    def refusing(cmd: BpfCmd, attr: ctypes.Structure) -> int:
        return -errno.ENOENT

    program = _program(recorder, "raw_tp/nope", refusing)
    with pytest.raises(errors.ObjectNotFoundError):
        program.attach()
    program.close()
