"""Dynptr slots in the pruning test (``stacksafe``) and the 16-byte layout the runtime shares."""

from __future__ import annotations

import pytest

from pybpf.platform.dynptr import DYNPTR_SIZE, DynptrType, DynptrValue, decode_dynptr, encode_dynptr
from pybpf.verifier.scalar import Scalar
from pybpf.verifier.state import IdMap, RegState, RegType, SlotByte, StackSlot, StackState, stacksafe

_TAGS = (SlotByte.STACK_DYNPTR,) * 8


def _dynptr_stack(kind: DynptrType, dynptr_id: int, ref: int = 0) -> StackState:
    """A dynptr in slots 1 (first, fp-16..fp-9) and 0 (second, fp-8..fp-1)."""
    def half(first: bool) -> StackSlot:
        reg = RegState(RegType.CONST_PTR_TO_DYNPTR, Scalar.const(0), id=dynptr_id, ref_obj_id=ref,
                       dynptr_type=int(kind), dynptr_first=first)
        return StackSlot(_TAGS, reg)
    return StackState((half(False), half(True)))


def test_same_kind_dynptrs_cover_each_other_under_an_id_renaming() -> None:
    old, cur = _dynptr_stack(DynptrType.LOCAL, 3), _dynptr_stack(DynptrType.LOCAL, 9)
    assert stacksafe(old, cur, IdMap())


def test_dynptr_kind_and_reference_must_match() -> None:
    local, ring = _dynptr_stack(DynptrType.LOCAL, 3), _dynptr_stack(DynptrType.RINGBUF, 3, ref=4)
    assert not stacksafe(local, ring, IdMap())
    ids = IdMap()
    assert ids.check(4, 5)  # reference 4 is already known as 5 ...
    assert not stacksafe(ring, _dynptr_stack(DynptrType.RINGBUF, 3, ref=6), ids)  # ... so 6 does not match


def test_a_dynptr_is_never_skipped_nor_covered_by_plain_bytes() -> None:
    old = _dynptr_stack(DynptrType.LOCAL, 3)
    misc = StackState((StackSlot.filled(SlotByte.STACK_MISC), StackSlot.filled(SlotByte.STACK_MISC)))
    assert not stacksafe(old, misc, IdMap(), live_slots=0)  # dead slots, but a dynptr is still compared
    assert stacksafe(misc, old, IdMap(), live_slots=0)


@pytest.mark.parametrize("value", [
    DynptrValue(0x7F00_0000_1000, 64, DynptrType.LOCAL),
    DynptrValue(0x1234_5678, 0xFFFFFF, DynptrType.RINGBUF, offset=8, rdonly=True),
    DynptrValue(0, 0, DynptrType.INVALID),
])
def test_dynptr_layout_round_trips(value: DynptrValue) -> None:
    raw = encode_dynptr(value)
    assert len(raw) == DYNPTR_SIZE
    assert decode_dynptr(raw) == value


def test_dynptr_layout_is_the_kernels() -> None:
    raw = encode_dynptr(DynptrValue(0x1122334455667788, 5, DynptrType.RINGBUF, offset=3, rdonly=True))
    # data, then size | type << 28 | rdonly << 31, then offset (struct bpf_dynptr_kern).
    assert raw == bytes.fromhex("8877665544332211") + (5 | 2 << 28 | 1 << 31).to_bytes(4, "little") + \
        (3).to_bytes(4, "little")
