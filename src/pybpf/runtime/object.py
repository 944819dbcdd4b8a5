"""A loaded object: its programs and maps, live in one user-space address space."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from pybpf.btf import Btf
from pybpf.errors import MapKeyNotFoundError
from pybpf.obj import ObjectSpec
from pybpf.runtime.helpers.services import RuntimeServices, TracePipe
from pybpf.runtime.maps import FdArrayMap, HashOfMapsMap, PerfEventArrayMap
from pybpf.runtime.program import Program
from pybpf.vm.memory import AddressSpace


@dataclass(frozen=True, slots=True)
class MapEntry:
    """One element as user space reads it: key bytes and value bytes (one per CPU for per-CPU maps)."""

    key: bytes
    value: bytes | tuple[bytes, ...]


class Object:
    """What :func:`pybpf.load` returns: programs by function name, maps by name, the object's BTF.

    Maps are numbered from 1 in the object's order (:meth:`map_id`), as programs are
    (``Program.id``): user space reads those ids from prog arrays and maps of maps, as it
    reads kernel ids there. :attr:`trace_pipe` collects the programs' bpf_trace_printk output.
    """

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
        self._map_ids = {id(found): number for number, found in enumerate(self.maps.values(), start=1)}

    @property
    def trace_pipe(self) -> TracePipe:
        """Where bpf_trace_printk/trace_vprintk messages of this object's programs go."""
        return self.services.trace_pipe

    def map_id(self, found: object) -> int:
        """The id of one of this object's maps (0 for a map the object did not create)."""
        return self._map_ids.get(id(found), 0)

    def _object_id(self, found: object) -> int:
        program_id = getattr(found, "id", None)
        return program_id if isinstance(program_id, int) else self.map_id(found)

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
        if isinstance(found, PerfEventArrayMap) or not getattr(found, "HAS_KEYS", True):
            # No user-space lookup for perf event fds (ENOTSUPP), no keys in queues and stacks.
            return
        if isinstance(found, FdArrayMap | HashOfMapsMap):
            # Slots hold programs or maps; user space reads their ids, as BPF_MAP_LOOKUP_ELEM does.
            for key, held in list(found.items()):
                yield MapEntry(found.encode_key(key), self._object_id(held).to_bytes(4, "little"))
            return
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
