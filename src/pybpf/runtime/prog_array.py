"""BPF_MAP_TYPE_PROG_ARRAY for the user-space runtime: slots holding prepared programs.

bpf_tail_call finds the target with :meth:`ProgramArray.program_at` (the helpers' protocol).
User space fills slots with :meth:`set_program` (the loader does it for ``values = {...}``
initialisers); the raw view (``lookup_raw``/``raw_keys``) reports each slot's program id.
"""

from __future__ import annotations

import ctypes

from pybpf.errors import MapInvalidArgumentError, MapKeyNotFoundError
from pybpf.platform.uapi_generated import BpfMapType
from pybpf.vm.interpreter import Interpreter


class ProgramArray:
    """A prog_array of ``max_entries`` slots (4-byte keys and values, as the kernel requires)."""

    type = BpfMapType.PROG_ARRAY
    PERCPU = False

    def __init__(self, name: str, max_entries: int, key_size: int = 4, value_size: int = 4) -> None:
        if key_size != 4 or value_size != 4 or max_entries <= 0:
            raise MapInvalidArgumentError(f"prog array {name!r}: key and value must be 4 bytes, max_entries > 0")
        self.name = name
        self.key_size = key_size
        self.value_size = value_size
        self.max_entries = max_entries
        self.ncpus = 1
        self._identity = (ctypes.c_char * 8)()
        self.address: int = ctypes.addressof(self._identity)  # the map pointer programs hold
        self._slots: dict[int, tuple[int, Interpreter]] = {}

    def set_program(self, index: int, program_id: int, program: Interpreter) -> None:
        if not 0 <= index < self.max_entries:
            raise MapInvalidArgumentError(f"prog array {self.name!r}: index {index} is out of range")
        self._slots[index] = (program_id, program)

    def clear(self, index: int) -> None:
        self._slots.pop(index, None)

    def program_at(self, index: int) -> Interpreter | None:
        slot = self._slots.get(index)
        return None if slot is None else slot[1]

    def lookup_address(self, key: bytes, cpu: int = 0) -> int:
        return 0  # programs cannot look up prog arrays (the verifier refuses it)

    def raw_keys(self) -> list[bytes]:
        return [index.to_bytes(4, "little") for index in sorted(self._slots)]

    def lookup_raw(self, key: bytes, flags: int = 0) -> bytes:
        slot = self._slots.get(int.from_bytes(key, "little"))
        if slot is None:
            raise MapKeyNotFoundError(f"prog array {self.name!r}: no program in slot {key.hex()}")
        return slot[0].to_bytes(4, "little")

    def close(self) -> None:
        self._slots.clear()
