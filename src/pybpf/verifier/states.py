"""The explored-state lists: which states are kept at prune points, and which are dropped.

This is the kernel's ``is_state_visited`` bookkeeping, as 6.18 does it; the comparison itself
(:func:`~pybpf.verifier.machine.compare_states`) and precision (:mod:`.precision`) live elsewhere.

* **Buckets.** States are listed per (pc, call site of the innermost frame), the kernel's
  ``explored_state()`` hash (``insn_idx ^ callsite``), newest first: a visit compares only with
  states of its own call site, and only those count misses from it.
* **Checkpoint placement** (``add_new_state``). A visit stores its state only when at least 2
  jumps and 8 instructions were processed since the last state stored anywhere, or at a forced
  checkpoint (an iterator's ``next()``, a synchronous callback's call site, ``may_goto``). Where a
  stored state of the same bucket is still being explored (a loop around it), 20 jumps or 100
  instructions are needed: loop iterations differ and seldom help pruning. Fewer checkpoints mean
  fewer comparisons, and sometimes less pruning (a path popped between two checkpoints runs on to
  the next one): the kernel's processed counts, and its verdicts near the 1M limit, depend on it.
* **Eviction.** A state that misses more than ``n * hits + n`` times (misses counted only at
  visits that would store a state) is dropped from its list: ``n`` is 64 for a state still being
  explored at a forced checkpoint (loop convergence needs them), 3 otherwise -- finished or not.
  So a loop whose states never repeat (a callback's counter) keeps a handful of states per pc
  instead of one per iteration, and runs into the 1M-instruction limit in linear time, as the
  kernel's does.
* **Infinite loops.** A visit that finds a still-explored state of its bucket identical to it
  (``states_maybe_looping`` + exact ``states_equal``) is "infinite loop detected at insn N"; only
  states still listed count, so the verdict needs the loop to have stored one (it does within 20
  jumps or 100 instructions).
* **Peak states** are the kernel's ``peak_states``: the most states listed at once, plus the
  evicted ones still being explored (they stay allocated until their paths end).

Not modelled: ``jmp_history_cnt > 40`` forcing a checkpoint (our history is per instruction, not
per jump point). ``BPF_F_TEST_STATE_FREQ`` (``Options.test_state_freq``) stores a state at every
prune point, as the kernel's selftests ask for it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from pybpf.isa.insn import Call, CallKfunc, CallLocal, CallReg, Goto, Jump, LabeledInsn, LoadImm64, MayGoto
from pybpf.isa.opcodes import PseudoSrc
from pybpf.verifier import callbacks, iters, kfuncs
from pybpf.verifier.machine import (
    NO_DIFFERENCE,
    OTHER_DIFFERENCE,
    Env,
    State,
    compare_states,
    reject_fatal,
    states_equal,
    states_identical,
    widen_imprecise_scalars,
)
from pybpf.verifier.precision import Checkpoint, mark_precise, precise_locations
from pybpf.verifier.state import IterState

CHECKPOINT_MIN_JMPS = 2
CHECKPOINT_MIN_INSNS = 8
"""A state is stored only after this many jumps and instructions since the last one stored."""

LOOP_CHECKPOINT_JMPS = 20
LOOP_CHECKPOINT_INSNS = 100
"""Next to a state still being explored, one of these is needed instead (jumps or instructions)."""

EVICT_FACTOR = 3
"""A listed state is dropped after more than ``n * hits + n`` misses."""

FORCED_EVICT_FACTOR = 64
"""``n`` for a state still being explored at a forced checkpoint (the loop heads)."""

BPF_COMPLEXITY_LIMIT_STATES = 64
"""Unprivileged loads store no state at a pc whose bucket already lists more than this many."""

_BUCKET_STRIDE = 1 << 32  # bucket key: (innermost call site + 1) * stride + pc
_FUNC = PseudoSrc.FUNC
_PLAIN, _CALLBACK, _ITER_NEXT, _MAY_GOTO = range(4)  # what a prune point is (StateLists.sites)
_PRUNE_CLASSES = (Jump, Goto, MayGoto, Call, CallLocal, CallKfunc, CallReg, LoadImm64)


@dataclass(frozen=True, slots=True)
class PrunePoints:
    """Where states are compared and stored (the kernel's ``prune_point`` marks), and which of
    those are forced checkpoints (``force_checkpoint``: the loop heads), by kind."""

    prune: frozenset[int]
    callback_sites: Mapping[int, int]  # pc -> helper running a synchronous callback
    iter_next: frozenset[int]  # an open-coded iterator's next() kfunc
    may_goto: frozenset[int]

    @property
    def forced(self) -> frozenset[int]:
        return self.iter_next | self.may_goto | frozenset(self.callback_sites)


def prune_points(insns: Sequence[LabeledInsn]) -> PrunePoints:
    """The prune points of ``check_cfg``'s ``visit_insn``: a conditional jump (may_goto too)
    and its target, an unconditional jump's target, the instruction after any call, a
    bpf-to-bpf call and its callee's entry (likewise ``lddw`` of a function's address), a helper
    call that runs a callback, an iterator's ``next()``. Not the fall-through of a jump: a state
    stored at the jump covers both edges."""
    prune: set[int] = set()
    callback_sites: dict[int, int] = {}
    iter_next: set[int] = set()
    may_goto: set[int] = set()
    for labeled in insns:
        insn = labeled.insn
        # Only jumps, calls and lddw (a callback's address) make prune points: one type test
        # skips the rest (this runs for every instruction).
        if not isinstance(insn, _PRUNE_CLASSES):
            continue
        pc = labeled.pc
        if isinstance(insn, Jump):
            prune.update((pc, pc + 1 + insn.off))
        elif isinstance(insn, Goto):
            prune.add(pc + 1 + insn.off)
        elif isinstance(insn, MayGoto):
            prune.update((pc, pc + 1 + insn.off))  # a loop head, converging like next()
            may_goto.add(pc)
        elif isinstance(insn, Call):
            prune.add(pc + 1)
            if insn.helper in callbacks.SYNC_CALLBACK_HELPERS:
                callback_sites[pc] = insn.helper
                prune.add(pc)
            elif insn.helper in callbacks.ASYNC_CALLBACK_HELPERS:
                prune.add(pc)  # pruned before another async entry is queued
        elif isinstance(insn, CallKfunc):
            prune.add(pc + 1)
            if kfuncs.is_iter_next(insn):
                prune.add(pc)
                iter_next.add(pc)
            elif kfuncs.calls_callback(insn):
                # bpf_rbtree_add: its less() callback loops like a helper's (calls_callback).
                callback_sites[pc] = callbacks.KFUNC_CALLBACK
                prune.add(pc)
        elif isinstance(insn, CallLocal):
            prune.update((pc, pc + 1, pc + 1 + insn.off))
        elif isinstance(insn, CallReg):
            prune.add(pc + 1)
        elif insn.src == _FUNC:
            # lddw of a function's address: its immediate counts from the slot after the first.
            prune.update((pc, pc + 2, pc + 1 + insn.imm))
    return PrunePoints(frozenset(prune), callback_sites, frozenset(iter_next), frozenset(may_goto))


@dataclass(slots=True)
class StateLists:
    """The explored states of one verification and the counters that decide what is kept.

    :meth:`visit` is given the explorer's counters: processed instructions and ``jmps``, the
    kernel's ``jmps_processed`` (jump-class instructions stepped: jumps, calls, exits).
    """

    env: Env
    table: Mapping[int, LabeledInsn]
    live: Sequence[int]  # by pc (see liveness.live_masks)
    live_slots: Sequence[int]
    marks: PrunePoints
    track_precision: bool
    forced: frozenset[int] = field(init=False)  # the kernel's force_checkpoint pcs
    sites: dict[int, int] = field(init=False)  # forced checkpoint pc -> its kind (_CALLBACK...)
    freq: bool = field(init=False)  # BPF_F_TEST_STATE_FREQ
    allow_uninit: bool = field(init=False)  # privileged: uninitialised stack compares as anything
    buckets: dict[int, list[Checkpoint]] = field(default_factory=dict)  # oldest first
    jmps_at_store: int = 0  # prev_jmps_processed
    insns_at_store: int = 0  # prev_insn_processed
    listed: int = 0  # explored_states_size
    evicted_live: int = 0  # evicted states some path below still explores (free_list_size)
    peak: int = 0  # peak_states
    total: int = 0  # total_states
    max_per_insn: int = 0  # max_states_per_insn

    def __post_init__(self) -> None:
        marks = self.marks
        self.forced = marks.forced
        self.sites = dict.fromkeys(marks.callback_sites, _CALLBACK)
        self.sites.update(dict.fromkeys(marks.iter_next, _ITER_NEXT))
        self.sites.update(dict.fromkeys(marks.may_goto, _MAY_GOTO))
        options = self.env.options
        self.freq, self.allow_uninit = options.test_state_freq, options.privileged

    def visit(self, pc: int, state: State, parent: Checkpoint | None,
              processed: int, jmps: int) -> tuple[bool, Checkpoint | None]:
        """``is_state_visited`` at prune point ``pc``: (whether a listed state covers ``state``,
        the checkpoint the path continues under: a new one when ``state`` was stored)."""
        # (Runs at every prune point: what depends only on the pc was decided in __post_init__.)
        key = (state.frames[-1].callsite + 1) * _BUCKET_STRIDE + pc
        stored = self.buckets.get(key)
        if stored is None:
            stored = self.buckets[key] = []
        site = self.sites.get(pc, _PLAIN)
        forced = site != _PLAIN
        force = forced or self.freq
        jmps_since = jmps - self.jmps_at_store
        insns_since = processed - self.insns_at_store
        add = force or (jmps_since >= CHECKPOINT_MIN_JMPS and insns_since >= CHECKPOINT_MIN_INSNS)
        count = len(stored)
        if not count:  # nothing listed here yet (the common case on a first visit)
            return self._store(stored, state, parent, processed, jmps) if add else (False, parent)
        allow_uninit = self.allow_uninit
        spec = self.env.spec
        exact = spec is not None and spec.explore_alu_limits
        live = self.live[pc]
        live_slots = self.live_slots[pc]
        iter_next = site == _ITER_NEXT
        may_goto = site == _MAY_GOTO
        callback = site == _CALLBACK
        if callback and callbacks.returning(state):
            # Back from a callback (prepare_func_exit): widen against the iteration in progress
            # here, before any comparison, as the kernel widens on the callback's exit.
            for checkpoint in reversed(stored):
                if checkpoint.branches > 0 and callbacks.same_chain(checkpoint.state, state):
                    widen_imprecise_scalars(checkpoint.state, state)
                    break
        precision = self.track_precision
        evicted = False
        for checkpoint in reversed(stored):
            if checkpoint.branches > 0:
                if iter_next:
                    # An iterator loop in progress: a state it covers (ranges, not precision)
                    # with the iterator still ACTIVE adds nothing; no infinite-loop verdict at
                    # next() (the kernel's is_iter_next_insn case of is_state_visited).
                    if states_equal(checkpoint.state, state, allow_uninit, live, live_slots) and \
                            _iterator_active(state):
                        return self._loop_hit(checkpoint, parent)
                elif may_goto and checkpoint.state.may_goto_depth != state.may_goto_depth and \
                        states_equal(checkpoint.state, state, allow_uninit, live, live_slots):
                    # A may_goto loop whose next iteration adds nothing the one in progress
                    # covers (is_state_visited's may_goto case).
                    return self._loop_hit(checkpoint, parent)
                elif callback:
                    # A callback loop in progress (calls_callback): an equal-or-wider state
                    # still being explored covers this one; no infinite-loop verdict here.
                    if states_equal(checkpoint.state, state, allow_uninit, live, live_slots):
                        return self._loop_hit(checkpoint, parent)
                elif states_identical(checkpoint.state, state):
                    # Found before the instruction runs (is_state_visited): never a barrier's job.
                    raise reject_fatal(f"infinite loop detected at insn {pc}")
                # skip_inf_loop_check: loop iterations differ; store fewer of them.
                if not force and jmps_since < LOOP_CHECKPOINT_JMPS and insns_since < LOOP_CHECKPOINT_INSNS:
                    add = False
            else:
                imprecise = checkpoint.loop_imprecise
                where = compare_states(checkpoint.state, state, allow_uninit, live, live_slots,
                                       precision=precision and not imprecise, first=checkpoint.hint,
                                       exact=exact)
                if where == NO_DIFFERENCE:
                    checkpoint.hits += 1
                    self.max_per_insn = max(self.max_per_insn, count)
                    if imprecise:
                        _flag_loop_imprecise(parent)
                    elif precision:
                        # This path now relies on what the stored one relied on (propagate_precision).
                        regs, slots = precise_locations(checkpoint.state, live, live_slots)
                        if regs or slots:
                            mark_precise(self.table, state.hist, parent, len(state.frames), regs, slots=slots)
                    return True, parent
                if where != OTHER_DIFFERENCE:
                    checkpoint.hint = where
            # A miss. Counted only when this visit stores a state: otherwise the iterations of
            # a loop would evict the states kept from its first ones.
            if add:
                checkpoint.misses += 1
            factor = FORCED_EVICT_FACTOR if forced and checkpoint.branches > 0 else EVICT_FACTOR
            if checkpoint.misses > factor * (checkpoint.hits + 1):
                checkpoint.evicted = evicted = True
        self.max_per_insn = max(self.max_per_insn, count)
        if evicted:
            self._evict(stored)
        if not add or (not allow_uninit and count > BPF_COMPLEXITY_LIMIT_STATES):
            return False, parent
        return self._store(stored, state, parent, processed, jmps)

    def _store(self, stored: list[Checkpoint], state: State, parent: Checkpoint | None, processed: int,
               jmps: int) -> tuple[bool, Checkpoint | None]:
        """Keep ``state`` at the head of ``stored``: the path goes on below a new checkpoint."""
        checkpoint = Checkpoint(state.copy(), 1, parent, hist=state.hist)
        checkpoint.state.hist = state.hist = None  # the path below starts a history of its own
        stored.append(checkpoint)
        self.total += 1
        self.listed += 1
        self.peak = max(self.peak, self.listed + self.evicted_live)
        self.jmps_at_store, self.insns_at_store = jmps, processed
        return False, checkpoint

    def _loop_hit(self, checkpoint: Checkpoint, parent: Checkpoint | None) -> tuple[bool, Checkpoint | None]:
        """A loop iteration covered by the iteration in progress: pruned. The stored state's
        precision marks are not complete yet: neither are those of every state above this path
        (compared by ranges from now on; the kernel's backedges / loop entries)."""
        checkpoint.hits += 1
        _flag_loop_imprecise(parent)
        return True, parent

    def _evict(self, stored: list[Checkpoint]) -> None:
        """Drop the states flagged evicted from ``stored``: forgetting a state is always safe (it
        can only mean more exploration). One still being explored stays allocated (its paths
        hold it as their parent) until :meth:`finish` sees its last path end."""
        kept: list[Checkpoint] = []
        for checkpoint in stored:
            if not checkpoint.evicted:
                kept.append(checkpoint)
                continue
            self.listed -= 1
            if checkpoint.branches > 0:
                self.evicted_live += 1
        stored[:] = kept

    def finish(self, parent: Checkpoint | None) -> None:
        """A path ended (exit, pruned, or dead): one live path fewer below each of its
        checkpoints, up to the first that still has others (``update_branch_counts``)."""
        while parent is not None:
            parent.branches -= 1
            if parent.branches > 0:
                return
            if parent.evicted:
                self.evicted_live -= 1
            parent = parent.parent

    def previous_visit(self, pc: int, parent: Checkpoint | None) -> Checkpoint | None:
        """``find_prev_entry``: the nearest ancestor of ``parent`` (the checkpoint stored at this
        very visit) listed at ``pc`` in the same call chain, still being explored."""
        if parent is None:
            return None
        key = (parent.state.frames[-1].callsite + 1) * _BUCKET_STRIDE + pc
        listed = {id(checkpoint) for checkpoint in self.buckets.get(key, ())}
        chain = [frame.callsite for frame in parent.state.frames]
        node = parent.parent
        while node is not None:
            if id(node) in listed and node.branches > 0 and \
                    [frame.callsite for frame in node.state.frames] == chain:
                return node
            node = node.parent
        return None


def _iterator_active(state: State) -> bool:
    """Whether the iterator next() is about to advance (r1 points to it) is ACTIVE."""
    found = iters.iter_slot_of(state, state.regs[1])
    return found is not None and found.state is IterState.ACTIVE


def _flag_loop_imprecise(checkpoint: Checkpoint | None) -> None:
    """A path below ``checkpoint`` relied on states whose precision marks are incomplete (see
    ``Checkpoint.loop_imprecise``): so are the marks of it and its ancestors."""
    while checkpoint is not None and not checkpoint.loop_imprecise:
        checkpoint.loop_imprecise = True
        checkpoint = checkpoint.parent
