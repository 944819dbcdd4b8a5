"""Path-sensitive exploration, as the kernel's ``do_check`` walks a program.

One path is stepped at a time; a conditional jump whose two edges are both possible pushes the
taken edge on a stack and continues with the fall-through; more than
``BPF_COMPLEXITY_LIMIT_JMP_SEQ`` (8192) states waiting on that stack at once is the kernel's "The
sequence of N jumps is too complex." At prune points (jump targets, the
instruction after a conditional jump, call sites) the current state is compared with the states
already stored there: when a *finished* stored state covers it (:func:`states_equal`), the path
stops; when an *unfinished* one (still being explored: a loop around to itself) is exactly equal,
the loop can never make progress and is rejected. Finished-ness is the kernel's ``branches``
count: the live paths below a stored state.

For privileged loaders the comparison uses precision tracking (:mod:`pybpf.verifier.precision`):
each step is recorded in the path's history, the values an instruction relies on are demanded
precise before it runs (and a jump's operands when the values decided it), and a path pruned
against a stored state inherits that state's precise scalars.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pybpf.isa.insn import (
    AddrSpaceCast,
    Atomic,
    Bin,
    BinOp,
    Call,
    CallKfunc,
    CallLocal,
    CallReg,
    Endian,
    Exit,
    Goto,
    Instruction,
    Jump,
    LabeledInsn,
    Load,
    LoadImm64,
    MayGoto,
    Neg,
    PacketLoad,
    Reg,
    Store,
)
from pybpf.isa.opcodes import Mode, PseudoSrc
from pybpf.platform import BpfMapType, HelperId
from pybpf.verifier import arena, callbacks, calls, global_funcs, iters, kernel_log, kfuncs, memory, spectre, transfer
from pybpf.verifier.cfg import branch_target, call_target
from pybpf.verifier.liveness import live_masks
from pybpf.verifier.machine import (
    CALLER_SAVED,
    NO_DIFFERENCE,
    OTHER_DIFFERENCE,
    Env,
    Frame,
    MapResolver,
    PathStep,
    Rejection,
    SpecAux,
    State,
    compare_states,
    loop_key,
    reject,
    reject_fatal,
    states_equal,
    states_identical,
    widen_imprecise_scalars,
)
from pybpf.verifier.precision import (
    Checkpoint,
    HistEntry,
    demanded_by_branch,
    demanded_by_insn,
    history_entry,
    mark_precise,
    precise_locations,
    records_plainly,
)
from pybpf.verifier.scalar_ops import endian, neg
from pybpf.verifier.state import IterState, RegState, RegType, StackState
from pybpf.verifier.structure import (
    BPF_COMPLEXITY_LIMIT_INSNS,
    BPF_COMPLEXITY_LIMIT_JMP_SEQ,
    ProgramStructure,
    source_of,
)

# (Enum members read through their class are slow on Python 3.11: see pybpf.verifier.state.)
_IMM64, _FUNC, _BTF_ID = PseudoSrc.IMM64, PseudoSrc.FUNC, PseudoSrc.BTF_ID
_MAP_FDS = frozenset({PseudoSrc.MAP_FD, PseudoSrc.MAP_IDX})
_MOVES = frozenset({BinOp.MOV, BinOp.MOVSX8, BinOp.MOVSX16, BinOp.MOVSX32})

_PRUNE_CLASSES = (Jump, Goto, MayGoto, Call, CallLocal, CallKfunc, LoadImm64)

LOOP_INDEX_MIN = 8
"""Stored states at one pc from which the infinite-loop test looks them up by hash."""

CALLBACK_EVICT = 64
"""At a callback call site, a stored state is dropped after more than this many misses per hit
(plus one), in progress or not (the kernel's ``is_force_checkpoint`` factor)."""

Handler = Callable[[int, Any, "State", "Checkpoint | None"], tuple[int | None, "State"]]
"""Steps one instruction (of the class it was chosen for): (pc, insn, state, parent checkpoint)
-> (next pc or None at the path's end, the state the path goes on with)."""
Step = tuple[LabeledInsn, Handler, bool, bool]
"""Per pc: the instruction, its handler, whether it is a prune point, whether it records plainly."""


@dataclass(slots=True)
class Work:
    pc: int
    state: State
    parent: Checkpoint | None


@dataclass(slots=True)
class Explorer:
    insns: Sequence[LabeledInsn]
    structure: ProgramStructure
    env: Env
    resolver: MapResolver
    insn_limit: int = BPF_COMPLEXITY_LIMIT_INSNS
    processed: int = 0
    seen: set[int] = field(default_factory=set)  # pcs some path reached (the kernel's aux->seen)
    states_stored: int = 0
    log: list[str] = field(default_factory=list)
    table: dict[int, LabeledInsn] = field(default_factory=dict)
    prune_points: set[int] = field(default_factory=set)
    checkpoints: dict[int, list[Checkpoint]] = field(default_factory=dict)
    pending: list[Work] = field(default_factory=list)
    live: dict[int, int] = field(default_factory=dict)
    live_slots: dict[int, int] = field(default_factory=dict)
    # The kernel tracks precision for privileged loaders only (unprivileged: every scalar precise).
    track_precision: bool = False
    # pc -> loop_key -> checkpoints stored there, at pcs with many (see _identical_in_progress).
    loop_index: dict[int, dict[Hashable, list[Checkpoint]]] = field(default_factory=dict)
    callback_sites: dict[int, int] = field(default_factory=dict)  # pc -> helper (kernel: calls_callback)
    iter_next_sites: set[int] = field(default_factory=set)  # pcs of iterator next() calls
    may_goto_sites: set[int] = field(default_factory=set)  # pcs of may_goto instructions
    steps: dict[int, Step] = field(default_factory=dict)  # decoded once (see _decode)
    global_moves_packet: dict[int, bool] = field(default_factory=dict)  # global function -> changes_pkt_data

    def __post_init__(self) -> None:
        self.table = {labeled.pc: labeled for labeled in self.insns}
        self.live, self.live_slots = live_masks(self.insns)
        self.track_precision = self.env.options.privileged
        if not self.env.options.privileged and self.env.spec is None:
            self.env.spec = SpecAux()
        for labeled in self.insns:
            # Only jumps, calls (an iterator's next() kfunc too) and lddw (a callback's address)
            # make prune points: one type test skips the rest (this runs for every instruction).
            if not isinstance(labeled.insn, _PRUNE_CLASSES):
                continue
            target = branch_target(labeled.pc, labeled.insn)
            if target is not None:
                self.prune_points.add(target)
                if isinstance(labeled.insn, (Jump, MayGoto)):
                    self.prune_points.add(labeled.pc + 1)
            if isinstance(labeled.insn, (Call, CallLocal)):
                self.prune_points.add(labeled.pc)
            if isinstance(labeled.insn, MayGoto):
                # A may_goto is a loop head too (mark_force_checkpoint), converging like next().
                self.prune_points.add(labeled.pc)
                self.may_goto_sites.add(labeled.pc)
            if isinstance(labeled.insn, CallKfunc) and kfuncs.is_iter_next(labeled.insn):
                # An iterator's next() is a loop head: always a checkpoint (the kernel's
                # mark_force_checkpoint), where loops converge (see _visit).
                self.prune_points.add(labeled.pc)
                self.iter_next_sites.add(labeled.pc)
            if isinstance(labeled.insn, Call) and labeled.insn.helper in callbacks.SYNC_CALLBACK_HELPERS:
                self.callback_sites[labeled.pc] = labeled.insn.helper
            callee = call_target(labeled.pc, labeled.insn)
            if callee is not None:
                self.prune_points.add(callee)
        self.steps = self._decode()

    # -- driving -------------------------------------------------------------------------------

    def run(self) -> None:
        regs = [RegState.not_init() for _ in range(11)]
        regs[1] = RegState.pointer(RegType.PTR_TO_CTX)
        regs[10] = RegState.pointer(RegType.PTR_TO_STACK, frameno=0)
        self.pending.append(Work(0, State([Frame(regs, StackState(), -1, 0, 0)]), None))
        self._drain()
        # do_check_subprogs: each global function a verified path called, once, on its own
        # (in pc order, again until no new one was called).
        env, verified = self.env, set[int]()
        while True:
            todo = sorted(env.called_globals - verified)
            if not todo:
                break
            for start in todo:
                func = env.global_funcs[start]
                self.pending.append(Work(start, global_funcs.entry_state(env, func), None))
                self._drain()
                verified.add(start)
                if env.options.log_level >= 1:
                    index = [subprog.start for subprog in self.structure.subprogs].index(start)
                    self.log.append(f"Func#{index} ('{func.name}') is safe for any args that match its prototype")

    def _drain(self) -> None:
        while self.pending:
            work = self.pending.pop()
            if self.env.options.log_level >= 2:
                self.log.append(kernel_log.path_start(work.pc, work.state, self.env.maps))
            self._run_path(work.pc, work.state, work.parent)

    def _run_path(self, pc: int, state: State, parent: Checkpoint | None) -> None:
        # The hot loop: everything that depends only on the instruction was decided once, in
        # _decode; options are read once per path.
        steps = self.steps
        seen = self.seen
        options = self.env.options
        level = options.log_level
        track = self.track_precision
        spec = self.env.spec  # None for a privileged load: no Spectre bookkeeping at all
        speculative = state.speculative  # a path stays (non-)speculative to its end
        limit = self.insn_limit
        while True:
            step = steps.get(pc)
            if step is None:
                raise Rejection(pc, f"invalid insn idx {pc}", recoverable=False)
            labeled, handler, prune, plain = step
            insn = labeled.insn
            try:
                if prune:
                    pruned, parent = self._visit(pc, state, parent)
                    if pruned:
                        if level >= 1:
                            self.log.append(f"{pc}: safe")
                        break
                self.processed += 1
                if not speculative:
                    seen.add(pc)  # sanitize_mark_insn_seen: reached only speculatively is dead code
                if self.processed > limit:
                    raise reject_fatal(f"BPF program is too large. Processed {self.processed} insn")
                if spec is not None:
                    if speculative and pc in spec.nospec:
                        break  # a barrier stops the misprediction here
                    spec.pc = pc
                if level >= 1:
                    next_pc, state = self._step_logged(pc, labeled, handler, state, parent, level=level)
                else:
                    if track:
                        if plain:
                            state.hist = HistEntry(pc, state.hist)
                        else:
                            self._record(pc, insn, state, parent)
                    next_pc, state = handler(pc, insn, state, parent)
            except Rejection as error:
                if error.pc is not None:
                    raise
                if speculative and error.recoverable and spec is not None:
                    self._insert_barrier(pc, error.reason, spec, parent)
                    break
                path = tuple(state.path.decisions()) if state.path is not None else ()
                raise Rejection(pc, error.reason, source_of(labeled), path,
                                recoverable=error.recoverable) from None
            if spec is not None:
                if spec.pushes:
                    self._push_speculative(spec, parent)
                if speculative and pc in spec.nospec_result:
                    break  # a barrier after this store (Spectre v4) stops the misprediction
            if next_pc is None:
                break
            pc = next_pc
        self._end_path(parent)

    def _insert_barrier(self, pc: int, reason: str, spec: SpecAux, parent: Checkpoint | None) -> None:
        """A speculative path met an error a barrier prevents: mark a barrier before ``pc``
        (aux->nospec; the first reason found is the one reported) and end the path."""
        spec.nospec.setdefault(pc, reason)
        spec.alu_states.pop(pc, None)  # a barrier replaces the masking of an add/sub
        if self.env.options.log_level >= 1:
            self.log.append(reason)  # the kernel logs the error it recovered from
            self.log.append(f"; speculation barrier inserted before insn {pc}")
        self._push_speculative(spec, parent)

    def _push_speculative(self, spec: SpecAux, parent: Checkpoint | None) -> None:
        """Queue the speculative states the step asked for (after pointer arithmetic)."""
        pushes, spec.pushes = spec.pushes, []
        for pc, state in pushes:
            self._fork(pc, state, parent)

    def _step_logged(self, pc: int, labeled: LabeledInsn, handler: Handler, state: State,
                     parent: Checkpoint | None, *, level: int) -> tuple[int | None, State]:
        """One step with the kernel-style log (level 1: the instruction; level 2: what it left)."""
        insn = labeled.insn
        logged = len(self.log)
        # As the kernel: the instruction walked; level 2 appends what it left behind.
        self.log.append(kernel_log.format_kernel_insn(pc, insn))
        touched = kernel_log.before(insn, state, self.env.maps) if level >= 2 else None
        if self.track_precision:
            self._record(pc, insn, state, parent)
        next_pc, state = handler(pc, insn, state, parent)
        if touched is not None:
            self.log[logged:] = kernel_log.after(pc, next_pc, self.log[logged], insn, state,
                                                 maps=self.env.maps, seen=touched)
        return next_pc, state

    def _visit(self, pc: int, state: State, parent: Checkpoint | None) -> tuple[bool, Checkpoint | None]:
        stored = self.checkpoints.setdefault(pc, [])
        allow_uninit = self.env.options.privileged
        exact = self.env.spec is not None and self.env.spec.explore_alu_limits
        live = self.live.get(pc, (1 << 11) - 1)
        live_slots = self.live_slots.get(pc, -1)
        evicted = False
        callback_helper = self.callback_sites.get(pc)
        iter_next = pc in self.iter_next_sites
        if callback_helper is not None and callbacks.returning(state):
            # Back from a callback (prepare_func_exit): widen against the iteration in progress
            # here, before any comparison, as the kernel widens on the callback's exit.
            loop_heads = [c.state for c in stored if c.branches > 0 and callbacks.same_chain(c.state, state)]
            if loop_heads:
                widen_imprecise_scalars(loop_heads[-1], state)
        looping: list[Checkpoint] | None = None
        looked_up = False  # the infinite-loop lookup is made once, when an in-progress state is met
        precision = self.track_precision
        for checkpoint in stored:
            if checkpoint.branches > 0:
                if iter_next:
                    # An iterator loop in progress: a state it covers (ranges, not precision)
                    # with the iterator still ACTIVE adds nothing; no infinite-loop verdict at
                    # next() (the kernel's is_iter_next_insn case of is_state_visited).
                    if states_equal(checkpoint.state, state, allow_uninit, live, live_slots) and \
                            self._iterator_active(state):
                        # The loop head's precision marks are incomplete: so are those of
                        # every state above this path.
                        _flag_loop_imprecise(parent)
                        return True, parent
                    continue
                if pc in self.may_goto_sites and checkpoint.state.may_goto_depth != state.may_goto_depth and \
                        states_equal(checkpoint.state, state, allow_uninit, live, live_slots):
                    # A may_goto loop whose next iteration adds nothing the one in progress
                    # covers (is_state_visited's may_goto case).
                    _flag_loop_imprecise(parent)
                    return True, parent
                if callback_helper is not None:
                    # A callback loop in progress (calls_callback): an equal-or-wider state
                    # still being explored covers this one; no infinite-loop verdict here.
                    if states_equal(checkpoint.state, state, allow_uninit, live, live_slots):
                        checkpoint.hits += 1
                        # The stored state's precision marks are not complete yet: neither are
                        # those of every state above this path (compared by ranges from now on).
                        # Its scalars' own marks stay as demanded: they decide the widening.
                        _flag_loop_imprecise(parent)
                        return True, parent
                    # The call site is a forced checkpoint: an iteration in progress is dropped
                    # from the comparisons after many misses (kernel: n = 64 there), so a
                    # callback whose values never repeat costs linear, not quadratic, time.
                    checkpoint.misses += 1
                    evicted = evicted or checkpoint.misses > CALLBACK_EVICT * (checkpoint.hits + 1)
                    continue
                if not looked_up:
                    looping, looked_up = self._identical_in_progress(pc, stored, state), True
                identical = (checkpoint in looping if looping is not None
                             else states_identical(checkpoint.state, state))
                if identical:
                    # Found before the instruction runs (is_state_visited): never a barrier's job.
                    raise reject_fatal(f"infinite loop detected at insn {pc}")
                continue
            imprecise = checkpoint.loop_imprecise
            where = compare_states(checkpoint.state, state, allow_uninit, live, live_slots,
                                   precision=precision and not imprecise, first=checkpoint.hint,
                                   exact=exact)
            if where == NO_DIFFERENCE:
                checkpoint.hits += 1
                if imprecise:
                    _flag_loop_imprecise(parent)
                elif precision:
                    # This path now relies on what the stored one relied on (propagate_precision).
                    regs, slots = precise_locations(checkpoint.state, live, live_slots)
                    if regs or slots:
                        mark_precise(self.table, state.hist, parent, len(state.frames), regs, slots=slots)
                return True, parent
            checkpoint.misses += 1
            if where != OTHER_DIFFERENCE:
                checkpoint.hint = where
            evicted = evicted or checkpoint.misses > 3 * checkpoint.hits + 3
        if evicted:
            # As the kernel does: a finished state that keeps failing to prune only costs time;
            # forgetting it is safe (it can only mean more exploration).
            # (At a callback call site an iteration in progress is dropped too, see above.)
            stored[:] = [c for c in stored if c.misses <= 3 * c.hits + 3 or (
                c.branches > 0 and (callback_helper is None or c.misses <= CALLBACK_EVICT * (c.hits + 1)))]
        checkpoint = Checkpoint(state.copy(), 1, parent, hist=state.hist)
        checkpoint.state.hist = state.hist = None  # the path below starts a history of its own
        stored.append(checkpoint)
        index = self.loop_index.get(pc)
        if index is not None:
            index.setdefault(loop_key(checkpoint.state), []).append(checkpoint)
        self.states_stored += 1
        return False, checkpoint

    def _identical_in_progress(self, pc: int, stored: list[Checkpoint], state: State) -> list[Checkpoint] | None:
        """The in-progress checkpoints at ``pc`` identical to ``state`` (the infinite-loop test),
        found by hashing once many states are stored there; None: compare one by one.

        Every iteration of a loop stores a state at its prune points, all still in progress: one
        by one, the test would cost the square of the iteration count."""
        index = self.loop_index.get(pc)
        if index is None:
            if len(stored) < LOOP_INDEX_MIN:
                return None
            index = self.loop_index[pc] = {}
            for checkpoint in stored:
                index.setdefault(loop_key(checkpoint.state), []).append(checkpoint)
        return [c for c in index.get(loop_key(state), ()) if c.branches > 0]

    def _record(self, pc: int, insn: Instruction, state: State, parent: Checkpoint | None) -> None:
        """Before stepping ``insn``: demand precision for the values it relies on, and add it to
        the path's history."""
        before = state.hist
        func = self.env.global_funcs.get(pc + 1 + insn.off) if isinstance(insn, CallLocal) else None
        if func is not None:
            # A global call stays in this frame, like a helper: r0 is its result, r1-r5 are
            # clobbered. A scalar passed for a pointer is accepted only as NULL: that relies on it.
            mask = global_funcs.demanded_by_call(func, state)
            if mask:
                mark_precise(self.table, before, parent, len(state.frames), {len(state.frames) - 1: mask})
            state.hist = HistEntry(pc, before)
            return
        mask = demanded_by_insn(insn, state)
        if isinstance(insn, Exit) and state.regs[0].is_scalar and self._exit_checks_r0(state):
            mask |= 1
        if mask:
            mark_precise(self.table, before, parent, len(state.frames), {len(state.frames) - 1: mask})
        if isinstance(insn, Call) and insn.helper == HelperId.MAP_LOOKUP_ELEM:
            key_slot = calls.lookup_key_slot(self.env, state)
            if key_slot is not None:
                # Whether the result can be NULL rests on the spilled key's value.
                mark_precise(self.table, before, parent, len(state.frames), {},
                             slots={key_slot[0]: 1 << key_slot[1]})
        state.hist = history_entry(pc, insn, state, before)

    def _exit_checks_r0(self, state: State) -> bool:
        """Whether this exit checks r0's range (a callback, a restricted program type, a timer)."""
        if len(state.frames) > 1:
            return state.frame.callback
        if global_funcs.is_global_entry(state):
            return False  # only its type is checked
        spec = self.env.options.prog_type
        restricted = spec.return_range_for(self.env.options.attach_type)  # type: ignore[arg-type]
        return restricted is not None or state.frames[0].subprog != 0

    @staticmethod
    def _end_path(parent: Checkpoint | None) -> None:
        while parent is not None:
            parent.branches -= 1
            if parent.branches > 0:
                return
            parent = parent.parent

    def _fork(self, pc: int, state: State, parent: Checkpoint | None) -> None:
        if parent is not None:
            parent.branches += 1
        self.pending.append(Work(pc, state, parent))
        # push_stack: the states pushed and not yet popped are the kernel's env->stack_size (the
        # path being stepped is not among them); past the limit it gives up with E2BIG, which no
        # speculation barrier recovers from.
        if len(self.pending) > BPF_COMPLEXITY_LIMIT_JMP_SEQ:
            raise reject_fatal(f"The sequence of {len(self.pending)} jumps is too complex.")

    # -- one instruction -----------------------------------------------------------------------

    def _decode(self) -> dict[int, Step]:
        """Per pc, what stepping it needs: the instruction, its handler, whether it is a prune
        point, and whether precision tracking records it trivially
        (:func:`~pybpf.verifier.precision.records_plainly`)."""
        steps: dict[int, Step] = {}
        chosen: dict[type, Handler] = {}  # the handler depends on the instruction's class only
        prune_points = self.prune_points
        for labeled in self.insns:
            insn = labeled.insn
            handler = chosen.get(type(insn))
            if handler is None:
                handler = chosen[type(insn)] = self._handler_for(insn)
            steps[labeled.pc] = (labeled, handler, labeled.pc in prune_points, records_plainly(insn))
        return steps

    def _handler_for(self, insn: Instruction) -> Handler:
        """The step function for ``insn``'s class, in the order of the classes' precedence."""
        if isinstance(insn, Bin):
            # Only a program with an arena can have arena pointers to record ALU on.
            return self._step_bin if self.env.arena is None else self._step_bin_arena
        if isinstance(insn, AddrSpaceCast):
            return self._step_cast
        if isinstance(insn, Neg):
            return self._step_neg
        if isinstance(insn, Endian):
            return self._step_endian
        if isinstance(insn, LoadImm64):
            return self._step_lddw
        if isinstance(insn, Load):
            return self._step_load
        if isinstance(insn, Store):
            return self._step_store
        if isinstance(insn, Atomic):
            return self._step_atomic
        if isinstance(insn, PacketLoad):
            return self._step_packet_load
        if isinstance(insn, Jump):
            return self._jump
        if isinstance(insn, Goto):
            return self._step_goto
        if isinstance(insn, MayGoto):
            return self._step_may_goto
        if isinstance(insn, Call):
            return self._step_call
        if isinstance(insn, CallLocal):
            return self._step_call_local
        if isinstance(insn, CallKfunc):
            return self._step_kfunc
        if isinstance(insn, CallReg):
            return self._step_unsupported_call
        if isinstance(insn, Exit):
            return self._step_exit
        return self._step_nothing

    # -- one instruction (each: the next pc, None at the end of the path, and the state) --------

    def _step_bin(self, pc: int, insn: Bin, state: State, parent: Checkpoint | None) -> tuple[int | None, State]:
        transfer.apply_bin(state, insn, self.env)
        return pc + 1, state

    def _step_bin_arena(self, pc: int, insn: Bin, state: State,
                        parent: Checkpoint | None) -> tuple[int | None, State]:
        if insn.is64 and insn.op not in _MOVES and (
                state.regs[insn.dst].type is RegType.PTR_TO_ARENA
                or (isinstance(insn.src, Reg) and state.regs[insn.src].type is RegType.PTR_TO_ARENA)):
            self.env.arena_alu32.add(pc)  # the kernel's needs_zext: run on 32 bits
        transfer.apply_bin(state, insn, self.env)
        return pc + 1, state

    def _step_cast(self, pc: int, insn: AddrSpaceCast, state: State,
                   parent: Checkpoint | None) -> tuple[int | None, State]:
        arena.apply_cast(self.env, state, insn)
        return pc + 1, state

    def _step_neg(self, pc: int, insn: Neg, state: State, parent: Checkpoint | None) -> tuple[int | None, State]:
        dst = insn.dst
        value = transfer.read_reg(state, dst)
        if value.is_pointer and not self.env.options.privileged:
            raise reject(f"R{int(dst)} pointer arithmetic prohibited")
        state.regs[dst] = (RegState.scalar(neg(value.var_off, insn.is64)) if value.type is RegType.SCALAR_VALUE
                           else RegState.scalar())
        return pc + 1, state

    def _step_endian(self, pc: int, insn: Endian, state: State,
                     parent: Checkpoint | None) -> tuple[int | None, State]:
        dst = insn.dst
        value = transfer.read_reg(state, dst)
        if value.is_pointer and not self.env.options.privileged:
            raise reject(f"R{int(dst)} pointer arithmetic prohibited")
        state.regs[dst] = (RegState.scalar(endian(value.var_off, insn.width, insn.order))
                           if value.type is RegType.SCALAR_VALUE else RegState.scalar())
        return pc + 1, state

    def _step_lddw(self, pc: int, insn: LoadImm64, state: State,
                   parent: Checkpoint | None) -> tuple[int | None, State]:
        state.regs[insn.dst] = self._lddw(pc, insn)
        return pc + 2, state

    def _step_load(self, pc: int, insn: Load, state: State, parent: Checkpoint | None) -> tuple[int | None, State]:
        memory.load(self.env, state, insn, pc)
        return pc + 1, state

    def _step_store(self, pc: int, insn: Store, state: State, parent: Checkpoint | None) -> tuple[int | None, State]:
        memory.store(self.env, state, insn, pc)
        return pc + 1, state

    def _step_atomic(self, pc: int, insn: Atomic, state: State,
                     parent: Checkpoint | None) -> tuple[int | None, State]:
        memory.atomic(self.env, state, insn, pc)
        return pc + 1, state

    def _step_packet_load(self, pc: int, insn: PacketLoad, state: State,
                          parent: Checkpoint | None) -> tuple[int | None, State]:
        self._packet_load(state, insn)
        return pc + 1, state

    def _step_goto(self, pc: int, insn: Goto, state: State, parent: Checkpoint | None) -> tuple[int | None, State]:
        return pc + 1 + insn.off, state

    def _step_may_goto(self, pc: int, insn: MayGoto, state: State,
                       parent: Checkpoint | None) -> tuple[int | None, State]:
        # As the kernel: this path leaves the loop (the jump); another iteration is queued one
        # may_goto level deeper, its changed imprecise scalars forgotten against the previous
        # visit of this loop head, so the loop's states converge.
        queued = state.copy()
        queued.path = PathStep(pc, False, state.path)
        queued.may_goto_depth += 1
        previous = self._previous_visit(pc, parent)
        if previous is not None:
            widen_imprecise_scalars(previous.state, queued)
        self._fork(pc + 1, queued, parent)
        state.path = PathStep(pc, True, state.path)
        return pc + 1 + insn.off, state

    def _step_call(self, pc: int, insn: Call, state: State, parent: Checkpoint | None) -> tuple[int | None, State]:
        callback = calls.helper_call(self.env, state, pc, insn)
        if callback is not None:
            # The callback is explored later; this path continues as if it never ran.
            self._fork(callback.pc, callback.state, None if callback.is_async else parent)
        return pc + 1, state

    def _step_call_local(self, pc: int, insn: CallLocal, state: State,
                         parent: Checkpoint | None) -> tuple[int | None, State]:
        target = pc + 1 + insn.off
        func = self.env.global_funcs.get(target)
        if func is not None:
            global_funcs.call_global(self.env, state, func)
            moves = self.global_moves_packet.get(target)
            if moves is None:
                moves = self.global_moves_packet[target] = global_funcs.changes_packet_data(
                    self.insns, self.structure.subprogs, target)
            if moves:
                memory.invalidate_packet_pointers(state)
            return pc + 1, state
        calls.local_call(state, pc, target)
        return target, state

    def _step_kfunc(self, pc: int, insn: CallKfunc, state: State,
                    parent: Checkpoint | None) -> tuple[int | None, State]:
        queued = kfuncs.kfunc_call(self.env, state, pc, insn)
        if queued is not None:
            # The iterator's next element: explored after the drained path, its changed
            # imprecise scalars forgotten against the previous visit of this loop head.
            previous = self._previous_visit(pc, parent)
            if previous is not None:
                widen_imprecise_scalars(previous.state, queued)
            self._fork(pc + 1, queued, parent)
        return pc + 1, state

    def _previous_visit(self, pc: int, parent: Checkpoint | None) -> Checkpoint | None:
        """``find_prev_entry``: the nearest ancestor of ``parent`` (the checkpoint stored at this
        very visit) stored at ``pc`` in the same call chain, still being explored."""
        stored = {id(checkpoint) for checkpoint in self.checkpoints.get(pc, ())}
        if parent is None:
            return None
        chain = [frame.callsite for frame in parent.state.frames]
        node = parent.parent
        while node is not None:
            if id(node) in stored and node.branches > 0 and \
                    [frame.callsite for frame in node.state.frames] == chain:
                return node
            node = node.parent
        return None

    @staticmethod
    def _iterator_active(state: State) -> bool:
        """Whether the iterator next() is about to advance (r1 points to it) is ACTIVE."""
        found = iters.iter_slot_of(state, state.regs[1])
        return found is not None and found.state is IterState.ACTIVE

    def _step_unsupported_call(self, pc: int, insn: Instruction, state: State,
                               parent: Checkpoint | None) -> tuple[int | None, State]:
        # check_structure refuses every callx first; this guards a caller that skipped it.
        raise reject_fatal("unknown opcode 8d")

    def _step_exit(self, pc: int, insn: Exit, state: State, parent: Checkpoint | None) -> tuple[int | None, State]:
        if len(state.frames) > 1:
            return calls.return_from_callee(state), state
        env = self.env
        if global_funcs.is_global_entry(state):
            global_funcs.check_global_return(state)
            return None, state
        spec = env.options.prog_type
        value_range = spec.return_range_for(env.options.attach_type)  # type: ignore[arg-type]
        calls.check_return(state, value_range, privileged=env.options.privileged)
        return None, state

    def _step_nothing(self, pc: int, insn: Instruction, state: State,
                      parent: Checkpoint | None) -> tuple[int | None, State]:
        return pc + 1, state

    def _jump(self, pc: int, insn: Jump, state: State, parent: Checkpoint | None) -> tuple[int | None, State]:
        # Unprivileged: the edge no execution takes is still walked speculatively, from the
        # state before the jump (refinement below narrows ``state`` in place).
        unrefined = state.copy() if self.env.spec is not None else None
        taken, fall = transfer.branch_states(state, insn, self.env)
        target = pc + 1 + insn.off
        if unrefined is not None and (taken is None) != (fall is None):
            dead = target if taken is None else pc + 1
            self._fork(dead, spectre.speculative_branch(unrefined, insn, pc, taken=taken is None), parent)
        if self.track_precision and (taken is None or fall is None):
            # The values decided the outcome: a state with other values might go the other way.
            demanded = demanded_by_branch(insn, state)
            if demanded:  # else no scalar decided it (pointers compared): nothing to trace
                before = state.hist.prev if state.hist is not None else None
                depth = len(state.frames)
                mark_precise(self.table, before, parent, depth, {depth - 1: demanded})
        if taken is None and fall is None:
            return None, state  # both edges impossible: this path is itself dead
        if taken is None:
            assert_state = fall
            return pc + 1, assert_state  # type: ignore[return-value]
        if fall is None:
            return target, taken
        taken.path = PathStep(pc, True, state.path)
        fall.path = PathStep(pc, False, state.path)
        self._fork(target, taken, parent)
        return pc + 1, fall

    def _lddw(self, pc: int, insn: LoadImm64) -> RegState:
        src = insn.src
        if src == _IMM64:
            return RegState.const(insn.value)
        if src == _FUNC:
            return RegState.pointer(RegType.PTR_TO_FUNC, pc + 1 + insn.imm)
        if src == _BTF_ID:
            return RegState.pointer(RegType.PTR_TO_BTF_ID)
        info = self.resolver(pc, insn)
        if info is None:
            raise reject(f"fd {insn.imm} is not pointing to valid bpf_map")
        calls.check_map_prog_compatibility(self.env, info)
        uid = self.env.add_map(info)
        if src in _MAP_FDS:
            return RegState.pointer(RegType.CONST_PTR_TO_MAP, map_uid=uid)
        if info.type == BpfMapType.ARENA:
            return RegState.scalar()  # a global __arena variable: its user-space address
        offset = insn.next_imm
        if not 0 <= offset < info.value_size:
            raise reject(f"invalid access to map value pointer, value_size={info.value_size} off={offset}")
        return RegState.pointer(RegType.PTR_TO_MAP_VALUE, offset, map_uid=uid)

    def _packet_load(self, state: State, insn: PacketLoad) -> None:
        """Legacy LD_ABS/LD_IND: needs the skb in r6; clobbers r1-r5 like a call."""
        if self.env.options.prog_type.context.name != "__sk_buff":
            raise reject("BPF_LD_[ABS|IND] instructions not allowed for this program type")
        if state.refs:
            raise reject("BPF_LD_[ABS|IND] cannot be mixed with socket references")
        if state.lock is not None:
            raise reject("BPF_LD_[ABS|IND] cannot be used inside bpf_spin_lock-ed region")
        ctx = transfer.read_reg(state, Reg.R6)
        if ctx.type is not RegType.PTR_TO_CTX:
            raise reject("at the time of BPF_LD_ABS|IND R6 != pointer to skb")
        if insn.mode == Mode.IND and insn.src is not None:
            transfer.read_reg(state, insn.src)
        for number in CALLER_SAVED:
            state.regs[number] = RegState.not_init()
        state.regs[0] = memory.sized_scalar(insn.size.nbytes)


def _flag_loop_imprecise(checkpoint: Checkpoint | None) -> None:
    """A path below ``checkpoint`` relied on states whose precision marks are incomplete (see
    ``Checkpoint.loop_imprecise``): so are the marks of it and its ancestors."""
    while checkpoint is not None and not checkpoint.loop_imprecise:
        checkpoint.loop_imprecise = True
        checkpoint = checkpoint.parent
