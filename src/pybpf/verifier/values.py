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
    direct field assignment, field-wise equality (unless the class defines ``__eq__``) and a
    hash of the compared fields (unless it defines ``__hash__``)."""
    # A class may bring its own __hash__ (a cached one); one that only defines __eq__ has
    # __hash__ = None in its namespace and still gets the fields' hash.
    explicit_hash = cls.__dict__.get("__hash__") is not None
    return dataclass(slots=True, unsafe_hash=not explicit_hash)(cls)
