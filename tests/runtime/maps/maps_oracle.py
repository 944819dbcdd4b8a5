"""Run the same map operations on one of our maps and on a kernel map, as comparable outcomes.

An outcome is ``("ok", result)`` or ``("err", errno_name)``. The kernel side goes through
:mod:`pybpf.kernel` (the oracle); ours through the user-space API of :mod:`pybpf.runtime.maps`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from pybpf.errors import BpfCommandError, MapErrnoError
from pybpf.kernel import (
    Fd,
    available,
    map_create,
    map_delete,
    map_freeze,
    map_get_next_key,
    map_keys,
    map_lookup,
    map_lookup_and_delete,
    map_update,
)
from pybpf.kernel.syscall import errno_name
from pybpf.runtime.maps import Map, MapDef, create_map
from pybpf.vm.memory import AddressSpace

Outcome = tuple[str, Any]

KERNEL_OK, KERNEL_REASON = available()


def possible_cpus() -> int:
    """The kernel's number of possible CPUs (the per-CPU value layout depends on it)."""
    text = Path("/sys/devices/system/cpu/possible").read_text().strip()
    count = 0
    for part in text.split(","):
        low, _, high = part.partition("-")
        count += int(high or low) - int(low) + 1
    return count


def outcome(call: Callable[[], Any]) -> Outcome:
    try:
        return ("ok", call())
    except MapErrnoError as error:
        # Compare numbers, named one way (Python calls 95 ENOTSUP where the kernel says EOPNOTSUPP).
        return ("err", errno_name(error.errno))
    except BpfCommandError as error:
        return ("err", errno_name(error.errno))


class Pair:
    """Our map and the kernel's, created from one definition."""

    def __init__(self, definition: MapDef, ncpus: int | None = None, map_extra: int = 0) -> None:
        self.definition = definition
        self.ncpus = possible_cpus() if ncpus is None else ncpus
        self.ours: Map = create_map(definition, AddressSpace(), self.ncpus)
        self.fd: Fd = map_create(
            definition.type,
            definition.key_size,
            definition.value_size,
            definition.max_entries,
            map_flags=definition.map_flags,
            map_extra=map_extra or definition.map_extra,
        )
        self.user_value_size = self.ours.user_value_size

    def close(self) -> None:
        self.fd.close()
        self.ours.close()

    # Each operation returns (ours, kernel).
    def update(self, key: bytes, value: bytes, flags: int) -> tuple[Outcome, Outcome]:
        return (
            outcome(lambda: self.ours.update_raw(key, value, flags)),
            outcome(lambda: map_update(self.fd, key, value, flags)),
        )

    def lookup(self, key: bytes, flags: int = 0) -> tuple[Outcome, Outcome]:
        return (
            outcome(lambda: self.ours.lookup_raw(key, flags)),
            outcome(lambda: map_lookup(self.fd, key, self.user_value_size, flags=flags)),
        )

    def delete(self, key: bytes) -> tuple[Outcome, Outcome]:
        return outcome(lambda: self.ours.delete_raw(key)), outcome(lambda: map_delete(self.fd, key))

    def next_key(self, key: bytes | None) -> tuple[Outcome, Outcome]:
        return (
            outcome(lambda: self.ours.get_next_key_raw(key)),
            outcome(lambda: map_get_next_key(self.fd, key, self.definition.key_size)),
        )

    def lookup_and_delete(self, key: bytes | None, flags: int = 0) -> tuple[Outcome, Outcome]:
        return (
            outcome(lambda: self.ours.lookup_and_delete_raw(key or b"", flags)),
            outcome(lambda: map_lookup_and_delete(self.fd, key, self.user_value_size, flags=flags)),
        )

    def freeze(self) -> tuple[Outcome, Outcome]:
        return outcome(self.ours.freeze), outcome(lambda: map_freeze(self.fd))

    def key_sets(self) -> tuple[set[bytes], set[bytes]]:
        return set(self.ours.raw_keys()), set(map_keys(self.fd, self.definition.key_size))


def create_outcomes(definition: MapDef, ncpus: int = 1) -> tuple[Outcome, Outcome]:
    """Whether creating ``definition`` works, for us and for the kernel (errno name when not)."""

    def ours() -> None:
        create_map(definition, AddressSpace(), ncpus).close()

    def kernel() -> None:
        map_create(
            definition.type,
            definition.key_size,
            definition.value_size,
            definition.max_entries,
            map_flags=definition.map_flags,
            map_extra=definition.map_extra,
        ).close()

    return outcome(ours), outcome(kernel)


def kernel_bloom_peek(fd: Fd, value: bytes) -> Outcome:
    """BPF_MAP_LOOKUP_ELEM on a kernel bloom filter: the kernel reads the value to test from the value buffer."""
    import ctypes

    from pybpf.kernel.attrs import MapElemAttr
    from pybpf.kernel.fd import fd_number
    from pybpf.kernel.syscall import BpfCmd, bpf

    buffer = ctypes.create_string_buffer(value, len(value))
    attr = MapElemAttr(map_fd=fd_number(fd))
    attr.value = ctypes.addressof(buffer)
    return outcome(lambda: (bpf(BpfCmd.MAP_LOOKUP_ELEM, attr), None)[1])
