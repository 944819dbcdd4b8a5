"""pybpf: eBPF as the Linux kernel has it, in Python."""

from __future__ import annotations

__version__ = "0.1.0"

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pybpf.runtime.loader import load

__all__ = ["__version__", "load"]


def __getattr__(name: str) -> Any:
    # Lazy, so that ``import pybpf`` stays cheap and lower layers never import the runtime.
    if name == "load":
        from pybpf.runtime.loader import load

        return load
    raise AttributeError(f"module 'pybpf' has no attribute {name!r}")
