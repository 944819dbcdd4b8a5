"""Global functions: verified once, on their own, from their BTF prototype.

A non-static C function (BTF ``FUNC`` with ``global`` linkage) is not walked inline at its call
sites as the kernel walks static ones. The kernel (``btf_prepare_func_args``) derives an argument
kind per parameter from the prototype: an int or enum is any scalar, a pointer to the program
type's context struct (or one tagged ``arg:ctx``) is the context, a ``struct bpf_dynptr *`` an
initialised dynptr (``ARG_PTR_TO_DYNPTR | MEM_RDONLY``: a ``CONST_PTR_TO_DYNPTR`` in the callee),
any other pointer is memory of the pointee's size, possibly NULL unless tagged ``arg:nonnull``. A
call (``check_func_call``'s global branch) checks the caller's r1-r5 against those kinds, clobbers
r1-r5 and leaves r0 an unknown scalar; nothing of the callee's state flows back. After the main program, each global
function some path called is verified once (``do_check_subprogs``) from a fresh state built from
the same kinds, and must return a scalar.

Without BTF (raw instructions) every function is static, as in the kernel.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum

from pybpf.btf import Btf
from pybpf.btf.types import DeclTag, Enum, Enum64, Func, FuncLinkage, FuncProto, Int, Ptr, Struct, Union, Void
from pybpf.errors import PybpfError
from pybpf.isa.insn import Call, LabeledInsn
from pybpf.platform import HELPER_PROTOS, ArgFlag, ArgType, HelperArg, HelperId
from pybpf.platform.dynptr import DynptrType
from pybpf.verifier import dynptr
from pybpf.verifier.cfg import Subprog, call_target
from pybpf.verifier.machine import CALLER_SAVED, Env, Frame, State, reject, type_name
from pybpf.verifier.memory import check_ctx_pointer, helper_memory
from pybpf.verifier.state import RegState, RegType, StackState

MAX_BPF_FUNC_REG_ARGS = 5
_SIZED_MEMORY = frozenset({RegType.PTR_TO_STACK, RegType.PTR_TO_PACKET, RegType.PTR_TO_PACKET_META,
                           RegType.PTR_TO_MAP_VALUE, RegType.PTR_TO_MAP_KEY, RegType.PTR_TO_MEM})
_DYNPTR_ARG = HelperArg(ArgType.PTR_TO_DYNPTR, ArgFlag.RDONLY)
ENTRY_CALLSITE = -2
"""The call site of a global function's own entry frame: never returned to, it tells the entry
apart from the main program's and a timer callback's (-1) for the exit checks and for pruning."""


class GlobalArgKind(IntEnum):
    """The kernel's ``bpf_subprog_arg_info.arg_type`` kinds we model."""

    ARG_ANYTHING = 0  # an int or enum: any scalar
    ARG_PTR_TO_CTX = 1  # the program's context, unmodified
    ARG_PTR_TO_MEM = 2  # mem_size bytes the callee may read and write
    ARG_PTR_TO_DYNPTR = 3  # ``struct bpf_dynptr *``: an initialised dynptr the callee may not release


@dataclass(frozen=True, slots=True)
class GlobalArg:
    kind: GlobalArgKind
    mem_size: int = 0
    maybe_null: bool = False


@dataclass(frozen=True, slots=True)
class GlobalFunc:
    """A global function starting at ``start``: its argument kinds, or why its prototype is
    refused (reported at the first call, as the kernel does)."""

    name: str
    start: int
    args: tuple[GlobalArg, ...] = ()
    error: str | None = None


def _arg_tags(btf: Btf, func_id: int) -> dict[int, set[str]]:
    """``arg:<tag>`` decl tags on the function's parameters: parameter index -> tags."""
    tags: dict[int, set[str]] = {}
    for record in btf.types:
        if isinstance(record, DeclTag) and record.type_id == func_id and record.name.startswith("arg:"):
            tags.setdefault(record.component_idx, set()).add(record.name[4:])
    return tags


def _prepare(btf: Btf, func_id: int, func: Func, start: int, ctx_name: str) -> GlobalFunc:
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
        arg_tags = tags.get(index, set())
        unknown = arg_tags - {"ctx", "nonnull"}
        if unknown:
            # trusted/untrusted/arena/nullable pointers are BTF-typed kernel objects: not modelled.
            return GlobalFunc(func.name, start, error=f"arg#{index} tag arg:{sorted(unknown)[0]} is not supported "
                                                      "by this verifier")
        kind = btf.resolved(param.type_id)
        if isinstance(kind, Ptr):
            pointee = btf.resolved(kind.type_id)
            is_ctx = isinstance(pointee, Struct) and pointee.name == ctx_name
            if "ctx" in arg_tags or is_ctx:
                if arg_tags - {"ctx"}:
                    return GlobalFunc(func.name, start, error=f"arg#{index} has invalid combination of tags")
                args.append(GlobalArg(GlobalArgKind.ARG_PTR_TO_CTX))
                continue
            if isinstance(pointee, Struct) and pointee.name == "bpf_dynptr":
                # ARG_PTR_TO_DYNPTR | MEM_RDONLY: the callee sees a const struct bpf_dynptr *.
                if arg_tags:
                    return GlobalFunc(func.name, start, error=f"arg#{index} has invalid combination of tags")
                args.append(GlobalArg(GlobalArgKind.ARG_PTR_TO_DYNPTR))
                continue
            try:
                size = btf.size_of(kind.type_id)
            except PybpfError:
                size = -1
            if size < 0 or isinstance(pointee, Void | FuncProto) or (isinstance(pointee, Struct | Union)
                                                                      and pointee.size == 0):
                kind_name = "UNKNOWN" if isinstance(pointee, Void) else pointee.KIND.name
                return GlobalFunc(func.name, start, error=f"arg#{index} reference type('{kind_name} "
                                                          f"{pointee.name}') size cannot be determined: -22")
            args.append(GlobalArg(GlobalArgKind.ARG_PTR_TO_MEM, size, "nonnull" not in arg_tags))
            continue
        if arg_tags:
            return GlobalFunc(func.name, start, error=f"arg#{index} has pointer tag, but is not a pointer type")
        if isinstance(kind, Int | Enum | Enum64):
            args.append(GlobalArg(GlobalArgKind.ARG_ANYTHING))
            continue
        return GlobalFunc(func.name, start, error=f"Arg#{index} type {kind.KIND.name} in {func.name}() is not "
                                                  "supported yet.")
    return GlobalFunc(func.name, start, tuple(args))


def global_funcs_of(btf: Btf, func_info: tuple[tuple[int, int], ...], ctx_name: str) -> dict[int, GlobalFunc]:
    """The program's global functions by first pc, from its ``(pc, BTF FUNC id)`` func_info;
    the main program (pc 0) is an entry point already and never one of them."""
    found: dict[int, GlobalFunc] = {}
    for pc, type_id in func_info:
        if pc == 0:
            continue
        func = btf[type_id]
        if isinstance(func, Func) and func.linkage is FuncLinkage.GLOBAL:
            found[pc] = _prepare(btf, type_id, func, pc, ctx_name)
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
    if func.error is not None:
        # The kernel logs the reason, then "Caller passes invalid args into func#N".
        raise reject(func.error)
    if state.lock is not None:
        raise reject("global function calls are not allowed while holding a lock,\nuse static function instead")
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
            check_ctx_pointer(regno, reg)
            if reg.type is not RegType.PTR_TO_CTX:
                raise reject(f"arg#{index} expects pointer to ctx")
        elif arg.kind is GlobalArgKind.ARG_PTR_TO_DYNPTR:
            if reg.type not in (RegType.PTR_TO_STACK, RegType.CONST_PTR_TO_DYNPTR):
                raise reject(f"arg#{index} expected pointer to stack or const struct bpf_dynptr")
            dynptr.check_arg(env, state, regno, reg, _DYNPTR_ARG, pc=-1)
        else:
            _check_memory(env, state, index, reg, arg)
    env.called_globals.add(func.start)
    for number in CALLER_SAVED:
        regs[number] = RegState.not_init()
    regs[0] = RegState.scalar()


def demanded_by_call(func: GlobalFunc, state: State) -> int:
    """The scalar registers (a mask) a call to ``func`` relies on the exact value of: those
    passed for a pointer argument (accepted only when NULL)."""
    mask = 0
    for index, arg in enumerate(func.args):
        if arg.kind is not GlobalArgKind.ARG_ANYTHING and state.regs[index + 1].is_scalar:
            mask |= 1 << (index + 1)
    return mask


def _check_memory(env: Env, state: State, index: int, reg: RegState, arg: GlobalArg) -> None:
    """``check_mem_reg``: NULL passes; else the callee may read and write ``mem_size`` bytes."""
    regno = index + 1
    if reg.type is RegType.SCALAR_VALUE and reg.var_off.const_value() == 0:
        return
    pointer = reg.not_null() if reg.maybe_null else reg
    if pointer.type not in _SIZED_MEMORY:
        # Not the context either (its real size is not the uapi struct's), nor memory whose
        # size only BTF would tell: the callee may touch all mem_size bytes.
        raise reject(f"R{regno} type={type_name(reg)} expected=fp, pkt, pkt_meta, map_key, map_value, mem")
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
    for ref_id, alloc_pc in sorted(state.refs.items()):
        raise reject(f"Unreleased reference id={ref_id} alloc_insn={alloc_pc}")
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
