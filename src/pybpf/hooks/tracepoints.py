"""User-space tracepoints: an application declares events, tracepoint programs attach to them by name.

``tp = Tracepoint("app", "request", fields=[("id", "u32"), ("path", "char[32]")])`` declares the
event ``app/request``; ``tp.fire(id=7, path="/index")`` runs every program attached to it:

* tracepoint programs (``SEC("tracepoint/app/request")``) get the event record laid out as a
  kernel tracepoint's (``/sys/kernel/tracing/events/<category>/<name>/format``): the 8-byte
  common header (``u16 common_type; u8 common_flags; u8 common_preempt_count; s32 common_pid``),
  then the fields in declaration order, each aligned to its element size as a C struct member;
  :meth:`Tracepoint.format` prints that format;
* raw_tracepoint programs (``SEC("raw_tp/request")``) get the u64 argument array: one u64 per
  field (integers sign- or zero-extended, arrays as a pointer to a buffer holding them), the way
  a raw tracepoint sees its TP_PROTO arguments.

Field types: ``u8 u16 u32 u64 s8 s16 s32 s64`` (and ``bool``, ``int`` = s32, ``long`` = s64), and
arrays of them ``T[N]``; ``char[N]`` holds a string or bytes (truncated to N, zero padded).

The table of declared tracepoints and their links is per process (on the
:class:`~pybpf.hooks.link.HookRuntime`); ``common_type`` is the event's id in that table.
A tracepoint with nothing attached costs one attribute check per ``fire``.
"""

from __future__ import annotations

import re
import struct
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pybpf.errors import PybpfError
from pybpf.hooks.invoke import CallMemory, ScratchPool, argument_value, pack_u64s, require_user_space, run_hooked
from pybpf.hooks.link import HookRuntime, Link, LinkError, LinkKind, hook_runtime
from pybpf.platform.contexts import PERF_MAX_TRACE_SIZE
from pybpf.platform.uapi_generated import BpfProgType
from pybpf.runtime.program import Program

COMMON_HEADER_SIZE = 8
_SCALARS: dict[str, tuple[int, bool]] = {
    "u8": (1, False), "u16": (2, False), "u32": (4, False), "u64": (8, False),
    "s8": (1, True), "s16": (2, True), "s32": (4, True), "s64": (8, True),
    "char": (1, True), "bool": (1, False), "int": (4, True), "long": (8, True),
}
_FORMATS = {(1, False): "B", (2, False): "H", (4, False): "I", (8, False): "Q",
            (1, True): "b", (2, True): "h", (4, True): "i", (8, True): "q"}
_C_NAMES = {"u8": "u8", "u16": "u16", "u32": "u32", "u64": "u64", "s8": "s8", "s16": "s16", "s32": "s32",
            "s64": "s64", "char": "char", "bool": "bool", "int": "int", "long": "long"}
_TYPE = re.compile(r"^\s*(?P<base>[a-z0-9]+)\s*(?:\[\s*(?P<count>\d+)\s*\])?\s*$")


class TracepointError(PybpfError):
    """A tracepoint declaration or firing that cannot be honoured (bad field type, unknown field)."""


@dataclass(frozen=True, slots=True)
class TracepointField:
    """One field of the event record: where it is and how its values are encoded."""

    name: str
    type: str  # as declared: "u32", "char[32]"...
    offset: int  # from the start of the record (the common header included)
    element_size: int
    count: int  # 1 for a scalar; N for an array T[N]
    signed: bool
    is_array: bool

    @property
    def size(self) -> int:
        return self.element_size * self.count

    def encode(self, value: Any) -> bytes:
        """The field's bytes for ``value`` (0 / empty when the value is missing)."""
        if self.is_array:
            if isinstance(value, str):
                data = value.encode("utf-8", "surrogateescape")
            elif isinstance(value, bytes | bytearray | memoryview):
                data = bytes(value)
            elif self.element_size == 1 and value is None:
                data = b""
            else:
                items = list(value or ())
                code = _FORMATS[(self.element_size, self.signed)]
                data = struct.pack(f"<{len(items)}{code}", *items[: self.count])
            return data[: self.size].ljust(self.size, b"\0")
        mask = (1 << (8 * self.element_size)) - 1
        return (int(value or 0) & mask).to_bytes(self.element_size, "little")

    def raw_argument(self, call: CallMemory, value: Any, label: str) -> int:
        """The u64 a raw tracepoint program gets for this field."""
        if self.is_array:
            return argument_value(call, self.encode(value), label)
        return argument_value(call, int(value or 0), label)


def parse_fields(fields: Iterable[tuple[str, str]]) -> tuple[TracepointField, ...]:
    """Lay out ``(name, type)`` pairs after the common header with C alignment rules."""
    laid_out: list[TracepointField] = []
    offset = COMMON_HEADER_SIZE
    seen: set[str] = set()
    for name, type_name in fields:
        if not name.isidentifier() or name in seen or name.startswith("common_"):
            raise TracepointError(f"field name {name!r} is not a new identifier (common_* is reserved)")
        seen.add(name)
        match = _TYPE.match(type_name)
        if match is None or match["base"] not in _SCALARS:
            known = ", ".join(sorted(_SCALARS))
            raise TracepointError(f"field {name!r}: unknown type {type_name!r} (scalars: {known}; arrays T[N])")
        element_size, signed = _SCALARS[match["base"]]
        count = int(match["count"]) if match["count"] is not None else 1
        if count < 1:
            raise TracepointError(f"field {name!r}: an array needs at least one element")
        offset = (offset + element_size - 1) // element_size * element_size
        laid_out.append(
            TracepointField(name, type_name, offset, element_size, count, signed, match["count"] is not None)
        )
        offset += element_size * count
    if offset > PERF_MAX_TRACE_SIZE:
        raise TracepointError(f"the record is {offset} bytes; a tracepoint record is at most {PERF_MAX_TRACE_SIZE}")
    return tuple(laid_out)


class TracepointTable:
    """The tracepoints declared in this process, by ``category/name``, and the links on them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_name: dict[str, Tracepoint] = {}
        self._next_id = 1
        self._watchers: list[tuple[str, Callable[[Tracepoint], None]]] = []

    def declare(self, tracepoint: Tracepoint) -> int:
        """Register ``tracepoint``; its id (``common_type``). Watchers of its name see it now."""
        with self._lock:
            if tracepoint.full_name in self._by_name:
                raise TracepointError(f"tracepoint {tracepoint.full_name} is already declared")
            self._by_name[tracepoint.full_name] = tracepoint
            type_id = self._next_id
            self._next_id += 1
            tracepoint.id = type_id
            watchers = [callback for target, callback in self._watchers if _names(target, tracepoint)]
        # Outside the lock: a watcher attaches programs, which may look the table up again.
        for callback in watchers:
            callback(tracepoint)
        return type_id

    def watch(self, target: str, callback: Callable[[Tracepoint], None]) -> Callable[[], None]:
        """Call ``callback(tp)`` whenever a tracepoint ``target`` names is declared from now on.

        This is how a tracer attaches to tracepoints an application has yet to declare (``pybpf
        trace`` runs the application after attaching); ``target`` is ``category/name`` or a bare
        name. The callback runs in the declaring thread, inside ``Tracepoint(...)``, so it must not
        raise. Returns the function that stops watching.
        """
        entry = (target, callback)
        with self._lock:
            self._watchers.append(entry)

        def cancel() -> None:
            with self._lock:
                if entry in self._watchers:
                    self._watchers.remove(entry)

        return cancel

    def remove(self, tracepoint: Tracepoint) -> None:
        with self._lock:
            if self._by_name.get(tracepoint.full_name) is tracepoint:
                del self._by_name[tracepoint.full_name]

    def find(self, target: str) -> Tracepoint:
        """``category/name``, or a bare ``name`` when one category has it (raw tracepoints)."""
        with self._lock:
            if "/" in target:
                found = self._by_name.get(target)
                if found is None:
                    raise LinkError(f"no tracepoint {target!r} is declared (declared: {self._known()})")
                return found
            matches = [tp for tp in self._by_name.values() if tp.name == target]
            if len(matches) != 1:
                what = "no" if not matches else "more than one"
                raise LinkError(f"{what} tracepoint is named {target!r} (declared: {self._known()})")
            return matches[0]

    def declared(self, target: str) -> bool:
        """Whether a tracepoint ``target`` names (``category/name`` or a bare name) is declared."""
        with self._lock:
            return any(_names(target, tracepoint) for tracepoint in self._by_name.values())

    def _known(self) -> str:
        return ", ".join(sorted(self._by_name)) or "none"

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._by_name)


def _names(target: str, tracepoint: Tracepoint) -> bool:
    return tracepoint.full_name == target if "/" in target else tracepoint.name == target


def tracepoint_table(runtime: HookRuntime | None = None) -> TracepointTable:
    table: TracepointTable = (runtime or hook_runtime()).extension("tracepoints", TracepointTable)
    return table


class Tracepoint:
    """An event an application declares and fires; programs attach to it by ``category/name``."""

    def __init__(
        self,
        category: str,
        name: str,
        fields: Iterable[tuple[str, str]] = (),
        *,
        runtime: HookRuntime | None = None,
    ) -> None:
        for part in (category, name):
            if not part or not part.replace("_", "a").isalnum():
                raise TracepointError(f"tracepoint names are [A-Za-z0-9_]+, got {category!r}/{name!r}")
        self.category = category
        self.name = name
        self.full_name = f"{category}/{name}"
        self.fields = parse_fields(fields)
        self._by_name: Mapping[str, TracepointField] = {field.name: field for field in self.fields}
        self.size = max((field.offset + field.size for field in self.fields), default=COMMON_HEADER_SIZE)
        self.runtime = runtime if runtime is not None else hook_runtime()
        self._table = tracepoint_table(self.runtime)
        # Ready for links before declaring: a watcher of this name attaches inside declare().
        self._links: tuple[TracepointLink, ...] = ()
        self._links_lock = threading.Lock()
        self.id = 0
        self._table.declare(self)

    def __repr__(self) -> str:
        return f"Tracepoint({self.full_name!r}, id={self.id}, fields={[f.name for f in self.fields]})"

    @property
    def enabled(self) -> bool:
        """Whether any program is attached (an application may skip building costly arguments)."""
        return bool(self._links)

    def _attach(self, link: TracepointLink) -> None:
        with self._links_lock:
            self._links = (*self._links, link)

    def _detach(self, link: TracepointLink) -> None:
        with self._links_lock:
            self._links = tuple(other for other in self._links if other is not link)

    def record(self, values: Mapping[str, Any], pid: int = 0) -> bytes:
        """The event record a tracepoint program reads: the common header, then the fields."""
        unknown = set(values) - set(self._by_name)
        if unknown:
            raise TracepointError(f"{self.full_name} has no field(s) {sorted(unknown)}")
        data = bytearray(self.size)
        struct.pack_into("<HBBi", data, 0, self.id & 0xFFFF, 0, 0, pid)
        for field in self.fields:
            data[field.offset : field.offset + field.size] = field.encode(values.get(field.name))
        return bytes(data)

    def fire(self, **values: Any) -> int:
        """Run every attached program on this event; returns how many ran."""
        links = self._links
        if not links:
            return 0
        unknown = set(values) - set(self._by_name)
        if unknown:
            raise TracepointError(f"{self.full_name} has no field(s) {sorted(unknown)}")
        for link in links:
            link.run(values)
        return len(links)

    def format(self) -> str:
        """The event's format as tracefs prints it (``events/<category>/<name>/format``)."""
        lines = [f"name: {self.name}", f"ID: {self.id}", "format:"]
        header = (
            ("unsigned short common_type", 0, 2, 0),
            ("unsigned char common_flags", 2, 1, 0),
            ("unsigned char common_preempt_count", 3, 1, 0),
            ("int common_pid", 4, 4, 1),
        )
        for declaration, offset, size, signed in header:
            lines.append(f"\tfield:{declaration};\toffset:{offset};\tsize:{size};\tsigned:{signed};")
        lines.append("")
        for field in self.fields:
            base = _TYPE.match(field.type)
            c_type = _C_NAMES[base["base"]] if base is not None else field.type
            suffix = f"[{field.count}]" if field.is_array else ""
            lines.append(
                f"\tfield:{c_type} {field.name}{suffix};\toffset:{field.offset};\tsize:{field.size};"
                f"\tsigned:{int(field.signed)};"
            )
        return "\n".join(lines) + "\n"

    def close(self) -> None:
        """Detach every program and forget the declaration (the name may be declared again)."""
        for link in self._links:
            link.detach()
        self._table.remove(self)


class TracepointLink(Link):
    """A tracepoint or raw_tracepoint program attached to a :class:`Tracepoint`."""

    def __init__(self, program: Program, tracepoint: Tracepoint, kind: LinkKind, *, runtime: HookRuntime) -> None:
        super().__init__(kind, program, tracepoint.full_name, runtime=runtime)
        self.tracepoint = tracepoint
        self.fires = 0
        self.errors = 0
        self.last_error: PybpfError | None = None
        self._hooked = self.runtime.hooked(program)
        self._scratch = ScratchPool(program)  # one context per run in progress, for any thread
        tracepoint._attach(self)

    def run(self, values: Mapping[str, Any]) -> None:
        with self._stats_lock:
            self.fires += 1
        tracepoint = self.tracepoint
        if self.kind is LinkKind.TRACEPOINT:

            def build(call: CallMemory) -> bytes:
                return tracepoint.record(values, threading.get_native_id())

        else:
            size = self.program.layout.uapi.size

            def build(call: CallMemory) -> bytes:
                arguments = [
                    field.raw_argument(call, values.get(field.name), f"{tracepoint.full_name}.{field.name}")
                    for field in tracepoint.fields
                ]
                return pack_u64s(arguments[: size // 8], size)

        try:
            task = self.runtime.current_task()
            run_hooked(self._hooked, build, scratch=self._scratch, task=task)
        except PybpfError as error:
            with self._stats_lock:
                self.errors += 1
            self.last_error = error

    def _unhook(self) -> None:
        self.tracepoint._detach(self)
        # No run lock: runs still in progress keep their scratch until they give it back.
        self._scratch.close()


_KINDS = {
    BpfProgType.TRACEPOINT: LinkKind.TRACEPOINT,
    BpfProgType.RAW_TRACEPOINT: LinkKind.RAW_TRACEPOINT,
    BpfProgType.RAW_TRACEPOINT_WRITABLE: LinkKind.RAW_TRACEPOINT,
}


def tracepoint_kind(program: Program) -> LinkKind:
    """TRACEPOINT or RAW_TRACEPOINT: the link a program makes on a tracepoint (LinkError if none)."""
    require_user_space(program)
    kind = _KINDS.get(program.prog_type)
    if kind is None:
        raise LinkError(
            f"program {program.name!r} is a {program.type_spec.name} program; tracepoints take "
            "tracepoint and raw_tracepoint programs"
        )
    return kind


def attach_tracepoint(
    program: Program,
    category: str | None = None,
    name: str | None = None,
    *,
    runtime: HookRuntime | None = None,
) -> TracepointLink:
    """Attach a tracepoint/raw_tracepoint program to a declared tracepoint.

    The target is ``category/name`` when given, else the program's section
    (``tracepoint/app/request``; ``raw_tp/request`` names only the event).
    """
    kind = tracepoint_kind(program)
    runtime = runtime if runtime is not None else hook_runtime()
    if name is not None:
        target = f"{category}/{name}" if category else name
    elif category is not None:
        target = category
    else:
        target = program.spec.section_info.target or ""
        if not target:
            raise LinkError(f"program {program.name!r} (section {program.spec.section!r}) names no tracepoint")
    tracepoint = tracepoint_table(runtime).find(target)
    return TracepointLink(program, tracepoint, kind, runtime=runtime)


__all__ = [
    "Tracepoint",
    "TracepointError",
    "TracepointField",
    "TracepointLink",
    "TracepointTable",
    "attach_tracepoint",
    "parse_fields",
    "tracepoint_kind",
    "tracepoint_table",
]
