"""BPF_MAP_TYPE_BLOOM_FILTER (the kernel's bloom_filter.c).

Push sets ``nr_hash_funcs`` bits (``map_extra`` & 0xF, default 5) chosen by jhash of the value;
peek answers "maybe present" (0) or "surely absent" (ENOENT). The bit array is sized as the
kernel sizes it (``max_entries * nr_hash_funcs * 7 / 5`` bits rounded up to a power of two, at
least 64) and hashes with seed ``random`` — or 0 with BPF_F_ZERO_SEED, which makes every
answer, false positives included, the kernel's.

Nothing can be removed or iterated: pop, delete and get_next_key fail with EOPNOTSUPP.
"""

from __future__ import annotations

import errno as errno_codes
import secrets
from collections.abc import Iterator
from typing import Any, ClassVar

from pybpf.errors import MapInvalidArgumentError, MapKeyNotFoundError
from pybpf.platform.uapi_generated import BpfMapFlag, BpfMapType
from pybpf.runtime.maps.base import Map, eopnotsupp
from pybpf.runtime.maps.definition import ACCESS_MASK, MapDef, check_flags, invalid
from pybpf.runtime.maps.jhash import jhash, jhash2
from pybpf.vm.memory import AddressSpace

BLOOM_CREATE_FLAGS = BpfMapFlag.NUMA_NODE | BpfMapFlag.ZERO_SEED | ACCESS_MASK
NR_HASH_FUNCS_MASK = 0xF
DEFAULT_NR_HASH_FUNCS = 5
BITS_PER_LONG = 64
_U32_MAX = 0xFFFFFFFF


def bitset_mask(max_entries: int, nr_hash_funcs: int) -> int:
    """The kernel's bit-array size minus one for a filter of ``max_entries`` values."""
    nr_bits = max_entries * nr_hash_funcs
    if nr_bits > _U32_MAX or (nr_bits // 5) * 7 > _U32_MAX:
        return _U32_MAX
    nr_bits = (nr_bits // 5) * 7
    if nr_bits > 1 << 31:
        return _U32_MAX
    if nr_bits <= BITS_PER_LONG:
        return BITS_PER_LONG - 1
    return (1 << (nr_bits - 1).bit_length()) - 1


class BloomFilterMap(Map):
    """A set that may answer "present" for values never pushed, but never "absent" for pushed ones."""

    MAP_TYPES: ClassVar[tuple[BpfMapType, ...]] = (BpfMapType.BLOOM_FILTER,)
    HAS_KEYS = False

    def __init__(self, definition: MapDef, address_space: AddressSpace, ncpus: int = 1) -> None:
        super().__init__(definition, address_space, ncpus)
        self.nr_hash_funcs = (definition.map_extra & NR_HASH_FUNCS_MASK) or DEFAULT_NR_HASH_FUNCS
        self.mask = bitset_mask(self.max_entries, self.nr_hash_funcs)
        self.seed = 0 if self.map_flags & BpfMapFlag.ZERO_SEED else secrets.randbits(32)
        self._bits = bytearray((self.mask + 1 + 7) // 8)

    def validate(self) -> None:
        definition = self.definition
        if definition.key_size != 0 or definition.value_size == 0 or definition.max_entries == 0:
            raise invalid(definition, "needs key_size 0, a value_size and max_entries")
        check_flags(definition, BLOOM_CREATE_FLAGS)
        if definition.map_extra & ~NR_HASH_FUNCS_MASK:
            raise invalid(definition, "map_extra holds only the number of hash functions (0..15)")

    def _hashes(self, value: bytes) -> list[int]:
        hash_function = jhash2 if len(value) % 4 == 0 else jhash
        return [hash_function(value, (self.seed + index) & _U32_MAX) & self.mask for index in range(self.nr_hash_funcs)]

    def push(self, value: bytes, flags: int = 0) -> None:
        if flags != 0:
            raise MapInvalidArgumentError(f"{self.label}: push takes only BPF_ANY")
        bits = self._bits
        for bit in self._hashes(bytes(value[: self.value_size])):
            bits[bit >> 3] |= 1 << (bit & 7)

    def may_contain(self, value: bytes) -> bool:
        bits = self._bits
        return all(bits[bit >> 3] & (1 << (bit & 7)) for bit in self._hashes(bytes(value[: self.value_size])))

    def peek_raw(self, value: bytes) -> None:
        """BPF_MAP_LOOKUP_ELEM on a bloom filter: ENOENT when ``value`` is surely absent."""
        self._check_read()
        if len(value) != self.value_size:
            raise MapInvalidArgumentError(f"{self.label}: values are {self.value_size} bytes")
        if not self.may_contain(value):
            raise MapKeyNotFoundError(f"{self.label}: the value is not in the filter")

    def __contains__(self, value: object) -> bool:
        encoded = self._encode_one_value(value)
        try:
            self.peek_raw(encoded)
        except MapKeyNotFoundError:
            return False
        return True

    # -- program side -----------------------------------------------------------------------------

    def prog_push(self, value: bytes, flags: int = 0) -> int:
        if flags != 0:
            return -errno_codes.EINVAL
        self.push(value)
        return 0

    def prog_peek(self, out: memoryview) -> int:
        return 0 if self.may_contain(bytes(out[: self.value_size])) else -errno_codes.ENOENT

    def prog_pop(self, out: memoryview) -> int:
        return -errno_codes.EOPNOTSUPP

    # -- bpf(2) routing ---------------------------------------------------------------------------

    def _update(self, key: bytes, value: bytes, flags: int, cpu: int | None) -> None:
        self.push(value, flags)

    def _lookup_user(self, key: bytes, flags: int) -> bytes:
        raise eopnotsupp(f"{self.label}: look values up with peek_raw(value) or `value in filter`")

    def _delete(self, key: bytes) -> None:
        raise eopnotsupp(f"{self.label}: delete")

    def _next_key(self, key: bytes | None) -> bytes | None:
        raise eopnotsupp(f"{self.label}: get_next_key")

    def __iter__(self) -> Iterator[Any]:
        raise eopnotsupp(f"{self.label}: iteration")

    def __len__(self) -> int:
        raise eopnotsupp(f"{self.label}: a bloom filter does not count its values")
