"""Audit-event LSM hooks: a program denies open() of one path (PermissionError), then is detached.

The program (tests/hooks/bpf/audit_lsm.c, SEC("lsm/file_open")) is compiled at test time; skipped
without clang. Each test uses its own HookRuntime, but audit hooks are process-wide and permanent:
each installs one more (idle once its links are detached).
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import pybpf
from pybpf.hooks.link import HookRuntime, LinkError, LinkKind
from pybpf.hooks.lsm import attach_audit
from pybpf.runtime.object import Object

HERE = Path(__file__).resolve().parent
PROGS = HERE.parent / "progs"
PATH_LEN = 128


@pytest.fixture(scope="module")
def audit_object(tmp_path_factory: pytest.TempPathFactory) -> Path:
    clang = shutil.which("clang-19") or shutil.which("clang")
    if clang is None:
        pytest.skip("clang is not installed")
    target = tmp_path_factory.mktemp("audit") / "audit_lsm.o"
    arch = subprocess.run(["uname", "-m"], capture_output=True, text=True, check=True).stdout.strip()
    command = [clang, "-O2", "-g", "-target", "bpf", "-Wall", "-Werror", f"-I{PROGS}"]
    command.append(f"-I/usr/include/{arch}-linux-gnu")
    result = subprocess.run(
        [*command, "-c", str(HERE / "bpf" / "audit_lsm.c"), "-o", str(target)],
        check=False,
        capture_output=True,
        text=True,
    )
    if result.returncode:
        pytest.skip(f"clang cannot build BPF objects here: {result.stderr[-300:]}")
    return target


def counts(obj: Object) -> tuple[int, int]:
    values = [struct.unpack("<Q", obj.maps["audit_counts"].lookup_raw(i.to_bytes(4, "little")))[0] for i in (0, 1)]
    return values[0], values[1]


def test_deny_open_of_one_path_then_detach(audit_object: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="pybpf-audit-") as directory:
        deny_and_allow(audit_object, Path(directory))


def deny_and_allow(audit_object: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    public = tmp_path / "public.txt"
    secret.write_text("s3cr3t")
    public.write_text("hello")
    with pybpf.load(audit_object) as obj:
        obj.maps["denied"].update_raw(bytes(4), str(secret).encode().ljust(PATH_LEN, b"\0"))
        link = attach_audit(obj.program("deny_open"), "open", runtime=HookRuntime())
        assert link.kind is LinkKind.LSM and link.target == "open"
        with pytest.raises(PermissionError) as denied:
            secret.open()
        assert denied.value.errno == 1
        assert denied.value.filename == str(secret)
        with pytest.raises(PermissionError):
            open(secret, "rb")  # noqa: SIM115 (the open itself must fail)
        assert public.read_text() == "hello"
        assert (tmp_path / "secret.txt.bak").exists() is False
        checked, refused = counts(obj)
        assert refused == 2
        assert checked >= 3
        assert link.denials == 2 and link.errors == 0
        link.detach()
        assert secret.read_text() == "s3cr3t"
        assert counts(obj) == (checked, refused)


def test_any_audit_event_with_nested_arguments(audit_object: Path) -> None:
    # Tuples are flattened: ((path, 5),) gives args[0] = pointer to path, args[1] = 5.
    with pybpf.load(audit_object) as obj:
        obj.maps["denied"].update_raw(bytes(4), b"/forbidden".ljust(PATH_LEN, b"\0"))
        link = attach_audit(obj.program("deny_open"), "pybpf.test.event", runtime=HookRuntime())
        with pytest.raises(PermissionError, match="deny_open"):
            sys.audit("pybpf.test.event", ("/forbidden", 5))
        sys.audit("pybpf.test.event", (Path("/allowed"), 5))
        sys.audit("pybpf.test.other", ("/forbidden",))  # another event: not dispatched
        assert (link.checks, link.denials) == (2, 1)
        link.detach()
        sys.audit("pybpf.test.event", ("/forbidden", 5))
        assert link.checks == 2


def test_only_args_programs_attach() -> None:
    with pybpf.load(PROGS / "hooks_probe.o") as obj, pytest.raises(LinkError):
        attach_audit(obj.program("on_entry"), "open", runtime=HookRuntime())


def test_deny_subprocess_and_import(audit_object: Path) -> None:
    # subprocess.Popen's event starts with the executable; import's with the module name.
    true = shutil.which("true")
    assert true is not None
    with pybpf.load(audit_object) as obj:
        runtime = HookRuntime()
        obj.maps["denied"].update_raw(bytes(4), true.encode().ljust(PATH_LEN, b"\0"))
        with attach_audit(obj.program("deny_open"), "subprocess.Popen", runtime=runtime):
            with pytest.raises(PermissionError):
                subprocess.run([true], check=False)
            assert subprocess.run(["sh", "-c", "exit 3"], check=False).returncode == 3
        assert subprocess.run([true], check=False).returncode == 0
        obj.maps["denied"].update_raw(bytes(4), b"pybpf_never_imported".ljust(PATH_LEN, b"\0"))
        with attach_audit(obj.program("deny_open"), "import", runtime=runtime):
            with pytest.raises(PermissionError):
                import pybpf_never_imported  # type: ignore[import-not-found]  # noqa: F401
            import json.tool  # noqa: F401  (allowed)
