"""Kfunc calls (``call`` with ``src_reg = 2``) checked against the kfunc table, as ``check_kfunc_call`` does.

The call's ``imm`` is pybpf's kfunc id (:data:`pybpf.platform.KFUNC_PROTOS`; the object loader
put it there). In the kernel's order: the program type must have the kfunc's set registered
(``calling kernel function X is not allowed``), a sleepable kfunc needs a sleepable program and
no RCU or non-preemptible section; ``bpf_rcu_read_lock/unlock`` and
``bpf_preempt_disable/enable`` open and close their sections; every argument is checked against
its kind (:class:`~pybpf.platform.KfuncArgKind`), iterator arguments by :mod:`.iters`; a release
kfunc releases its argument's reference; r1-r5 are clobbered and r0 typed from the return kind
(NULL-checked before use when the kfunc may return NULL, a reference when it acquires one).
``_next()`` of an iterator then forks the loop (:func:`pybpf.verifier.iters.iter_next`).

The GPL rule (every kfunc call needs a GPL-compatible license) and unknown ids are checked for
the whole program before exploration (:func:`check_program_kfuncs`), as the kernel's
``add_subprog_and_kfunc`` does, so an unreachable call is refused too.
"""

from __future__ import annotations

from collections.abc import Sequence

from pybpf.isa.insn import CallKfunc, LabeledInsn
from pybpf.platform import PacketAccess
from pybpf.platform.dynptr import DynptrType
from pybpf.platform.kfunc_types import KfuncArgKind, KfuncFlag, KfuncProto, KfuncRetKind
from pybpf.platform.kfuncs import FIRST_MEMBER_STRUCTS, KFUNC_PROTOS
from pybpf.verifier import dynptr, graphs, iters, kptrs
from pybpf.verifier.callbacks import CallbackEntry
from pybpf.verifier.machine import BPF_MAX_VAR_SIZ, CALLER_SAVED, Env, Options, Rejection, State, reject, type_name
from pybpf.verifier.memory import check_ctx_pointer, helper_memory
from pybpf.verifier.state import MEM_RCU, TRUSTED_MODIFIERS, RegState, RegType
from pybpf.verifier.transfer import read_reg

# Dynptr kfuncs the verifier treats specially (check_kfunc_args' KF_ARG_PTR_TO_DYNPTR and
# check_kfunc_call's slice returns): constructors fix the kind, a clone copies its parent's.
_DYNPTR_CONSTRUCTORS = {"bpf_dynptr_from_skb": DynptrType.SKB, "bpf_dynptr_from_xdp": DynptrType.XDP}
_DYNPTR_CLONE = "bpf_dynptr_clone"
_DYNPTR_SLICES = frozenset({"bpf_dynptr_slice", "bpf_dynptr_slice_rdwr"})
_RCU_LOCK = "bpf_rcu_read_lock"
_RCU_UNLOCK = "bpf_rcu_read_unlock"
_PREEMPT_DISABLE = "bpf_preempt_disable"
_PREEMPT_ENABLE = "bpf_preempt_enable"
_MEM_TYPES = frozenset({RegType.PTR_TO_STACK, RegType.PTR_TO_PACKET, RegType.PTR_TO_PACKET_META,
                        RegType.PTR_TO_MAP_KEY, RegType.PTR_TO_MAP_VALUE, RegType.PTR_TO_MEM, RegType.PTR_TO_BUF})


def proto_of(insn: CallKfunc) -> KfuncProto | None:
    return KFUNC_PROTOS.get(insn.btf_id) if insn.module == 0 else None


def check_program_kfuncs(insns: Sequence[LabeledInsn], options: Options) -> None:
    """``add_subprog_and_kfunc``: every kfunc call names a known kfunc, and the license is GPL."""
    for labeled in insns:
        insn = labeled.insn
        if not isinstance(insn, CallKfunc):
            continue
        if not options.gpl:
            raise Rejection(labeled.pc, "cannot call kernel function from non-GPL compatible program")
        if proto_of(insn) is None:
            raise Rejection(labeled.pc, f"kernel btf_id {insn.btf_id} is not a function")


def is_iter_next(insn: CallKfunc) -> bool:
    proto = proto_of(insn)
    return proto is not None and proto.has(KfuncFlag.ITER_NEXT)


def calls_callback(insn: CallKfunc) -> bool:
    """Whether the kfunc calls one of the program's functions before returning (``bpf_rbtree_add``)."""
    proto = proto_of(insn)
    return proto is not None and proto.name == graphs.RBTREE_ADD


def kfunc_call(env: Env, state: State, pc: int, insn: CallKfunc) -> State | CallbackEntry | None:
    """Check and apply a kfunc call; for an iterator's ``_next()``, the ACTIVE copy to queue at
    ``pc + 1``; for ``bpf_rbtree_add``, the path entering its ``less`` callback (None otherwise)."""
    proto = proto_of(insn)
    if proto is None:
        raise reject(f"kernel btf_id {insn.btf_id} is not a function")
    name = proto.name
    options = env.options
    if not proto.allowed_for(options.prog_type.prog_type):
        raise reject(f"calling kernel function {name} is not allowed")
    sleepable = proto.has(KfuncFlag.SLEEPABLE)
    if sleepable and not options.sleepable:
        raise reject(f"program must be sleepable to call sleepable kfunc {name}")
    if state.lock is not None:
        graphs.check_lock_allowed(name)
    _sections(state, name, sleepable)
    release_ref = 0
    iter_reg: RegState | None = None
    found_dynptr: dynptr.DynptrRef | None = None  # the kernel's meta->initialized_dynptr
    const_size = 0  # a ``__szk`` argument's value
    graph: graphs.GraphCall | None = None  # an object or graph kfunc's arguments
    for index, arg in enumerate(proto.args):
        regno = index + 1
        reg = state.regs[regno]
        match arg.kind:
            case KfuncArgKind.IGNORED:
                continue
            case KfuncArgKind.SCALAR | KfuncArgKind.CONST_SCALAR:
                if reg.type is not RegType.SCALAR_VALUE:
                    raise reject(f"R{regno} is not a scalar")
                if arg.kind is KfuncArgKind.CONST_SCALAR and not reg.var_off.is_const():
                    raise reject(f"R{regno} must be a known constant")
                if arg.kind is KfuncArgKind.CONST_SCALAR and proto.ret is KfuncRetKind.ALLOC_OBJ:
                    graph = graph or graphs.GraphCall(proto)
                    graph.extras["type_id"] = reg.var_off.const_value() or 0
            case KfuncArgKind.MEM_SIZE | KfuncArgKind.CONST_MEM_SIZE:
                const_size = reg.var_off.const_value() or 0 if reg.type is RegType.SCALAR_VALUE else 0
                continue  # checked with the memory argument before it
            case KfuncArgKind.ITER:
                read_reg(state, regno)  # type: ignore[arg-type]
                iters.check_iter_pointer(regno, reg)
                if proto.has(KfuncFlag.ITER_NEW):
                    iters.iter_new(env, state, pc, regno, arg)
                else:
                    iters.iter_use(state, regno, reg, proto)
                    iter_reg = reg
            case KfuncArgKind.MAP:
                if reg.type is not RegType.CONST_PTR_TO_MAP:
                    raise reject(f"pointer in R{regno} isn't map pointer")
            case KfuncArgKind.CTX:
                if reg.type is not RegType.PTR_TO_CTX:
                    raise reject(f"arg#{index} expected pointer to ctx, but got {type_name(reg)}")
                check_ctx_pointer(regno, reg)
            case KfuncArgKind.MEM:
                _memory_arg(env, state, proto, index, reg)
            case KfuncArgKind.BTF_ID:
                release_ref = _btf_id_arg(proto, index, reg) or release_ref
            case kind if kind in graphs.GRAPH_ARG_KINDS:
                read_reg(state, regno)  # type: ignore[arg-type]
                graph = graph or graphs.GraphCall(proto)
                graphs.check_arg(env, state, graph, index, reg)
                if proto.has(KfuncFlag.RELEASE) and reg.ref_obj_id:
                    release_ref = reg.ref_obj_id
            case KfuncArgKind.DYNPTR:
                read_reg(state, regno)  # type: ignore[arg-type]
                built = dynptr.check_kfunc_arg(
                    env, state, regno, reg, uninit=arg.uninit, pc=pc, kind=_DYNPTR_CONSTRUCTORS.get(name),
                    clone_of=found_dynptr if name == _DYNPTR_CLONE else None)
                found_dynptr = built or found_dynptr
    if name in _DYNPTR_SLICES:
        slice_reg = _dynptr_slice(env, name, found_dynptr, const_size)
    callback = None
    if graph is not None and name == graphs.RBTREE_ADD:
        # push_callback_call: less() is explored from the state before the call's clobbers.
        callback = graphs.rbtree_callback(state, pc, graph)
    if release_ref:
        _release(state, release_ref, options.privileged)
    if graph is not None:
        graphs.after_args(env, state, graph)
    regs, unusable = state.regs, RegState.not_init()
    for number in CALLER_SAVED:
        regs[number] = unusable
    regs[0] = slice_reg if name in _DYNPTR_SLICES else _return_value(env, state, pc, proto, graph)
    if iter_reg is not None and proto.has(KfuncFlag.ITER_NEXT):
        return iters.iter_next(state, iter_reg)
    return callback


def _btf_id_arg(proto: KfuncProto, index: int, reg: RegState) -> int:
    """A kernel-object argument (``check_kfunc_args``' KF_ARG_PTR_TO_BTF_ID): NULL, trust,
    offset and struct type as the kfunc's flags require; the reference it releases (or 0)."""
    regno, arg, name = index + 1, proto.args[index], proto.name
    release = proto.has(KfuncFlag.RELEASE)
    trusted_args = release or proto.has(KfuncFlag.TRUSTED_ARGS)
    rcu = proto.has(KfuncFlag.RCU)
    null = reg.type is RegType.SCALAR_VALUE and reg.var_off.const_value() == 0
    if (trusted_args or rcu) and (null or reg.maybe_null) and not arg.nullable:
        raise reject(f"Possibly NULL pointer passed to trusted arg{index}")
    if null and arg.nullable:
        return 0
    if reg.type is not RegType.PTR_TO_BTF_ID:
        raise reject(f"arg#{index} expected pointer to btf or socket ({arg.btf_type}), not {type_name(reg)}")
    if (trusted_args or rcu) and not kptrs.is_trusted(reg):
        if not rcu:
            raise reject(f"R{regno} must be referenced or trusted")
        if not kptrs.is_rcu(reg):
            raise reject(f"R{regno} must be a rcu pointer")
    if release and reg.ref_obj_id and (reg.off or not reg.var_off.is_const() or reg.var_off.const_value()):
        raise reject(f"R{regno} must have zero offset when passed to release func or trusted arg to kfunc")
    unsafe = reg.maybe_null or reg.type_flags & ~TRUSTED_MODIFIERS
    if unsafe and not kptrs.is_rcu(reg):
        expected = RegState.pointer(RegType.PTR_TO_BTF_ID, type_flags=reg.type_flags & TRUSTED_MODIFIERS)
        raise reject(f"arg#{index} is {type_name(reg)} expected {type_name(expected)} or socket")
    strict = release and bool(reg.ref_obj_id)
    if reg.btf_type and arg.btf_type and not _struct_matches(reg.btf_type, arg.btf_type, strict=strict):
        raise reject(f"kernel function {name} args#{index} expected pointer to STRUCT {arg.btf_type} but R{regno} "
                     f"has a pointer to STRUCT {reg.btf_type}")
    if release:
        if not reg.ref_obj_id:
            raise reject(f"release kernel function {name} expects refcounted PTR_TO_BTF_ID")
        return reg.ref_obj_id
    return 0


def _struct_matches(have: str, want: str, *, strict: bool) -> bool:
    """``btf_struct_ids_match`` at offset 0: the same struct, or (not strict) one whose first
    member is it (``struct bpf_cpumask`` begins with its ``struct cpumask``)."""
    while have != want:
        if strict:
            return False
        first = FIRST_MEMBER_STRUCTS.get(have)
        if first is None:
            return False
        have = first
    return True


def _dynptr_slice(env: Env, name: str, found: dynptr.DynptrRef | None, size: int) -> RegState:
    """bpf_dynptr_slice(_rdwr)'s result: ``size`` bytes of the dynptr, read-only for the former;
    the writable one only where the program type may write packets (may_access_direct_pkt_data)."""
    if found is None:
        raise reject("verifier internal error: no dynptr arg found")
    rdonly = name == "bpf_dynptr_slice"
    if not rdonly and env.options.prog_type.packet_access is not PacketAccess.READ_WRITE:
        raise reject("the prog does not allow writes to packet data")
    return dynptr.kfunc_slice(env, found, size, rdonly=rdonly)


def _sections(state: State, name: str, sleepable: bool) -> None:
    """RCU read-side and non-preemptible sections (the kernel's active_rcu_lock / active_preempt_locks)."""
    if state.rcu_lock:
        if name == _RCU_LOCK:
            raise reject(f"nested rcu read lock (kernel function {name})")
        if name == _RCU_UNLOCK:
            state.rcu_lock = False
            kptrs.rcu_unlock(state)
        elif sleepable:
            raise reject(f"kernel func {name} is sleepable within rcu_read_lock region")
    elif name == _RCU_LOCK:
        state.rcu_lock = True
    elif name == _RCU_UNLOCK:
        raise reject(f"unmatched rcu read unlock (kernel function {name})")
    if state.preempt_count:
        if name == _PREEMPT_DISABLE:
            state.preempt_count += 1
        elif name == _PREEMPT_ENABLE:
            state.preempt_count -= 1
        elif sleepable:
            raise reject(f"kernel func {name} is sleepable within non-preemptible region")
    elif name == _PREEMPT_DISABLE:
        state.preempt_count = 1
    elif name == _PREEMPT_ENABLE:
        raise reject(f"unmatched attempt to enable preemption (kernel function {name})")


def _memory_arg(env: Env, state: State, proto: KfuncProto, index: int, reg: RegState) -> None:
    """A pointer to memory, sized by the next argument (``__sz``/``__szk``) or by the parameter's type."""
    regno = index + 1
    arg = proto.args[index]
    null = arg.nullable and reg.type is RegType.SCALAR_VALUE and reg.var_off.const_value() == 0
    size_arg = proto.args[index + 1] if index + 1 < len(proto.args) else None
    if size_arg is None or size_arg.kind not in (KfuncArgKind.MEM_SIZE, KfuncArgKind.CONST_MEM_SIZE):
        if null:
            return
        if reg.type not in _MEM_TYPES or reg.maybe_null:
            raise reject(f"arg#{index} expected pointer to memory, but got {type_name(reg)}")
        helper_memory(env, state, regno, reg, arg.size, write=not arg.readonly)
        return
    # check_kfunc_args' KF_ARG_PTR_TO_MEM_SIZE: the memory and its size first (unless an
    # optional buffer is NULL), then a constant size (__szk) must be known, even for NULL.
    size_reg = state.regs[regno + 1]
    value = size_reg.var_off
    if not null:
        if reg.type not in _MEM_TYPES or reg.maybe_null:
            raise reject(f"arg#{index} expected pointer to memory, but got {type_name(reg)}")
        try:
            if size_reg.type is not RegType.SCALAR_VALUE:
                raise reject(f"R{regno + 1} is not a scalar")
            if value.smin < 0:
                raise reject(f"R{regno + 1} min value is negative, either use unsigned or 'var &= const'")
            if value.umax >= BPF_MAX_VAR_SIZ:
                raise reject(f"R{regno + 1} unbounded memory access, use 'var &= const' or 'if (var < const)'")
            helper_memory(env, state, regno, reg, value.umax, write=not arg.readonly, zero_ok=value.umin == 0)
        except Rejection as error:
            raise reject(f"{error.reason}\narg#{index} arg#{index + 1} memory, len pair leads to invalid memory "
                         "access") from None
    if size_arg.kind is KfuncArgKind.CONST_MEM_SIZE and (size_reg.type is not RegType.SCALAR_VALUE
                                                         or not value.is_const()):
        raise reject(f"R{regno + 1} must be a known constant")


def _release(state: State, ref_id: int, privileged: bool) -> None:
    state.refs.pop(ref_id, None)
    gone = RegState.scalar() if privileged else RegState.not_init()
    state.update_registers(lambda reg: gone if reg.ref_obj_id == ref_id else None)


def _return_value(env: Env, state: State, pc: int, proto: KfuncProto, graph: graphs.GraphCall | None) -> RegState:
    match proto.ret:
        case KfuncRetKind.VOID:
            return RegState.not_init()
        case KfuncRetKind.SCALAR:
            return RegState.scalar()
        case KfuncRetKind.MEM:
            kind = RegType.PTR_TO_MEM
        case KfuncRetKind.BTF_ID | KfuncRetKind.ALLOC_OBJ:
            kind = RegType.PTR_TO_BTF_ID
    maybe_null = proto.has(KfuncFlag.RET_NULL)
    new_id = env.new_id() if maybe_null else 0
    ref = 0
    if proto.has(KfuncFlag.ACQUIRE):
        ref = new_id = env.new_id()
        state.refs[ref] = pc
    if proto.ret is KfuncRetKind.ALLOC_OBJ:
        if graph is None:
            raise reject(f"verifier internal error: {proto.name} without its arguments")
        return graphs.result_register(env, graph, maybe_null=maybe_null, id=new_id, ref=ref)
    flags = MEM_RCU if proto.has(KfuncFlag.RCU_PROTECTED) and kind is RegType.PTR_TO_BTF_ID else 0
    return RegState.pointer(kind, maybe_null=maybe_null, id=new_id, ref_obj_id=ref, mem_size=proto.ret_size,
                            btf_type=proto.ret_btf_type, type_flags=flags)
