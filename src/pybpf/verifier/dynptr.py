"""Dynptrs: ``struct bpf_dynptr`` objects living in two stack slots, as the kernel tracks them.

A helper argument ``ARG_PTR_TO_DYNPTR`` (``process_dynptr_func``) takes a pointer to the stack
(or, in a callback or global function, a ``CONST_PTR_TO_DYNPTR`` register):

* with ``MEM_UNINIT`` the helper *builds* a dynptr there: the 16 bytes must be in the frame, at
  a constant, 8-byte aligned offset, and are written (which destroys whatever dynptr was there,
  or refuses to when that one holds a reference); both slots become ``STACK_DYNPTR`` and their
  ``spilled_ptr`` records the kind, which half it is and a fresh dynptr id
  (``mark_stack_slots_dynptr``). A ring buffer dynptr also acquires a reference at once, so it
  must be submitted or discarded on every path, even where the reservation failed;
* otherwise the slots must hold an initialised dynptr of the expected kind
  (``is_dynptr_reg_valid_init``); a release (``OBJ_RELEASE``, submit/discard) then drops its
  reference, every slice of it, and every stack copy sharing the reference
  (``unmark_stack_slots_dynptr``).

Writing any byte of a dynptr's slots (a store, a helper filling memory) destroys the whole
dynptr and its slices, or is refused if the dynptr holds a reference
(``destroy_if_dynptr_stack_slot``); reading them is refused. ``bpf_dynptr_data`` returns a
slice: ``PTR_TO_MEM`` of the constant length argument, NULL-checked, linked to the dynptr by
``dynptr_id`` (and by ``ref_obj_id`` to a ring buffer record).
"""

from __future__ import annotations

from dataclasses import dataclass

from pybpf.platform import ArgFlag, HelperArg
from pybpf.platform.dynptr import DynptrType
from pybpf.verifier.machine import Env, Frame, Rejection, State, check_ptr_off_reg, reject, type_name
from pybpf.verifier.scalar import Scalar
from pybpf.verifier.state import BPF_REG_SIZE, RegState, RegType, SlotByte, StackSlot

DYNPTR_NR_SLOTS = 2
"""Stack slots one ``struct bpf_dynptr`` takes (16 bytes)."""
PACKET_KINDS = frozenset({int(DynptrType.SKB), int(DynptrType.XDP)})
"""Kinds whose slices point into the packet (invalidated with packet pointers)."""
_DYNPTR_TAGS = (SlotByte.STACK_DYNPTR,) * BPF_REG_SIZE


@dataclass(frozen=True, slots=True)
class DynptrRef:
    """The dynptr an argument designated: its id, reference (0: none) and kind."""

    id: int
    ref_obj_id: int
    type: DynptrType


def expected_type(arg: HelperArg) -> DynptrType | None:
    """``arg_to_dynptr_type``: the kind an argument demands (None: any)."""
    if arg.flags & ArgFlag.DYNPTR_LOCAL:
        return DynptrType.LOCAL
    if arg.flags & ArgFlag.DYNPTR_RINGBUF:
        return DynptrType.RINGBUF
    return None


def type_text(kind: int) -> str:
    """``dynptr_type_str``."""
    names = {int(DynptrType.LOCAL): "local", int(DynptrType.RINGBUF): "ringbuf", int(DynptrType.SKB): "skb",
             int(DynptrType.XDP): "xdp"}
    return names.get(int(kind), "<invalid>")


def const_dynptr(env: Env, kind: DynptrType) -> RegState:
    """A ``CONST_PTR_TO_DYNPTR`` register (``mark_dynptr_cb_reg``): a callback's or a global
    function's dynptr argument, the whole object, with an id of its own."""
    return RegState(RegType.CONST_PTR_TO_DYNPTR, Scalar.const(0), id=env.new_id(), dynptr_type=int(kind),
                    dynptr_first=True)


# -- locating the slots --------------------------------------------------------------------------


def _spi(state: State, reg: RegState) -> int | None:
    """``dynptr_get_spi``: the index of the dynptr's first (higher) slot; None when the slots
    are not allocated yet (the kernel's -ERANGE). Refuses a variable or misaligned offset."""
    if not reg.var_off.is_const():
        raise reject("dynptr has to be at a constant offset")
    off = reg.off + (reg.var_off.const_value() or 0)
    if off % BPF_REG_SIZE:
        raise reject(f"cannot pass in dynptr at an offset={off}")
    spi = (-off - 1) // BPF_REG_SIZE
    if spi + 1 < DYNPTR_NR_SLOTS:
        raise reject(f"cannot pass in dynptr at an offset={off}")
    allocated = len(state.frames[reg.frameno].stack.slots)
    if spi - DYNPTR_NR_SLOTS + 1 < 0 or spi >= allocated:
        return None
    return spi


def _is_valid_init(state: State, reg: RegState) -> bool:
    if reg.type is RegType.CONST_PTR_TO_DYNPTR:
        return True
    spi = _spi(state, reg)
    if spi is None:
        return False
    stack = state.frames[reg.frameno].stack
    first = stack.slot(spi)
    return first.spilled_ptr.dynptr_first and first.slot_type == _DYNPTR_TAGS \
        and stack.slot(spi - 1).slot_type == _DYNPTR_TAGS


def _dynptr_state(state: State, reg: RegState) -> RegState:
    """The register state describing the dynptr ``reg`` points to (valid init checked)."""
    if reg.type is RegType.CONST_PTR_TO_DYNPTR:
        return reg
    spi = _spi(state, reg)
    if spi is None:
        raise reject("verifier internal error: invalid spi when querying dynptr")
    return state.frames[reg.frameno].stack.slot(spi).spilled_ptr


# -- destroying and releasing --------------------------------------------------------------------


def _invalidate_slots(frame: Frame, spi: int) -> None:
    """``invalidate_dynptr``: both slots back to never-written."""
    frame.stack = frame.stack.with_slot(spi, StackSlot()).with_slot(spi - 1, StackSlot())


def invalidate_slices(env: Env, state: State, dynptr_id: int) -> None:
    """Every slice of dynptr ``dynptr_id`` becomes unusable (``mark_reg_invalid``)."""
    gone = RegState.scalar() if env.options.privileged else RegState.not_init()
    state.update_registers(
        lambda reg: gone if reg.type is RegType.PTR_TO_MEM and reg.dynptr_id == dynptr_id else None)


def _destroy_if_dynptr(env: Env, state: State, frame: Frame, spi: int) -> None:
    """``destroy_if_dynptr_stack_slot``: a write into slot ``spi`` ends the dynptr there."""
    slot = frame.stack.slot(spi)
    if slot.slot_type[0] is not SlotByte.STACK_DYNPTR:
        return
    if not slot.spilled_ptr.dynptr_first:
        spi += 1
    first = frame.stack.slot(spi).spilled_ptr
    if DynptrType(first.dynptr_type).refcounted:
        raise reject("cannot overwrite referenced dynptr")
    _invalidate_slots(frame, spi)
    invalidate_slices(env, state, first.id)


def destroy_overlapping(env: Env, state: State, frame: Frame, start: int, end: int) -> None:
    """A write of stack bytes ``[start, end)`` (offsets below fp) destroys the dynptrs it touches."""
    if not any(SlotByte.STACK_DYNPTR in slot.slot_type for slot in frame.stack.slots):
        return  # the common case: no dynptr in this frame
    first_spi, last_spi = (-end) // BPF_REG_SIZE, (-start - 1) // BPF_REG_SIZE
    for spi in range(max(first_spi, 0), last_spi + 1):
        _destroy_if_dynptr(env, state, frame, spi)


def refuse_helper_write(frame: Frame, regno: int, start: int, end: int) -> None:
    """A helper must not fill memory overlapping a dynptr (``check_stack_range_initialized``
    in raw mode): it would write the dynptr behind the verifier's back."""
    for at in range(start, end):
        index, position = (-at - 1) // BPF_REG_SIZE, (-at - 1) % BPF_REG_SIZE
        if frame.stack.slot(index).slot_type[position] is SlotByte.STACK_DYNPTR:
            raise reject(f"potential write to dynptr at off={at} disallowed")


def _release(env: Env, state: State, reg: RegState) -> None:
    """``unmark_stack_slots_dynptr`` for a release argument (always a stack dynptr)."""
    spi = _spi(state, reg)
    if spi is None:
        raise reject("verifier internal error: releasing a dynptr outside the stack")
    frame = state.frames[reg.frameno]
    first = frame.stack.slot(spi).spilled_ptr
    if not DynptrType(first.dynptr_type).refcounted:
        _invalidate_slots(frame, spi)
        return
    ref = first.ref_obj_id
    state.refs.pop(ref, None)
    # release_reference: registers (slices) holding the reference become unusable ...
    gone = RegState.scalar() if env.options.privileged else RegState.not_init()
    state.update_registers(lambda other: gone if other.ref_obj_id == ref else None)
    # ... and so does every dynptr sharing it, the released one included.
    for index, slot in enumerate(frame.stack.slots):
        if slot.slot_type[0] is SlotByte.STACK_DYNPTR and slot.spilled_ptr.ref_obj_id == ref \
                and slot.spilled_ptr.dynptr_first:
            _invalidate_slots(frame, index)


# -- the argument check --------------------------------------------------------------------------


def _check_reg_off(regno: int, reg: RegState) -> None:
    """``check_func_arg_reg_off``: a ``CONST_PTR_TO_DYNPTR`` must be the object itself."""
    if reg.type is RegType.CONST_PTR_TO_DYNPTR:
        check_ptr_off_reg(regno, reg, type_name(reg))


def check_release_arg(state: State, regno: int, reg: RegState) -> None:
    """A dynptr passed to a release function must be a stack dynptr holding a reference."""
    if reg.type is not RegType.PTR_TO_STACK:
        raise reject("cannot release unowned const bpf_dynptr")
    try:
        spi = _spi(state, reg)
    except Rejection:  # the kernel folds every spi failure into the message below
        spi = None
    if spi is None or not state.frames[reg.frameno].stack.slot(spi).spilled_ptr.ref_obj_id:
        raise reject(f"arg {regno} is an unacquired reference")


def check_arg(env: Env, state: State, regno: int, reg: RegState, arg: HelperArg, *, pc: int) -> DynptrRef | None:
    """A helper's ``ARG_PTR_TO_DYNPTR``: check (and, for an uninitialised one, build) the dynptr
    argument in ``regno``; the dynptr an initialised argument designates."""
    if reg.type not in (RegType.PTR_TO_STACK, RegType.CONST_PTR_TO_DYNPTR) or reg.maybe_null:
        raise reject(f"R{regno} type={type_name(reg)} expected=fp, dynptr_ptr")
    _check_reg_off(regno, reg)
    return process(env, state, regno, reg, uninit=arg.uninit, readonly=arg.readonly, kind=expected_type(arg), pc=pc)


def check_kfunc_arg(env: Env, state: State, regno: int, reg: RegState, *, uninit: bool, pc: int,
                    kind: DynptrType | None = None, clone_of: DynptrRef | None = None) -> DynptrRef | None:
    """A kfunc's ``struct bpf_dynptr *`` parameter (``KF_ARG_PTR_TO_DYNPTR``): ``uninit`` for a
    ``__uninit`` one, ``kind`` for the kind a constructor makes (``bpf_dynptr_from_skb``: SKB),
    ``clone_of`` the dynptr ``bpf_dynptr_clone`` copies (the clone gets its kind and reference).
    A ``CONST_PTR_TO_DYNPTR`` is taken read-only, whatever the kfunc does."""
    if reg.type not in (RegType.PTR_TO_STACK, RegType.CONST_PTR_TO_DYNPTR):
        raise reject(f"arg#{regno - 1} expected pointer to stack or dynptr_ptr")
    _check_reg_off(regno, reg)
    clone_ref = 0
    if clone_of is not None and uninit:
        kind, clone_ref = clone_of.type, clone_of.ref_obj_id
    readonly = reg.type is RegType.CONST_PTR_TO_DYNPTR
    return process(env, state, regno, reg, uninit=uninit, readonly=readonly, kind=kind, pc=pc, clone_ref=clone_ref)


def process(env: Env, state: State, regno: int, reg: RegState, *, uninit: bool, readonly: bool,
            kind: DynptrType | None, pc: int, clone_ref: int = 0) -> DynptrRef | None:
    """``process_dynptr_func``: build the dynptr (``uninit``) or check the one there is (of
    ``kind``, if given); the dynptr an initialised argument designates."""
    if uninit:
        _build(env, state, regno, reg, kind, pc=pc, clone_ref=clone_ref)
        return None
    if reg.type is RegType.CONST_PTR_TO_DYNPTR and not readonly:
        raise reject("cannot pass pointer to const bpf_dynptr, the helper mutates it")
    if not _is_valid_init(state, reg):
        raise reject(f"Expected an initialized dynptr as arg #{regno - 1}")
    found = _dynptr_state(state, reg)
    if kind is not None and found.dynptr_type != kind:
        raise reject(f"Expected a dynptr of type {type_text(kind)} as arg #{regno - 1}")
    return DynptrRef(found.id, found.ref_obj_id, DynptrType(found.dynptr_type))


def _build(env: Env, state: State, regno: int, reg: RegState, kind: DynptrType | None, *, pc: int,
           clone_ref: int = 0) -> None:
    """``mark_stack_slots_dynptr``, after the two 8-byte writes that make room for it."""
    from pybpf.verifier.memory import access  # memory calls back into this module for writes

    if reg.type is RegType.CONST_PTR_TO_DYNPTR:
        raise reject("Dynptr has to be an uninitialized dynptr")
    _spi(state, reg)  # refuses a variable or misaligned offset before any write
    for offset in range(0, DYNPTR_NR_SLOTS * BPF_REG_SIZE, BPF_REG_SIZE):
        access(env, state, regno, reg, off=offset, size=BPF_REG_SIZE, write=RegState.scalar())
    spi = _spi(state, reg)
    if spi is None or kind is None:
        raise reject("verifier internal error: dynptr slots not allocated")
    frame = state.frames[reg.frameno]
    dynptr_id = env.new_id()
    ref = 0
    if kind.refcounted:
        # acquire_reference: released by submit/discard, whether or not the reservation worked.
        # A clone shares its parent's reference (releasing either releases both).
        ref = clone_ref
        if not ref:
            ref = env.new_id()
            state.refs[ref] = pc
    for index, first in ((spi, True), (spi - 1, False)):
        half = RegState(RegType.CONST_PTR_TO_DYNPTR, Scalar.const(0), id=dynptr_id, ref_obj_id=ref,
                        dynptr_type=int(kind), dynptr_first=first)
        frame.stack = frame.stack.with_slot(index, StackSlot(_DYNPTR_TAGS, half))


def release_arg(env: Env, state: State, reg: RegState) -> None:
    """The call's release of its dynptr argument (after every argument was checked)."""
    _release(env, state, reg)


def slice_of(env: Env, dynptr: DynptrRef, size: int) -> RegState:
    """``bpf_dynptr_data``'s result: ``size`` bytes of the dynptr's memory, or NULL."""
    return RegState.pointer(RegType.PTR_TO_MEM, maybe_null=True, id=env.new_id(), ref_obj_id=dynptr.ref_obj_id,
                            mem_size=size, dynptr_id=dynptr.id)


def kfunc_slice(env: Env, dynptr: DynptrRef, size: int, *, rdonly: bool) -> RegState:
    """``bpf_dynptr_slice`` (``rdonly``) / ``bpf_dynptr_slice_rdwr``: ``size`` bytes, or NULL.

    As in the kernel, the slice carries the dynptr's id and kind (a packet dynptr's slice dies
    when the packet may move) but not its reference."""
    return RegState(RegType.PTR_TO_MEM, Scalar.const(0), maybe_null=True, id=env.new_id(), mem_size=size,
                    dynptr_type=int(dynptr.type), dynptr_id=dynptr.id, rdonly=rdonly)


__all__ = [
    "DYNPTR_NR_SLOTS",
    "PACKET_KINDS",
    "DynptrRef",
    "check_arg",
    "check_kfunc_arg",
    "check_release_arg",
    "const_dynptr",
    "destroy_overlapping",
    "expected_type",
    "invalidate_slices",
    "kfunc_slice",
    "process",
    "refuse_helper_write",
    "release_arg",
    "slice_of",
    "type_text",
]
