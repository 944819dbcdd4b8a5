"""Post-verification dead-code rewrites, as the kernel applies them before running a program.

Exploration tells which instructions some path reached (``aux->seen``); the rest can never run.
The kernel then rewrites the program (``bpf_check``, after ``check_max_stack_depth``):

* for a privileged load, ``opt_hard_wire_dead_code_branches`` turns a conditional jump with one
  dead edge into ``goto`` (fall-through dead) or ``goto +0`` (target dead);
  ``opt_remove_dead_code`` deletes every unreached instruction and ``opt_remove_nops`` every
  ``goto +0`` and ``may_goto +0``, fixing the jump, call and function-address offsets around
  each deletion;
* for an unprivileged load, ``sanitize_dead_code`` replaces each unreached slot with
  ``goto -1`` (a trap that can only spin, should speculation ever get there); nothing moves.
  The kernel then inserts its speculation barriers (``BPF_ST_NOSPEC`` before each ``nospec``
  instruction, after each ``nospec_result`` store). A barrier does nothing for a user-space VM,
  and no engine here decodes it: the result *records* them (``barriers``, at the rewritten pcs)
  and leaves the instruction stream as the engines run it.

:func:`eliminate_dead_code` is the pure function: instructions and the reached pcs in, the
rewritten instructions and the old-to-new pc map out. :func:`rewrite_program` applies it to a
:class:`~pybpf.obj.ProgramSpec`, moving every pc-keyed record (map references, BTF func and
line info, CO-RE relocations, subprogram ranges) with the instructions.
"""

from __future__ import annotations

import bisect
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, replace

from pybpf.isa.insn import CallLocal, Goto, Instruction, Jump, LabeledInsn, LoadImm64, MayGoto, slot_count
from pybpf.isa.opcodes import PseudoSrc
from pybpf.obj.spec import LineInfo, ProgramSpec, SubprogramRange
from pybpf.verifier.cfg import call_target, slot_total, subprog_starts, subprogs
from pybpf.verifier.report import Barrier


@dataclass(frozen=True, slots=True)
class DeadCodeResult:
    """The rewritten program and where each surviving instruction moved.

    ``pc_map`` maps the old pc of every kept instruction to its new pc; ``removed`` counts the
    slots deleted (0 for the unprivileged rewrite, which only replaces)."""

    insns: tuple[LabeledInsn, ...]
    pc_map: dict[int, int]
    removed: int
    hard_wired: int = 0
    _kept: tuple[int, ...] = field(default=(), repr=False)
    _slots: int = field(default=0, repr=False)  # slots of the rewritten program
    barriers: tuple[Barrier, ...] = ()  # where the kernel's speculation barriers go (new pcs)

    @property
    def changed(self) -> bool:
        return self.removed > 0 or self.hard_wired > 0

    def map_pc(self, pc: int) -> int | None:
        """The new pc of the instruction at old ``pc``, or None if it was deleted."""
        return self.pc_map.get(pc)

    def map_target(self, pc: int) -> int:
        """Where a reference to old ``pc`` lands: the first surviving instruction at or after it
        (the kernel's ``bpf_adj_branches`` for a target inside a deleted range)."""
        index = bisect.bisect_left(self._kept, pc)
        if index < len(self._kept):
            return self.pc_map[self._kept[index]]
        return self._slots


def _hard_wire(labeled: LabeledInsn, seen: Collection[int]) -> Instruction | None:
    """``opt_hard_wire_dead_code_branches`` for one instruction (None: leave it)."""
    insn = labeled.insn
    if not isinstance(insn, Jump):
        return None
    if labeled.pc + 1 not in seen:
        return Goto(insn.off)
    if labeled.pc + 1 + insn.off not in seen:
        return Goto(0)
    return None


def _is_nop(insn: Instruction) -> bool:
    return (isinstance(insn, Goto) and insn.off == 0 and not insn.long) or (isinstance(insn, MayGoto) and insn.off == 0)


def _retarget(labeled: LabeledInsn, new_pc: int, moved: DeadCodeResult) -> LabeledInsn:
    """Recompute a kept instruction's pc-relative offset for the program after deletions."""
    insn = labeled.insn
    old = labeled.pc
    match insn:
        case Jump() | Goto() | MayGoto() | CallLocal():
            target = moved.map_target(old + 1 + insn.off)
            insn = replace(insn, off=target - new_pc - 1)
        case LoadImm64(src=PseudoSrc.FUNC):
            target = moved.map_target(old + 1 + insn.imm)
            insn = replace(insn, imm=target - new_pc - 1)
        case _:
            pass
    return LabeledInsn(new_pc, insn, labeled.line)


def _delete(insns: Sequence[LabeledInsn], keep: Collection[int], hard_wired: int) -> DeadCodeResult:
    """Delete every instruction whose pc is not in ``keep``, fixing offsets around the holes."""
    pc_map: dict[int, int] = {}
    new_pc = 0
    for labeled in insns:
        if labeled.pc in keep:
            pc_map[labeled.pc] = new_pc
            new_pc += slot_count(labeled.insn)
    kept = tuple(pc_map)
    removed = sum(slot_count(labeled.insn) for labeled in insns) - new_pc
    skeleton = DeadCodeResult((), pc_map, removed, hard_wired, kept, new_pc)
    rewritten = tuple(_retarget(labeled, pc_map[labeled.pc], skeleton) for labeled in insns if labeled.pc in keep)
    return DeadCodeResult(rewritten, pc_map, removed, hard_wired, kept, new_pc)


def _live_functions(insns: Sequence[LabeledInsn], seen: Collection[int]) -> set[int]:
    """``seen`` plus every instruction of a function that reached code calls or takes the
    address of but no path entered (a callback of ``bpf_loop(0, ...)``): deleting it would leave
    a dangling function pointer, so it stays whole, as unreachable as before."""
    keep = set(seen)
    functions = subprogs(subprog_starts(insns), slot_total(insns))
    referenced = {target for labeled in insns if labeled.pc in seen
                  if (target := call_target(labeled.pc, labeled.insn)) is not None}
    for function in functions:
        if function.start in referenced and function.start not in seen:
            keep.update(labeled.pc for labeled in insns if labeled.pc in function)
    return keep


def dangling_function_pointer(insns: Sequence[LabeledInsn], seen: Collection[int]) -> str | None:
    """What the kernel's ``jit_subprogs`` says when dead-code removal took a whole function some
    reached ``lddw rX, func`` still points to (a ``bpf_loop(0, cb)`` callback: the kernel never
    enters it), else None. Only privileged loads remove code, and ``jit_subprogs`` looks only when
    more than one function survives. The insn it names is the ``lddw``'s pc after the removal
    plus its offset as ``bpf_adj_branches`` left it: shortened by each removed run lying wholly
    between the two and each removed nop, but not by the run that swallowed the target. (The
    kernel's number also counts its later patches in between, e.g. an inlined ``bpf_loop``.)"""
    functions = subprogs(subprog_starts(insns), slot_total(insns))
    reached = {function.start for function in functions if any(pc in function for pc in seen)}
    if len(reached) == len(functions) or len(reached) <= 1:
        return None
    for labeled in insns:
        insn = labeled.insn
        if labeled.pc not in seen or not isinstance(insn, LoadImm64) or insn.src != PseudoSrc.FUNC:
            continue
        target = labeled.pc + 1 + insn.imm
        if not any(function.start == target for function in functions) or target in reached:
            continue
        result = _eliminate(insns, seen, privileged=True, keep_referenced=False)
        # Slots removed between the two: dead runs wholly before the target, and nops.
        between = sum(slot_count(other.insn) for other in insns if labeled.pc < other.pc < target and (
            (other.pc in seen and result.map_pc(other.pc) is None)
            or (other.pc not in seen and _run_end(insns, seen, other.pc) <= target)))
        landing = (result.map_pc(labeled.pc) or 0) + 1 + insn.imm - between
        # Where a later function slid into the removed one's place, the pointer now names that
        # function and the kernel goes on (it never calls through it: no path reached a call).
        if landing not in {result.map_pc(start) for start in reached}:
            return f"verifier bug: No program to jit at insn {landing} (subprog < 0)"
    return None


def _run_end(insns: Sequence[LabeledInsn], seen: Collection[int], pc: int) -> int:
    """The end (exclusive) of the run of unreached slots containing ``pc``."""
    end = pc
    for labeled in insns:
        if labeled.pc < pc:
            continue
        if labeled.pc in seen:
            break
        end = labeled.pc + slot_count(labeled.insn)
    return end


def eliminate_dead_code(insns: Sequence[LabeledInsn], seen: Collection[int], *,
                        privileged: bool = True, barriers: Sequence[Barrier] = ()) -> DeadCodeResult:
    """The kernel's dead-code rewrites for instructions whose reached pcs are ``seen``.

    Privileged: hard-wire one-sided branches, delete unreached instructions, delete nops.
    Unprivileged: each unreached slot becomes ``goto -1``; pcs do not change. ``barriers``
    (from the report) are recorded in the result at their new pcs."""
    result = _eliminate(insns, seen, privileged=privileged)
    if not barriers:
        return result
    moved = tuple(replace(barrier, pc=new) for barrier in barriers if (new := result.map_pc(barrier.pc)) is not None)
    return replace(result, barriers=moved)


def _eliminate(insns: Sequence[LabeledInsn], seen: Collection[int], *, privileged: bool,
               keep_referenced: bool = True) -> DeadCodeResult:
    """``keep_referenced``: keep whole the unentered functions reached code points to (what we
    run); the kernel deletes them (what :func:`dangling_function_pointer` needs)."""
    if not privileged:
        out: list[LabeledInsn] = []
        for labeled in insns:
            if labeled.pc in seen:
                out.append(labeled)
                continue
            # Both slots of an unreached lddw become traps, each its own instruction.
            out.extend(LabeledInsn(labeled.pc + slot, Goto(-1), labeled.line)
                       for slot in range(slot_count(labeled.insn)))
        pc_map = {labeled.pc: labeled.pc for labeled in out}
        replaced = sum(1 for labeled in insns if labeled.pc not in seen)
        return DeadCodeResult(tuple(out), pc_map, 0, replaced, tuple(pc_map), slot_total(insns))
    wired: list[LabeledInsn] = []
    hard_wired = 0
    for labeled in insns:
        replacement = _hard_wire(labeled, seen) if labeled.pc in seen else None
        if replacement is not None:
            hard_wired += 1
            labeled = LabeledInsn(labeled.pc, replacement, labeled.line)
        wired.append(labeled)
    without_dead = _delete(wired, _live_functions(wired, seen) if keep_referenced else seen, hard_wired)
    without_nops = _delete(without_dead.insns, {labeled.pc for labeled in without_dead.insns
                                                if not _is_nop(labeled.insn)}, 0)
    # Compose the two maps: old pc -> pc after deleting dead code -> pc after deleting nops.
    pc_map = {old: without_nops.pc_map[mid] for old, mid in without_dead.pc_map.items() if mid in without_nops.pc_map}
    removed = without_dead.removed + without_nops.removed
    return DeadCodeResult(without_nops.insns, pc_map, removed, hard_wired, tuple(pc_map), without_nops._slots)


def _move_lines(lines: Sequence[LineInfo], result: DeadCodeResult) -> tuple[LineInfo, ...]:
    """Line info of deleted instructions is dropped, except that the first surviving
    instruction after a deleted range inherits the range's last line when it has none of its
    own (``bpf_adj_linfo_after_remove``), so every instruction keeps a source line."""
    moved: dict[int, LineInfo] = {}
    for record in lines:
        new = result.map_pc(record.pc)
        if new is not None:
            moved[new] = replace(record, pc=new)
    own = set(moved)
    total = sum(slot_count(labeled.insn) for labeled in result.insns)
    for record in lines:  # in pc order: a later record of the same deleted range wins
        if result.map_pc(record.pc) is None:
            target = result.map_target(record.pc)
            if target not in own and target < total:
                moved[target] = replace(record, pc=target)
    return tuple(moved[pc] for pc in sorted(moved))


def rewrite_program(program: ProgramSpec, result: DeadCodeResult) -> ProgramSpec:
    """``program`` with ``result``'s instructions and every pc-keyed record moved with them."""
    if not result.changed:
        return program
    references = tuple(replace(ref, pc=new) for ref in program.map_references
                       if (new := result.map_pc(ref.pc)) is not None)
    functions = tuple(replace(info, pc=new) for info in program.func_info
                      if (new := result.map_pc(info.pc)) is not None)
    relocations = tuple(replace(reloc, pc=new) for reloc in program.core_relocations
                        if (new := result.map_pc(reloc.pc)) is not None)
    subprograms: list[SubprogramRange] = []
    for sub in program.subprograms:
        start, end = result.map_target(sub.start), result.map_target(sub.end)
        if end > start:
            subprograms.append(replace(sub, start=start, end=end))
    return replace(program, instructions=result.insns, map_references=references, func_info=functions,
                   line_info=_move_lines(program.line_info, result), core_relocations=relocations,
                   subprograms=tuple(subprograms))
