"""The verifier's working state: call frames, acquired references, the path taken, and options.

:class:`State` is what the kernel calls ``struct bpf_verifier_state``: a stack of :class:`Frame`
(``struct bpf_func_state``: eleven registers and a stack), the references the program holds
(``acquired_refs``), plus the branch decisions that led here (for diagnostics). It is mutable
while one path is being stepped and copied whenever the path forks or is stored for pruning.

:class:`MapInfo` describes a map a ``lddw`` pseudo instruction refers to; :class:`Options` the
loader's privileges and the program's type and license.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pybpf.btf.record import FieldKind, SpecialField
from pybpf.errors import VerifierError
from pybpf.isa.insn import BinOp, Cond, LoadImm64
from pybpf.platform import BpfMapFlag, BpfMapType, ProgTypeSpec
from pybpf.verifier.branch import branch_outcomes
from pybpf.verifier.btf_ctx import TracingArgs
from pybpf.verifier.scalar import S64_MAX, S64_MIN, Scalar
from pybpf.verifier.scalar_ops import alu
from pybpf.verifier.state import (
    MEM_PERCPU,
    MEM_RCU,
    PTR_TRUSTED,
    PTR_UNTRUSTED,
    IdMap,
    RegState,
    RegType,
    StackSlot,
    StackState,
    regs_exact,
    regsafe,
    stacksafe,
)
from pybpf.verifier.tnum import U64
from pybpf.verifier.values import value_class

if TYPE_CHECKING:
    from pybpf.btf.btf import Btf
    from pybpf.verifier.global_funcs import GlobalFunc
    from pybpf.verifier.graphs import LocalType
    from pybpf.verifier.precision import HistEntry

Refinements = tuple[tuple[Scalar, Scalar] | None, tuple[Scalar, Scalar] | None]
"""A jump's (taken, not taken) narrowed operands; None for an edge no execution can follow."""

MAX_CALL_FRAMES = 8
_RDONLY_PROG = int(BpfMapFlag.RDONLY_PROG)
BPF_MAX_VAR_OFF = 1 << 29
BPF_MAX_VAR_SIZ = 1 << 29
MAX_PACKET_OFF = 0xFFFF
CALLER_SAVED = (1, 2, 3, 4, 5)


@dataclass(frozen=True, slots=True)
class MapInfo:
    """What the verifier needs to know about a map: type, sizes, flags and whether it is frozen
    (a frozen map or one created with ``BPF_F_RDONLY_PROG`` is read-only to programs)."""

    type: BpfMapType
    key_size: int
    value_size: int
    max_entries: int = 1
    flags: int = 0
    name: str = ""
    frozen: bool = False
    inner: MapInfo | None = None  # the template of a map-in-map's inner maps
    # The kernel-managed objects in the value (spin lock, timer...) found in the map's value BTF;
    # None when the map has no value BTF (the kernel then refuses spin locks and timers in it).
    fields: tuple[SpecialField, ...] | None = None

    @property
    def kernel_name(self) -> str:
        """The name as the kernel keeps it (and its messages print it): at most 15 bytes."""
        return self.name[:15]

    def field(self, kind: FieldKind) -> SpecialField | None:
        return next((found for found in self.fields or () if found.kind is kind), None)

    @property
    def readonly(self) -> bool:
        # On plain ints: IntFlag's own ``&`` runs Python code (asked on every map value access).
        return self.frozen or bool(int(self.flags) & _RDONLY_PROG)


MapResolver = Callable[[int, LoadImm64], MapInfo | None]
"""Given the pc and the ``lddw`` of a map pseudo form, the map it refers to (None: unknown map)."""


@dataclass(frozen=True, slots=True)
class Options:
    """How to verify: the program type's spec, its license, the loader's privilege, log level."""

    prog_type: ProgTypeSpec
    license: str = "GPL"
    privileged: bool = True
    log_level: int = 0
    attach_type: int | None = None
    sleepable: bool = False  # loaded with BPF_F_SLEEPABLE (may call sleepable helpers and kfuncs)
    # BPF_F_TEST_STATE_FREQ: a state stored at every prune point (see pybpf.verifier.states).
    test_state_freq: bool = False
    # A BTF tracing program's context slots typed from its target's prototype (None: numbers).
    ctx_args: TracingArgs | None = None

    @property
    def gpl(self) -> bool:
        # The kernel's license_is_gpl_compatible().
        return self.license in ("GPL", "GPL v2", "GPL and additional rights", "Dual BSD/GPL",
                                "Dual MIT/GPL", "Dual MPL/GPL")


@value_class
class PathStep:
    """One branch decision on the way to the current instruction (a persistent linked list)."""

    pc: int
    taken: bool
    parent: PathStep | None

    def decisions(self) -> list[tuple[int, bool]]:
        steps: list[tuple[int, bool]] = []
        node: PathStep | None = self
        while node is not None:
            steps.append((node.pc, node.taken))
            node = node.parent
        return steps[::-1]


@dataclass(slots=True)
class Frame:
    """One function activation: registers r0-r10, its stack, and where it was called from."""

    regs: list[RegState]
    stack: StackState
    callsite: int  # pc of the call instruction; -1 for the main program
    subprog: int  # first pc of the function
    frameno: int
    callback: bool = False  # a bpf_loop/for_each callback: return value must be 0 or 1
    # The kernel's callback_depth: callback iterations queued from this frame on this path
    # (bounds bpf_loop's unrolling by its nr_loops; see pybpf.verifier.callbacks).
    callback_depth: int = 0

    def copy(self) -> Frame:
        return Frame(list(self.regs), self.stack, self.callsite, self.subprog, self.frameno, self.callback,
                     self.callback_depth)


@dataclass(slots=True)
class State:
    frames: list[Frame]
    refs: dict[int, int] = field(default_factory=dict)  # reference id -> pc that acquired it
    path: PathStep | None = None
    lock: tuple[int | None, int] | None = None  # the held bpf_spin_lock: (map, offset in the value)
    # The instructions stepped since the last checkpoint (the kernel's jmp_history), for
    # precision backtracking; shared between copies (immutable).
    hist: HistEntry | None = None
    # A path the CPU could only take by mispredicting a branch (unprivileged loads; see
    # pybpf.verifier.spectre): its errors cost a speculation barrier, not the load.
    speculative: bool = False
    # Inside bpf_rcu_read_lock() (the kernel's active_rcu_lock); bpf_preempt_disable() nesting.
    rcu_lock: bool = False
    preempt_count: int = 0
    # The kernel's callback_unroll_depth: callback entries on this path, never reset. Two states
    # in different iterations of a callback are not an infinite loop, however alike they are.
    callback_unroll_depth: int = 0
    # may_goto iterations queued on this path (the kernel's may_goto_depth): states at a may_goto
    # at different depths are loop iterations, not an infinite loop.
    may_goto_depth: int = 0

    @property
    def frame(self) -> Frame:
        return self.frames[-1]

    @property
    def regs(self) -> list[RegState]:
        return self.frames[-1].regs

    def copy(self) -> State:
        frames = self.frames
        copied = [frames[0].copy()] if len(frames) == 1 else [f.copy() for f in frames]  # mostly one
        return State(copied, dict(self.refs) if self.refs else {}, self.path, self.lock, self.hist, self.speculative,
                     self.rcu_lock, self.preempt_count, self.callback_unroll_depth,
                     self.may_goto_depth)

    def all_registers(self) -> list[tuple[Frame, int | None, int, RegState]]:
        """Every register and spilled register: (frame, None for a register / slot index, reg number)."""
        found: list[tuple[Frame, int | None, int, RegState]] = []
        for frame in self.frames:
            for number, reg in enumerate(frame.regs):
                found.append((frame, None, number, reg))
            for index, slot in enumerate(frame.stack.slots):
                if slot.is_spilled_register():
                    found.append((frame, index, -1, slot.spilled_ptr))
        return found

    def update_registers(self, change: Callable[[RegState], RegState | None]) -> None:
        """Apply ``change`` to every register and spilled register (None: leave it)."""
        for frame in self.frames:
            for number, reg in enumerate(frame.regs):
                new = change(reg)
                if new is not None:
                    frame.regs[number] = new
            for index, slot in enumerate(frame.stack.slots):
                if slot.is_spilled_register():
                    new = change(slot.spilled_ptr)
                    if new is not None:
                        frame.stack = frame.stack.with_slot(index, StackSlot.spill(new))


def _widened(old: RegState, cur: RegState, ids: IdMap) -> RegState | None:
    """``maybe_widen_reg``: an unknown scalar in place of ``cur`` when both are imprecise scalars
    and differ; None to keep ``cur``."""
    if old.type is not RegType.SCALAR_VALUE or cur.type is not RegType.SCALAR_VALUE:
        return None
    if old.precise or cur.precise or regs_exact(old, cur, ids):
        return None
    return RegState.scalar()


def widen_imprecise_scalars(old: State, cur: State) -> None:
    """The kernel's ``widen_imprecise_scalars``: forget, in ``cur``, every imprecise scalar (register
    or spilled) that differs from ``old``'s. ``old`` is the same call chain's state one loop
    iteration earlier (a callback's call site, an iterator's ``next()``, a ``may_goto``), so the
    loop's states converge."""
    ids = IdMap()
    for old_frame, frame in zip(old.frames, cur.frames, strict=False):
        regs = frame.regs
        for number, (old_reg, cur_reg) in enumerate(zip(old_frame.regs, regs, strict=True)):
            if old_reg is cur_reg:
                continue
            widened = _widened(old_reg, cur_reg, ids)
            if widened is not None:
                regs[number] = widened
        stack = frame.stack
        for index in range(min(len(old_frame.stack.slots), len(stack.slots))):
            old_slot, cur_slot = old_frame.stack.slots[index], stack.slots[index]
            if old_slot is cur_slot or not old_slot.is_spilled_register() or not cur_slot.is_spilled_register():
                continue
            widened = _widened(old_slot.spilled_ptr, cur_slot.spilled_ptr, ids)
            if widened is not None:
                stack = stack.with_slot(index, StackSlot.spill(widened))
        frame.stack = stack


def states_equal(old: State, cur: State, allow_uninit_stack: bool, live: int = (1 << 11) - 1,
                 live_slots: int = -1, *, precision: bool = False) -> bool:
    """The kernel's ``states_equal`` (RANGE_WITHIN): ``old``'s explored paths cover ``cur``.

    ``live`` masks the innermost frame's registers that some continuation may read (see
    :mod:`pybpf.verifier.liveness`); a dead one is skipped as the kernel skips a register
    without REG_LIVE_READ. Caller frames are compared whole (their liveness would be the return
    site's, which we do not track). ``live_slots`` does the same for the innermost stack.
    ``precision``: imprecise scalars of ``old`` cover anything (only for a finished ``old``)."""
    return compare_states(old, cur, allow_uninit_stack, live, live_slots, precision=precision) < 0


NO_DIFFERENCE = -1
_SCALAR = RegType.SCALAR_VALUE
_NOT_INIT = RegType.NOT_INIT
OTHER_DIFFERENCE = 11
ALL_REGS = (1 << 11) - 1
REGISTERS_IN = tuple(tuple(number for number in range(11) if mask >> number & 1) for mask in range(ALL_REGS + 1))
"""The register numbers in each 11-bit mask, lowest first: walking a mask by its set bits costs
several operations per register, and the pruning comparison walks one for every stored state."""


def compare_states(old: State, cur: State, allow_uninit_stack: bool, live: int = (1 << 11) - 1,
                   live_slots: int = -1, *, precision: bool = False, first: int = NO_DIFFERENCE,
                   exact: bool = False) -> int:
    """:func:`states_equal`, telling where it failed: -1 when ``old`` covers ``cur``, else the
    innermost register found not covered (0-10), or 11 for any other difference.

    ``first`` names an innermost register to compare before the others (where the last
    comparison with ``old`` failed: states stored at one pc tend to differ in the same place).
    The order cannot change the outcome: each register's test only adds pairs to the id
    renaming, and whether a consistent renaming exists does not depend on their order.
    ``exact``: scalars cover only equal scalars (see :class:`SpecAux`)."""
    old_frames, cur_frames = old.frames, cur.frames
    if len(old_frames) != len(cur_frames):
        return OTHER_DIFFERENCE
    innermost = len(old_frames) - 1
    # The id renaming is built on first need: most comparisons end, or pass, without any
    # register that carries an id.
    ids: IdMap | None = None
    if first >= 0 and live >> first & 1:
        old_reg, cur_reg = old_frames[innermost].regs[first], cur_frames[innermost].regs[first]
        # Most comparisons fail here, on two scalars (a loop counter...): regsafe's scalar test,
        # inlined, before anything is set up. Under a still empty renaming its id test cannot
        # fail, so it is left out; a pass goes through regsafe below all the same, which
        # records the ids' pairing.
        if (old_reg.type is _SCALAR and cur_reg.type is _SCALAR and (old_reg.precise or not precision)
                and (old_reg.off != cur_reg.off or not (old_reg.var_off is cur_reg.var_off
                                                       or old_reg.var_off.includes(cur_reg.var_off)))):
            return first
        trivially_safe = old_reg is cur_reg and not old_reg.id and not old_reg.ref_obj_id
        if not trivially_safe:
            ids = IdMap()
            if not regsafe(old_reg, cur_reg, ids, precision=precision, exact=exact):
                return first
    else:
        first = NO_DIFFERENCE  # dead: nothing to compare first
    # (After the hinted register: when both differ, either answer is a difference, and the
    # hint it would set is the one already there.)
    if len(old.refs) != len(cur.refs) or old.lock != cur.lock:
        return OTHER_DIFFERENCE
    if old.rcu_lock != cur.rcu_lock or old.preempt_count != cur.preempt_count:
        return OTHER_DIFFERENCE
    if old.speculative and not cur.speculative:
        # What a mispredicted path proved (it stops at the first barrier) says nothing about
        # the paths the CPU really takes.
        return OTHER_DIFFERENCE
    for depth, (old_frame, cur_frame) in enumerate(zip(old_frames, cur_frames, strict=True)):
        # A frame that queued more callback iterations would stop bpf_loop earlier than this one.
        if old_frame.callsite != cur_frame.callsite or old_frame.callback_depth > cur_frame.callback_depth:
            return OTHER_DIFFERENCE
        mask = live if depth == innermost else ALL_REGS
        if depth == innermost and first >= 0:
            mask &= ~(1 << first)  # compared above
        old_regs, cur_regs = old_frame.regs, cur_frame.regs
        for number in REGISTERS_IN[mask & ALL_REGS]:  # the live registers only (a dead one: nothing reads it)
            old_reg, cur_reg = old_regs[number], cur_regs[number]
            if old_reg is cur_reg and not old_reg.id and not old_reg.ref_obj_id:
                continue  # the same (immutable) value, with no id to keep consistent: trivially safe
            kind = old_reg.type
            if kind is _NOT_INIT:
                continue  # regsafe's first test, inlined: the explored path never read it
            if kind is _SCALAR and cur_reg.type is _SCALAR:
                if precision and not old_reg.precise:
                    continue  # regsafe's imprecise-scalar test, inlined: the most frequent outcome
                if not old_reg.id and not cur_reg.id and not exact:
                    # regsafe's test of two unlinked scalars, inlined (it needs no renaming).
                    if old_reg.off == cur_reg.off and (old_reg.var_off is cur_reg.var_off
                                                       or old_reg.var_off.includes(cur_reg.var_off)):
                        continue
                    return number if depth == innermost else OTHER_DIFFERENCE
            if ids is None:
                ids = IdMap()
            if not regsafe(old_reg, cur_reg, ids, precision=precision, exact=exact):
                return number if depth == innermost else OTHER_DIFFERENCE
        if old_frame.stack.slots:  # stacksafe walks the old slots: none, nothing to compare
            if ids is None:
                ids = IdMap()
            slots = live_slots if depth == innermost else -1
            if not stacksafe(old_frame.stack, cur_frame.stack, ids, allow_uninit_stack=allow_uninit_stack,
                             live_slots=slots, precision=precision, exact=exact):
                return OTHER_DIFFERENCE
    if not old.refs:
        return NO_DIFFERENCE
    if ids is None:
        ids = IdMap()
    if all(ids.check(a, b) for a, b in zip(sorted(old.refs), sorted(cur.refs), strict=True)):
        return NO_DIFFERENCE
    return OTHER_DIFFERENCE


def loop_key(state: State) -> Hashable:
    """A hashable key equal for two states exactly when :func:`states_identical` holds."""
    return (tuple((frame.callsite, frame.callback_depth, tuple(frame.regs), frame.stack) for frame in state.frames),
            tuple(sorted(state.refs)), state.lock, state.rcu_lock, state.preempt_count, state.callback_unroll_depth,
            state.may_goto_depth)


def states_identical(old: State, cur: State) -> bool:
    """Exact equality (the infinite-loop test): nothing changed around a loop. Two passes through
    a synchronous callback at different iteration depths are not a loop (the kernel compares
    ``callback_unroll_depth``): the helper bounds the number of iterations, not the program."""
    if len(old.frames) != len(cur.frames) or old.refs.keys() != cur.refs.keys() or old.lock != cur.lock \
            or old.callback_unroll_depth != cur.callback_unroll_depth:
        return False
    if old.rcu_lock != cur.rcu_lock or old.preempt_count != cur.preempt_count:
        return False
    if old.may_goto_depth != cur.may_goto_depth:
        return False
    return all(
        a.callsite == b.callsite and a.callback_depth == b.callback_depth and a.regs == b.regs and a.stack == b.stack
        for a, b in zip(old.frames, cur.frames, strict=True)
    )


# -- kernel-style text -------------------------------------------------------------------------


def type_name(reg: RegState) -> str:
    """``reg_type_str``: ``map_value_or_null``, ``fp``, ``pkt``, ``scalar``..."""
    if reg.type is RegType.NOT_INIT:
        return "?"
    name = reg.type.value
    if reg.type is RegType.PTR_TO_MEM and reg.ref_obj_id and not reg.dynptr_id:
        # The only referenced memory we hand out besides dynptr slices (plain ``mem``, which
        # hold their dynptr's reference): a ring buffer sample.
        name = "ringbuf_mem"
    if reg.type is RegType.PTR_TO_BTF_ID:
        # prefix + "ptr_" + "or_null_": the struct's name follows where the log prints one.
        flags = reg.type_flags
        prefix = "rdonly_" if reg.rdonly else ""
        if flags:
            prefix += "".join(text for bit, text in _FLAG_PREFIXES if flags & bit)
        return f"{prefix}ptr_or_null_" if reg.maybe_null else f"{prefix}ptr_"
    if reg.rdonly:
        name = f"rdonly_{name}"
    return f"{name}_or_null" if reg.maybe_null else name


# reg_type_str's prefixes, in its order (MEM_ALLOC and NON_OWN_REF print nothing).
_FLAG_PREFIXES = ((MEM_PERCPU, "percpu_"), (MEM_RCU, "rcu_"), (PTR_UNTRUSTED, "untrusted_"),
                  (PTR_TRUSTED, "trusted_"))


def leaked_references(state: State) -> str:
    """``check_reference_leak``: a line per reference still held, in the order they were taken."""
    return "\n".join(f"Unreleased reference id={ref_id} alloc_insn={alloc_pc}"
                     for ref_id, alloc_pc in sorted(state.refs.items()))


def tnum_text(value: Scalar) -> str:
    """A variable offset's tnum as the kernel prints it: ``(0x0; 0xf)``."""
    return f"({value.var_off.value:#x}; {value.var_off.mask:#x})"



def check_ptr_off_reg(regno: int, reg: RegState, name: str) -> None:
    """The kernel's ``__check_ptr_off_reg`` with no fixed offset allowed: a pointer (``name`` as the
    messages call it, e.g. ``ctx``) passed or dereferenced where only the object itself may be."""
    if reg.off < 0:
        raise reject(f"negative offset {name} ptr R{regno} off={reg.off} disallowed")
    if reg.off:
        raise reject(f"dereference of modified {name} ptr R{regno} off={reg.off} disallowed")
    if not reg.var_off.is_const() or reg.var_off.const_value():
        raise reject(f"variable {name} access var_off={tnum_text(reg.var_off)} disallowed")

def format_scalar(value: Scalar) -> str:
    constant = value.const_value()
    if constant is not None:
        signed = constant - (1 << 64) if constant >> 63 else constant
        return str(signed)
    parts: list[str] = []
    if value.smin != S64_MIN:
        parts.append(f"smin={value.smin}")
    if value.smax != S64_MAX:
        parts.append(f"smax={value.smax}")
    if value.umin != 0:
        parts.append(f"umin={value.umin}")
    if value.umax != U64:
        parts.append(f"umax={value.umax}")
    if not value.var_off.is_unknown():
        parts.append(f"var_off=({value.var_off.value:#x}; {value.var_off.mask:#x})")
    return f"scalar({','.join(parts)})"


def format_reg(reg: RegState) -> str:
    """One register as the kernel's log prints it: ``ctx()``, ``fp-8``, ``pkt(r=14)``, ``0``."""
    if reg.type is RegType.SCALAR_VALUE:
        return format_scalar(reg.var_off)
    if reg.type is RegType.PTR_TO_STACK and reg.var_off.is_const() and reg.var_off.const_value() == 0:
        return f"fp{reg.off}" if reg.off else "fp0"
    parts: list[str] = []
    if reg.id:
        parts.append(f"id={reg.id}")
    if reg.ref_obj_id:
        parts.append(f"ref_obj_id={reg.ref_obj_id}")
    if reg.off:
        parts.append(f"off={reg.off}")
    if reg.type in (RegType.PTR_TO_PACKET, RegType.PTR_TO_PACKET_META):
        parts.append(f"r={reg.range}")
    if reg.mem_size and reg.type is not RegType.CONST_PTR_TO_MAP:
        parts.append(f"sz={reg.mem_size}")
    if not (reg.var_off.is_const() and reg.var_off.const_value() == 0):
        parts.append(f"var_off={format_scalar(reg.var_off)}")
    name = type_name(reg)
    if reg.type is RegType.PTR_TO_BTF_ID and reg.btf_type:
        name = f"{name}{reg.btf_type}"  # the kernel prints the struct: ptr_task_struct(...)
    return f"{name}({','.join(parts)})"


def format_state(state: State) -> str:
    """The current frame's initialised registers: ``R1=ctx() R10=fp0``."""
    return " ".join(
        f"R{number}={format_reg(reg)}" for number, reg in enumerate(state.regs) if reg.type is not RegType.NOT_INIT
    )


class Rejection(VerifierError):
    """A rejection found while exploring, with the path of branch decisions that reached it.

    ``recoverable``: the kernel answers this error with EPERM, EACCES or EINVAL, so on a
    speculative path it costs a speculation barrier instead of the load
    (``error_recoverable_with_nospec``); resource limits (E2BIG), internal errors and what this
    verifier does not model are not."""

    def __init__(self, pc: int | None, reason: str, source: str | None = None,
                 path: tuple[tuple[int, bool], ...] = (), *, recoverable: bool = True) -> None:
        super().__init__(pc, reason, source)
        self.path = path
        self.recoverable = recoverable


def reject(reason: str) -> Rejection:
    """An error at the instruction being stepped; the explorer fills in pc, source and path."""
    return Rejection(None, reason)


def reject_fatal(reason: str) -> Rejection:
    """:func:`reject` for an error no speculation barrier can recover from (see :class:`Rejection`)."""
    return Rejection(None, reason, recoverable=False)


@dataclass(slots=True)
class SpecAux:
    """The kernel's per-instruction Spectre bookkeeping (``insn_aux_data``) of an unprivileged
    load, shared by every path (see :mod:`pybpf.verifier.spectre`)."""

    pc: int = 0  # the instruction being stepped
    nospec: dict[int, str] = field(default_factory=dict)  # pc -> why a barrier goes before it
    nospec_result: dict[int, str] = field(default_factory=dict)  # pc -> why a barrier follows it
    alu_states: dict[int, tuple[int, int]] = field(default_factory=dict)  # pc -> (alu_state, alu_limit)
    pushes: list[tuple[int, State]] = field(default_factory=list)  # speculative states this step queued
    # Set by the first pointer arithmetic with a variable scalar: from then on scalars prune
    # only when exactly equal (the kernel's env->explore_alu_limits), so every path's masking
    # limit at each instruction is seen and compared.
    explore_alu_limits: bool = False


@dataclass(slots=True)
class Env:
    """Per-verification bookkeeping shared by every path (never global): the options, the maps
    met so far (a map pointer's ``map_uid`` indexes ``maps``), the id generator, and the deepest
    stack byte each function touched (for the combined stack-depth check)."""

    options: Options
    maps: list[MapInfo] = field(default_factory=list)
    next_id: int = 0
    stack_depth: dict[int, int] = field(default_factory=dict)
    consts: dict[int, RegState] = field(default_factory=dict)
    # Scalar transfer functions are pure, and paths through the same instructions keep meeting
    # the same operands: their results are remembered for this verification (the ALU's as the
    # register values they become: immutable, so shared, and a register costs a lot to build).
    alu_memo: dict[tuple[BinOp, Scalar, Scalar, bool], RegState] = field(default_factory=dict)
    refine_memo: dict[tuple[str, Scalar, Scalar, bool], Refinements] = field(default_factory=dict)
    async_callbacks: set[int] = field(default_factory=set)  # first pcs of timer callbacks (own roots)
    # pc -> the pointer type a load/store/atomic there accessed (the kernel's aux->ptr_type).
    ptr_types: dict[int, RegType] = field(default_factory=dict)
    tail_call_maps: dict[int, int | None] = field(default_factory=dict)  # tail-call pc -> its prog array
    # First pc -> global function (verified on its own, see pybpf.verifier.global_funcs); and
    # those some path called (the kernel's subprog_aux->called), verified after the main program.
    global_funcs: dict[int, GlobalFunc] = field(default_factory=dict)
    called_globals: set[int] = field(default_factory=set)
    # Unprivileged loads only (None for root, which bypasses the Spectre mitigations).
    spec: SpecAux | None = None
    # The program's arena map (pybpf.verifier.arena), and the pcs of 64-bit ALU instructions
    # some path applied to an arena pointer: the kernel runs them on 32 bits (aux->needs_zext).
    arena: MapInfo | None = None
    arena_alu32: set[int] = field(default_factory=set)
    # The program's own BTF (the types bpf_obj_new allocates), and those types' layouts by
    # name once looked up (see pybpf.verifier.graphs).
    btf: Btf | None = None
    local_types: dict[str, LocalType] = field(default_factory=dict)

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id

    def memo_alu_reg(self, op: BinOp, dst: Scalar, src: Scalar, is64: bool) -> RegState:
        """:func:`~pybpf.verifier.scalar_ops.alu`'s result as an unlinked scalar register, remembered."""
        key = (op, dst, src, is64)  # (BinOp hashes by identity, at C speed)
        result = self.alu_memo.get(key)
        if result is None:
            result = self.alu_memo[key] = RegState.scalar(alu(op, dst, src, is64))
        return result

    def memo_refine(self, cond: Cond, dst: Scalar, src: Scalar, is32: bool) -> Refinements:
        """:func:`~pybpf.verifier.branch.branch_outcomes` (taken, not taken), remembered."""
        key = (cond._value_, dst, src, is32)
        result = self.refine_memo.get(key)
        if result is None:
            result = self.refine_memo[key] = branch_outcomes(cond, dst, src, is32)
        return result

    def const_reg(self, value: int) -> RegState:
        """A known scalar for an immediate operand; immutable, so each value is built once per
        verification (immediates repeat on every path through an instruction)."""
        reg = self.consts.get(value)
        if reg is None:
            reg = self.consts[value] = RegState.const(value)
        return reg

    def map_of(self, reg: RegState) -> MapInfo:
        if reg.map_uid is None or not 0 <= reg.map_uid < len(self.maps):
            raise reject("map pointer without a map")
        return self.maps[reg.map_uid]

    def add_map(self, info: MapInfo) -> int:
        for index, known in enumerate(self.maps):
            if known is info:
                return index
        self.maps.append(info)
        return len(self.maps) - 1

    def touch_stack(self, frame: Frame, lowest: int) -> None:
        depth = -lowest
        if depth > self.stack_depth.get(frame.subprog, 0):
            self.stack_depth[frame.subprog] = depth
