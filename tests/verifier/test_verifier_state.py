"""Register and stack state: joins and the pruning tests (regsafe/stacksafe)."""

from __future__ import annotations

from hypothesis import given

from pybpf.verifier.scalar import Scalar
from pybpf.verifier.state import (
    IdMap,
    RegState,
    RegType,
    SlotByte,
    StackSlot,
    StackState,
    regsafe,
    stacksafe,
    states_safe,
)

from .strategies import scalar_and_members

Abstract = tuple[Scalar, list[int]]


def test_scalar_subsumption_is_range_inclusion() -> None:
    wide = RegState.scalar(Scalar.from_urange(0, 100))
    narrow = RegState.scalar(Scalar.from_urange(10, 20))
    assert regsafe(wide, narrow, IdMap())
    assert not regsafe(narrow, wide, IdMap())
    assert regsafe(RegState.not_init(), narrow, IdMap())
    assert not regsafe(narrow, RegState.not_init(), IdMap())


@given(a=scalar_and_members(), b=scalar_and_members())
def test_scalar_join_is_an_upper_bound(a: Abstract, b: Abstract) -> None:
    joined = RegState.scalar(a[0]).join(RegState.scalar(b[0]))
    assert regsafe(joined, RegState.scalar(a[0]), IdMap())
    assert regsafe(joined, RegState.scalar(b[0]), IdMap())
    for x in a[1] + b[1]:
        assert joined.var_off.contains(x)


def test_pointer_types_must_match() -> None:
    ctx = RegState.pointer(RegType.PTR_TO_CTX)
    assert regsafe(ctx, ctx, IdMap())
    assert not regsafe(ctx, RegState.pointer(RegType.PTR_TO_CTX, off=8), IdMap())
    assert not regsafe(ctx, RegState.const(0), IdMap())
    value = RegState.pointer(RegType.PTR_TO_MAP_VALUE, map_uid=1)
    maybe_null = RegState.pointer(RegType.PTR_TO_MAP_VALUE, map_uid=1, maybe_null=True, id=3)
    assert not regsafe(value, maybe_null, IdMap())
    assert not regsafe(value, RegState.pointer(RegType.PTR_TO_MAP_VALUE, map_uid=2), IdMap())
    assert value.join(RegState.pointer(RegType.PTR_TO_MAP_VALUE, map_uid=2)).type is RegType.NOT_INIT


def test_map_value_variable_offset_inclusion() -> None:
    old = RegState(RegType.PTR_TO_MAP_VALUE, Scalar.from_urange(0, 16), map_uid=1)
    cur = RegState(RegType.PTR_TO_MAP_VALUE, Scalar.from_urange(4, 8), map_uid=1)
    assert regsafe(old, cur, IdMap()) and not regsafe(cur, old, IdMap())


def test_packet_range_must_not_shrink() -> None:
    checked = RegState.pointer(RegType.PTR_TO_PACKET, range=14)
    unchecked = RegState.pointer(RegType.PTR_TO_PACKET, range=0)
    assert regsafe(unchecked, checked, IdMap())
    assert not regsafe(checked, unchecked, IdMap())


def test_stack_pointers_compare_frames() -> None:
    fp = RegState.pointer(RegType.PTR_TO_STACK, off=-8, frameno=0)
    assert regsafe(fp, fp, IdMap())
    assert not regsafe(fp, RegState.pointer(RegType.PTR_TO_STACK, off=-8, frameno=1), IdMap())


def test_ids_must_map_consistently() -> None:
    a1 = RegState.pointer(RegType.PTR_TO_MAP_VALUE, map_uid=1, maybe_null=True, id=1)
    a2 = RegState.pointer(RegType.PTR_TO_MAP_VALUE, map_uid=1, maybe_null=True, id=2)
    # Old: two registers share id 1 (copies of one lookup); current: different ids -> not safe.
    assert states_safe([a1, a1], [a2, a2], StackState(), StackState())
    assert not states_safe([a1, a1], [a1, a2], StackState(), StackState())
    ids = IdMap()
    assert ids.check(5, 7) and ids.check(5, 7) and not ids.check(5, 8) and not ids.check(6, 7)


def test_stacksafe_bytes_and_spills() -> None:
    misc = StackState().with_slot(0, StackSlot.filled(SlotByte.STACK_MISC))
    zero = StackState().with_slot(0, StackSlot.filled(SlotByte.STACK_ZERO))
    empty = StackState()
    assert stacksafe(misc, zero, IdMap())
    assert not stacksafe(zero, misc, IdMap())
    assert stacksafe(empty, misc, IdMap())
    assert not stacksafe(misc, empty, IdMap(), allow_uninit_stack=False)
    assert stacksafe(misc, empty, IdMap(), allow_uninit_stack=True)
    wide = StackState().with_slot(1, StackSlot.spill(RegState.scalar(Scalar.from_urange(0, 9))))
    narrow = StackState().with_slot(1, StackSlot.spill(RegState.const(3)))
    assert stacksafe(wide, narrow, IdMap()) and not stacksafe(narrow, wide, IdMap())
    assert wide.allocated == 16 and wide.slot(0) == StackSlot() and wide.slot(5) == StackSlot()
    assert not stacksafe(wide, zero, IdMap())
