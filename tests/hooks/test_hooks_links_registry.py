"""Links: ids, registry, detach, context manager, info()."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import pybpf
from pybpf.hooks.link import HookRuntime, Link, LinkKind
from pybpf.runtime.program import Program

PROGS = Path(__file__).resolve().parents[1] / "progs"


class _Recording(Link):
    def __init__(self, *args: object, **kwargs: object) -> None:
        self.unhooked = 0
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def _unhook(self) -> None:
        self.unhooked += 1


@pytest.fixture
def program() -> Iterator[Program]:
    obj = pybpf.load(PROGS / "kprobe_count.o")
    yield obj.program("count_openat")
    obj.close()


def test_links_get_ids_and_leave_registry_on_detach(program: Program) -> None:
    runtime = HookRuntime()
    first = _Recording(LinkKind.KPROBE, program, "mod.f", runtime=runtime)
    second = _Recording(LinkKind.TRACEPOINT, program, "app/x", runtime=runtime)
    assert (first.id, second.id) == (1, 2)
    assert [link.id for link in runtime.links.list()] == [1, 2]
    first.detach()
    first.detach()
    assert first.unhooked == 1
    assert not first.attached
    assert [link.id for link in runtime.links.list()] == [2]
    info = second.info()
    assert info.kind is LinkKind.TRACEPOINT
    assert info.program == "count_openat"
    assert info.target == "app/x"
    assert info.attached


def test_link_context_manager_detaches(program: Program) -> None:
    runtime = HookRuntime()
    with _Recording(LinkKind.LSM, program, "open", runtime=runtime) as link:
        assert len(runtime.links) == 1
    assert link.unhooked == 1
    assert len(runtime.links) == 0
    # ids are never reused
    assert _Recording(LinkKind.LSM, program, "open", runtime=runtime).id == 2
