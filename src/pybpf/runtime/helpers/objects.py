"""The referenced kernel objects of one address space and their reference counts.

The kernel hands programs referenced objects (``bpf_cpumask_create``, ``bpf_task_acquire``...):
the program must release each reference or move it into a map's kptr with ``bpf_kptr_xchg``,
and the map releases what its kptrs still hold when an element is deleted or overwritten or the
map is freed. :class:`KernelObjects` is that bookkeeping (the
:class:`~pybpf.runtime.helpers.services.RuntimeServices` own one): an object is a region of the
address space with a reference count, unmapped when the last reference goes (a program still
holding its address then faults, as a use-after-free would). An address it does not know (the
task of ``current``, which lives as long as the services) is not counted.
"""

from __future__ import annotations

from dataclasses import dataclass

from pybpf.vm.memory import AddressSpace, Region, RegionKind


@dataclass(slots=True)
class _Object:
    region: Region
    kind: str
    refs: int = 1


class KernelObjects:
    """The referenced objects of one address space, by address."""

    def __init__(self, memory: AddressSpace) -> None:
        self.memory = memory
        self._objects: dict[int, _Object] = {}

    def create(self, kind: str, size: int) -> int:
        """A new zeroed object of ``size`` bytes with one reference; its address."""
        region = self.memory.add(Region.zeroed(RegionKind.HELPER_MEM, f"struct {kind}", size))
        self._objects[region.address] = _Object(region, kind)
        return region.address

    def acquire(self, address: int) -> int:
        """One more reference to the object at ``address`` (an uncounted one: nothing to do)."""
        found = self._objects.get(address)
        if found is not None:
            found.refs += 1
        return address

    def release(self, address: int) -> None:
        """Drop a reference; the last one frees the object (unmaps its region)."""
        found = self._objects.get(address)
        if found is None:
            return
        found.refs -= 1
        if found.refs <= 0:
            del self._objects[address]
            if found.region in self.memory:
                self.memory.remove(found.region)

    def references(self, address: int) -> int:
        """How many references the object at ``address`` has (0: freed or never counted)."""
        found = self._objects.get(address)
        return found.refs if found is not None else 0

    def addresses(self, kind: str | None = None) -> list[int]:
        """The addresses of the live objects (of ``kind``), oldest first."""
        return [address for address, found in self._objects.items() if kind is None or found.kind == kind]

    def live(self, kind: str | None = None) -> int:
        """How many objects (of ``kind``) are alive."""
        return sum(1 for found in self._objects.values() if kind is None or found.kind == kind)

    def close(self) -> None:
        for found in self._objects.values():
            if found.region in self.memory:
                self.memory.remove(found.region)
        self._objects.clear()


__all__ = ["KernelObjects"]
