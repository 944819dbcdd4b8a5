"""The decorator of the verifier's immutable value classes (registers, scalars, tnums, slots).

A frozen dataclass assigns each field through ``object.__setattr__`` in its ``__init__``; for
the ten-field :class:`~pybpf.verifier.state.RegState` that makes construction about five times
as slow as a plain slotted one, and the exploration builds one or two values per instruction.
:func:`value_class` builds a slotted, hashable dataclass whose ``__init__`` assigns directly,
while type checkers see it as frozen (``dataclass_transform(frozen_default=True)``), so an
assignment to a field is still a type error. Nothing may mutate these values once built: they
are shared between states, paths and the memo tables of :class:`~pybpf.verifier.machine.Env`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeVar, dataclass_transform

_T = TypeVar("_T")


@dataclass_transform(frozen_default=True, field_specifiers=(field,))
def value_class(cls: type[_T]) -> type[_T]:
    """``@dataclass(frozen=True, slots=True)`` to type checkers; at run time, slotted with
    direct field assignment, field-wise equality and a hash of the compared fields."""
    return dataclass(slots=True, unsafe_hash=True)(cls)
