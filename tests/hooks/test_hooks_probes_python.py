"""Python probes: uprobe/uretprobe programs on Python functions (calls, arguments, latency histogram)."""

from __future__ import annotations

import struct
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

import pybpf
from pybpf.hooks.link import HookRuntime, LinkError, LinkKind
from pybpf.hooks.probes import attach_probe, links_of, probe
from pybpf.runtime.object import Object

PROGS = Path(__file__).resolve().parents[1] / "progs"
STAT_CALLS, STAT_ARG_SUM, STAT_RET_SUM, STAT_RETURNS = 0, 1, 2, 3


def u64(obj: Object, map_name: str, index: int) -> int:
    value: int = struct.unpack("<Q", obj.maps[map_name].lookup_raw(index.to_bytes(4, "little")))[0]
    return value


@pytest.fixture
def obj() -> Iterator[Object]:
    loaded = pybpf.load(PROGS / "hooks_probe.o", ncpus=4)
    yield loaded
    loaded.close()


@pytest.fixture
def target_module() -> Iterator[ModuleType]:
    module = ModuleType("hooks_probe_target")

    def handle(n: int, name: str, delay: float = 0.0) -> int:
        if delay:
            time.sleep(delay)
        return n * 2

    handle.__module__ = module.__name__
    handle.__qualname__ = "handle"
    module.handle = handle  # type: ignore[attr-defined]
    sys.modules[module.__name__] = module
    yield module
    del sys.modules[module.__name__]


def test_entry_and_return_probes_count_sum_and_histogram(obj: Object, target_module: ModuleType) -> None:
    runtime = HookRuntime()
    original = target_module.handle
    entry = attach_probe(obj.program("on_entry"), original, runtime=runtime)
    exit_ = attach_probe(obj.program("on_return"), target_module.handle, runtime=runtime)
    assert (entry.kind, exit_.kind) == (LinkKind.UPROBE, LinkKind.URETPROBE)
    assert target_module.handle is not original
    assert target_module.handle.__name__ == "handle"  # functools.wraps
    results = [target_module.handle(n, f"call-{n}") for n in range(1, 6)]
    assert results == [2, 4, 6, 8, 10]
    target_module.handle(7, name="slow", delay=0.002)  # keyword arguments bound in order
    assert entry.errors == 0 and exit_.errors == 0, (entry.last_error, exit_.last_error)
    assert u64(obj, "stats", STAT_CALLS) == 6
    assert u64(obj, "stats", STAT_RETURNS) == 6
    assert u64(obj, "stats", STAT_ARG_SUM) == 1 + 2 + 3 + 4 + 5 + 7
    assert u64(obj, "stats", STAT_RET_SUM) == 2 * (1 + 2 + 3 + 4 + 5 + 7)
    name = obj.maps["last_name"].lookup_raw(bytes(4))
    assert name.split(b"\0")[0] == b"slow"
    hist = [u64(obj, "latency_hist", slot) for slot in range(64)]
    assert sum(hist) == 6
    # the slow call took >= 2 ms: its bucket is at least log2(2e6) = 20
    assert any(hist[slot] for slot in range(20, 64))
    assert [link.id for link in runtime.links.list()] == [entry.id, exit_.id]
    exit_.detach()
    entry.detach()
    assert target_module.handle is original
    target_module.handle(100, "after")
    assert u64(obj, "stats", STAT_CALLS) == 6


def test_decorator_and_context_manager(obj: Object) -> None:
    runtime = HookRuntime()

    @probe(obj.program("on_entry"), runtime=runtime)
    def work(n: int, payload: bytes | bytearray) -> int:
        return len(payload) + n

    assert work(1, b"abc\0") == 5
    assert work(2, bytearray(b"xyz")) == 5
    (link,) = links_of(work)
    assert link.errors == 0, link.last_error
    assert u64(obj, "stats", STAT_CALLS) == 2
    assert obj.maps["last_name"].lookup_raw(bytes(4)).split(b"\0")[0] == b"xyz"
    link.detach()
    work(3, b"q")
    assert u64(obj, "stats", STAT_CALLS) == 2
    with attach_probe(obj.program("on_entry"), work, runtime=runtime, install=False) as again:
        again.wrapper(4, b"")
    again.wrapper(4, b"")
    assert u64(obj, "stats", STAT_CALLS) == 3
    assert u64(obj, "stats", STAT_ARG_SUM) == 1 + 2 + 4


def test_methods_are_probed_on_their_class(obj: Object) -> None:
    class Server:
        def serve(self, n: int) -> int:
            return n + 1

    Server.__qualname__ = "Server"
    Server.serve.__qualname__ = "Server.serve"
    module = ModuleType("hooks_probe_server")
    module.Server = Server  # type: ignore[attr-defined]
    Server.__module__ = Server.serve.__module__ = module.__name__
    sys.modules[module.__name__] = module
    try:
        with attach_probe(obj.program("on_return"), Server.serve, runtime=HookRuntime()):
            assert Server().serve(41) == 42
        assert u64(obj, "stats", STAT_RET_SUM) == 42
        assert "serve" in Server.__dict__ and not hasattr(Server.__dict__["serve"], "__pybpf_links__")
    finally:
        del sys.modules[module.__name__]


def test_non_probe_programs_cannot_attach(obj: Object) -> None:
    # A non-probe program cannot attach.
    xdp = pybpf.load(PROGS / "xdp_firewall.o")
    try:
        with pytest.raises(LinkError):
            attach_probe(next(iter(xdp.programs.values())), len)
    finally:
        xdp.close()


def test_only_user_space_programs_attach() -> None:
    from pybpf.errors import NotSupportedError
    from pybpf.hooks.lsm import attach_audit
    from pybpf.hooks.tracepoints import attach_tracepoint

    not_a_vm_program = object()
    with pytest.raises(NotSupportedError, match="backend='vm'"):
        attach_probe(not_a_vm_program, len)  # type: ignore[arg-type]
    with pytest.raises(NotSupportedError):
        attach_tracepoint(not_a_vm_program, "app/x")  # type: ignore[arg-type]
    with pytest.raises(NotSupportedError):
        attach_audit(not_a_vm_program, "open")  # type: ignore[arg-type]


def test_coroutine_functions_are_probed_around_the_await(obj: Object) -> None:
    import asyncio

    runtime = HookRuntime()

    async def fetch(n: int, name: str) -> int:
        await asyncio.sleep(0.001)
        return n * 10

    entry = attach_probe(obj.program("on_entry"), fetch, runtime=runtime, install=False)
    exit_ = attach_probe(obj.program("on_return"), entry.wrapper, runtime=runtime, install=False)

    async def main() -> list[int]:
        return list(await asyncio.gather(exit_.wrapper(1, "a"), exit_.wrapper(2, "b")))

    assert asyncio.run(main()) == [10, 20]
    assert entry.errors == exit_.errors == 0
    assert u64(obj, "stats", STAT_CALLS) == 2
    assert u64(obj, "stats", STAT_RET_SUM) == 30
    hist = [u64(obj, "latency_hist", slot) for slot in range(64)]
    # Both awaited >= 1 ms: the latency covers the await (log2(1e6) is about 20).
    assert sum(hist) >= 1 and not any(hist[:19])


def test_probing_a_builtin_the_runtime_uses_does_not_recurse(obj: Object) -> None:
    import builtins

    original = builtins.len
    with attach_probe(obj.program("on_entry"), builtins.len, runtime=HookRuntime()) as link:
        assert builtins.len is not original
        assert len([1, 2, 3]) == 3  # the probe runs; the runtime's own len() calls pass through
    assert builtins.len is original
    assert link.fires >= 1 and link.errors == 0
    assert link.missed >= 1
    assert u64(obj, "stats", STAT_CALLS) == link.fires
