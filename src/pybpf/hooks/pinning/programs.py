"""Pinned programs and links.

A program pin keeps the program's **object file** (its bytes, after the header), the program's
name and type: :func:`open_pinned_program` loads that object again in the calling process
(verified like any load) and returns the program, runnable there. The reloaded program has its
own, private maps: a process cannot run another's program against that process's maps, because
a hash map's index or a ring buffer's producer side lives in one process only (see the package
docstring). Share data between the two processes through pinned maps instead.

A link pin is a description (kind, target, program, pid, whether attached): a hook fires in the
process that attached it, so a link has no meaning in another process; ``pybpf link list``
reads link pins to show the links of other processes (``alive`` says whether the owner runs),
and removing the pin does not detach the link (detaching does, in its own process).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pybpf.errors import NotSupportedError
from pybpf.hooks.pinning.store import PinError, list_pins, pin_path, process_alive, read_payload, read_pin, write_new
from pybpf.platform.uapi_generated import BpfProgType

if TYPE_CHECKING:
    from pybpf.hooks.link import Link
    from pybpf.runtime.program import Program


def pin_program(
    program: Program,
    path: str | os.PathLike[str],
    root: str | os.PathLike[str] | None = None,
    *,
    object_file: str | os.PathLike[str] | None = None,
) -> Path:
    """Pin ``program`` (name, section, type, id, pid) with the bytes of ``object_file``, the
    object it was loaded from; without it the pin is a description only (not loadable)."""
    payload = Path(object_file).read_bytes() if object_file is not None else b""
    meta = {
        "kind": "prog",
        "name": program.name,
        "object": os.path.abspath(object_file) if object_file is not None else None,
        "object_size": len(payload),
        "section": program.spec.section,
        "type": program.type_spec.name,
        "prog_type": int(program.prog_type),
        "id": program.id,
        "pid": os.getpid(),
    }
    full = pin_path(path, root)
    os.close(write_new(full, meta, payload=payload))
    return full


def open_pinned_program(
    path: str | os.PathLike[str], root: str | os.PathLike[str] | None = None, **load_options: Any
) -> Program:
    """The program pinned at ``path``, loaded again in this process from the pinned object bytes
    (with its own maps); ``load_options`` go to :func:`pybpf.load` (``engine``, ``ncpus``...)."""
    from pybpf.hooks.provider import install
    from pybpf.runtime.loader import load

    info = read_pin(path, root)
    if info.kind != "prog":
        raise PinError(f"{info.path} pins a {info.kind or 'unknown object'}, not a program")
    size = int(info.meta.get("object_size", 0))
    if not size:
        raise NotSupportedError(f"{info.path}: the program was pinned without its object file (pass object_file)")
    payload = read_payload(info)[:size]
    if len(payload) != size:
        raise PinError(f"{info.path}: the pinned object is truncated")
    name = str(info.meta["name"])
    prog_types = {name: BpfProgType(int(info.meta["prog_type"]))} if "prog_type" in info.meta else None
    obj = load(payload, prog_types=prog_types, **load_options)
    install(obj)  # as pybpf.load does: the reloaded program attaches to hooks like any other
    return obj.program(name)


def pin_link(link: Link, path: str | os.PathLike[str], root: str | os.PathLike[str] | None = None) -> Path:
    """Pin a description of ``link`` (``pybpf link list`` shows it while the pin exists)."""
    meta = {"kind": "link", "link": link.info().as_dict()}
    full = pin_path(path, root)
    os.close(write_new(full, meta))
    return full


def pinned_links(root: str | os.PathLike[str] | None = None) -> list[dict[str, Any]]:
    """The pinned links, each as its description plus ``path`` and ``alive`` (its process runs)."""
    records = []
    for info in list_pins(root, "link"):
        record = dict(info.meta.get("link", {}))
        record.update(path=str(info.path), alive=process_alive(int(record.get("pid", 0))))
        records.append(record)
    return records


__all__ = ["open_pinned_program", "pin_link", "pin_program", "pinned_links"]
