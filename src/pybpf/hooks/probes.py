"""Python probes: kprobe/uprobe- and fentry/fexit-style programs attached to a Python function.

This is the user-space analogue of a kprobe: where the kernel patches a breakpoint into the
function's first instruction, :func:`attach_probe` replaces the function by a wrapper
(``functools.wraps``) in the namespace that holds it (its module, or its class for a method),
and :meth:`ProbeLink.detach` puts the original back. The wrapper runs the program:

* kprobe/uprobe programs, on entry, with a ``pt_regs`` context: the first arguments in the
  PT_REGS_PARM registers (rdi, rsi, rdx, rcx, r8 on x86-64; x0-x4 on arm64), integers as u64,
  ``bytes``/``bytearray``/``str`` arguments as pointers into buffers mapped for the call (so
  ``bpf_probe_read_user(_str)`` and ``bpf_probe_read_kernel(_str)`` read them), ``None`` as NULL;
* kretprobe/uretprobe programs, on return, with the return value in the PT_REGS_RC register
  (rax / x0); the argument registers still hold the arguments;
* fentry programs (BPF_PROG_TYPE_TRACING) with the u64 argument array; fexit programs with the
  arguments followed by the return value.

Keyword arguments are bound to the function's signature (defaults filled in), so the registers
follow parameter order. A return probe does not fire when the function raises (Python unwinds
rather than returns). A program error (a bad memory access...) never reaches the application:
the link counts it in ``errors`` and keeps the last one in ``last_error``, as a kernel probe
whose program faults is simply skipped. For a coroutine function (``async def``) the entry probe
fires when the coroutine starts running and the return probe when it completes, with its result.

Several threads may call a probed function: runs are serialised per loaded object (see
:mod:`pybpf.hooks.link`), so atomic operations and map updates in the program lose nothing.
"""

from __future__ import annotations

import functools
import inspect
import platform
import sys
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from pybpf.errors import PybpfError
from pybpf.hooks.invoke import CallMemory, ScratchPool, argument_value, pack_u64s, require_user_space, run_hooked
from pybpf.hooks.link import HookRuntime, Link, LinkError, LinkKind
from pybpf.platform.contexts import PT_REGS, RegsLayout
from pybpf.platform.uapi_generated import BpfAttachType, BpfProgType
from pybpf.runtime.program import Program

F = TypeVar("F", bound=Callable[..., Any])

_MACHINES = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}
PROBE_ATTRIBUTE = "__pybpf_links__"
"""Attribute of a probe wrapper listing the links it serves (the decorator form exposes them)."""


def regs_layout(program: Program) -> RegsLayout:
    """The register layout the program's context was converted for (else the host's)."""
    name = program.layout.uapi.name
    for regs in PT_REGS.values():
        if regs.layout.name == name:
            return regs
    return PT_REGS[_MACHINES.get(platform.machine().lower(), "x86_64")]


def probe_kind(program: Program) -> LinkKind:
    """Which probe ``program`` is, from its type and section (``uretprobe``, ``fexit/...``)."""
    info = program.spec.section_info
    if program.prog_type == BpfProgType.KPROBE:
        pattern = info.definition.pattern
        user = pattern.startswith("u")  # uprobe, uretprobe, usdt: the rest are kernel probes
        if info.is_return_probe:
            return LinkKind.URETPROBE if user else LinkKind.KRETPROBE
        return LinkKind.UPROBE if user else LinkKind.KPROBE
    if program.prog_type == BpfProgType.TRACING:
        attach = info.expected_attach_type
        if attach == BpfAttachType.TRACE_FENTRY:
            return LinkKind.FENTRY
        if attach == BpfAttachType.TRACE_FEXIT:
            return LinkKind.FEXIT
    raise LinkError(
        f"program {program.name!r} ({program.type_spec.name}, section {info.section!r}) cannot be attached "
        "to a function: use a kprobe/kretprobe/uprobe/uretprobe or fentry/fexit program"
    )


RETURN_KINDS = frozenset({LinkKind.KRETPROBE, LinkKind.URETPROBE, LinkKind.FEXIT})


class ProbeLink(Link):
    """A program attached to a Python function; ``wrapper`` is what callers now call."""

    def __init__(
        self,
        program: Program,
        function: Callable[..., Any],
        kind: LinkKind,
        *,
        runtime: HookRuntime | None = None,
        cookie: int = 0,
        install: bool = True,
    ) -> None:
        self.original = function
        self.cookie = cookie
        self.errors = 0
        self.last_error: PybpfError | None = None
        self.fires = 0
        self.missed = 0  # calls made from inside this probe's own run (see fire)
        self._firing = threading.local()
        self._owner, self._attribute = _owner_of(function) if install else (None, None)
        target = f"{getattr(function, '__module__', '?')}.{getattr(function, '__qualname__', repr(function))}"
        super().__init__(kind, program, target, runtime=runtime)
        self._hooked = self.runtime.hooked(program)
        self._scratch = ScratchPool(program)  # one context per run in progress, for any thread
        self._regs = regs_layout(program) if program.prog_type == BpfProgType.KPROBE else None
        offsets = {field.name: field.offset for field in self._regs.layout.fields} if self._regs else {}
        self._param_offsets = [offsets[name] for name in self._regs.params] if self._regs else []
        self._rc_offset = offsets[self._regs.rc] if self._regs else 0
        self._ip_offset = offsets[self._regs.ip] if self._regs else 0
        # The instruction pointer register holds the probed function's identity (bpf_get_func_ip).
        self._ip = (id(function) & ((1 << 64) - 1)).to_bytes(8, "little")
        try:
            self._signature: inspect.Signature | None = inspect.signature(function)
        except (TypeError, ValueError):
            self._signature = None
        self.wrapper = self._make_wrapper(function)
        if self._owner is not None and self._attribute is not None:
            setattr(self._owner, self._attribute, self.wrapper)

    # -- the wrapper --------------------------------------------------------------------------

    def _make_wrapper(self, function: Callable[..., Any]) -> Callable[..., Any]:
        on_return = self.kind in RETURN_KINDS
        wrapper: Callable[..., Any]

        if inspect.iscoroutinefunction(function):
            # A coroutine function "returns" when its coroutine completes: probe around the await.

            @functools.wraps(function)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                if not on_return and self.attached:
                    self.fire(self._ordered(args, kwargs), None)
                result = await function(*args, **kwargs)
                if on_return and self.attached:
                    self.fire(self._ordered(args, kwargs), result)
                return result

            wrapper = async_wrapper

        elif on_return:

            @functools.wraps(function)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                result = function(*args, **kwargs)
                if self.attached:
                    self.fire(self._ordered(args, kwargs), result)
                return result

        else:

            @functools.wraps(function)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                if self.attached:
                    self.fire(self._ordered(args, kwargs), None)
                return function(*args, **kwargs)

        links = [*getattr(function, PROBE_ATTRIBUTE, ()), self]
        setattr(wrapper, PROBE_ATTRIBUTE, links)
        return wrapper

    def _ordered(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
        if not kwargs or self._signature is None:
            return args
        try:
            bound = self._signature.bind(*args, **kwargs)
        except TypeError:
            return args  # the call itself will raise the TypeError
        bound.apply_defaults()
        return tuple(bound.arguments.values())

    def fire(self, args: tuple[Any, ...], result: Any) -> None:
        """Run the program for one call (entry: ``result`` is None and unused).

        A call made while this thread is already running the program (a probed builtin the
        runtime itself uses, such as ``len``) passes through unprobed, as the kernel does not
        re-enter a kprobe hit from inside its own handler (it counts a "missed" hit instead).
        """
        if getattr(self._firing, "active", False):
            with self._stats_lock:
                self.missed += 1
            return
        with self._stats_lock:
            self.fires += 1
        self._firing.active = True
        try:
            run_hooked(
                self._hooked,
                lambda call: self._context(call, args, result),
                scratch=self._scratch,
                attach_cookie=self.cookie,
                func_ip=id(self.original),
                task=self.runtime.current_task(),
            )
        except PybpfError as error:
            with self._stats_lock:
                self.errors += 1
            self.last_error = error
        finally:
            self._firing.active = False

    def _context(self, call: CallMemory, args: tuple[Any, ...], result: Any) -> bytes:
        size = self.program.layout.uapi.size
        regs = self._regs
        passed = args[: len(self._param_offsets)] if regs is not None else args[: size // 8]
        values = [argument_value(call, value) for value in passed]
        if regs is None:  # fentry/fexit: u64 args[], then the return value for fexit
            if self.kind is LinkKind.FEXIT:
                values.append(argument_value(call, result))
            return pack_u64s(values[: size // 8], size)
        image = bytearray(size)
        for offset, value in zip(self._param_offsets, values, strict=False):
            image[offset : offset + 8] = value.to_bytes(8, "little")
        if self.kind in RETURN_KINDS:
            value = argument_value(call, result)
            image[self._rc_offset : self._rc_offset + 8] = value.to_bytes(8, "little")
        image[self._ip_offset : self._ip_offset + 8] = self._ip
        return bytes(image)

    # -- detach -------------------------------------------------------------------------------

    def _unhook(self) -> None:
        # Restore only if nobody replaced our wrapper since; otherwise it stays in the chain,
        # passing calls through (it checks ``attached``).
        owner, attribute = self._owner, self._attribute
        if owner is not None and attribute is not None and getattr(owner, attribute, None) is self.wrapper:
            setattr(owner, attribute, self.original)
        # No run lock: runs still in progress keep their scratch until they give it back.
        self._scratch.close()


def _owner_of(function: Callable[..., Any]) -> tuple[object | None, str | None]:
    """Where ``function`` is reachable by name: its module, or the class named in its qualname."""
    module = sys.modules.get(getattr(function, "__module__", "") or "")
    qualname = getattr(function, "__qualname__", "")
    if module is None or not qualname or "<locals>" in qualname:
        return None, None
    owner: object = module
    *path, attribute = qualname.split(".")
    for part in path:
        owner = getattr(owner, part, None)
        if owner is None:
            return None, None
    found = inspect.getattr_static(owner, attribute, None)
    if isinstance(found, staticmethod | classmethod):
        raise LinkError(f"{qualname}: probing static and class methods is not supported; probe the function")
    if found is not function:
        return None, None
    return owner, attribute


def attach_probe(
    program: Program,
    function: Callable[..., Any],
    *,
    cookie: int = 0,
    install: bool = True,
    runtime: HookRuntime | None = None,
) -> ProbeLink:
    """Attach ``program`` to ``function`` (entry or return, as the program's section says).

    With ``install`` (the default) the function is replaced where it is defined (module attribute
    or class attribute) until the link is detached, so every caller that looks it up by name hits
    the probe. Callers holding a direct reference (``from mod import f`` done earlier) keep the
    unprobed function, as with any monkey-patching; use ``link.wrapper`` for those, or the
    :func:`probe` decorator. ``cookie`` is what bpf_get_attach_cookie returns.
    """
    require_user_space(program)
    kind = probe_kind(program)
    return ProbeLink(program, function, kind, runtime=runtime, cookie=cookie, install=install)


def probe(program: Program, *, cookie: int = 0, runtime: HookRuntime | None = None) -> Callable[[F], F]:
    """Decorator form: ``@probe(prog)`` on a function definition returns the probed function.

    The link is ``func.__pybpf_links__[-1]`` (see :func:`links_of`).
    """

    require_user_space(program)

    def decorate(function: F) -> F:
        link = ProbeLink(program, function, probe_kind(program), runtime=runtime, cookie=cookie, install=False)
        wrapper: F = link.wrapper  # type: ignore[assignment]
        return wrapper

    return decorate


def links_of(function: Callable[..., Any]) -> list[ProbeLink]:
    """The probe links a wrapper serves (empty for a function that was never probed)."""
    return list(getattr(function, PROBE_ATTRIBUTE, ()))


__all__ = ["ProbeLink", "attach_probe", "links_of", "probe", "probe_kind", "regs_layout"]
