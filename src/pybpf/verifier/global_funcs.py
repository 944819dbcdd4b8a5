"""Global functions: verified once, on their own, from their BTF prototype.

A non-static C function (BTF ``FUNC`` with ``global`` linkage) is not walked inline at its call
sites as the kernel walks static ones. The kernel (``btf_prepare_func_args``) derives an argument
kind per parameter from the prototype and its ``arg:<tag>`` decl tags (:mod:`.global_args`):
a scalar, the context, an initialised dynptr, a trusted or untrusted kernel object
(``PTR_TO_BTF_ID``), or memory of the pointee's size. A call (``check_func_call``'s global
branch) checks the caller's r1-r5 against those kinds, clobbers r1-r5 and leaves r0 an unknown
scalar; nothing of the callee's state flows back. After the main program, each global function
some path called is verified once (``do_check_subprogs``) from a fresh state built from the
same kinds, and must return a scalar.

Without BTF (raw instructions) every function is static, as in the kernel.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from pybpf.btf import Btf
from pybpf.btf.types import DeclTag, Enum, Enum64, Func, FuncLinkage, FuncProto, Int
from pybpf.isa.insn import Call, LabeledInsn
from pybpf.platform import HELPER_PROTOS, ArgFlag, ArgType, HelperArg, HelperId, ProgTypeSpec
from pybpf.platform.dynptr import DynptrType
from pybpf.verifier import dynptr
from pybpf.verifier.cfg import Subprog, call_target
from pybpf.verifier.global_args import GlobalArg, GlobalArgKind, prepare_arg
from pybpf.verifier.machine import (
    CALLER_SAVED,
    Env,
    Frame,
    Rejection,
    State,
    leaked_references,
    reject,
    type_name,
)
from pybpf.verifier.memory import check_ctx_pointer, helper_memory
from pybpf.verifier.state import RegState, RegType, StackState

MAX_BPF_FUNC_REG_ARGS = 5
_SIZED_MEMORY = frozenset({RegType.PTR_TO_STACK, RegType.PTR_TO_PACKET, RegType.PTR_TO_PACKET_META,
                           RegType.PTR_TO_MAP_VALUE, RegType.PTR_TO_MAP_KEY, RegType.PTR_TO_MEM})
_DYNPTR_ARG = HelperArg(ArgType.PTR_TO_DYNPTR, ArgFlag.RDONLY)
ENTRY_CALLSITE = -2
"""The call site of a global function's own entry frame: never returned to, it tells the entry
apart from the main program's and a timer callback's (-1) for the exit checks and for pruning."""


@dataclass(frozen=True, slots=True)
class GlobalFunc:
    """A global function starting at ``start``: its argument kinds, or why its prototype is
    refused (reported at the first call, as the kernel does)."""

    name: str
    start: int
    args: tuple[GlobalArg, ...] = ()
    error: str | None = None
    number: int = 0  # its index among the program's functions (the kernel's func#N)


def _arg_tags(btf: Btf, func_id: int) -> dict[int, set[str]]:
    """``arg:<tag>`` decl tags on the function's parameters: parameter index -> tags."""
    tags: dict[int, set[str]] = {}
    for record in btf.types:
        if isinstance(record, DeclTag) and record.type_id == func_id and record.name.startswith("arg:"):
            tags.setdefault(record.component_idx, set()).add(record.name[4:])
    return tags


def _prepare(btf: Btf, func_id: int, func: Func, start: int, *, prog: ProgTypeSpec,
             attach_type: int | None) -> GlobalFunc:
    proto = btf[func.type_id]
    if not isinstance(proto, FuncProto):
        return GlobalFunc(func.name, start, error=f"Global function {func.name}() has no prototype")
    returned = btf.resolved(proto.return_type_id)
    if not isinstance(returned, Int | Enum | Enum64):
        # void included: the kernel (6.18) refuses it too.
        return GlobalFunc(func.name, start, error=f"Global function {func.name}() doesn't return scalar. "
                                                  "Only those are supported.")
    if len(proto.params) > MAX_BPF_FUNC_REG_ARGS:
        return GlobalFunc(func.name, start, error=f"Global function {func.name}() with {len(proto.params)} > "
                                                  f"{MAX_BPF_FUNC_REG_ARGS} args. Buggy compiler.")
    tags = _arg_tags(btf, func_id)
    args: list[GlobalArg] = []
    for index, param in enumerate(proto.params):
        arg = prepare_arg(btf, param.type_id, tags.get(index, set()), index=index, prog=prog,
                          attach_type=attach_type, func_name=func.name)
        if isinstance(arg, str):
            return GlobalFunc(func.name, start, error=arg)
        args.append(arg)
    return GlobalFunc(func.name, start, tuple(args))


def global_funcs_of(btf: Btf, func_info: tuple[tuple[int, int], ...], prog: ProgTypeSpec,
                    attach_type: int | None = None) -> dict[int, GlobalFunc]:
    """The program's global functions by first pc, from its ``(pc, BTF FUNC id)`` func_info, for
    a program of type ``prog`` (its context type and ``attach_type`` decide which arguments are
    the context); the main program (pc 0) is an entry point already and never one of them."""
    found: dict[int, GlobalFunc] = {}
    for number, (pc, type_id) in enumerate(func_info):  # one record per function, in pc order
        if pc == 0:
            continue
        func = btf[type_id]
        if isinstance(func, Func) and func.linkage is FuncLinkage.GLOBAL:
            found[pc] = replace(_prepare(btf, type_id, func, pc, prog=prog, attach_type=attach_type), number=number)
    return found


def changes_packet_data(insns: Sequence[LabeledInsn], subprogs: Sequence[Subprog], start: int) -> bool:
    """Whether the function at ``start``, or any function it calls or takes the address of, calls
    a helper that may move packet data (a tail call included): after calling it, the caller's
    packet pointers are void (the kernel's ``changes_pkt_data`` of a subprogram)."""
    todo, done = [start], set[int]()
    while todo:
        first = todo.pop()
        if first in done:
            continue
        done.add(first)
        function = next((subprog for subprog in subprogs if subprog.start == first), None)
        if function is None:
            continue
        for labeled in insns:
            if labeled.pc not in function:
                continue
            insn = labeled.insn
            if isinstance(insn, Call):
                proto = HELPER_PROTOS.get(insn.helper)
                if insn.helper == HelperId.TAIL_CALL or (proto is not None and proto.changes_pkt_data):
                    return True
            target = call_target(labeled.pc, insn)
            if target is not None:
                todo.append(target)
    return False


def call_global(env: Env, state: State, func: GlobalFunc) -> None:
    """``call`` into a global function: check r1-r5 against its prototype; r0 comes back an
    unknown scalar and nothing else of the callee is seen."""
    if state.lock is not None:
        raise reject("global function calls are not allowed while holding a lock,\nuse static function instead")
    try:
        if func.error is not None:
            raise reject(func.error)
        _check_args(env, state, func)
    except Rejection as error:
        # check_func_call logs why, then names the function.
        raise reject(f"{error.reason}\nCaller passes invalid args into func#{func.number} ('{func.name}')") from None
    env.called_globals.add(func.start)
    regs = state.regs
    for number in CALLER_SAVED:
        regs[number] = RegState.not_init()
    regs[0] = RegState.scalar()


def _check_args(env: Env, state: State, func: GlobalFunc) -> None:
    """``btf_check_func_arg_match``: r1-r5 against the prototype's argument kinds."""
    regs = state.regs
    for index, arg in enumerate(func.args):
        regno = index + 1
        reg = regs[regno]
        if reg.type is RegType.NOT_INIT:
            raise reject(f"R{regno} !read_ok")
        if arg.kind is GlobalArgKind.ARG_ANYTHING:
            if reg.type is not RegType.SCALAR_VALUE:
                raise reject(f"R{regno} is not a scalar")
        elif arg.kind is GlobalArgKind.ARG_PTR_TO_CTX:
            # check_func_arg_reg_off lets pointers with an offset of their own (stack, packet,
            # map value) through to the type test; a context pointer must be unmodified.
            if reg.type is RegType.PTR_TO_CTX:
                check_ctx_pointer(regno, reg)
            else:
                raise reject(f"arg#{index} expects pointer to ctx")
        elif arg.kind is GlobalArgKind.ARG_PTR_TO_BTF_ID:
            _check_kernel_object(regno, reg, arg)
        elif arg.kind is GlobalArgKind.ARG_PTR_TO_ARENA:
            # Any value is safe (arena accesses fault to 0), but only these make sense.
            if reg.type is not RegType.PTR_TO_ARENA and reg.type is not RegType.SCALAR_VALUE:
                raise reject(f"R{regno} is not a pointer to arena or scalar.")
        elif arg.kind is GlobalArgKind.ARG_PTR_TO_DYNPTR:
            if reg.type not in (RegType.PTR_TO_STACK, RegType.CONST_PTR_TO_DYNPTR):
                raise reject(f"arg#{index} expected pointer to stack or const struct bpf_dynptr")
            dynptr.check_arg(env, state, regno, reg, _DYNPTR_ARG, pc=-1)
        else:
            _check_memory(env, state, index, reg, arg)


def demanded_by_call(func: GlobalFunc, state: State) -> int:
    """The scalar registers (a mask) a call to ``func`` relies on the exact value of: those
    passed for a pointer argument (accepted only when NULL)."""
    mask = 0
    for index, arg in enumerate(func.args):
        if arg.kind not in _VALUE_FREE and state.regs[index + 1].is_scalar:
            mask |= 1 << (index + 1)
    return mask


_VALUE_FREE = frozenset({GlobalArgKind.ARG_ANYTHING, GlobalArgKind.ARG_PTR_TO_ARENA})


def _check_kernel_object(regno: int, reg: RegState, arg: GlobalArg) -> None:
    """``check_reg_type`` for an ``arg:trusted``/``arg:untrusted`` struct pointer: NULL only
    when nullable; else a BTF pointer to that struct (one whose struct is unknown passes)."""
    if reg.type is RegType.SCALAR_VALUE and reg.var_off.const_value() == 0 and arg.maybe_null:
        return
    if reg.type is not RegType.PTR_TO_BTF_ID or (reg.maybe_null and not arg.maybe_null):
        raise reject(f"R{regno} type={type_name(reg)} expected=ptr_, trusted_ptr_, rcu_ptr_")
    if reg.btf_type and reg.btf_type != arg.btf_type:
        raise reject(f"R{regno} is of type {reg.btf_type} but {arg.btf_type} is expected")
    if reg.off or not reg.var_off.is_const() or reg.var_off.const_value():
        raise reject(f"R{regno} must have zero offset when passed to release func or trusted arg to kfunc")


def _check_memory(env: Env, state: State, index: int, reg: RegState, arg: GlobalArg) -> None:
    """``check_mem_reg``: NULL passes; else the callee may read and write ``mem_size`` bytes."""
    regno = index + 1
    if reg.type is RegType.SCALAR_VALUE and reg.var_off.const_value() == 0:
        return
    pointer = reg.not_null() if reg.maybe_null else reg
    if pointer.type not in _SIZED_MEMORY:
        # Not the context either (its real size is not the uapi struct's), nor memory whose
        # size only BTF would tell: the callee may touch all mem_size bytes.
        # check_helper_mem_access names only the stack as what it expected.
        raise reject(f"R{regno} type={type_name(reg)} expected=fp")
    helper_memory(env, state, regno, pointer, arg.mem_size, write=False)
    helper_memory(env, state, regno, pointer, arg.mem_size, write=True)
    if reg.maybe_null and not arg.maybe_null:
        raise reject(f"arg#{index} is expected to be non-NULL")


def entry_state(env: Env, func: GlobalFunc) -> State:
    """The state a global function is verified from: its arguments as the prototype says."""
    regs = [RegState.not_init() for _ in range(11)]
    for index, arg in enumerate(func.args):
        if arg.kind is GlobalArgKind.ARG_ANYTHING:
            regs[index + 1] = RegState.scalar()
        elif arg.kind is GlobalArgKind.ARG_PTR_TO_CTX:
            regs[index + 1] = RegState.pointer(RegType.PTR_TO_CTX)
        elif arg.kind is GlobalArgKind.ARG_PTR_TO_BTF_ID:
            regs[index + 1] = RegState.pointer(RegType.PTR_TO_BTF_ID, maybe_null=arg.maybe_null, btf_type=arg.btf_type,
                                               id=env.new_id() if arg.maybe_null else 0)
        elif arg.kind is GlobalArgKind.ARG_PTR_TO_ARENA:
            regs[index + 1] = RegState(RegType.PTR_TO_ARENA)
        elif arg.kind is GlobalArgKind.ARG_PTR_TO_DYNPTR:
            # Whatever kind the caller passed, the callee sees a local one (as the kernel assumes).
            regs[index + 1] = dynptr.const_dynptr(env, DynptrType.LOCAL)
        else:
            regs[index + 1] = RegState.pointer(RegType.PTR_TO_MEM, mem_size=arg.mem_size, maybe_null=arg.maybe_null,
                                               id=env.new_id() if arg.maybe_null else 0)
    regs[10] = RegState.pointer(RegType.PTR_TO_STACK, frameno=0)
    return State([Frame(regs, StackState(), ENTRY_CALLSITE, func.start, 0)])


def is_global_entry(state: State) -> bool:
    """Whether the outermost frame is a global function verified on its own."""
    return state.frames[0].callsite == ENTRY_CALLSITE


def check_global_return(state: State) -> None:
    """``check_return_code`` for a global function: leaked references, then r0 a scalar."""
    if state.lock is not None:
        raise reject("BPF_EXIT instruction in main prog cannot be used inside bpf_spin_lock-ed region")
    r0 = state.regs[0]
    if r0.type is RegType.NOT_INIT:
        raise reject("R0 !read_ok")
    if state.refs:
        raise reject(leaked_references(state))
    if r0.type is not RegType.SCALAR_VALUE:
        raise reject(f"At subprogram exit the register R0 is not a scalar value ({type_name(r0)})")


__all__ = [
    "ENTRY_CALLSITE",
    "MAX_BPF_FUNC_REG_ARGS",
    "GlobalArg",
    "GlobalArgKind",
    "GlobalFunc",
    "call_global",
    "changes_packet_data",
    "check_global_return",
    "demanded_by_call",
    "entry_state",
    "global_funcs_of",
    "is_global_entry",
]
