"""Fixtures shared by the runtime's kernel-differential tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kernel_oracle import kernel_bpffs


@pytest.fixture(scope="module")
def bpffs() -> Iterator[Path]:
    """A private bpffs mount for the module (skipped without root, bpf() or bpftool)."""
    yield from kernel_bpffs()
