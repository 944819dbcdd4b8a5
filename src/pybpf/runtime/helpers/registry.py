"""The helper table: helper id -> implementation, checked against the shared prototype table."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from pybpf.errors import HelperError
from pybpf.platform.helpers import HELPER_PROTOS
from pybpf.platform.uapi_generated import HelperId
from pybpf.runtime.helpers.csum import CSUM_HELPERS
from pybpf.runtime.helpers.dynptr import DYNPTR_HELPERS
from pybpf.runtime.helpers.kernel_objects import KPTR_HELPERS
from pybpf.runtime.helpers.maps import MAP_HELPERS
from pybpf.runtime.helpers.misc import MISC_HELPERS
from pybpf.runtime.helpers.output import OUTPUT_HELPERS
from pybpf.runtime.helpers.packet import PACKET_HELPERS
from pybpf.runtime.helpers.probe import PROBE_HELPERS
from pybpf.runtime.helpers.strings import STRING_HELPERS
from pybpf.runtime.helpers.system import SYSTEM_HELPERS
from pybpf.runtime.helpers.vma import VMA_HELPERS
from pybpf.vm.execution import HelperFn

FAMILIES: tuple[Mapping[HelperId, HelperFn], ...] = (
    MAP_HELPERS,
    SYSTEM_HELPERS,
    STRING_HELPERS,
    PROBE_HELPERS,
    OUTPUT_HELPERS,
    DYNPTR_HELPERS,
    PACKET_HELPERS,
    CSUM_HELPERS,
    MISC_HELPERS,
    VMA_HELPERS,
    KPTR_HELPERS,
)


class HelperTable(Mapping[int, HelperFn]):
    """An immutable ``id -> HelperFn`` mapping for ``Interpreter(helpers=...)``.

    Every id must have a prototype in :data:`pybpf.platform.HELPER_PROTOS` (the verifier's view
    of the same helper); :meth:`restricted` narrows the table to what a program type may call.
    """

    def __init__(self, helpers: Mapping[int, HelperFn]) -> None:
        missing = sorted(int(helper_id) for helper_id in helpers if int(helper_id) not in HELPER_PROTOS)
        if missing:
            raise HelperError(f"helpers without a prototype in platform.HELPER_PROTOS: {missing}")
        self._helpers: dict[int, HelperFn] = {int(key): value for key, value in helpers.items()}

    def __getitem__(self, helper_id: int) -> HelperFn:
        return self._helpers[helper_id]

    def __iter__(self) -> Iterator[int]:
        return iter(self._helpers)

    def __len__(self) -> int:
        return len(self._helpers)

    def restricted(self, allowed: frozenset[int] | set[int]) -> HelperTable:
        """Only the helpers whose ids are in ``allowed`` (a program type's helper set)."""
        return HelperTable({key: value for key, value in self._helpers.items() if key in allowed})

    def with_overrides(self, overrides: Mapping[int, HelperFn]) -> HelperTable:
        """A copy where ``overrides`` replace (or add) implementations, for tests and embedding."""
        merged = dict(self._helpers)
        merged.update({int(key): value for key, value in overrides.items()})
        return HelperTable(merged)


def default_helpers() -> HelperTable:
    """Every helper pybpf implements in user space."""
    merged: dict[int, HelperFn] = {}
    for family in FAMILIES:
        for helper_id, fn in family.items():
            if int(helper_id) in merged:
                raise HelperError(f"helper {helper_id.name} is implemented twice")
            merged[int(helper_id)] = fn
    return HelperTable(merged)
