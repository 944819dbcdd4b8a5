"""Spectre-v1 rules for unprivileged loads (the kernel's ``!env->bypass_spec_v1`` paths).

An unprivileged program's pointer arithmetic is later *masked* by the kernel so that, even
under branch misprediction, the pointer cannot leave its object (``sanitize_ptr_alu``). The
masking needs a known distance to the object's edges, so the result of every pointer ± scalar
must be in bounds on the verified path itself (``sanitize_check_bounds``):

* a stack pointer must keep a constant offset in [-512, 0): "R%d variable stack access
  prohibited for !root, var_off=%s off=%d", "R%d stack pointer arithmetic goes out of range,
  prohibited for !root, off=%d";
* a map-value pointer must point inside the value (1 byte at its offset): "R%d pointer arithmetic
  of map value goes out of range, prohibited for !root".

Since Linux 6.17 the other sanitation failures (an offset with mixed signed bounds, an
unsupported pointer type, different limits on different paths, a limit past the object) and
errors on speculatively explored paths no longer fail the load: the kernel inserts a speculation
barrier (``nospec``) instead, which code run by a user-space VM does not need, so they are not
refused here either. The messages and cases come from the kernel's selftests
(``tools/testing/selftests/bpf/verifier/unpriv.c``, ``progs/verifier_unpriv.c``,
``progs/verifier_bounds.c``: ``errstr_unpriv``/``__msg_unpriv``); this machine's kernel refuses
unprivileged ``bpf()``, so they could not be checked against it.
"""

from __future__ import annotations

from pybpf.isa.insn import Bin, BinOp, Instruction, Reg
from pybpf.verifier.machine import Env, State, reject
from pybpf.verifier.state import MAX_BPF_STACK, RegType


def is_pointer_arithmetic(insn: Instruction, state: State) -> bool:
    """Whether ``insn`` adds to or subtracts from a pointer a number (before it runs)."""
    if not isinstance(insn, Bin) or insn.op not in (BinOp.ADD, BinOp.SUB) or not insn.is64:
        return False
    dst = state.regs[insn.dst]
    src = state.regs[insn.src] if isinstance(insn.src, Reg) else None
    src_pointer = src is not None and src.is_pointer
    if dst.is_pointer:
        return not src_pointer
    return insn.op is BinOp.ADD and src_pointer and dst.type is RegType.SCALAR_VALUE


def check_bounds(insn: Instruction, state: State, env: Env) -> None:
    """``sanitize_check_bounds`` on the pointer ``insn`` produced (unprivileged loads only)."""
    if not isinstance(insn, Bin):
        return
    regno = int(insn.dst)
    reg = state.regs[regno]
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


def _signed(value: int) -> int:
    return value - (1 << 64) if value >> 63 else value
