"""pybpf: eBPF as the Linux kernel has it, in Python."""

from __future__ import annotations

__version__ = "0.1.0"

import os
from typing import TYPE_CHECKING, Any, Literal, overload

if TYPE_CHECKING:
    from pybpf.kernel.object import KernelObject
    from pybpf.runtime.object import Object

__all__ = ["__version__", "load"]

Backend = Literal["vm", "kernel"]


@overload
def load(source: str | os.PathLike[str] | bytes, *, backend: Literal["vm"] = "vm", **options: Any) -> Object: ...


@overload
def load(source: str | os.PathLike[str] | bytes, *, backend: Literal["kernel"], **options: Any) -> KernelObject: ...


def load(source: str | os.PathLike[str] | bytes, *, backend: Backend = "vm", **options: Any) -> Object | KernelObject:
    """Load a BPF ELF object: in user space (``backend="vm"``) or into the kernel (``"kernel"``).

    Both give an object with the same API (``program(name).test_run(...)``, ``maps[name][key]``...);
    ``options`` go to :func:`pybpf.runtime.loader.load` or :func:`pybpf.kernel.loader.load`.
    Imports are lazy, so ``import pybpf`` stays cheap.
    """
    if backend == "vm":
        from pybpf.runtime.loader import load as load_vm

        return load_vm(source, **options)
    if backend == "kernel":
        from pybpf.kernel.loader import load as load_kernel
        from pybpf.kernel.map_api import ValueCodec
        from pybpf.runtime.typed_values import btf_value_decode, btf_value_encode

        options.setdefault("codec", ValueCodec(btf_value_encode, btf_value_decode))
        return load_kernel(source, **options)
    from pybpf.errors import NotSupportedError

    raise NotSupportedError(f"unknown backend {backend!r} (expected 'vm' or 'kernel')")
