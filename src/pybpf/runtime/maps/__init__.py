"""User-space implementations of the kernel's BPF maps, one module per map family.

:func:`create_map` builds the right :class:`Map` for a :class:`MapDef`; each map keeps its
values in regions of the runtime's :class:`~pybpf.vm.memory.AddressSpace`, at stable native
addresses. See :mod:`pybpf.runtime.maps.base` for the program-side and user-space APIs.
"""

from __future__ import annotations

from pybpf.errors import MapInvalidArgumentError
from pybpf.platform.uapi_generated import BpfMapType
from pybpf.runtime.maps.arena import ArenaMap
from pybpf.runtime.maps.array import ArrayMap, PercpuArrayMap
from pybpf.runtime.maps.base import ForEachCallback, Map
from pybpf.runtime.maps.bloom_filter import BloomFilterMap
from pybpf.runtime.maps.definition import MapDef
from pybpf.runtime.maps.fd_array import FdArrayMap, ProgArrayMap
from pybpf.runtime.maps.hash import HashMap, LruHashMap, LruPercpuHashMap, PercpuHashMap
from pybpf.runtime.maps.lpm_trie import LpmTrieMap
from pybpf.runtime.maps.map_in_map import ArrayOfMapsMap, HashOfMapsMap
from pybpf.runtime.maps.perf_event_array import PerfBuffer, PerfEventArrayMap, PerfEventBuffer
from pybpf.runtime.maps.queue_stack import QueueMap, StackMap
from pybpf.runtime.maps.redirect import CpuMap, DevMap, DevMapHash, XskMap
from pybpf.runtime.maps.ringbuf import RingBufferConsumer, RingBufMap
from pybpf.runtime.maps.user_ringbuf import UserRingBufMap, UserRingSample
from pybpf.vm.memory import AddressSpace

MAP_CLASSES: dict[BpfMapType, type[Map]] = {
    map_type: cls
    for cls in (
        ArrayMap,
        PercpuArrayMap,
        HashMap,
        PercpuHashMap,
        LruHashMap,
        LruPercpuHashMap,
        LpmTrieMap,
        QueueMap,
        StackMap,
        BloomFilterMap,
        RingBufMap,
        UserRingBufMap,
        PerfEventArrayMap,
        ProgArrayMap,
        ArrayOfMapsMap,
        HashOfMapsMap,
        DevMap,
        DevMapHash,
        CpuMap,
        XskMap,
        ArenaMap,
    )
    for map_type in cls.MAP_TYPES
}
"""The implementation of each supported map type."""


def create_map(definition: MapDef, address_space: AddressSpace, ncpus: int = 1) -> Map:
    """A new, empty map for ``definition`` whose memory lives in ``address_space``.

    ``ncpus`` is the number of virtual CPUs (per-CPU maps keep that many copies of each value).
    Raises the error BPF_MAP_CREATE would give (EINVAL for a bad definition...).
    """
    cls = MAP_CLASSES.get(definition.type)
    if cls is None:
        raise MapInvalidArgumentError(f"map type {definition.type!r} is not supported in user space")
    return cls(definition, address_space, ncpus)


__all__ = [
    "MAP_CLASSES",
    "ArenaMap",
    "ArrayMap",
    "ArrayOfMapsMap",
    "BloomFilterMap",
    "CpuMap",
    "DevMap",
    "DevMapHash",
    "FdArrayMap",
    "ForEachCallback",
    "HashMap",
    "HashOfMapsMap",
    "LpmTrieMap",
    "LruHashMap",
    "LruPercpuHashMap",
    "Map",
    "MapDef",
    "PercpuArrayMap",
    "PercpuHashMap",
    "PerfBuffer",
    "PerfEventArrayMap",
    "PerfEventBuffer",
    "ProgArrayMap",
    "QueueMap",
    "RingBufMap",
    "RingBufferConsumer",
    "StackMap",
    "UserRingBufMap",
    "UserRingSample",
    "XskMap",
    "create_map",
]
