"""Register and stack state as the kernel's verifier keeps it, with its subsumption tests.

:class:`RegState` mirrors ``struct bpf_reg_state``: a type (``SCALAR_VALUE``, ``PTR_TO_STACK``...),
a maybe-null flag (``PTR_TO_MAP_VALUE_OR_NULL`` is ``PTR_TO_MAP_VALUE`` with ``maybe_null``), a
fixed offset ``off`` and a variable offset ``var_off`` (a :class:`Scalar`; for a scalar register it
*is* the value), plus ``id``/``ref_obj_id`` for null-check propagation and reference tracking.
:class:`StackSlot` mirrors ``struct bpf_stack_state``: eight byte tags and an optional spilled
register.

:func:`regsafe` and :func:`stacksafe` answer the pruning question: is every execution from the
*current* state already covered by an explored *old* one? They follow the kernel, with precision
tracking optional (``precision=True``: an imprecise old scalar covers any scalar; see
:mod:`pybpf.verifier.precision`). Liveness (which
registers and slots a continuation may still read) comes from :mod:`pybpf.verifier.liveness`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import field, replace
from enum import Enum

from pybpf.verifier.scalar import Scalar
from pybpf.verifier.values import value_class

BPF_REG_SIZE = 8
"""Bytes per stack slot (one spilled register)."""
MAX_BPF_STACK = 512


class RegType(Enum):
    """``enum bpf_reg_type`` (base types; ``PTR_MAYBE_NULL`` is the separate ``maybe_null`` flag)."""

    NOT_INIT = "not_init"
    SCALAR_VALUE = "scalar"
    PTR_TO_CTX = "ctx"
    CONST_PTR_TO_MAP = "map_ptr"
    PTR_TO_MAP_VALUE = "map_value"
    PTR_TO_MAP_KEY = "map_key"
    PTR_TO_STACK = "fp"
    PTR_TO_PACKET_META = "pkt_meta"
    PTR_TO_PACKET = "pkt"
    PTR_TO_PACKET_END = "pkt_end"
    PTR_TO_FLOW_KEYS = "flow_keys"
    PTR_TO_SOCKET = "sock"
    PTR_TO_SOCK_COMMON = "sock_common"
    PTR_TO_TCP_SOCK = "tcp_sock"
    PTR_TO_TP_BUFFER = "tp_buffer"
    PTR_TO_XDP_SOCK = "xdp_sock"
    PTR_TO_BTF_ID = "ptr_"
    PTR_TO_MEM = "mem"
    PTR_TO_BUF = "buf"
    PTR_TO_FUNC = "func"
    CONST_PTR_TO_DYNPTR = "dynptr_ptr"
    PTR_TO_ARENA = "arena"  # a 32-bit offset into the program's arena (addr_space_cast 1 -> 0)

    # Members are singletons compared by identity: the identity hash (C speed) agrees with that
    # equality, and Enum's own __hash__ is a Python call (types are looked up in sets per step).
    __hash__ = object.__hash__


# Enum members read through their class (``RegType.SCALAR_VALUE``) take the slow attribute path on
# Python 3.11 (EnumType defines __getattr__, so the lookup is never specialised): about ten times
# a global read. The verifier's hot paths, here and in the modules that import these, read
# module-level aliases named as the members instead.
NOT_INIT = RegType.NOT_INIT
SCALAR_VALUE = RegType.SCALAR_VALUE
PTR_TO_STACK = RegType.PTR_TO_STACK
PTR_TO_CTX = RegType.PTR_TO_CTX
PTR_TO_MAP_VALUE = RegType.PTR_TO_MAP_VALUE
CONST_PTR_TO_MAP = RegType.CONST_PTR_TO_MAP
PTR_TO_PACKET = RegType.PTR_TO_PACKET
PTR_TO_ARENA = RegType.PTR_TO_ARENA

# The kernel's ``bpf_type_flag`` modifiers a PTR_TO_BTF_ID carries besides PTR_MAYBE_NULL
# (:attr:`RegState.type_flags`; plain ints: tested on the hot paths). A pointer the program got
# from a trusted source (a tracing program's arguments, bpf_get_current_task_btf, an acquired
# reference) is PTR_TRUSTED; one loaded from an unreferenced kptr or walked from an untrusted
# pointer PTR_UNTRUSTED; one valid only inside an RCU read-side section MEM_RCU; a
# program-allocated object (bpf_obj_new) MEM_ALLOC, per-CPU MEM_PERCPU; an object a collection
# owns that the program may still touch under its lock NON_OWN_REF. None of them: the old,
# "legacy" PTR_TO_BTF_ID (readable, never trusted).
PTR_TRUSTED = 1 << 0
PTR_UNTRUSTED = 1 << 1
MEM_RCU = 1 << 2
MEM_ALLOC = 1 << 3
MEM_PERCPU = 1 << 4
NON_OWN_REF = 1 << 5
# is_trusted_reg: with a reference or one of these and nothing else, a BTF pointer is trusted.
TRUSTED_MODIFIERS = MEM_ALLOC | PTR_TRUSTED | NON_OWN_REF

PACKET_TYPES = frozenset({RegType.PTR_TO_PACKET, RegType.PTR_TO_PACKET_META})
# Pointers into memory whose bounds come from a size: compared by range inclusion of the offset.
SIZED_MEMORY_TYPES = frozenset({RegType.PTR_TO_MAP_VALUE, RegType.PTR_TO_MAP_KEY, RegType.PTR_TO_MEM,
                                RegType.PTR_TO_BUF, RegType.PTR_TO_TP_BUFFER})


@value_class
class RegState:
    """One register. ``map_uid`` names the map a map pointer refers to; ``mem_size`` bounds PTR_TO_MEM;
    ``range`` is the number of bytes past a packet pointer already checked against ``data_end``;
    ``frameno`` is the call frame a stack pointer points into. A dynptr (``CONST_PTR_TO_DYNPTR``,
    also the ``spilled_ptr`` of both STACK_DYNPTR slots) has its kind in ``dynptr_type`` (a
    :class:`~pybpf.platform.dynptr.DynptrType` value) and ``dynptr_first`` set in its first
    (higher) slot; ``id`` names the dynptr. A slice of one (``bpf_dynptr_data``'s PTR_TO_MEM)
    carries that id in ``dynptr_id``, to be invalidated with it, and (a packet dynptr's) its kind;
    ``rdonly`` is the kernel's MEM_RDONLY (``bpf_dynptr_slice``'s result)."""

    type: RegType = RegType.NOT_INIT
    var_off: Scalar = field(default_factory=Scalar.unknown)
    off: int = 0
    maybe_null: bool = False
    id: int = 0
    ref_obj_id: int = 0
    map_uid: int | None = None
    mem_size: int = 0
    range: int = 0
    frameno: int = 0
    dynptr_type: int = 0
    dynptr_first: bool = False
    dynptr_id: int = 0
    # The kernel struct a PTR_TO_BTF_ID points to (its name; "" when unknown): reads through it
    # are checked against the modelled layout (pybpf.platform.kernel_types) when there is one.
    btf_type: str = ""
    rdonly: bool = False  # MEM_RDONLY: memory the program may read but not write
    type_flags: int = 0  # PTR_TRUSTED, PTR_UNTRUSTED, MEM_RCU... (see the constants above)
    # Whether some explored continuation relied on this scalar's exact value (see
    # pybpf.verifier.precision). Bookkeeping about the exploration, not part of the value:
    # left out of equality, as the kernel's memcmp-based comparisons leave it out.
    precise: bool = field(default=False, compare=False)
    # This value marked precise, once asked for (see as_precise): bookkeeping, not part of it.
    _precise_twin: RegState | None = field(default=None, init=False, repr=False, compare=False)

    @classmethod
    def not_init(cls) -> RegState:
        return _UNUSABLE if cls is RegState else cls()

    @classmethod
    def scalar(cls, value: Scalar | None = None, *, id: int = 0) -> RegState:
        # Positional arguments: keyword ones cost noticeably more in this many-field __init__.
        return cls(SCALAR_VALUE, value or Scalar.unknown(), 0, False, id)

    @classmethod
    def const(cls, value: int) -> RegState:
        return cls(SCALAR_VALUE, Scalar.const(value))

    @classmethod
    def pointer(
        cls, type: RegType, off: int = 0, *, maybe_null: bool = False, id: int = 0, ref_obj_id: int = 0,
        map_uid: int | None = None, mem_size: int = 0, range: int = 0, frameno: int = 0, dynptr_id: int = 0,
        btf_type: str = "", type_flags: int = 0,
    ) -> RegState:
        """A pointer with a constant (zero) variable offset."""
        return cls(type, Scalar.const(0), off, maybe_null, id, ref_obj_id, map_uid, mem_size, range, frameno,
                   dynptr_id=dynptr_id, btf_type=btf_type, type_flags=type_flags)

    @property
    def is_pointer(self) -> bool:
        kind = self.type
        return kind is not SCALAR_VALUE and kind is not NOT_INIT

    def with_var_off(self, var_off: Scalar) -> RegState:
        """This register with another variable offset (value), fields otherwise kept; a direct
        constructor call, as ``dataclasses.replace`` is too slow for the exploration's hot path."""
        return RegState(self.type, var_off, self.off, self.maybe_null, self.id, self.ref_obj_id, self.map_uid,
                        self.mem_size, self.range, self.frameno,
                        self.dynptr_type, self.dynptr_first, self.dynptr_id, self.btf_type, self.rdonly,
                        self.type_flags, self.precise)

    def with_off(self, off: int) -> RegState:
        return RegState(self.type, self.var_off, off, self.maybe_null, self.id, self.ref_obj_id, self.map_uid,
                        self.mem_size, self.range, self.frameno,
                        self.dynptr_type, self.dynptr_first, self.dynptr_id, self.btf_type, self.rdonly,
                        self.type_flags, self.precise)

    def with_id(self, id: int, off: int | None = None) -> RegState:
        return RegState(self.type, self.var_off, self.off if off is None else off, self.maybe_null, id,
                        self.ref_obj_id, self.map_uid, self.mem_size, self.range, self.frameno,
                        self.dynptr_type, self.dynptr_first, self.dynptr_id, self.btf_type, self.rdonly,
                        self.type_flags, self.precise)

    def not_null(self) -> RegState:
        return RegState(self.type, self.var_off, self.off, False, self.id, self.ref_obj_id, self.map_uid,
                        self.mem_size, self.range, self.frameno,
                        self.dynptr_type, self.dynptr_first, self.dynptr_id, self.btf_type, self.rdonly,
                        self.type_flags, self.precise)

    def with_range(self, range: int) -> RegState:
        return RegState(self.type, self.var_off, self.off, self.maybe_null, self.id, self.ref_obj_id, self.map_uid,
                        self.mem_size, range, self.frameno,
                        self.dynptr_type, self.dynptr_first, self.dynptr_id, self.btf_type, self.rdonly,
                        self.type_flags, self.precise)

    def as_precise(self) -> RegState:
        """This register marked precise. Built once per value: stored states share register
        values, and precision marking visits the same value in checkpoint after checkpoint."""
        twin = self._precise_twin
        if twin is None:
            twin = RegState(self.type, self.var_off, self.off, self.maybe_null, self.id, self.ref_obj_id,
                            self.map_uid, self.mem_size, self.range, self.frameno,
                            self.dynptr_type, self.dynptr_first, self.dynptr_id, self.btf_type, self.rdonly,
                            self.type_flags, True)
            object.__setattr__(self, "_precise_twin", twin)  # immutable otherwise: caching is safe
        return twin

    @property
    def is_scalar(self) -> bool:
        return self.type is SCALAR_VALUE

    @property
    def is_stack_pointer(self) -> bool:
        return self.type is PTR_TO_STACK

    def join(self, other: RegState) -> RegState:
        """A register state covering both; NOT_INIT (unusable) when they cannot be merged."""
        if self.type != other.type:
            return RegState.not_init()
        if self.type is NOT_INIT:
            return self
        if self.type is SCALAR_VALUE:
            return RegState.scalar(self.var_off.join(other.var_off), id=self.id if self.id == other.id else 0)
        if _identity(self) != _identity(other) or self.off != other.off:
            return RegState.not_init()
        return replace(self, var_off=self.var_off.join(other.var_off), range=min(self.range, other.range))


_UNUSABLE = RegState()  # immutable: one shared unusable register


def _identity(reg: RegState) -> tuple[object, ...]:
    """The fields the kernel's memcmp up to ``var_off`` compares for pointers (besides ``off``)."""
    return (reg.type, reg.maybe_null, reg.map_uid, reg.mem_size, reg.frameno, reg.dynptr_type, reg.dynptr_first,
            reg.btf_type, reg.rdonly, reg.type_flags)


class IdMap:
    """The kernel's ``bpf_idmap``: a consistent one-to-one renaming of old ids to current ids.

    Filled while comparing one pair of states, then discarded (an explicit object, never global).
    """

    __slots__ = ("_backward", "_forward", "_next_fresh")

    def __init__(self) -> None:
        self._forward: dict[int, int] = {}
        self._backward: dict[int, int] = {}
        self._next_fresh = -1

    def check(self, old_id: int, cur_id: int) -> bool:
        """``check_ids``: id 0 means 'no id' and only matches 0."""
        if old_id == 0 or cur_id == 0:
            return old_id == cur_id
        mapped = self._forward.get(old_id)
        if mapped is not None:
            return mapped == cur_id
        if cur_id in self._backward:
            return False
        self._forward[old_id] = cur_id
        self._backward[cur_id] = old_id
        return True

    def check_scalar(self, old_id: int, cur_id: int) -> bool:
        """``check_scalar_ids``: an unlinked scalar (id 0) gets a fresh id of its own."""
        if old_id == 0:
            old_id = self._fresh()
        if cur_id == 0:
            cur_id = self._fresh()
        return self.check(old_id, cur_id)

    def _fresh(self) -> int:
        # Negative, so it can never collide with a real (positive) id.
        self._next_fresh -= 1
        return self._next_fresh


def _offsets_within(old: RegState, cur: RegState) -> bool:
    """``range_within`` + ``tnum_in`` on the variable offsets."""
    return old.var_off.includes(cur.var_off)


def regs_exact(old: RegState, cur: RegState, ids: IdMap) -> bool:
    return (
        old.type == cur.type and old.off == cur.off and _identity(old) == _identity(cur)
        and old.range == cur.range and old.var_off == cur.var_off
        and ids.check(old.id, cur.id) and ids.check(old.ref_obj_id, cur.ref_obj_id)
        and ids.check(old.dynptr_id, cur.dynptr_id)
    )


def regsafe(old: RegState, cur: RegState, ids: IdMap, *, precision: bool = False, exact: bool = False) -> bool:
    """Whether ``cur`` is at least as constrained as ``old`` (so old's verdict covers it).

    With ``precision``, an imprecise scalar of ``old`` covers any scalar: no explored
    continuation relied on its value (the kernel's ``!rold->precise`` case). Only sound when
    ``old``'s precision marks are complete, i.e. every path below it has finished.
    ``exact``: scalars cover only equal scalars (the kernel's ``explore_alu_limits``)."""
    kind = old.type
    if kind is NOT_INIT:
        return True  # the explored path never relied on this register
    if cur.type is not kind:
        return False
    # An if chain on the aliases, not a match on RegType members (see the aliases after RegType).
    if kind is SCALAR_VALUE:
        if precision and not old.precise:
            return True
        # ``off`` of a linked scalar is its constant distance from the copies sharing its id.
        if old.off != cur.off:
            return False
        # Two unlinked scalars would each get a fresh id no other register can name: the
        # id test always passes and its pairs are never consulted again, so it is skipped.
        if (old.id or cur.id) and not ids.check_scalar(old.id, cur.id):
            return False
        if exact:
            return old.var_off == cur.var_off
        return old.var_off is cur.var_off or old.var_off.includes(cur.var_off)
    if kind in SIZED_MEMORY_TYPES:
        return (
            old.off == cur.off and _identity(old) == _identity(cur)
            and _offsets_within(old, cur)
            and ids.check(old.id, cur.id) and ids.check(old.ref_obj_id, cur.ref_obj_id)
            and ids.check(old.dynptr_id, cur.dynptr_id)
        )
    if kind in PACKET_TYPES:
        # The current pointer must have been checked against data_end for at least as far.
        if old.range > cur.range or old.off != cur.off:
            return False
        return ids.check(old.id, cur.id) and _offsets_within(old, cur)
    if kind is PTR_TO_STACK:
        # fp-8 in one frame is not fp-8 in another.
        return regs_exact(old, cur, ids) and old.frameno == cur.frameno
    if kind is PTR_TO_ARENA:
        return True  # any arena address is as safe as any other: accesses fault to 0
    return regs_exact(old, cur, ids)


class SlotByte(Enum):
    """``enum bpf_stack_slot_type``: what one stack byte holds."""

    STACK_INVALID = "?"  # never written
    STACK_SPILL = "r"  # part of a spilled register
    STACK_MISC = "m"  # written with something unknown
    STACK_ZERO = "0"  # known zero
    STACK_DYNPTR = "d"
    STACK_ITER = "i"
    STACK_IRQ_FLAG = "f"

    __hash__ = object.__hash__  # as RegType's: identity, at C speed


# Aliases for the hot paths, as RegType's.
STACK_INVALID = SlotByte.STACK_INVALID
STACK_SPILL = SlotByte.STACK_SPILL
STACK_MISC = SlotByte.STACK_MISC
STACK_ZERO = SlotByte.STACK_ZERO


class IterState(Enum):
    """``enum bpf_iter_state``: an open-coded iterator's state as the verifier tracks it."""

    ACTIVE = "active"  # next() may still return an element
    DRAINED = "drained"  # next() returned NULL on this path

    __hash__ = object.__hash__


@value_class
class IterSlot:
    """What a ``STACK_ITER`` slot holds (the kernel keeps it in ``spilled_ptr.iter``): the
    iterator's type (``num``), its state, its loop depth (how many next() calls returned an
    element on this path; only the infinite-loop test looks at it), and on its first slot the
    reference that bpf_iter_<type>_destroy() releases."""

    iter_type: str
    state: IterState = IterState.ACTIVE
    depth: int = 0
    ref_obj_id: int = 0


@value_class
class StackSlot:
    """Eight bytes of stack: a tag per byte, and the register spilled there when tags say SPILL
    (``iter``: the open-coded iterator living there when the tags say ITER)."""

    slot_type: tuple[SlotByte, ...] = (SlotByte.STACK_INVALID,) * BPF_REG_SIZE
    spilled_ptr: RegState = field(default_factory=RegState.not_init)
    iter: IterSlot | None = None

    @classmethod
    def spill(cls, reg: RegState) -> StackSlot:
        return cls(_ALL_SPILL, reg)

    @classmethod
    def filled(cls, byte: SlotByte) -> StackSlot:
        return cls((byte,) * BPF_REG_SIZE)

    def is_spilled_register(self) -> bool:
        return self.slot_type == _ALL_SPILL


@value_class
class StackState:
    """A frame's stack: ``slots[i]`` covers bytes ``[-(i+1)*8, -i*8)`` below the frame pointer."""

    slots: tuple[StackSlot, ...] = ()

    @property
    def allocated(self) -> int:
        return len(self.slots) * BPF_REG_SIZE

    def slot(self, index: int) -> StackSlot:
        return self.slots[index] if index < len(self.slots) else StackSlot()

    def with_slot(self, index: int, slot: StackSlot) -> StackState:
        slots = list(self.slots) + [StackSlot()] * max(0, index + 1 - len(self.slots))
        slots[index] = slot
        return StackState(tuple(slots))


def _byte_covered(old: SlotByte, cur: SlotByte, allow_uninit_stack: bool) -> bool:
    if old is STACK_INVALID:
        return True  # the old path never read it
    if old is STACK_MISC:
        # An unknown byte covers a known-zero one; privileged loaders may also read uninitialised stack.
        return cur is STACK_MISC or cur is STACK_ZERO or (allow_uninit_stack and cur is STACK_INVALID)
    return old is cur


_EMPTY_SLOT = StackSlot()  # immutable: what StackState.slot answers past the allocated slots
_SPECIAL = frozenset({SlotByte.STACK_DYNPTR, SlotByte.STACK_ITER, SlotByte.STACK_IRQ_FLAG})
_ALL_SPILL = (SlotByte.STACK_SPILL,) * BPF_REG_SIZE


def stacksafe(old: StackState, cur: StackState, ids: IdMap, *, allow_uninit_stack: bool = True,
              live_slots: int = -1, precision: bool = False, exact: bool = False) -> bool:
    """Whether every byte the old stack defines is matched (or covered) by the current stack.

    A slot whose bit is clear in ``live_slots`` is never read again and is skipped, unless it
    holds a dynptr/iterator/irq flag (objects with a lifetime of their own, never skipped)."""
    cur_slots = cur.slots
    cur_count = len(cur_slots)
    for index, old_slot in enumerate(old.slots):
        special = not _SPECIAL.isdisjoint(old_slot.slot_type)
        if not live_slots >> index & 1 and not special:
            continue
        cur_slot = cur_slots[index] if index < cur_count else _EMPTY_SLOT
        if cur_slot is old_slot and not special:
            # The same (immutable) slot: its tags match and its register is regsafe against
            # itself; only ids would need recording in the renaming.
            reg = old_slot.spilled_ptr
            if not reg.id and not reg.ref_obj_id and not reg.dynptr_id:
                continue
        # Equal tags cover each other byte by byte (every tag covers itself): only unequal
        # ones need the per-byte test.
        if old_slot.slot_type != cur_slot.slot_type:
            for old_byte, cur_byte in zip(old_slot.slot_type, cur_slot.slot_type, strict=True):
                if not _byte_covered(old_byte, cur_byte, allow_uninit_stack):
                    return False
        # A narrow spill (some bytes SPILL) carries a register to compare as much as a full one.
        spilled = STACK_SPILL in old_slot.slot_type
        if spilled and not regsafe(old_slot.spilled_ptr, cur_slot.spilled_ptr, ids, precision=precision,
                                   exact=exact):
            return False
        if special and not _special_slot_safe(old_slot, cur_slot, ids):
            return False
    return True


def _special_slot_safe(old: StackSlot, cur: StackSlot, ids: IdMap) -> bool:
    """``stacksafe``'s comparison of the objects living in stack slots (their tags already match).

    A dynptr slot matches one of the same kind and half whose reference maps to the old one's;
    we also map the dynptr ids (the kernel does not), so a slice's ``dynptr_id`` names the same
    dynptr in both states. An iterator slot matches one of the same type and state whose
    reference maps to the old one's (the depth is ignored, or a loop could never converge).
    Irq-flag slots are not modelled: never equal."""
    if old.iter is not None:
        return cur.iter is not None and iter_slots_match(old.iter, cur.iter, ids)
    if old.slot_type[0] is not SlotByte.STACK_DYNPTR:
        return False
    old_reg, cur_reg = old.spilled_ptr, cur.spilled_ptr
    return (
        old_reg.dynptr_type == cur_reg.dynptr_type and old_reg.dynptr_first == cur_reg.dynptr_first
        and ids.check(old_reg.ref_obj_id, cur_reg.ref_obj_id) and ids.check(old_reg.id, cur_reg.id)
    )


def iter_slots_match(old: IterSlot, cur: IterSlot, ids: IdMap) -> bool:
    """stacksafe's STACK_ITER test (the depth is not compared)."""
    return old.iter_type == cur.iter_type and old.state is cur.state and ids.check(old.ref_obj_id, cur.ref_obj_id)


def states_safe(
    old_regs: Sequence[RegState], cur_regs: Sequence[RegState], old_stack: StackState, cur_stack: StackState,
    *, allow_uninit_stack: bool = True,
) -> bool:
    """One frame's ``func_states_equal``: all registers and the stack, under one id renaming."""
    ids = IdMap()
    if len(old_regs) != len(cur_regs):
        return False
    if not all(regsafe(o, c, ids) for o, c in zip(old_regs, cur_regs, strict=True)):
        return False
    return stacksafe(old_stack, cur_stack, ids, allow_uninit_stack=allow_uninit_stack)
