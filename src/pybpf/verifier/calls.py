"""Calls: helper calls checked against their prototypes, bpf-to-bpf calls and callbacks.

A helper call (``check_helper_call``) checks that the program type offers the helper and the
license allows it, checks every argument against the prototype (``check_func_arg``), releases
and acquires references, clobbers r1-r5 and types r0 from the return kind. A bpf-to-bpf call
pushes a new frame with r1-r5 passed over. A helper taking a callback hands back a
:class:`~pybpf.verifier.callbacks.CallbackEntry` to explore: a synchronous callback's exit
returns to the helper call itself (the call is a loop head, see :mod:`pybpf.verifier.callbacks`),
a timer callback is an entry point of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pybpf.btf.record import FieldKind, SpecialField
from pybpf.errors import NotSupportedError
from pybpf.isa.insn import Call, LabeledInsn, LoadImm64
from pybpf.isa.opcodes import PseudoSrc
from pybpf.platform import (
    HELPER_PROTOS,
    ArgType,
    BpfMapType,
    BpfProgType,
    HelperArg,
    HelperId,
    HelperProto,
    RetType,
    map_type_spec,
)
from pybpf.platform.dynptr import DynptrType
from pybpf.verifier import callbacks, dynptr, graphs, kptrs
from pybpf.verifier.callbacks import CallbackEntry
from pybpf.verifier.machine import (
    BPF_MAX_VAR_SIZ,
    CALLER_SAVED,
    MAX_CALL_FRAMES,
    Env,
    Frame,
    MapInfo,
    Rejection,
    State,
    leaked_references,
    reject,
    reject_fatal,
    type_name,
)
from pybpf.verifier.memory import check_ctx_pointer, helper_memory, invalidate_packet_pointers
from pybpf.verifier.scalar import to_s64
from pybpf.verifier.state import BPF_REG_SIZE, PTR_TRUSTED, RegState, RegType, SlotByte, StackState
from pybpf.verifier.transfer import read_reg

# (Enum members read through their class are slow on Python 3.11: see pybpf.verifier.state.)
_ARG_ANYTHING = ArgType.ANYTHING
_ARG_CONST_ALLOC_SIZE_OR_ZERO = ArgType.CONST_ALLOC_SIZE_OR_ZERO
_ARG_CONST_MAP_PTR = ArgType.CONST_MAP_PTR
_ARG_CONST_SIZE = ArgType.CONST_SIZE
_ARG_CONST_SIZE_OR_ZERO = ArgType.CONST_SIZE_OR_ZERO
_ARG_DONTCARE = ArgType.DONTCARE
_ARG_KPTR_XCHG_DEST = ArgType.KPTR_XCHG_DEST
_ARG_PTR_TO_BTF_ID = ArgType.PTR_TO_BTF_ID
_ARG_PTR_TO_BTF_ID_SOCK_COMMON = ArgType.PTR_TO_BTF_ID_SOCK_COMMON
_ARG_PTR_TO_CONST_STR = ArgType.PTR_TO_CONST_STR
_ARG_PTR_TO_CTX = ArgType.PTR_TO_CTX
_ARG_PTR_TO_DYNPTR = ArgType.PTR_TO_DYNPTR
_ARG_PTR_TO_FIXED_SIZE_MEM = ArgType.PTR_TO_FIXED_SIZE_MEM
_ARG_PTR_TO_FUNC = ArgType.PTR_TO_FUNC
_ARG_PTR_TO_MAP_KEY = ArgType.PTR_TO_MAP_KEY
_ARG_PTR_TO_MAP_VALUE = ArgType.PTR_TO_MAP_VALUE
_ARG_PTR_TO_MEM = ArgType.PTR_TO_MEM
_ARG_PTR_TO_RINGBUF_MEM = ArgType.PTR_TO_RINGBUF_MEM
_ARG_PTR_TO_SOCKET = ArgType.PTR_TO_SOCKET
_ARG_PTR_TO_SOCK_COMMON = ArgType.PTR_TO_SOCK_COMMON
_ARG_PTR_TO_SPIN_LOCK = ArgType.PTR_TO_SPIN_LOCK
_ARG_PTR_TO_STACK = ArgType.PTR_TO_STACK
_ARG_PTR_TO_TIMER = ArgType.PTR_TO_TIMER
_CONST_PTR_TO_DYNPTR = RegType.CONST_PTR_TO_DYNPTR
_CONST_PTR_TO_MAP = RegType.CONST_PTR_TO_MAP
_PTR_TO_BTF_ID = RegType.PTR_TO_BTF_ID
_PTR_TO_BUF = RegType.PTR_TO_BUF
_PTR_TO_CTX = RegType.PTR_TO_CTX
_PTR_TO_FUNC = RegType.PTR_TO_FUNC
_PTR_TO_MAP_KEY = RegType.PTR_TO_MAP_KEY
_PTR_TO_MAP_VALUE = RegType.PTR_TO_MAP_VALUE
_PTR_TO_MEM = RegType.PTR_TO_MEM
_PTR_TO_PACKET = RegType.PTR_TO_PACKET
_PTR_TO_PACKET_META = RegType.PTR_TO_PACKET_META
_PTR_TO_SOCKET = RegType.PTR_TO_SOCKET
_PTR_TO_SOCK_COMMON = RegType.PTR_TO_SOCK_COMMON
_PTR_TO_STACK = RegType.PTR_TO_STACK
_PTR_TO_TCP_SOCK = RegType.PTR_TO_TCP_SOCK
_SCALAR_VALUE = RegType.SCALAR_VALUE
_HELPER_DYNPTR_FROM_MEM = HelperId.DYNPTR_FROM_MEM
_HELPER_DYNPTR_WRITE = HelperId.DYNPTR_WRITE
_HELPER_FIND_VMA = HelperId.FIND_VMA
_HELPER_LOOP = HelperId.LOOP
_HELPER_MAP_DELETE_ELEM = HelperId.MAP_DELETE_ELEM
_HELPER_MAP_LOOKUP_ELEM = HelperId.MAP_LOOKUP_ELEM
_HELPER_MAP_POP_ELEM = HelperId.MAP_POP_ELEM
_HELPER_MAP_PUSH_ELEM = HelperId.MAP_PUSH_ELEM
_HELPER_MAP_UPDATE_ELEM = HelperId.MAP_UPDATE_ELEM
_HELPER_SPIN_LOCK = HelperId.SPIN_LOCK
_HELPER_SPIN_UNLOCK = HelperId.SPIN_UNLOCK
_HELPER_TAIL_CALL = HelperId.TAIL_CALL
_HELPER_TIMER_INIT = HelperId.TIMER_INIT
_HELPER_TIMER_SET_CALLBACK = HelperId.TIMER_SET_CALLBACK
_HELPER_USER_RINGBUF_DRAIN = HelperId.USER_RINGBUF_DRAIN

_KEY_TYPES = (_PTR_TO_STACK, _PTR_TO_PACKET, _PTR_TO_PACKET_META, _PTR_TO_MAP_KEY,
              _PTR_TO_MAP_VALUE)
_KEY_EXPECTED = "fp, pkt, pkt_meta, map_key, map_value"
_MEM_TYPES = (*_KEY_TYPES, _PTR_TO_MEM, _PTR_TO_BUF)
_MEM_EXPECTED = "fp, pkt, pkt_meta, map_key, map_value, mem, ringbuf_mem, buf, trusted_ptr_"  # as 6.18 prints it
_PACKET_TYPES = (_PTR_TO_PACKET, _PTR_TO_PACKET_META)
_TIMER_MAP_TYPES = (BpfMapType.ARRAY, BpfMapType.HASH, BpfMapType.LRU_HASH)
# Lookups with a known in-range key cannot fail in these (can_elide_value_nullness).
_ELIDE_NULL = frozenset({BpfMapType.ARRAY, BpfMapType.PERCPU_ARRAY})
# Helpers that change a map's contents: refused on maps read-only to programs (BPF_F_RDONLY_PROG,
# which libbpf gives .rodata too).
_MAP_WRITERS = frozenset({_HELPER_MAP_UPDATE_ELEM, _HELPER_MAP_DELETE_ELEM, _HELPER_MAP_PUSH_ELEM,
                          _HELPER_MAP_POP_ELEM})


@dataclass(slots=True)
class _Meta:
    """What earlier arguments told the later ones (the kernel's ``bpf_call_arg_meta``)."""

    map: MapInfo | None = None
    map_reg: RegState | None = None
    mem: tuple[int, RegState, bool] | None = None  # regno, pointer, helper writes it
    alloc_size: int | None = None
    release_ref: int = 0
    callback: int | None = None
    callback_ctx: RegState | None = None
    lock: tuple[int | None, int] | None = None  # the spin lock argument: (map, pointer id)
    timer_map: int | None = None  # the map a bpf_timer argument lives in
    const_key: int | None = None  # a lookup's key, when the stack holds it as a known constant
    pc: int = 0
    pkt_access: bool = False  # the helper may be given packet pointers (fn->pkt_access)
    dynptr: dynptr.DynptrRef | None = None  # the initialised dynptr argument (bpf_dynptr_data's)
    release_dynptr: RegState | None = None  # the stack dynptr a submit/discard releases
    null_mem: int | None = None  # the register of a NULL passed for a maybe-NULL memory argument
    kptr_field: SpecialField | None = None  # bpf_kptr_xchg's destination slot


def new_frame(state: State, callsite: int, start: int, args: dict[int, RegState], *, callback: bool) -> Frame:
    if len(state.frames) >= MAX_CALL_FRAMES:
        raise reject_fatal(f"the call stack of {len(state.frames) + 1} frames is too deep")  # E2BIG
    frameno = len(state.frames)
    regs = [RegState.not_init() for _ in range(11)]
    for number, value in args.items():
        regs[number] = value
    regs[10] = RegState.pointer(_PTR_TO_STACK, frameno=frameno)
    return Frame(regs, StackState(), callsite, start, frameno, callback)


def local_call(state: State, pc: int, target: int) -> None:
    """``call pc+off``: enter the callee with the caller's r1-r5."""
    args = {number: state.regs[number] for number in CALLER_SAVED}
    state.frames.append(new_frame(state, pc, target, args, callback=False))


def return_from_callee(state: State) -> int:
    """``exit`` from a bpf-to-bpf call or callback: back to the caller; the pc to continue at.

    A synchronous callback goes back to the helper call that invoked it, with the caller's
    registers as they were before the call (``prepare_func_exit``): the call is then checked
    again and may queue one more iteration."""
    callee = state.frames[-1]
    # A subprogram may return nothing (void): r0 goes back as it is, checked when the caller reads it.
    r0 = state.regs[0]
    if callee.callback:
        if r0.type is not _SCALAR_VALUE:
            raise reject("R0 not a scalar value")
        _check_range(r0, callbacks.SYNC_RETURN_RANGE, "At callback return")
        state.frames.pop()
        return callee.callsite
    if r0.type is _PTR_TO_STACK and r0.frameno == callee.frameno:
        raise reject("cannot return stack pointer to the caller")
    state.frames.pop()
    caller = state.frames[-1]
    for number in CALLER_SAVED:
        caller.regs[number] = RegState.not_init()
    caller.regs[0] = r0
    return callee.callsite + 1


def check_return(state: State, value_range: tuple[int, int] | None, *, privileged: bool = True) -> None:
    """``check_return_code`` at the main program's exit."""
    if state.lock is not None:
        raise reject("BPF_EXIT instruction in main prog cannot be used inside bpf_spin_lock-ed region")
    if state.rcu_lock:
        raise reject("BPF_EXIT instruction in main prog cannot be used inside bpf_rcu_read_lock-ed region")
    if state.preempt_count:
        raise reject("BPF_EXIT instruction in main prog cannot be used inside bpf_preempt_disable-ed region")
    r0 = read_reg(state, 0)  # type: ignore[arg-type]
    if state.refs:
        raise reject(leaked_references(state))
    if callbacks.is_async_entry(state):
        # A timer callback is its own entry point; whatever the program type, it returns 0.
        _check_range(r0, callbacks.ASYNC_RETURN_RANGE, "At async callback return")
        return
    if r0.is_pointer and not privileged:
        raise reject("R0 leaks addr as return value")
    if value_range is not None:
        _check_range(r0, value_range, "At program exit")


def _check_range(r0: RegState, value_range: tuple[int, int], where: str) -> None:
    if r0.type is not _SCALAR_VALUE:
        raise reject(f"{where} the register R0 is not a known value ({type_name(r0)})")
    low, high = value_range
    value = r0.var_off
    if low < 0:
        # Hooks returning a negative errno (LSM) return an int: only the low 32 bits count.
        smin, smax, limit = value.s32_min, value.s32_max, 1 << 31
    else:
        smin, smax, limit = value.smin, value.smax, 1 << 63
    if low <= smin and smax <= high:
        return
    text = ""
    if smin > -limit:
        text += f" smin={smin}"
    if smax < limit - 1:
        text += f" smax={smax}"
    if not text:
        text = " unknown scalar value"
    raise reject(f"{where} the register R0 has{text} should have been in [{low}, {high}]")


def helper_call(env: Env, state: State, pc: int, insn: Call) -> CallbackEntry | None:
    """Check and apply a helper call; a callback path to explore, if the helper calls one."""
    proto = HELPER_PROTOS.get(insn.helper)
    if proto is None:
        raise reject(f"invalid func unknown#{insn.helper}")
    name = f"bpf_{proto.name}"
    if not env.options.prog_type.allows_helper(insn.helper, privileged=env.options.privileged):
        raise reject(f"program of this type cannot use helper {name}#{insn.helper}")
    if proto.gpl_only and not env.options.gpl:
        raise reject("cannot call GPL-restricted function from non-GPL compatible program")
    if state.lock is not None and insn.helper != _HELPER_SPIN_UNLOCK:
        raise reject("function calls are not allowed while holding a lock")
    if proto.might_sleep and state.rcu_lock:
        raise reject(f"sleepable helper {name}#{insn.helper} in rcu_read_lock region")
    if proto.might_sleep and state.preempt_count:
        raise reject(f"sleepable helper {name}#{insn.helper} in non-preemptible region")
    meta = _Meta(pc=pc, pkt_access=proto.pkt_access)
    for index, arg in enumerate(proto.args[:5]):
        _check_arg(env, state, index + 1, arg, meta)  # the missing ones are DONTCARE: no check
    if meta.map is not None and insn.helper == _HELPER_TAIL_CALL and meta.map.type != BpfMapType.PROG_ARRAY:
        raise reject("expected prog array map for tail call")  # record_func_map
    if meta.map is not None and meta.map.readonly and insn.helper in _MAP_WRITERS:
        # record_func_map: a map read-only to programs cannot be changed through helpers either.
        raise reject("write into map forbidden")
    if meta.map is not None:
        try:
            compatible = map_type_spec(meta.map.type).helper_allowed(insn.helper)
        except NotSupportedError:
            compatible = True
        if insn.helper == _HELPER_TIMER_INIT:
            # No map-type rule in check_map_func_compatibility: any map whose value can hold a
            # bpf_timer (its BTF, not checked here) will do.
            compatible = meta.map.type in _TIMER_MAP_TYPES
        if not compatible:
            raise reject(f"cannot pass map_type {int(meta.map.type)} into func {name}#{insn.helper}")
    if insn.helper == _HELPER_TAIL_CALL and state.refs:
        raise reject("tail_call would lead to reference leak")
    if insn.helper == _HELPER_TAIL_CALL and not env.options.privileged and meta.map_reg is not None:
        # Unprivileged tail calls get an index mask for one prog array (Spectre v1): a call
        # site reached with different arrays on different paths cannot have one.
        first = env.tail_call_maps.setdefault(pc, meta.map_reg.map_uid)
        if first != meta.map_reg.map_uid:
            raise reject("tail_call abusing map_ptr")
    if meta.lock is not None:
        _spin_lock(state, insn.helper, meta.lock, env.options.privileged)
    if insn.helper == _HELPER_DYNPTR_FROM_MEM and state.regs[1].type is not _PTR_TO_MAP_VALUE:
        raise reject(f"Unsupported reg type {type_name(state.regs[1])} for bpf_dynptr_from_mem data")
    callback = _callback_entry(env, state, pc, insn.helper, meta)
    if meta.release_dynptr is not None:
        dynptr.release_arg(env, state, meta.release_dynptr)
    if meta.release_ref:
        _release(state, meta.release_ref, env.options.privileged)
    regs, unusable = state.regs, RegState.not_init()
    for number in CALLER_SAVED:
        regs[number] = unusable
    regs[0] = _return_value(env, state, pc, proto, meta)
    # A write through an skb dynptr may move the packet (bpf_dynptr_write's changes_data).
    if proto.changes_pkt_data or (insn.helper == _HELPER_DYNPTR_WRITE and meta.dynptr is not None
                                  and meta.dynptr.type is DynptrType.SKB):
        invalidate_packet_pointers(state)
    return callback


def _spin_lock(state: State, helper: int, lock: tuple[int | None, int], privileged: bool) -> None:
    """``process_spin_lock``: one lock at a time, unlocked by the same lock (which ends the
    non-owning references to objects in the graphs it protected)."""
    if helper == _HELPER_SPIN_LOCK:
        if state.lock is not None:
            raise reject("Locking two bpf_spin_locks are not allowed")
        state.lock = lock
        return
    if state.lock is None:
        raise reject("bpf_spin_unlock without taking a lock")
    if state.lock != lock:
        raise reject("bpf_spin_unlock of different lock")
    state.lock = None
    graphs.invalidate_non_owning(state, privileged)


def _release(state: State, ref_id: int, privileged: bool) -> None:
    state.refs.pop(ref_id, None)
    # mark_reg_invalid: every copy becomes an unknown number (privileged) or unreadable.
    gone = RegState.scalar() if privileged else RegState.not_init()
    state.update_registers(lambda reg: gone if reg.ref_obj_id == ref_id else None)


def _mismatch(regno: int, reg: RegState, expected: str) -> Exception:
    return reject(f"R{regno} type={type_name(reg)} expected={expected}")


def constant_map_key(state: State, key: RegState, key_size: int) -> tuple[int | None, tuple[int, int] | None]:
    """The kernel's ``get_constant_map_key``: the value of a map key on the stack when it is
    known — zero bytes from the key's first byte on, or a scalar spill of exactly the key's size
    holding a constant — and the (frame, slot) of that spill, whose value the verdict then
    relies on (it must be marked precise)."""
    if key.type is not _PTR_TO_STACK or not key.var_off.is_const():
        return None, None
    at = key.off + to_s64(key.var_off.const_value() or 0)
    if at >= 0:
        return None, None
    index, position = (-at - 1) // BPF_REG_SIZE, (-at - 1) % BPF_REG_SIZE
    slot = state.frames[key.frameno].stack.slot(index)
    # slot_type[7] is the slot's lowest address: the key's bytes run from ``position`` down.
    run = 0
    while position - run >= 0 and slot.slot_type[position - run] is SlotByte.STACK_ZERO:
        run += 1
    if run >= key_size:
        return 0, None
    if slot.slot_type[BPF_REG_SIZE - 1] is not SlotByte.STACK_SPILL or not slot.spilled_ptr.is_scalar:
        return None, None
    run = 0
    while position - run >= 0 and slot.slot_type[position - run] is SlotByte.STACK_SPILL:
        run += 1
    value = slot.spilled_ptr.var_off.const_value()
    if run != key_size or value is None:
        return None, None
    return value, (key.frameno, index)


def lookup_key_slot(env: Env, state: State) -> tuple[int, int] | None:
    """Before a ``bpf_map_lookup_elem``: the (frame, slot) of a spilled constant key whose value
    decides whether the result may be NULL (None when there is none)."""
    map_reg, key = state.regs[1], state.regs[2]
    if not env.options.privileged or map_reg.type is not _CONST_PTR_TO_MAP:
        return None
    if map_reg.map_uid is None or not 0 <= map_reg.map_uid < len(env.maps):
        return None
    info = env.maps[map_reg.map_uid]
    if info.type not in _ELIDE_NULL:
        return None
    return constant_map_key(state, key, info.key_size)[1]


def _is_null(reg: RegState) -> bool:
    return reg.type is _SCALAR_VALUE and reg.var_off.const_value() == 0


def _check_arg(env: Env, state: State, regno: int, arg: HelperArg, meta: _Meta) -> None:
    if arg.type is _ARG_DONTCARE:
        return
    reg = read_reg(state, regno)  # type: ignore[arg-type]
    if reg.type in _PACKET_TYPES and not meta.pkt_access and arg.type is not _ARG_ANYTHING:
        # may_access_direct_pkt_data(): only helpers declared pkt_access take packet memory.
        raise reject("helper access to the packet is not allowed")
    if meta.kptr_field is not None and arg.type is _ARG_PTR_TO_BTF_ID:
        # bpf_kptr_xchg's new pointer: the slot's type, released into the map (NULL: nothing).
        meta.release_ref = kptrs.xchg_source(regno, reg, meta.kptr_field)
        return
    if arg.maybe_null and _is_null(reg) and arg.type not in (_ARG_CONST_SIZE, _ARG_CONST_SIZE_OR_ZERO):
        if arg.type is _ARG_PTR_TO_MEM:
            meta.null_mem = regno  # its size, the next argument, must then be zero
        return
    arg_type = arg.type  # (one identity test per kind: a match reads each member through its class)
    if arg_type is _ARG_ANYTHING:
        if reg.is_pointer and not env.options.privileged:
            raise reject(f"R{regno} leaks addr into helper function")
    elif arg_type is _ARG_CONST_MAP_PTR:
        if reg.type is not _CONST_PTR_TO_MAP:
            raise _mismatch(regno, reg, "map_ptr")
        if meta.timer_map is not None and meta.timer_map != reg.map_uid:
            # bpf_timer_init(timer, map): the timer must live in that very map. (The kernel
            # prints its own map_uid, which is 0 for any map but an inner one.)
            raise reject(f"timer pointer in R1 map_uid=0 doesn't match map pointer in R{regno} map_uid=0")
        meta.map, meta.map_reg = env.map_of(reg), reg
    elif arg_type is _ARG_PTR_TO_MAP_KEY or arg_type is _ARG_PTR_TO_MAP_VALUE:
        if meta.map is None:
            part = "key" if arg.type is _ARG_PTR_TO_MAP_KEY else "value"
            raise reject(f"invalid map_ptr to access map->{part}")
        if reg.type not in _KEY_TYPES or reg.maybe_null:
            raise _mismatch(regno, reg, _KEY_EXPECTED)
        size = meta.map.key_size if arg.type is _ARG_PTR_TO_MAP_KEY else meta.map.value_size
        helper_memory(env, state, regno, reg, size, write=arg.uninit)
        if arg.type is _ARG_PTR_TO_MAP_KEY and env.options.privileged and meta.map.type in _ELIDE_NULL:
            meta.const_key = constant_map_key(state, reg, size)[0]
    elif arg_type is _ARG_PTR_TO_MEM:
        # Read-only memory only where the helper only reads (check_reg_type's MEM_RDONLY fold).
        if reg.type not in _MEM_TYPES or reg.maybe_null or (reg.rdonly and not arg.readonly):
            raise _mismatch(regno, reg, _MEM_EXPECTED)
        meta.mem = (regno, reg, arg.uninit or bool(arg.flags & arg.flags.WRITE))
    elif arg_type is _ARG_PTR_TO_FIXED_SIZE_MEM:
        if reg.type not in _MEM_TYPES or reg.maybe_null or (reg.rdonly and not arg.readonly):
            raise _mismatch(regno, reg, _MEM_EXPECTED)
        helper_memory(env, state, regno, reg, arg.size or 0, write=arg.uninit)
    elif arg_type is _ARG_CONST_SIZE or arg_type is _ARG_CONST_SIZE_OR_ZERO:
        _check_size(env, state, regno, reg, meta, zero_ok=arg.type is _ARG_CONST_SIZE_OR_ZERO)
    elif arg_type is _ARG_CONST_ALLOC_SIZE_OR_ZERO:
        if reg.type is not _SCALAR_VALUE:
            raise _mismatch(regno, reg, "scalar")
        if reg.var_off.const_value() is None:
            raise reject(f"R{regno} is not a known constant'")
        meta.alloc_size = reg.var_off.const_value()
    elif arg_type is _ARG_PTR_TO_CTX:
        if reg.type is not _PTR_TO_CTX:
            raise _mismatch(regno, reg, "ctx")
        check_ctx_pointer(regno, reg)
    elif arg_type is _ARG_PTR_TO_FUNC:
        if reg.type is not _PTR_TO_FUNC:
            raise _mismatch(regno, reg, "func")
        meta.callback = reg.off
    elif arg_type is _ARG_PTR_TO_STACK:
        if reg.type is not _PTR_TO_STACK:
            raise _mismatch(regno, reg, "fp")
        meta.callback_ctx = reg
    elif arg_type is _ARG_PTR_TO_RINGBUF_MEM:
        if reg.type is not _PTR_TO_MEM or reg.maybe_null:
            raise _mismatch(regno, reg, "ringbuf_mem")
        if not reg.ref_obj_id:
            raise reject(f"R{regno} must be referenced when passed to release function")
        if reg.off or not reg.var_off.is_const() or reg.var_off.const_value():
            raise reject(f"R{regno} must have zero offset when passed to release func or trusted arg to kfunc")
        meta.release_ref = reg.ref_obj_id
    elif arg_type is _ARG_PTR_TO_SPIN_LOCK or arg_type is _ARG_PTR_TO_TIMER:
        if reg.type is not _PTR_TO_MAP_VALUE or reg.maybe_null:
            raise _mismatch(regno, reg, "map_value")
        kind = FieldKind.SPIN_LOCK if arg.type is _ARG_PTR_TO_SPIN_LOCK else FieldKind.TIMER
        _special_field_arg(env, regno, reg, kind)
        if kind is FieldKind.SPIN_LOCK:
            # A lock is the object the pointer came from (its id) in that map, as the
            # kernel's lock state records it: two lookups are two locks.
            meta.lock = (reg.map_uid, reg.id)
        else:
            meta.timer_map = reg.map_uid
    elif arg_type is _ARG_PTR_TO_DYNPTR:
        if arg.is_release:
            if reg.type not in (_PTR_TO_STACK, _CONST_PTR_TO_DYNPTR):
                raise _mismatch(regno, reg, "fp, dynptr_ptr")
            dynptr.check_release_arg(state, regno, reg)
            meta.release_dynptr = reg
        meta.dynptr = dynptr.check_arg(env, state, regno, reg, arg, pc=meta.pc)
    elif arg_type is _ARG_KPTR_XCHG_DEST:
        meta.kptr_field = kptrs.xchg_destination(env, regno, reg)
    elif arg_type is _ARG_PTR_TO_CONST_STR:
        if reg.type is not _PTR_TO_MAP_VALUE or reg.maybe_null:
            raise _mismatch(regno, reg, "map_value")
        if not env.map_of(reg).readonly:
            raise reject(f"R{regno} does not point to a readonly map'")
    elif arg_type is _ARG_PTR_TO_BTF_ID and arg.btf_type is not None:
        # check_reg_type: a BTF pointer to that struct (an unknown struct passes: its type is
        # not tracked here), never NULL.
        if reg.type is not _PTR_TO_BTF_ID or reg.maybe_null:
            raise _mismatch(regno, reg, "ptr_, trusted_ptr_, rcu_ptr_")
        if reg.btf_type and reg.btf_type != arg.btf_type:
            raise reject(f"R{regno} is of type {reg.btf_type} but {arg.btf_type} is expected")
        if arg.is_release and reg.ref_obj_id:
            meta.release_ref = reg.ref_obj_id
    else:
        # Sockets, BTF objects, dynptrs: typed by BTF in the kernel; we only need a pointer,
        # one that is known not to be NULL.
        if not reg.is_pointer or reg.maybe_null:
            expected = ("sock_common, sock, tcp_sock, xdp_sock, ptr_"
                        if arg.type in (_ARG_PTR_TO_SOCK_COMMON, _ARG_PTR_TO_SOCKET,
                                        _ARG_PTR_TO_BTF_ID_SOCK_COMMON) else "ptr_")
            raise _mismatch(regno, reg, expected)
        if arg.is_release and reg.ref_obj_id:
            meta.release_ref = reg.ref_obj_id


# is_tracing_prog_type: the program types the kernel keeps away from spin locks and timers.
_TRACING_TYPES = frozenset({BpfProgType.KPROBE, BpfProgType.TRACEPOINT, BpfProgType.PERF_EVENT,
                            BpfProgType.RAW_TRACEPOINT, BpfProgType.RAW_TRACEPOINT_WRITABLE})


def check_map_prog_compatibility(env: Env, info: MapInfo) -> None:
    """``check_map_prog_compatibility``: a map whose value holds a spin lock (a timer, a
    workqueue) may not be used by program types that could hold it from any context."""
    check_map_for_prog_type(env.options.prog_type.prog_type, info)


def check_program_maps(insns: Sequence[LabeledInsn], resolve: Callable[[int, LoadImm64], MapInfo | None],
                       prog_type: BpfProgType) -> None:
    """``resolve_pseudo_ldimm64``, before any path is explored: every map ``lddw`` names a map
    the program type may use, reached or not."""
    for labeled in insns:
        insn = labeled.insn
        if isinstance(insn, LoadImm64) and insn.src in (PseudoSrc.MAP_FD, PseudoSrc.MAP_VALUE):
            info = resolve(labeled.pc, insn)
            if info is not None:
                try:
                    check_map_for_prog_type(prog_type, info)
                except Rejection as error:
                    raise Rejection(labeled.pc, error.reason) from None


def check_map_for_prog_type(prog_type: BpfProgType, info: MapInfo) -> None:
    if not info.fields:
        return
    tracing = prog_type in _TRACING_TYPES
    for field in info.fields:
        if field.kind in (FieldKind.SPIN_LOCK, FieldKind.RES_SPIN_LOCK):
            if prog_type == BpfProgType.SOCKET_FILTER:
                raise reject("socket filter progs cannot use bpf_spin_lock yet")
            if tracing:
                raise reject("tracing progs cannot use bpf_spin_lock yet")
        elif field.kind in (FieldKind.TIMER, FieldKind.WORKQUEUE) and tracing:
            raise reject(f"tracing progs cannot use {field.kind.value} yet")


def _special_field_arg(env: Env, regno: int, reg: RegState, kind: FieldKind) -> None:
    """``process_spin_lock``/``process_timer_func``: the pointer is exactly the map value's
    ``struct bpf_spin_lock`` (``struct bpf_timer``), as the map's value BTF places it."""
    word = kind.value
    if not reg.var_off.is_const():
        raise reject(f"R{regno} doesn't have constant offset. {word} has to be at the constant offset")
    info = env.map_of(reg)
    if info.fields is None:
        raise reject(f"map '{info.kernel_name}' has to have BTF in order to use {word}")
    field = info.field(kind)
    if field is None:
        raise reject(f"map '{info.kernel_name}' has no valid {word}")
    offset = reg.off + (reg.var_off.const_value() or 0)
    if offset != field.offset:
        raise reject(f"off {offset} doesn't point to 'struct {word}' that is at {field.offset}")


def _check_size(env: Env, state: State, regno: int, reg: RegState, meta: _Meta, *, zero_ok: bool) -> None:
    if reg.type is not _SCALAR_VALUE:
        raise _mismatch(regno, reg, "scalar")
    value = reg.var_off
    if value.smin < 0:
        raise reject(f"R{regno} min value is negative, either use unsigned or 'var &= const'")
    if value.umin == 0 and not zero_ok:
        raise reject(f"R{regno} invalid zero-sized read: u64=[{value.umin},{value.umax}]")
    if value.umax >= BPF_MAX_VAR_SIZ:
        raise reject(f"R{regno} unbounded memory access, use 'var &= const' or 'if (var < const)'")
    if meta.mem is None:
        if meta.null_mem is not None and not (zero_ok and value.umax == 0):
            # A maybe-NULL buffer may be NULL only when its size is zero (check_helper_mem_access).
            raise reject(f"R{meta.null_mem} type=scalar expected=fp")
        meta.null_mem = None
        return
    mem_regno, pointer, write = meta.mem
    helper_memory(env, state, mem_regno, pointer, value.umax, write=write, zero_ok=zero_ok and value.umax == 0)
    meta.mem = None


def _callback_entry(env: Env, state: State, pc: int, helper: int, meta: _Meta) -> CallbackEntry | None:
    """``push_callback_call``: the callback's arguments (``set_*_callback_state``) and its path."""
    if helper not in callbacks.CALLBACK_HELPERS or meta.callback is None:
        return None
    context = meta.callback_ctx or RegState.const(0)
    args: dict[int, RegState]
    if helper == _HELPER_TIMER_SET_CALLBACK:
        timer = state.regs[1]
        uid = timer.map_uid
        args = {
            1: RegState.pointer(_CONST_PTR_TO_MAP, map_uid=uid),
            2: RegState.pointer(_PTR_TO_MAP_KEY, map_uid=uid),
            3: RegState.pointer(_PTR_TO_MAP_VALUE, map_uid=uid),
        }
        env.async_callbacks.add(meta.callback)
        return callbacks.enter_async(meta.callback, args)
    if not callbacks.should_iterate(state, helper):
        callbacks.after_callback(state)
        return None  # bpf_loop: nr_loops iterations already queued on this path
    if helper == _HELPER_LOOP:
        # callback_fn(u32 index, void *ctx); the kernel leaves the index unbounded.
        args = {1: RegState.scalar(), 2: context}
    elif helper == _HELPER_USER_RINGBUF_DRAIN:
        # callback_fn(const struct bpf_dynptr *sample, void *ctx): a local dynptr of the sample.
        args = {1: dynptr.const_dynptr(env, DynptrType.LOCAL), 2: context}
    elif helper == _HELPER_FIND_VMA:
        # callback_fn(struct task_struct *task, struct vm_area_struct *vma, void *ctx)
        args = {1: state.regs[1], 2: RegState.pointer(_PTR_TO_BTF_ID, btf_type="vm_area_struct"),
                3: context}
    else:
        if meta.map_reg is None:
            raise reject("callback without a map")
        uid = meta.map_reg.map_uid
        args = {
            1: meta.map_reg,
            2: RegState.pointer(_PTR_TO_MAP_KEY, map_uid=uid),
            3: RegState.pointer(_PTR_TO_MAP_VALUE, map_uid=uid),
            4: context,
        }
    entry = callbacks.enter_sync(state, pc, meta.callback, args)
    callbacks.after_callback(state)
    return entry


def _return_value(env: Env, state: State, pc: int, proto: HelperProto, meta: _Meta) -> RegState:
    ret = proto.ret
    if ret is RetType.INTEGER:
        return RegState.scalar()
    if ret is RetType.VOID:
        return RegState.not_init()
    if ret is RetType.PTR_TO_DYNPTR_MEM_OR_NULL:
        if meta.dynptr is None:
            raise reject("verifier internal error: no dynptr arg found")
        return dynptr.slice_of(env, meta.dynptr, meta.alloc_size or 0)
    # Ids in the kernel's order (so reference ids match its log): a non-null array element
    # holding a spin lock gets one (the lock is known by it), a nullable result one, then an
    # acquired reference one more, which replaces it. A result that cannot be NULL takes none.
    elided = False
    if ret is RetType.PTR_TO_MAP_VALUE_OR_NULL:
        if meta.map_reg is None or meta.map is None:
            raise reject("map lookup without a map")
        # An array element at a known index exists: the kernel elides the NULL (6.14+).
        elided = (meta.map.inner is None and proto.id == _HELPER_MAP_LOOKUP_ELEM and meta.const_key is not None
                  and 0 <= meta.const_key < meta.map.max_entries)
    maybe_null = not elided if ret is RetType.PTR_TO_MAP_VALUE_OR_NULL else ret.maybe_null
    lock_id = 0
    if elided and meta.map is not None and (meta.map.field(FieldKind.SPIN_LOCK)
                                            or meta.map.field(FieldKind.RES_SPIN_LOCK)):
        lock_id = env.new_id()
    new_id = env.new_id() if maybe_null else lock_id
    ref = 0
    if proto.acquires_ref:
        ref = new_id = env.new_id()
        state.refs[ref] = pc
    if ret is RetType.PTR_TO_MAP_VALUE_OR_NULL:
        if meta.map_reg is None or meta.map is None:
            raise reject("map lookup without a map")
        if meta.map.inner is not None:
            # A map-in-map lookup yields the inner map itself (or NULL).
            uid = env.add_map(meta.map.inner)
            return RegState.pointer(_CONST_PTR_TO_MAP, maybe_null=True, id=new_id, map_uid=uid)
        return RegState.pointer(_PTR_TO_MAP_VALUE, maybe_null=maybe_null, id=new_id,
                                map_uid=meta.map_reg.map_uid)
    if ret is RetType.PTR_TO_MEM_OR_NULL:
        return RegState.pointer(_PTR_TO_MEM, maybe_null=True, id=new_id, ref_obj_id=ref,
                                mem_size=meta.alloc_size or 0)
    kinds = {
        RetType.PTR_TO_SOCKET_OR_NULL: _PTR_TO_SOCKET,
        RetType.PTR_TO_TCP_SOCK_OR_NULL: _PTR_TO_TCP_SOCK,
        RetType.PTR_TO_SOCK_COMMON_OR_NULL: _PTR_TO_SOCK_COMMON,
    }
    kind = kinds.get(ret, _PTR_TO_BTF_ID)
    btf_type = (proto.ret_btf_type or "") if kind is _PTR_TO_BTF_ID else ""
    flags = 0
    if meta.kptr_field is not None:
        # bpf_kptr_xchg: the slot's old object, of the slot's type.
        btf_type, flags = meta.kptr_field.target, kptrs.xchg_result_flags(meta.kptr_field)
    elif ret is RetType.PTR_TO_BTF_ID:
        flags = PTR_TRUSTED  # RET_PTR_TO_BTF_ID_TRUSTED (bpf_get_current_task_btf)
    return RegState.pointer(kind, maybe_null=ret.maybe_null, id=new_id, ref_obj_id=ref,
                            btf_type=btf_type, type_flags=flags)
