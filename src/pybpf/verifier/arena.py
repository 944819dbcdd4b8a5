"""BPF arenas (Linux 6.9+): the program's arena map, ``addr_space_cast`` and arena pointers.

A program may use one ``BPF_MAP_TYPE_ARENA`` map (found, as the kernel's
``resolve_pseudo_ldimm64`` finds it, among the maps its ``lddw`` instructions name, before any
path is explored). The arena is memory shared with user space; C code holds arena pointers in
address space 1 (``__arena``, the user-space address) and clang casts them to address space 0
before each access. The kernel's rules, restated here:

* ``rX = addr_space_cast(rY, 0, 1)`` makes ``rX`` a ``PTR_TO_ARENA``: a 32-bit offset into the
  arena (the kernel rewrites the cast into ``wX = wY``); ``addr_space_cast(rY, 1, 0)`` makes an
  unknown scalar (the JIT ORs the arena's user-space upper half into a non-zero value). Either
  needs an arena in the program;
* any arithmetic is allowed on a ``PTR_TO_ARENA`` destination, which stays one; a 64-bit
  operation is done on 32 bits (the kernel's ``needs_zext`` rewrite, kept in
  :attr:`~pybpf.verifier.machine.Env.arena_alu32`);
* loads and stores through it are allowed at any offset (:mod:`.memory`): they become
  ``BPF_PROBE_MEM32`` accesses at the arena's kernel base plus the 32-bit offset, where a page
  that is not allocated reads as 0 and drops writes; a load gives an unknown value of its size;
* a ``lddw`` of the arena's "value" (a global ``__arena`` variable) is an unknown scalar;
* the arena needs CAP_BPF and CAP_PERFMON (a privileged load here).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace

from pybpf.isa.insn import AddrSpaceCast, Atomic, Bin, BinOp, LabeledInsn, Load, LoadImm64, Store
from pybpf.isa.opcodes import PseudoSrc
from pybpf.platform.uapi_generated import BpfMapType
from pybpf.verifier.machine import Env, MapInfo, MapResolver, Rejection, State, reject
from pybpf.verifier.state import RegState, RegType
from pybpf.verifier.transfer import read_reg

__all__ = ["apply_cast", "find_arena", "rewrite_arena_accesses"]

_MAP_SOURCES = frozenset({PseudoSrc.MAP_FD, PseudoSrc.MAP_IDX, PseudoSrc.MAP_VALUE, PseudoSrc.MAP_IDX_VALUE})
_ARENA = BpfMapType.ARENA
_TO_PROGRAM = 1  # imm of addr_space_cast(rY, 0, 1): as(1) -> as(0)


def find_arena(insns: Sequence[LabeledInsn], resolver: MapResolver, *, privileged: bool) -> MapInfo | None:
    """The program's arena map (``resolve_pseudo_ldimm64``'s pre-pass), or None.

    Raises the kernel's rejection for a second arena, or for an unprivileged loader."""
    found: MapInfo | None = None
    found_key: object = None
    for labeled in insns:
        insn = labeled.insn
        if not isinstance(insn, LoadImm64) or insn.src not in _MAP_SOURCES:
            continue
        info = resolver(labeled.pc, insn)
        if info is None or info.type != _ARENA:
            continue
        key = info.name or insn.imm  # an object's maps have names; raw programs' their fd
        if found is not None and key != found_key:
            raise Rejection(labeled.pc, "Only one arena per program")
        found_key = key
        if not privileged:
            raise Rejection(labeled.pc, "CAP_BPF and CAP_PERFMON are required to use arena")
        found = info
    return found


def apply_cast(env: Env, state: State, insn: AddrSpaceCast) -> None:
    """``check_alu_op`` on ``addr_space_cast``: the source must be readable, the program must
    have an arena; 1 -> 0 gives a ``PTR_TO_ARENA``, 0 -> 1 an unknown scalar."""
    if env.arena is None:
        raise reject("addr_space_cast insn can only be used in a program that has an associated arena")
    read_reg(state, insn.src)
    state.regs[int(insn.dst)] = _ARENA_POINTER if insn.imm == _TO_PROGRAM else RegState.scalar()


_ARENA_POINTER = RegState(RegType.PTR_TO_ARENA)  # immutable: one shared value (its var_off is unknown)


def rewrite_arena_accesses(
    insns: Sequence[LabeledInsn], ptr_types: Mapping[int, RegType], alu32: Collection[int], *,
    no_user_conv: bool = False,
) -> tuple[LabeledInsn, ...]:
    """The kernel's post-verification arena rewrites (``convert_ctx_accesses``, ``do_misc_fixups``),
    for the interpreter and the JIT: a load or store the verifier saw go through an arena pointer
    becomes an arena access (``BPF_PROBE_MEM32``/``BPF_PROBE_ATOMIC``: ``Load.arena``,
    ``Store.arena``, ``Atomic.arena``), a cast to the
    program's view a 32-bit move (``wX = wY``; the cast to user space too with
    ``BPF_F_NO_USER_CONV``), and a 64-bit ALU instruction on an arena pointer a 32-bit one."""
    out: list[LabeledInsn] = []
    for labeled in insns:
        insn, pc = labeled.insn, labeled.pc
        arena_access = ptr_types.get(pc) is RegType.PTR_TO_ARENA
        if arena_access and isinstance(insn, Load | Store | Atomic):
            insn = replace(insn, arena=True)
        elif isinstance(insn, AddrSpaceCast) and (insn.imm == _TO_PROGRAM or no_user_conv):
            insn = Bin(BinOp.MOV, insn.dst, insn.src, False)
        elif pc in alu32 and isinstance(insn, Bin):
            insn = replace(insn, is64=False)
        out.append(labeled if insn is labeled.insn else replace(labeled, insn=insn))
    return tuple(out)
