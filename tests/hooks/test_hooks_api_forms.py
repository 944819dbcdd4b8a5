"""The issue's API forms: ``prog.attach_probe(func)``, ``@pybpf.probe(prog)``, ``pybpf.Tracepoint``,
``prog.attach_tracepoint``/``attach_audit``, and the attach provider installed in each program.

These use the process's HookRuntime (as an application would), so every link is detached and
every tracepoint closed before a test ends.
"""

from __future__ import annotations

import struct
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hooks_build_audit import PATH_LEN, build_audit_object

import pybpf
from pybpf.hooks.link import Link, LinkError, LinkKind
from pybpf.hooks.probes import ProbeLink, links_of
from pybpf.hooks.provider import HOOKS_PROVIDER, install
from pybpf.hooks.tracepoints import TracepointLink
from pybpf.runtime.attach import Attachment
from pybpf.runtime.maps import RingBufferConsumer
from pybpf.runtime.object import Object

PROGS = Path(__file__).resolve().parents[1] / "progs"
SRC = Path(__file__).resolve().parents[2] / "src"
FIELDS = [("id", "u32"), ("status", "u16"), ("path", "char[32]"), ("bytes", "u64")]
EVENT = struct.Struct("<IIQII32s")


def stat(obj: Object, index: int) -> int:
    value: int = struct.unpack("<Q", obj.maps["stats"].lookup_raw(index.to_bytes(4, "little")))[0]
    return value


@pytest.fixture
def obj() -> Iterator[Object]:
    with pybpf.load(PROGS / "hooks_probe.o") as loaded:
        yield loaded


@pytest.fixture
def target_module() -> Iterator[ModuleType]:
    module = ModuleType("hooks_api_forms_target")

    def handle(n: int, name: str) -> int:
        return n * 2

    handle.__module__ = module.__name__
    handle.__qualname__ = "handle"
    module.handle = handle  # type: ignore[attr-defined]
    sys.modules[module.__name__] = module
    yield module
    del sys.modules[module.__name__]


def test_program_attach_probe_method(obj: Object, target_module: ModuleType) -> None:
    original = target_module.handle
    link = obj.program("on_entry").attach_probe(target_module.handle)
    assert isinstance(link, ProbeLink) and isinstance(link, pybpf.Link)
    assert isinstance(link, Attachment)
    assert link.kind is LinkKind.UPROBE and link.attached
    assert target_module.handle is not original
    assert [target_module.handle(n, "x") for n in (1, 2, 3)] == [2, 4, 6]
    assert (stat(obj, 0), stat(obj, 1)) == (3, 6)  # calls, sum of the first argument
    with link:
        pass  # the with block detaches
    assert not link.attached
    assert target_module.handle is original
    target_module.handle(10, "y")
    assert stat(obj, 0) == 3


def test_probe_decorator_from_the_top_level_package(obj: Object) -> None:
    @pybpf.probe(obj.program("on_entry"))
    def work(n: int, name: str) -> int:
        return n + 1

    assert work(41, "answer") == 42
    assert work(1, "x") == 2
    (link,) = links_of(work)
    assert (stat(obj, 0), stat(obj, 1), link.fires) == (2, 42, 2)
    link.detach()
    work(5, "after")
    assert stat(obj, 0) == 2
    # The module-level function form is the same call as the method.
    other = pybpf.attach_probe(obj.program("on_entry"), work, install=False)
    assert isinstance(other, ProbeLink)
    other.detach()


def test_top_level_tracepoint_and_attach_tracepoint_method() -> None:
    tp = pybpf.Tracepoint("app", "api_request", fields=FIELDS)
    try:
        with pybpf.load(PROGS / "hooks_tracepoint.o") as obj:
            link = obj.program("on_request").attach_tracepoint("app", "api_request")
            assert isinstance(link, TracepointLink) and link.target == "app/api_request"
            assert tp.enabled
            tp.fire(id=7, status=200, path="/index", bytes=99)
            tp.fire(id=8, status=500, path="/boom", bytes=1)  # the program skips 5xx
            events: list[tuple[Any, ...]] = []

            def collect(data: bytes) -> int:
                events.append(EVENT.unpack(data[: EVENT.size]))
                return 0

            consumer = RingBufferConsumer()
            consumer.add(obj.maps["requests"], collect)
            assert consumer.poll() == 1
            assert events[0][:3] == (7, 200, 99)
            assert events[0][3] == threading.get_native_id()
            assert events[0][5].rstrip(b"\0") == b"/index"
            link.detach()
            assert not tp.enabled
            # The wrong kind of program is refused through the method too.
            with pytest.raises(LinkError):
                obj.program("on_request").attach_audit("open")
    finally:
        tp.close()


def test_attach_audit_method_denies_open() -> None:
    with tempfile.TemporaryDirectory(prefix="pybpf-api-audit-") as directory:
        root = Path(directory)
        audit_object = build_audit_object(root)
        secret = root / "secret.txt"
        secret.write_text("s3cr3t")
        with pybpf.load(audit_object) as obj:
            obj.maps["denied"].update_raw(bytes(4), str(secret).encode().ljust(PATH_LEN, b"\0"))
            with obj.program("deny_open").attach_audit("open") as link:
                assert link.kind is LinkKind.LSM
                with pytest.raises(PermissionError) as denied:
                    secret.read_text()
                assert denied.value.filename == str(secret)
            assert secret.read_text() == "s3cr3t"


def test_packet_methods_check_the_program_type(obj: Object) -> None:
    with pytest.raises(LinkError, match="XDP"):
        obj.program("on_entry").attach_xdp("lo")
    with pytest.raises(LinkError, match="sched_cls"):
        obj.program("on_entry").attach_tc("lo")


def test_provider_belongs_to_each_objects_programs() -> None:
    class Recorder:
        def __init__(self) -> None:
            self.calls: list[str] = []

        def _record(self, name: str) -> Attachment:
            self.calls.append(name)
            raise LinkError(f"recorded {name}")

        def attach_probe(self, program: Any, function: Callable[..., Any], *, cookie: int, install: bool) -> Attachment:
            return self._record(f"probe {program.name} {function.__name__} {cookie} {install}")

        def attach_tracepoint(self, program: Any, category: str | None, name: str | None) -> Attachment:
            return self._record(f"tracepoint {category}/{name}")

        def attach_audit(self, program: Any, event: str) -> Attachment:
            return self._record(f"audit {event}")

        def attach_xdp(self, program: Any, ifname: str) -> Attachment:
            return self._record(f"xdp {ifname}")

        def attach_tc(self, program: Any, ifname: str) -> Attachment:
            return self._record(f"tc {ifname}")

    recorder = Recorder()
    with pybpf.load(PROGS / "hooks_probe.o") as loaded, pybpf.load(PROGS / "hooks_probe.o") as other:
        program = loaded.program("on_entry")
        assert program.attach_provider is HOOKS_PROVIDER  # pybpf.load installed the hooks
        install(loaded, recorder)
        with pytest.raises(LinkError, match="recorded probe on_entry stat 5 False"):
            program.attach_probe(stat, cookie=5, install=False)
        with pytest.raises(LinkError, match="recorded tracepoint a/b"):
            program.attach_tracepoint("a", "b")
        with pytest.raises(LinkError, match="recorded audit open"):
            program.attach_audit("open")
        # Nothing global changed: the other object's programs still attach through the hooks.
        assert other.program("on_entry").attach_provider is HOOKS_PROVIDER
        with other.program("on_entry").attach_probe(stat, install=False) as link:
            assert isinstance(link, ProbeLink)
    assert recorder.calls[0] == "probe on_entry stat 5 False"


def test_without_the_hooks_package_the_methods_say_what_to_import() -> None:
    # A fresh interpreter that loads through the runtime directly never imports pybpf.hooks.
    code = (
        "import sys\n"
        "from pybpf.runtime.loader import load\n"
        f"obj = load({str(PROGS / 'hooks_probe.o')!r})\n"
        "try:\n"
        "    obj.program('on_entry').attach_probe(print)\n"
        "except Exception as error:\n"
        "    print(type(error).__name__, error)\n"
        "print('pybpf.hooks' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env={"PYTHONPATH": str(SRC)}
    )
    lines = result.stdout.splitlines()
    assert lines[0].startswith("NotSupportedError") and "import pybpf.hooks" in lines[0]
    assert lines[1] == "False"


def test_links_from_methods_are_registered(obj: Object, target_module: ModuleType) -> None:
    link = obj.program("on_return").attach_probe(target_module.handle)
    try:
        assert isinstance(link, Link)
        assert link in link.runtime.links.list()
        assert link.kind is LinkKind.URETPROBE
    finally:
        link.detach()
    assert link not in link.runtime.links.list()
