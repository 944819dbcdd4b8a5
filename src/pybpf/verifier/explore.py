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

from collections.abc import Callable, Mapping, Sequence
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
    SourceLine,
    Store,
)
from pybpf.isa.opcodes import Mode, PseudoSrc
from pybpf.platform import BpfMapType, HelperId
from pybpf.verifier import arena, calls, global_funcs, kernel_log, kfuncs, memory, spectre, transfer
from pybpf.verifier.callbacks import CallbackEntry
from pybpf.verifier.liveness import live_masks
from pybpf.verifier.machine import (
    CALLER_SAVED,
    Env,
    Frame,
    MapResolver,
    PathStep,
    Rejection,
    SpecAux,
    State,
    leaked_references,
    reject,
    reject_fatal,
    widen_imprecise_scalars,
)
from pybpf.verifier.precision import (
    Checkpoint,
    HistEntry,
    demanded_by_branch,
    demanded_by_insn,
    history_entry,
    mark_precise,
    records_plainly,
)
from pybpf.verifier.scalar_ops import endian, neg
from pybpf.verifier.state import RegState, RegType, StackState
from pybpf.verifier.states import StateLists, prune_points
from pybpf.verifier.structure import (
    BPF_COMPLEXITY_LIMIT_INSNS,
    BPF_COMPLEXITY_LIMIT_JMP_SEQ,
    ProgramStructure,
    source_at,
)

# (Enum members read through their class are slow on Python 3.11: see pybpf.verifier.state.)
_IMM64, _FUNC, _BTF_ID = PseudoSrc.IMM64, PseudoSrc.FUNC, PseudoSrc.BTF_ID
_MAP_FDS = frozenset({PseudoSrc.MAP_FD, PseudoSrc.MAP_IDX})
_MOVES = frozenset({BinOp.MOV, BinOp.MOVSX8, BinOp.MOVSX16, BinOp.MOVSX32})

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
    jmps: int = 0  # jump-class instructions stepped (the kernel's jmps_processed)
    log: list[str] = field(default_factory=list)
    table: dict[int, LabeledInsn] = field(default_factory=dict)
    prune_points: frozenset[int] = frozenset()
    pending: list[Work] = field(default_factory=list)
    live: list[int] = field(default_factory=list)  # by pc (see liveness.live_masks)
    live_slots: list[int] = field(default_factory=list)
    # The kernel tracks precision for privileged loaders only (unprivileged: every scalar precise).
    track_precision: bool = False
    steps: dict[int, Step] = field(default_factory=dict)  # decoded once (see _decode)
    global_moves_packet: dict[int, bool] = field(default_factory=dict)  # global function -> changes_pkt_data
    states: StateLists = field(init=False)  # the explored states at prune points
    # pc -> the value its lddw loads, once a path loaded it: the same on every path (the map
    # resolved, its checks passed) and immutable, so shared (a failing lddw is not kept).
    lddw_values: dict[int, RegState] = field(default_factory=dict)
    # BTF line-info records by pc, for the lines of instructions without their own (read only
    # for a diagnostic: see structure.source_at).
    lines: Mapping[int, SourceLine] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.table = {labeled.pc: labeled for labeled in self.insns}
        self.live, self.live_slots = live_masks(self.insns)
        self.track_precision = self.env.options.privileged
        if not self.env.options.privileged and self.env.spec is None:
            self.env.spec = SpecAux()
        marks = prune_points(self.insns)
        self.prune_points = marks.prune  # where states.StateLists.visit runs
        self.steps = self._decode()
        self.states = StateLists(self.env, self.table, self.live, self.live_slots, marks, self.track_precision)

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
                # As the kernel's do_check: a visit is processed (and counted) before the
                # pruning test, pruned or not.
                self.processed += 1
                if self.processed > limit:
                    raise reject_fatal(f"BPF program is too large. Processed {self.processed} insn")
                if prune:
                    pruned, parent = self.states.visit(pc, state, parent, self.processed, self.jmps)
                    if pruned:
                        if level >= 1:
                            self.log.append(f"{pc}: safe")
                        break
                if not speculative:
                    seen.add(pc)  # sanitize_mark_insn_seen: reached only speculatively is dead code
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
                raise Rejection(pc, error.reason, source_at(self.insns, pc, self.lines), path,
                                recoverable=error.recoverable) from None
            if spec is not None:
                if spec.pushes:
                    self._push_speculative(spec, parent)
                if speculative and pc in spec.nospec_result:
                    break  # a barrier after this store (Spectre v4) stops the misprediction
            if next_pc is None:
                break
            pc = next_pc
        self.states.finish(parent)

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

    def _record(self, pc: int, insn: Instruction, state: State, parent: Checkpoint | None) -> None:
        """Before stepping ``insn``: demand precision for the values it relies on, and add it to
        the path's history."""
        before = state.hist
        kind = type(insn)
        if kind is Load or kind is Jump:
            # The most frequent: nothing demanded before they run (see demanded_by_insn).
            state.hist = history_entry(pc, insn, state, before)
            return
        if kind is Store:
            # Only a register store can demand (a zero leaving STACK_ZERO bytes).
            if isinstance(insn, Store) and type(insn.src) is Reg:
                mask = demanded_by_insn(insn, state)
                if mask:
                    mark_precise(self.table, before, parent, len(state.frames), {len(state.frames) - 1: mask})
            state.hist = history_entry(pc, insn, state, before)
            return
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
        value = self.lddw_values.get(pc)
        if value is None:
            value = self.lddw_values[pc] = self._lddw(pc, insn)
        state.frames[-1].regs[insn.dst] = value
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
        self.jmps += 1
        return pc + 1 + insn.off, state

    def _step_may_goto(self, pc: int, insn: MayGoto, state: State,
                       parent: Checkpoint | None) -> tuple[int | None, State]:
        self.jmps += 1
        # As the kernel: this path leaves the loop (the jump); another iteration is queued one
        # may_goto level deeper, its changed imprecise scalars forgotten against the previous
        # visit of this loop head, so the loop's states converge.
        queued = state.copy()
        queued.path = PathStep(pc, False, state.path)
        queued.may_goto_depth += 1
        previous = self.states.previous_visit(pc, parent)
        if previous is not None:
            widen_imprecise_scalars(previous.state, queued)
        self._fork(pc + 1, queued, parent)
        state.path = PathStep(pc, True, state.path)
        return pc + 1 + insn.off, state

    def _step_call(self, pc: int, insn: Call, state: State, parent: Checkpoint | None) -> tuple[int | None, State]:
        self.jmps += 1
        callback = calls.helper_call(self.env, state, pc, insn)
        if callback is not None:
            # The callback is explored later; this path continues as if it never ran.
            self._fork(callback.pc, callback.state, None if callback.is_async else parent)
        return pc + 1, state

    def _step_call_local(self, pc: int, insn: CallLocal, state: State,
                         parent: Checkpoint | None) -> tuple[int | None, State]:
        self.jmps += 1
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
        self.jmps += 1
        queued = kfuncs.kfunc_call(self.env, state, pc, insn)
        if isinstance(queued, CallbackEntry):
            # bpf_rbtree_add's less(): explored later; this path continues as if it never ran.
            self._fork(queued.pc, queued.state, parent)
        elif queued is not None:
            # The iterator's next element: explored after the drained path, its changed
            # imprecise scalars forgotten against the previous visit of this loop head.
            previous = self.states.previous_visit(pc, parent)
            if previous is not None:
                widen_imprecise_scalars(previous.state, queued)
            self._fork(pc + 1, queued, parent)
        return pc + 1, state

    def _step_unsupported_call(self, pc: int, insn: Instruction, state: State,
                               parent: Checkpoint | None) -> tuple[int | None, State]:
        # check_structure refuses every callx first; this guards a caller that skipped it.
        raise reject_fatal("unknown opcode 8d")

    def _step_exit(self, pc: int, insn: Exit, state: State, parent: Checkpoint | None) -> tuple[int | None, State]:
        self.jmps += 1
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
        self.jmps += 1  # (every jump-class instruction: the kernel's jmps_processed)
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
        # check_resource_leak: a held lock first, then every reference held, named.
        if state.lock is not None:
            raise reject("BPF_LD_[ABS|IND] cannot be used inside bpf_spin_lock-ed region")
        if state.refs:
            raise reject(f"{leaked_references(state)}\nBPF_LD_[ABS|IND] would lead to reference leak")
        ctx = transfer.read_reg(state, Reg.R6)
        if ctx.type is not RegType.PTR_TO_CTX:
            raise reject("at the time of BPF_LD_ABS|IND R6 != pointer to skb")
        if insn.mode == Mode.IND and insn.src is not None:
            transfer.read_reg(state, insn.src)
        for number in CALLER_SAVED:
            state.regs[number] = RegState.not_init()
        state.regs[0] = memory.sized_scalar(insn.size.nbytes)

