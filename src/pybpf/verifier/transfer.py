"""Register transfer functions: ALU on scalars and pointers, and what a conditional jump teaches.

Pointer arithmetic follows the kernel's ``adjust_ptr_min_max_vals``: only 64-bit add/sub of a
scalar, a constant going into the fixed offset ``off`` and anything else into ``var_off``, and
a packet pointer that moved by a variable amount getting a fresh id (its checked range is lost).
Jumps follow ``check_cond_jmp_op``: scalars are refined with :func:`~pybpf.verifier.branch.refine`,
a null check on a maybe-null pointer resolves every copy carrying the same id, and a comparison
of a packet pointer with ``data_end`` extends the checked range of every packet pointer with its id.
"""

from __future__ import annotations

from dataclasses import replace

from pybpf.isa.insn import Bin, BinOp, Cond, Imm, Jump, Reg
from pybpf.verifier import kptrs, spectre
from pybpf.verifier.machine import BPF_MAX_VAR_OFF, MAX_PACKET_OFF, Env, State, reject, type_name
from pybpf.verifier.scalar import S64_MIN, Scalar, sync
from pybpf.verifier.scalar_ops import alu
from pybpf.verifier.state import (
    CONST_PTR_TO_MAP,
    NOT_INIT,
    PACKET_TYPES,
    PTR_TO_ARENA,
    PTR_TO_STACK,
    SCALAR_VALUE,
    RegState,
    RegType,
    StackSlot,
)
from pybpf.verifier.tnum import U32

# Enum members as module-level names: read through the class they are slow on Python 3.11
# (see the aliases in pybpf.verifier.state), and these are read for every instruction.
_MOV, _ADD, _SUB = BinOp.MOV, BinOp.ADD, BinOp.SUB
_FLOW_KEYS = RegType.PTR_TO_FLOW_KEYS
_UNKNOWN = Scalar.unknown()  # (immutable, shared)
_MOVES = frozenset({BinOp.MOV, BinOp.MOVSX8, BinOp.MOVSX16, BinOp.MOVSX32})
_OP_TEXT = {op: op.value for op in BinOp}
_ALU_NAMES = {BinOp.MOVSX8: "=", BinOp.MOVSX16: "=", BinOp.MOVSX32: "=", BinOp.SDIV: "/=", BinOp.SMOD: "%="}
_ARITH_OK = frozenset({
    RegType.PTR_TO_CTX, RegType.PTR_TO_MAP_VALUE, RegType.PTR_TO_MAP_KEY, RegType.PTR_TO_STACK,
    RegType.PTR_TO_PACKET_META, RegType.PTR_TO_PACKET, RegType.PTR_TO_TP_BUFFER, RegType.PTR_TO_BTF_ID,
    RegType.PTR_TO_MEM, RegType.PTR_TO_BUF, RegType.PTR_TO_FUNC, RegType.CONST_PTR_TO_DYNPTR,
    RegType.PTR_TO_ARENA,  # as the scalar operand of `scalar += arena pointer`
})
# Pointers the kernel knows cannot be NULL, so comparing them with 0 has a known outcome.
_NOT_NULL = frozenset({
    RegType.PTR_TO_MAP_VALUE, RegType.PTR_TO_MAP_KEY, RegType.PTR_TO_SOCKET, RegType.PTR_TO_SOCK_COMMON,
    RegType.PTR_TO_TCP_SOCK, RegType.PTR_TO_MEM,
})


def op_text(op: BinOp) -> str:
    return _ALU_NAMES.get(op, _OP_TEXT[op])


def read_reg(state: State, reg: Reg) -> RegState:
    value = state.regs[reg]
    if value.type is NOT_INIT:
        raise reject(f"R{int(reg)} !read_ok")
    return value


def unknown() -> RegState:
    return RegState.scalar()


_DIVISIONS = frozenset({BinOp.DIV, BinOp.SDIV, BinOp.MOD, BinOp.SMOD})
_SHIFTS = frozenset({BinOp.LSH, BinOp.RSH, BinOp.ARSH})
_CHECKED_IMM = _DIVISIONS | _SHIFTS


def apply_bin(state: State, insn: Bin, env: Env) -> None:
    """``dst op= src``: scalar math, pointer arithmetic, or a rejection in the kernel's words."""
    # Run for every ALU instruction: read_reg, Env.const_reg and Env.memo_alu_reg are inlined,
    # and the registers and the operand's kind are read once.
    regs = state.frames[-1].regs
    operand = insn.src
    from_imm = type(operand) is Imm
    if from_imm:
        # The immediate is sign-extended to 64 bits; a 32-bit operation only looks at the low half.
        value = operand.value
        src = env.consts.get(value)
        if src is None:
            src = env.const_reg(value)
    else:
        src = regs[operand]  # type: ignore[index]
        if src.type is NOT_INIT:
            raise reject(f"R{int(operand)} !read_ok")  # type: ignore[arg-type]
    op = insn.op
    dst_reg = insn.dst
    if op in _MOVES:
        # A 32-bit move of a value that already fits in 32 bits copies it unchanged (the zero
        # extension is the identity), so the kernel links it as a 64-bit move does.
        whole_copy = op is _MOV and not from_imm and src.type is SCALAR_VALUE \
            and (insn.is64 or (src.var_off.umax <= U32 and not src.off))
        if whole_copy and not src.id and src.var_off.var_off.mask:
            # Link the copies (the kernel's scalar ids): a later branch on one refines both.
            src = src.with_id(env.new_id())
            regs[operand] = src  # type: ignore[index]
        regs[dst_reg] = src if whole_copy else _move(insn, src, env)
        return
    dst = regs[dst_reg]
    if dst.type is NOT_INIT:
        raise reject(f"R{int(dst_reg)} !read_ok")
    if from_imm and op in _CHECKED_IMM:
        # check_alu_op refuses these immediates whatever the register holds.
        imm = operand.value
        if imm == 0 and op in _DIVISIONS:
            raise reject("div by zero")
        if op in _SHIFTS and not 0 <= imm < (64 if insn.is64 else 32):
            raise reject(f"invalid shift {imm}")
    if dst.type is SCALAR_VALUE and src.type is SCALAR_VALUE:
        if env.spec is not None:
            spectre.sanitize_scalar(env, insn)
        is64 = insn.is64
        key = (op, dst.var_off, src.var_off, is64)  # (BinOp hashes by identity, at C speed)
        result = env.alu_memo.get(key)
        if result is None:
            result = env.memo_alu_reg(op, dst.var_off, src.var_off, is64)
        if op is _ADD and is64 and dst.id and not src.var_off.var_off.mask:
            # A linked copy plus a constant stays linked, with the distance in ``off``
            # (the kernel's BPF_ADD_CONST), so a check on either one bounds the other.
            delta = dst.off + src.var_off.smin
            if -(1 << 31) <= delta < 1 << 31:
                result = result.with_id(dst.id, off=delta)
        regs[dst_reg] = result
        return
    dst_no = int(dst_reg)
    if dst.type is PTR_TO_ARENA or (src.type is PTR_TO_ARENA and dst.type is SCALAR_VALUE):
        # Any arithmetic is allowed on an arena pointer, and makes one (adjust_reg_min_max_vals;
        # the explorer records a 64-bit one, run on 32 bits: pybpf.verifier.arena).
        state.regs[dst_no] = src if dst.type is not PTR_TO_ARENA else dst
        return
    if dst.is_pointer and src.is_pointer:
        if op is _SUB and env.options.privileged:
            # allow_ptr_leaks: the difference of two pointers is an unknown number.
            state.regs[dst_no] = unknown()
            return
        raise reject(f"R{dst_no} pointer {op_text(insn.op)} pointer prohibited")
    if dst.is_pointer:
        state.regs[dst_no] = _pointer_math(state, insn, dst_no, dst, src, env=env, reversed_operands=False)
    else:
        state.regs[dst_no] = _pointer_math(state, insn, dst_no, src, dst, env=env, reversed_operands=True)


def _move(insn: Bin, src: RegState, env: Env) -> RegState:
    if insn.op is _MOV and insn.is64:
        return src  # a full copy: pointers keep their id so null checks reach the copy
    if insn.op is not _MOV and (isinstance(insn.src, Imm) or (insn.op is BinOp.MOVSX32 and not insn.is64)):
        # check_alu_op: a sign-extending move takes a register, and a 32-bit one extends
        # only from 8 or 16 bits (``off`` 32 is reserved in the ALU class).
        raise reject("BPF_MOV uses reserved fields")
    if src.is_pointer and not env.options.privileged:
        what = "partial copy of pointer" if insn.op is BinOp.MOV else "sign-extension part of pointer"
        raise reject(f"R{int(insn.src) if isinstance(insn.src, Reg) else 0} {what}")
    if src.is_pointer:
        # allow_ptr_leaks: a truncated or sign-extended pointer is an unknown number.
        return unknown()
    found = env.alu_memo.get((insn.op, _UNKNOWN, src.var_off, insn.is64))  # (Env.memo_alu_reg's key)
    return found if found is not None else env.memo_alu_reg(insn.op, _UNKNOWN, src.var_off, insn.is64)


def _sane_offset(reg: RegState, ptr: RegState, what: str) -> None:
    """``check_reg_sane_offset`` on one operand."""
    value = reg.var_off
    # type_name(ptr) is only worked out for a message: this runs on every pointer move.
    if not value.var_off.mask:
        signed = value.smin
        if abs(signed) >= BPF_MAX_VAR_OFF:
            raise reject(f"math between {type_name(ptr)} pointer and {signed} is not allowed")
    if reg.is_pointer and (reg.off >= BPF_MAX_VAR_OFF or reg.off <= -BPF_MAX_VAR_OFF):
        raise reject(f"{type_name(ptr)} pointer offset {reg.off} is not allowed")
    if value.smin == S64_MIN and what == "offset":
        raise reject(f"math between {type_name(ptr)} pointer and register with unbounded min value is not allowed")
    if value.smin <= -BPF_MAX_VAR_OFF or value.smin >= BPF_MAX_VAR_OFF:
        raise reject(f"value {value.smin} makes {type_name(ptr)} pointer be out of bounds")


def _pointer_math(state: State, insn: Bin, dst_no: int, ptr: RegState, off: RegState, *, env: Env,
                  reversed_operands: bool) -> RegState:
    if not insn.is64:
        if insn.op is BinOp.SUB and env.options.privileged:
            return unknown()
        raise reject(f"R{dst_no} 32-bit pointer arithmetic prohibited")
    if ptr.maybe_null:
        raise reject(f"R{dst_no} pointer arithmetic on {type_name(ptr)} prohibited, null-check it first")
    value = off.var_off
    op = insn.op
    known = not value.var_off.mask
    allowed = ptr.type in _ARITH_OK or (
        ptr.type is CONST_PTR_TO_MAP and known and value.smin == 0 and op is _ADD
    ) or (ptr.type is _FLOW_KEYS and known)
    if not allowed:
        raise reject(f"R{dst_no} pointer arithmetic on {type_name(ptr)} prohibited")
    if value.smin > value.smax or value.umin > value.umax:
        return unknown()
    _sane_offset(off, ptr, "offset")
    _sane_offset(ptr, ptr, "pointer")
    sanitized = env.spec is not None and (op is _ADD or op is _SUB)
    info = spectre.SanitizeInfo() if sanitized else None
    if info is not None:
        spectre.sanitize_pointer(env, state, insn, ptr, off, ptr_is_dst=not reversed_operands, info=info)
    if op is _ADD:
        result = _add_offset(ptr, value, env, negate=False)
    elif op is _SUB:
        if reversed_operands:
            raise reject(f"R{dst_no} tried to subtract pointer from scalar")
        if ptr.type is PTR_TO_STACK:
            raise reject(f"R{dst_no} subtraction from stack pointer prohibited")
        result = _add_offset(ptr, value, env, negate=True)
    elif insn.op in (BinOp.AND, BinOp.OR, BinOp.XOR):
        raise reject(f"R{dst_no} bitwise operator {op_text(insn.op)} on pointer prohibited")
    else:
        raise reject(f"R{dst_no} pointer arithmetic with {op_text(insn.op)} operator prohibited")
    _sane_offset(result, ptr, "result")
    if env.spec is not None:
        spectre.check_bounds(dst_no, result, env)
    if info is not None:
        spectre.commit_pointer(env, state, insn, result, info)
    return result


def _add_offset(ptr: RegState, value: Scalar, env: Env, *, negate: bool) -> RegState:
    if not value.var_off.mask:
        delta = -value.smin if negate else value.smin
        new_off = ptr.off + delta
        if -(1 << 31) <= new_off < 1 << 31:
            return ptr.with_off(new_off)
    moved = sync(alu(_SUB if negate else _ADD, ptr.var_off, value, True))
    result = ptr.with_var_off(moved)
    if ptr.type in PACKET_TYPES:
        # Something variable was added: the range proven for the old pointer says nothing here.
        result = replace(result, id=env.new_id(), range=0)
    return result


# -- conditional jumps -------------------------------------------------------------------------


def branch_states(state: State, insn: Jump, env: Env) -> tuple[State | None, State | None]:
    """(taken, fall-through) successor states of a conditional jump; None for a dead edge."""
    # Run for every conditional jump: read_reg, Env.const_reg and Env.memo_refine inlined (their
    # dicts read first, the methods called only on a miss), as in apply_bin.
    regs = state.frames[-1].regs
    dst = regs[insn.dst]
    if dst.type is NOT_INIT:
        raise reject(f"R{int(insn.dst)} !read_ok")
    operand = insn.src
    if type(operand) is Imm:
        src = env.consts.get(operand.value) or env.const_reg(operand.value)
    else:
        src = regs[operand]  # type: ignore[index]
        if src.type is NOT_INIT:
            raise reject(f"R{int(operand)} !read_ok")  # type: ignore[arg-type]
    if dst.type is SCALAR_VALUE and src.type is SCALAR_VALUE:
        cond, is32 = insn.cond, insn.is32
        refined = env.refine_memo.get((cond._value_, dst.var_off, src.var_off, is32))
        if refined is None:
            refined = env.memo_refine(cond, dst.var_off, src.var_off, is32)
        taken, fall = refined
        if taken is None or fall is None:
            # At most one edge lives: it goes on with this very state, narrowed in place.
            live = fall if taken is None else taken
            if live is None:
                return None, None
            _apply_refined(state, insn, dst, src, live)
            return (None, state) if taken is None else (state, None)
        # Two live edges: the taken one gets a copy, the fall-through one this state itself.
        taken_state = state.copy()
        _apply_refined(taken_state, insn, dst, src, taken)
        _apply_refined(state, insn, dst, src, fall)
        return taken_state, state
    privileged = env.options.privileged
    if src.is_pointer and not privileged:
        raise reject(f"R{int(insn.src)} pointer comparison prohibited")  # type: ignore[arg-type]
    taken_state, fall_state = state.copy(), state
    null_side = _null_check(insn, dst, src)
    if null_side is not None:
        pointer, ptr_is_null_when_taken = null_side
        if not pointer.maybe_null:
            if not privileged:
                raise reject(f"R{int(insn.dst)} pointer comparison prohibited")
            if pointer.type in _NOT_NULL or (pointer.type is RegType.PTR_TO_BTF_ID and kptrs.is_trusted(pointer)):
                # reg_not_null: a BTF pointer only when trusted (a walked one may be NULL).
                # A non-null pointer is never equal to zero: one edge is dead.
                return (None, fall_state) if ptr_is_null_when_taken else (taken_state, None)
            return taken_state, fall_state
        _mark_null(taken_state, pointer, is_null=ptr_is_null_when_taken)
        _mark_null(fall_state, pointer, is_null=not ptr_is_null_when_taken)
        return taken_state, fall_state
    if not _packet_compare(insn, dst, src, taken_state, fall_state) and not privileged:
        # An unprivileged program may not learn anything about a pointer's value.
        raise reject(f"R{int(insn.dst)} pointer comparison prohibited")
    return taken_state, fall_state


def _apply_refined(state: State, insn: Jump, dst: RegState, src: RegState, refined: tuple[Scalar, Scalar]) -> None:
    """Write a jump's narrowed operands (and their linked copies) into ``state``."""
    new_dst, new_src = refined
    if new_src is not src.var_off and type(insn.src) is not Imm:
        state.frames[-1].regs[insn.src] = src.with_var_off(new_src)  # type: ignore[index]
        if src.id:
            _refine_linked(state, src, new_src)
    if new_dst is not dst.var_off:
        state.frames[-1].regs[insn.dst] = dst.with_var_off(new_dst)
        if dst.id:
            _refine_linked(state, dst, new_dst)


def _refine_linked(state: State, known: RegState, value: Scalar) -> None:
    """``sync_linked_regs``: every copy of a refined scalar (same id) learns its bounds, shifted
    by the constant distance between them."""
    target = known.id
    if not target:
        return

    def shifted(reg: RegState) -> RegState | None:
        moved = value if reg.off == known.off else alu(_ADD, value, Scalar.const(reg.off - known.off), True)
        return reg.with_var_off(moved) if reg.var_off != moved else None

    # Written out rather than through State.update_registers: this runs on every branch on a
    # linked scalar, and most registers are not linked.
    for frame in state.frames:
        regs = frame.regs
        for number, reg in enumerate(regs):
            if reg.id == target and reg.type is SCALAR_VALUE:
                new = shifted(reg)
                if new is not None:
                    regs[number] = new
        for index, slot in enumerate(frame.stack.slots):
            spilled = slot.spilled_ptr
            if spilled.id == target and spilled.type is SCALAR_VALUE and slot.is_spilled_register():
                new = shifted(spilled)
                if new is not None:
                    frame.stack = frame.stack.with_slot(index, StackSlot.spill(new))


def _null_check(insn: Jump, dst: RegState, src: RegState) -> tuple[RegState, bool] | None:
    """(the pointer, whether it is NULL on the taken edge) for ``ptr ==/!= 0``."""
    cond = insn.cond
    if (cond is not _JEQ and cond is not _JNE) or insn.is32:
        return None
    for pointer, other in ((dst, src), (src, dst)):
        if pointer.is_pointer and other.type is SCALAR_VALUE and other.var_off.const_value() == 0:
            return pointer, cond is _JEQ
    return None


def _mark_null(state: State, pointer: RegState, *, is_null: bool) -> None:
    """``mark_ptr_or_null_regs``: every copy (same id) becomes NULL (scalar 0) or a valid pointer."""
    target = pointer.id
    if target == 0:
        return
    null = RegState.const(0) if is_null else None
    # State.update_registers written out: a test per register before any call (this runs on
    # both edges of every null check).
    for frame in state.frames:
        regs = frame.regs
        for number, reg in enumerate(regs):
            if reg.id == target and reg.maybe_null:
                regs[number] = null if null is not None else reg.not_null()
        for index, slot in enumerate(frame.stack.slots):
            spilled = slot.spilled_ptr
            if spilled.id == target and spilled.maybe_null and slot.is_spilled_register():
                new = null if null is not None else spilled.not_null()
                frame.stack = frame.stack.with_slot(index, StackSlot.spill(new))
    if is_null and pointer.ref_obj_id:
        # A NULL result holds no reference: nothing to release on this path.
        state.refs.pop(pointer.ref_obj_id, None)


_JEQ, _JNE = Cond.JEQ, Cond.JNE
# (a pointer below, the pointer above it): comparisons that prove packet bytes.
_PACKET_PAIRS = ((RegType.PTR_TO_PACKET, RegType.PTR_TO_PACKET_END),
                 (RegType.PTR_TO_PACKET_META, RegType.PTR_TO_PACKET))
# (cond, pointer-is-dst) -> (which edge learns the range, range_right_open)
_PACKET_RULES: dict[tuple[Cond, bool], tuple[bool, bool]] = {
    (Cond.JGT, True): (False, False), (Cond.JGT, False): (True, True),
    (Cond.JLT, True): (True, True), (Cond.JLT, False): (False, False),
    (Cond.JGE, True): (False, True), (Cond.JGE, False): (True, False),
    (Cond.JLE, True): (True, False), (Cond.JLE, False): (False, True),
}


def _packet_compare(insn: Jump, dst: RegState, src: RegState, taken: State, fall: State) -> bool:
    """``try_match_pkt_pointers``: ``pkt + N`` compared with ``data_end`` proves N bytes."""
    if insn.is32:
        return False
    for low, high in _PACKET_PAIRS:
        if dst.type is low and src.type is high:
            pointer, pointer_is_dst = dst, True
        elif dst.type is high and src.type is low:
            pointer, pointer_is_dst = src, False
        else:
            continue
        rule = _PACKET_RULES.get((insn.cond, pointer_is_dst))
        if rule is None:
            return True  # a packet comparison, just not one that proves a range
        on_taken, right_open = rule
        _find_good_pkt_pointers(taken if on_taken else fall, pointer, right_open)
        return True
    return False


def _find_good_pkt_pointers(state: State, pointer: RegState, right_open: bool) -> None:
    if pointer.off < 0 or (pointer.off == 0 and right_open):
        return
    if pointer.var_off.umax > MAX_PACKET_OFF or pointer.var_off.umax + pointer.off > MAX_PACKET_OFF:
        return
    new_range = pointer.off + (1 if right_open else 0)

    def change(reg: RegState) -> RegState | None:
        if reg.type is pointer.type and reg.id == pointer.id and reg.range < new_range:
            return reg.with_range(new_range)
        return None

    state.update_registers(change)
