"""A loaded object: its programs and maps, live in one user-space address space."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from pybpf.btf import Btf
from pybpf.errors import MapKeyNotFoundError
from pybpf.obj import ObjectSpec
from pybpf.runtime.helpers.services import RuntimeServices
from pybpf.runtime.program import Program
from pybpf.vm.memory import AddressSpace


@dataclass(frozen=True, slots=True)
class MapEntry:
    """One element as user space reads it: key bytes and value bytes (one per CPU for per-CPU maps)."""

    key: bytes
    value: bytes | tuple[bytes, ...]


class Object:
    """What :func:`pybpf.load` returns: programs by function name, maps by name, the object's BTF."""

    def __init__(
        self,
        spec: ObjectSpec,
        memory: AddressSpace,
        services: RuntimeServices,
        programs: Mapping[str, Program],
        maps: Mapping[str, Any],
    ) -> None:
        self.spec = spec
        self.name = spec.name
        self.memory = memory
        self.services = services
        self.programs = dict(programs)
        self.maps = dict(maps)
        self.btf: Btf | None = spec.btf
        self.license = spec.license

    def __repr__(self) -> str:
        return f"Object({self.name!r}, programs={sorted(self.programs)}, maps={sorted(self.maps)})"

    def program(self, name: str) -> Program:
        from pybpf.runtime.loader import ObjectLoadError

        try:
            return self.programs[name]
        except KeyError:
            known = ", ".join(sorted(self.programs)) or "none"
            raise ObjectLoadError(f"no program named {name!r} (programs: {known})", file=self.spec.elf.file) from None

    def map_entries(self, name: str) -> Iterator[MapEntry]:
        """Every element of map ``name`` as user space sees it (per-CPU values split per CPU)."""
        from pybpf.runtime.loader import ObjectLoadError

        found = self.maps.get(name)
        if found is None:
            known = ", ".join(sorted(self.maps)) or "none"
            raise ObjectLoadError(f"no map named {name!r} (maps: {known})", file=self.spec.elf.file)
        percpu = bool(getattr(found, "PERCPU", False))
        for key in list(found.raw_keys()):
            try:
                value = bytes(found.lookup_raw(key))
            except MapKeyNotFoundError:
                continue
            if percpu:
                stride = (found.value_size + 7) // 8 * 8
                copies = tuple(value[i * stride : i * stride + found.value_size] for i in range(found.ncpus))
                yield MapEntry(bytes(key), copies)
            else:
                yield MapEntry(bytes(key), value)

    def close(self) -> None:
        """Release every map's memory and the runtime services."""
        for found in self.maps.values():
            close = getattr(found, "close", None)
            if close is not None:
                close()
        self.services.close()

    def __enter__(self) -> Object:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
