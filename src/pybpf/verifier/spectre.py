"""Spectre mitigations of unprivileged loads (the kernel's ``!bypass_spec_v1/v4`` paths, 6.17+).

A CPU may run the wrong side of a branch before the branch resolves; an unprivileged program
must not be able to use that window to read memory it could not read on a real path. The
kernel (and this verifier, for ``privileged=False``) answers in three ways:

* **Speculative paths are explored.** A conditional jump whose outcome is known still has its
  other edge explored, as a *speculative* state with the compared registers unknown
  (``sanitize_speculative_path``); so has ``ptr += var`` with the pointer left where it was (the
  JIT masks the offset to 0 under misprediction: ``sanitize_ptr_alu``). Instructions only a
  speculative path reaches stay dead code (``sanitize_mark_insn_seen``). Since Linux 6.17
  ("bpf: Fall back to nospec for Spectre v1") an error on a speculative path that the kernel
  reports with EPERM/EACCES/EINVAL no longer fails the load: a speculation barrier (``nospec``)
  is inserted before that instruction and the path ends there; later speculative paths stop at
  it too. Other errors (limits, what we do not model) still reject.
* **Pointer arithmetic is sanitised** (``sanitize_ptr_alu``/``sanitize_val_alu``): the JIT masks
  the offset of ``ptr += reg`` to the distance the pointer may move, so the offset must have one
  sign, the pointer must be a stack or map-value pointer inside its object, and every path must
  need the same mask at that instruction; otherwise ``sanitize_err`` refuses the load ("R1 has
  pointer with unsupported alu operation, pointer arithmetic with it prohibited for !root", ...).
  These still reject on real paths in 6.17/6.18: the series' last patch, which turned them into
  barriers too, was not merged. The result of every pointer ± scalar must stay inside its object
  (``sanitize_check_bounds``).
* **Spectre v4** (speculative store bypass, ``check_stack_write_fixed_off``): a stack store that
  spills a pointer or overwrites bytes that were not plain data gets a barrier after it
  (``nospec_result``), and speculative paths stop there.

A user-space VM never speculates, so a barrier is a no-op for execution here: the report lists
them (:class:`~pybpf.verifier.report.Barrier`) and the rewrite records them, but no instruction is
inserted. The rules and messages come from the kernel's ``verifier.c`` and selftests
(``progs/verifier_unpriv.c``, ``verifier_bounds*.c``, ``verifier_value_ptr_arith.c``:
``__msg_unpriv``/``__xlated_unpriv``); this machine's kernel refuses unprivileged ``bpf()``, so
they could not be checked against it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntFlag

from pybpf.isa.insn import Bin, BinOp, Imm, Jump, Reg
from pybpf.verifier.machine import Env, PathStep, SpecAux, State, reject
from pybpf.verifier.state import MAX_BPF_STACK, RegState, RegType, SlotByte, StackSlot

U32 = (1 << 32) - 1
_PROHIBITED = "pointer arithmetic with it prohibited for !root"
_PLAIN_DATA = (SlotByte.STACK_MISC, SlotByte.STACK_ZERO)


class AluState(IntFlag):
    """``BPF_ALU_*``: how the JIT masks one ALU instruction's offset (``insn_aux_data.alu_state``)."""

    SANITIZE_SRC = 1 << 0
    SANITIZE_DST = 1 << 1
    NEG_VALUE = 1 << 2
    NON_POINTER = 1 << 3
    IMMEDIATE = 1 << 4


@dataclass(slots=True)
class SanitizeInfo:
    """``struct bpf_sanitize_info``: what the first masking window learned, for the commit."""

    mask_to_left: bool = False
    alu_state: int = 0
    alu_limit: int = 0


def speculative_branch(state: State, insn: Jump, pc: int, *, taken: bool) -> State:
    """The state down the edge of ``insn`` no real execution takes (``sanitize_speculative_path``):
    a copy of the state before the jump, speculative, with the compared registers unknown."""
    branch = state.copy()
    branch.speculative = True
    branch.regs[int(insn.dst)] = RegState.scalar()
    if isinstance(insn.src, Reg):
        branch.regs[int(insn.src)] = RegState.scalar()
    branch.path = PathStep(pc, taken, state.path)
    return branch


def _skips_sanitation(spec: SpecAux, insn: Bin) -> bool:
    """``can_skip_alu_sanitation``: an immediate operand, or a barrier already before the insn."""
    return isinstance(insn.src, Imm) or spec.pc in spec.nospec


def _op_word(insn: Bin) -> str:
    return "add" if insn.op is BinOp.ADD else "sub"


def _ptr_limit(env: Env, insn: Bin, ptr_regno: int, ptr: RegState, mask_to_left: bool) -> int:
    """``retrieve_ptr_limit``: how far the masked offset may move ``ptr`` (u32 arithmetic)."""
    if ptr.type is RegType.PTR_TO_STACK:
        largest = MAX_BPF_STACK + int(mask_to_left)
        limit = -(ptr.var_off.var_off.value + ptr.off) & U32
    elif ptr.type is RegType.PTR_TO_MAP_VALUE:
        largest = env.map_of(ptr).value_size
        limit = ((ptr.var_off.smin if mask_to_left else ptr.var_off.umax) + ptr.off) & U32
    else:
        raise reject(f"R{ptr_regno} has pointer with unsupported alu operation, {_PROHIBITED}")
    if limit >= largest:
        raise reject(f"R{int(insn.dst)} tried to {_op_word(insn)} beyond pointer bounds, {_PROHIBITED}")
    return limit


def _update_alu_state(spec: SpecAux, insn: Bin, alu_state: int, alu_limit: int) -> None:
    """``update_alu_sanitation_state``: one mask per instruction, whatever the path."""
    known = spec.alu_states.get(spec.pc)
    if known is not None and known != (alu_state, alu_limit):
        raise reject(f"R{int(insn.dst)} tried to {_op_word(insn)} from different maps, paths or scalars, "
                     f"{_PROHIBITED}")
    spec.alu_states[spec.pc] = (alu_state, alu_limit)


def sanitize_pointer(env: Env, state: State, insn: Bin, ptr: RegState, off: RegState, *, ptr_is_dst: bool,
                     info: SanitizeInfo) -> None:
    """``sanitize_ptr_alu``'s first window, before ``ptr ± off`` is computed: refuse an offset the
    JIT cannot mask, and queue the speculative path on which the masked offset is 0."""
    spec = env.spec
    if spec is None or not isinstance(insn.src, Reg) or _skips_sanitation(spec, insn):
        return
    dst, src = int(insn.dst), int(insn.src)
    off_is_imm = off.var_off.is_const()
    if not state.speculative:
        # A speculative path was masked where its real paths were: only simulate it further.
        value = off.var_off
        if not off_is_imm and (value.smin < 0) != (value.smax < 0):
            raise reject(f"R{src if ptr_is_dst else dst} has unknown scalar with mixed signed bounds, {_PROHIBITED}")
        off_is_neg = value.smin < 0
        info.mask_to_left = (insn.op is BinOp.ADD and off_is_neg) or (insn.op is BinOp.SUB and not off_is_neg)
        ptr_regno = dst if ptr_is_dst else src
        info.alu_limit = _ptr_limit(env, insn, ptr_regno, ptr, info.mask_to_left)
        info.alu_state = ((AluState.NEG_VALUE if off_is_neg else 0) | (AluState.IMMEDIATE if off_is_imm else 0)
                          | (AluState.SANITIZE_SRC if ptr_is_dst else AluState.SANITIZE_DST))
        if not off_is_imm:
            spec.explore_alu_limits = True
    if off_is_imm:
        return  # the JIT turns it into an immediate operation: nothing to mask
    pushed = state.copy()
    pushed.speculative = True
    pushed.regs[dst] = ptr
    spec.pushes.append((spec.pc + 1, pushed))


def commit_pointer(env: Env, state: State, insn: Bin, result: RegState, info: SanitizeInfo) -> None:
    """``sanitize_ptr_alu``'s commit window: the mask is the distance the pointer really moved,
    and every real path through this instruction must need the same one."""
    spec = env.spec
    if spec is None or _skips_sanitation(spec, insn) or state.speculative:
        return
    limit = _ptr_limit(env, insn, int(insn.dst), result, info.mask_to_left)
    moved = (info.alu_limit - limit) & U32
    moved = abs(moved - (1 << 32) if moved >> 31 else moved)
    _update_alu_state(spec, insn, info.alu_state, moved)


def sanitize_scalar(env: Env, insn: Bin) -> None:
    """``sanitize_val_alu``: a register add/sub of two numbers needs no mask, which must not
    clash with a path that did pointer arithmetic at the same instruction."""
    spec = env.spec
    if spec is None or insn.op not in (BinOp.ADD, BinOp.SUB) or _skips_sanitation(spec, insn):
        return
    _update_alu_state(spec, insn, AluState.NON_POINTER, 0)


def check_bounds(regno: int, reg: RegState, env: Env) -> None:
    """``sanitize_check_bounds`` on the pointer a pointer ± scalar produced (unprivileged loads)."""
    value = reg.var_off
    if reg.type is RegType.PTR_TO_STACK:
        off = reg.off + _signed(value.var_off.value)
        if not value.is_const():
            raise reject(f"R{regno} variable stack access prohibited for !root, "
                         f"var_off=({value.var_off.value:#x}; {value.var_off.mask:#x}) off={off}")
        if off >= 0 or off < -MAX_BPF_STACK:
            raise reject(f"R{regno} stack pointer arithmetic goes out of range, prohibited for !root, off={off}")
    elif reg.type is RegType.PTR_TO_MAP_VALUE:
        size = env.map_of(reg).value_size
        if value.smin + reg.off < 0 or value.umax + reg.off + 1 > size:
            raise reject(f"R{regno} pointer arithmetic of map value goes out of range, prohibited for !root")


def note_stack_write(env: Env, slot: StackSlot, size: int, value: RegState | None) -> None:
    """Spectre v4 (``check_stack_write_fixed_off``): a store that spills a pointer, or overwrites
    bytes that did not hold plain data, gets a barrier after it; else a later load could
    speculatively bypass the store and read the old bytes (a stale pointer, or old kernel data)."""
    spec = env.spec
    if spec is None or spec.pc in spec.nospec_result:
        return
    # The kernel looks at the slot's first ``size`` byte tags, whichever bytes are written.
    if value is not None and value.is_pointer:
        spec.nospec_result[spec.pc] = "the store spills a pointer to the stack (Spectre v4: a later load " \
                                      "could speculatively read the slot's old contents as that pointer)"
    elif any(tag not in _PLAIN_DATA for tag in slot.slot_type[:size]):
        spec.nospec_result[spec.pc] = "the store overwrites stack bytes that held no plain data " \
                                      "(Spectre v4: a later load could speculatively read the old bytes)"


def _signed(value: int) -> int:
    return value - (1 << 64) if value >> 63 else value
