"""pybpf: eBPF as the Linux kernel has it, in Python."""

from __future__ import annotations

__version__ = "0.1.0"

import importlib
import os
from typing import TYPE_CHECKING, Any, Literal, overload

if TYPE_CHECKING:
    from pybpf.hooks.link import Link
    from pybpf.hooks.lsm import attach_audit
    from pybpf.hooks.probes import attach_probe, probe
    from pybpf.hooks.tracepoints import Tracepoint, attach_tracepoint
    from pybpf.kernel.object import KernelObject
    from pybpf.runtime.object import Object

__all__ = ["Link", "Tracepoint", "__version__", "attach_audit", "attach_probe", "attach_tracepoint", "load", "probe"]

# The hooks' entry points, importable from the top (``pybpf.Tracepoint``), imported on first use.
_HOOK_EXPORTS = {
    "Link": "pybpf.hooks.link",
    "Tracepoint": "pybpf.hooks.tracepoints",
    "attach_audit": "pybpf.hooks.lsm",
    "attach_probe": "pybpf.hooks.probes",
    "attach_tracepoint": "pybpf.hooks.tracepoints",
    "probe": "pybpf.hooks.probes",
}


def __getattr__(name: str) -> Any:
    module = _HOOK_EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pybpf' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)

Backend = Literal["vm", "kernel"]


@overload
def load(source: str | os.PathLike[str] | bytes, *, backend: Literal["vm"] = "vm", **options: Any) -> Object: ...


@overload
def load(source: str | os.PathLike[str] | bytes, *, backend: Literal["kernel"], **options: Any) -> KernelObject: ...


def load(source: str | os.PathLike[str] | bytes, *, backend: Backend = "vm", **options: Any) -> Object | KernelObject:
    """Load a BPF ELF object: in user space (``backend="vm"``) or into the kernel (``"kernel"``).

    Both give an object with the same API (``program(name).test_run(...)``, ``maps[name][key]``...);
    ``options`` go to :func:`pybpf.runtime.loader.load` or :func:`pybpf.kernel.loader.load`.
    Imports are lazy, so ``import pybpf`` stays cheap. A user-space object's programs attach to
    hooks with ``prog.attach_probe(func)``, ``prog.attach_tracepoint(...)``, ``prog.attach_audit(event)``...:
    loading installs :mod:`pybpf.hooks` in the object's programs, which then serves those methods.
    """
    if backend == "vm":
        hooks = importlib.import_module("pybpf.hooks")
        from pybpf.runtime.loader import load as load_vm

        loaded = load_vm(source, **options)
        hooks.install(loaded)  # the hooks serve this object's Program.attach_* methods
        return loaded
    if backend == "kernel":
        from pybpf.kernel.loader import load as load_kernel
        from pybpf.kernel.map_api import ValueCodec
        from pybpf.runtime.typed_values import btf_value_decode, btf_value_encode

        options.setdefault("codec", ValueCodec(btf_value_encode, btf_value_decode))
        return load_kernel(source, **options)
    from pybpf.errors import NotSupportedError

    raise NotSupportedError(f"unknown backend {backend!r} (expected 'vm' or 'kernel')")
