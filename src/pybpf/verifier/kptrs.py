"""kptrs in map values and the trust of kernel-object pointers (``PTR_TRUSTED``, ``MEM_RCU``...).

A map value may hold kptrs (:mod:`pybpf.btf.record`): 8-byte slots holding a pointer to a
kernel object (``struct task_struct __kptr *``) or to a program-allocated one. As the kernel's
``check_map_access`` / ``check_map_kptr_access``:

* only a plain 8-byte load or store at exactly the slot's offset (constant) may touch it; no
  helper may read or write it as memory, no atomic (``BPF_MEM`` mode only);
* a load gives a maybe-NULL ``PTR_TO_BTF_ID`` of the pointee's type: untrusted
  (``PTR_UNTRUSTED``), or, for a referenced kptr of an RCU-protected type read inside an RCU
  read-side section (a non-sleepable program is always in one), ``MEM_RCU`` (a program-local
  pointee also ``MEM_ALLOC``, a per-CPU one ``MEM_PERCPU``);
* only an unreferenced (``__kptr_untrusted``) slot may be stored to, with NULL or a pointer of
  the slot's type; a referenced one changes only through ``bpf_kptr_xchg``, which moves a
  referenced pointer in (releasing the program's reference) and hands the old one back as a
  new maybe-NULL reference the program must release or store again.

Trust (``is_trusted_reg``/``is_rcu_reg``): a referenced pointer is trusted, and so is one with
``PTR_TRUSTED`` or ``MEM_ALLOC`` and no other modifier; ``KF_TRUSTED_ARGS`` kfuncs (and every
release kfunc) need trusted arguments, ``KF_RCU`` ones accept RCU pointers too
(:mod:`.kfuncs`). Leaving the RCU section (``bpf_rcu_read_unlock``) makes every RCU pointer
untrusted.
"""

from __future__ import annotations

from pybpf.btf.record import KPTR_SIZE, FieldKind, SpecialField
from pybpf.platform.kptr_types import kptr_kernel_type
from pybpf.verifier.machine import Env, MapInfo, State, reject, type_name
from pybpf.verifier.state import (
    MEM_ALLOC,
    MEM_PERCPU,
    MEM_RCU,
    PTR_TRUSTED,
    PTR_UNTRUSTED,
    TRUSTED_MODIFIERS,
    RegState,
    RegType,
)

# How an instruction reaches memory (check_map_kptr_access looks at the class and mode).
VIA_MEM = 0  # LDX/STX in BPF_MEM mode
VIA_ST_IMM = 1  # BPF_ST: an immediate stored
VIA_ATOMIC = 2  # BPF_ATOMIC (and load-acquire/store-release)
VIA_HELPER = 3  # a helper reads or writes the bytes


def is_trusted(reg: RegState) -> bool:
    """``is_trusted_reg`` for a PTR_TO_BTF_ID: referenced, or trusted modifiers and no others."""
    if reg.ref_obj_id:
        return True
    flags = reg.type_flags
    return bool(flags & TRUSTED_MODIFIERS) and not (flags & ~TRUSTED_MODIFIERS) and not reg.maybe_null


def is_rcu(reg: RegState) -> bool:
    return bool(reg.type_flags & MEM_RCU)


def is_kernel_type(name: str) -> bool:
    """Whether a kptr's pointee is a kernel struct (else a program-allocated one)."""
    return kptr_kernel_type(name) is not None


def in_rcu_section(env: Env, state: State) -> bool:
    """``in_rcu_cs``: inside bpf_rcu_read_lock(), holding a spin lock, or a non-sleepable program."""
    return state.rcu_lock or state.lock is not None or not env.options.sleepable


def special_field_access(env: Env, state: State, reg: RegState, info: MapInfo, *, off: int, size: int,
                         write: RegState | None, via: int, value_regno: int = 0) -> RegState | None:
    """``check_map_access``'s special-field test for an access of ``size`` bytes at ``reg + off``
    (the pointer's whole offset range), then ``check_map_kptr_access`` for a kptr: None when
    the access touches no special field, else the value a load of the kptr gives."""
    fields = info.fields
    if not fields:
        return None
    var_off = reg.var_off
    start = reg.off + off
    low, high = var_off.smin + start, var_off.umax + start + size
    hit: SpecialField | None = None
    for field in fields:
        if not (low < field.offset + field.size and field.offset < high):
            continue
        kind = field.kind
        if not kind.is_kptr:
            raise reject(f"{kind.label} cannot be accessed directly by load/store")
        if via == VIA_HELPER:
            raise reject(f"{kind.label} cannot be accessed indirectly by helper")
        if not var_off.is_const():
            raise reject(f"{kind.label} access cannot have variable offset")
        at = start + (var_off.const_value() or 0)
        if field.offset != at:
            raise reject(f"{kind.label} access misaligned expected={field.offset} off={at}")
        if size != KPTR_SIZE:
            raise reject(f"{kind.label} access size must be BPF_DW")
        hit = field
    if hit is None:
        return None
    return _kptr_access(env, state, hit, write, via=via, value_regno=value_regno)


def _kptr_access(env: Env, state: State, field: SpecialField, write: RegState | None, *, via: int,
                 value_regno: int) -> RegState:
    if via == VIA_ATOMIC:
        raise reject("kptr in map can only be accessed using BPF_MEM instruction mode")
    if write is not None and field.kind is not FieldKind.KPTR_UNREF:
        raise reject("store to referenced kptr disallowed")
    if write is None:
        return RegState.pointer(RegType.PTR_TO_BTF_ID, maybe_null=True, id=env.new_id(), btf_type=field.target,
                                type_flags=loaded_flags(env, state, field))
    if via == VIA_ST_IMM:
        if write.var_off.const_value() != 0:
            raise reject(f"BPF_ST imm must be 0 when storing to kptr at off={field.offset}")
        return write
    if not (write.type is RegType.SCALAR_VALUE and write.var_off.const_value() == 0):
        match_type(write, field, value_regno)
    return write


def loaded_flags(env: Env, state: State, field: SpecialField) -> int:
    """``btf_ld_kptr_type``: the flags of a pointer loaded from ``field`` (besides maybe-NULL)."""
    kernel = kptr_kernel_type(field.target)
    if field.kind is FieldKind.KPTR_PERCPU:
        rcu_safe = True
    elif field.kind is FieldKind.KPTR_REF:
        # A program-local type is RCU-protected when it has a bpf_refcount (not modelled here).
        rcu_safe = kernel is not None and kernel.rcu_protected
    else:
        rcu_safe = False
    if not rcu_safe or not in_rcu_section(env, state):
        return PTR_UNTRUSTED
    if field.kind is FieldKind.KPTR_PERCPU:
        return MEM_RCU | MEM_PERCPU
    return MEM_RCU if kernel is not None else MEM_RCU | MEM_ALLOC


def match_type(reg: RegState, field: SpecialField, regno: int) -> None:
    """``map_kptr_match_type``: ``reg`` may go into ``field`` (a pointer of its type, with the
    modifiers the kind allows, at offset 0)."""
    if kptr_kernel_type(field.target) is not None:
        allowed = PTR_TRUSTED | MEM_RCU | (PTR_UNTRUSTED if field.kind is FieldKind.KPTR_UNREF else 0)
    else:
        allowed = MEM_ALLOC | (MEM_PERCPU if field.kind is FieldKind.KPTR_PERCPU else 0)
    if reg.type is not RegType.PTR_TO_BTF_ID or reg.type_flags & ~allowed:
        # The message names the struct of any BTF pointer (the kernel reads it before the flags).
        raise _bad_type(reg, regno, field, named=reg.type is RegType.PTR_TO_BTF_ID)
    if reg.off < 0:
        raise reject(f"negative offset {type_name(reg)} ptr R{regno} off={reg.off} disallowed")
    if not reg.var_off.is_const() or reg.var_off.const_value():
        raise reject(f"variable {type_name(reg)} access var_off=({reg.var_off.var_off.value:#x}; "
                     f"{reg.var_off.var_off.mask:#x}) disallowed")
    if reg.btf_type != field.target or reg.off:
        raise _bad_type(reg, regno, field, named=True)


def _bad_type(reg: RegState, regno: int, field: SpecialField, *, named: bool) -> Exception:
    name = reg.btf_type if named else ""
    text = f"invalid kptr access, R{regno} type={type_name(reg)}{name} expected=ptr_{field.target}"
    if field.kind is FieldKind.KPTR_UNREF:
        text += f" or untrusted_ptr_{field.target}"
    return reject(text)


def xchg_destination(env: Env, regno: int, reg: RegState) -> SpecialField:
    """``process_kptr_func``: ``bpf_kptr_xchg``'s first argument points exactly at a referenced
    kptr of a map value (a kptr inside a program-allocated object is not modelled)."""
    if reg.type is not RegType.PTR_TO_MAP_VALUE or reg.maybe_null:
        raise reject(f"R{regno} type={type_name(reg)} expected=map_value, ptr_")
    info = env.map_of(reg)
    if info.fields is None:
        raise reject(f"map '{info.kernel_name}' has to have BTF in order to use bpf_kptr_xchg")
    if not reg.var_off.is_const():
        raise reject(f"R{regno} doesn't have constant offset. kptr has to be at the constant offset")
    if not any(field.kind.is_kptr for field in info.fields):
        raise reject(f"R{regno} has no valid kptr")
    at = reg.off + (reg.var_off.const_value() or 0)
    field = next((found for found in info.fields if found.kind.is_kptr and found.offset == at), None)
    if field is None:
        raise reject(f"off={at} doesn't point to kptr")
    if field.kind is FieldKind.KPTR_UNREF:
        raise reject(f"off={at} kptr isn't referenced kptr")
    return field


def xchg_source(regno: int, reg: RegState, field: SpecialField) -> int:
    """``bpf_kptr_xchg``'s second argument (``check_reg_type`` for a released BTF pointer, then
    ``check_func_arg_reg_off`` and the release rule): its reference, 0 for NULL."""
    if reg.type is RegType.SCALAR_VALUE and reg.var_off.const_value() == 0:
        return 0
    flags = reg.type_flags & ~(MEM_ALLOC | MEM_PERCPU)  # local kptrs pass as their base type
    if reg.type is not RegType.PTR_TO_BTF_ID or flags not in (0, PTR_TRUSTED, MEM_RCU):
        raise reject(f"R{regno} type={type_name(reg)} expected=ptr_, trusted_ptr_, rcu_ptr_")
    if reg.maybe_null:
        raise reject(f"Possibly NULL pointer passed to helper arg{regno}")
    match_type(reg, field, regno)
    if not reg.ref_obj_id:
        raise reject(f"R{regno} must be referenced when passed to release function")
    return reg.ref_obj_id


def xchg_result_flags(field: SpecialField) -> int:
    """The modifiers of ``bpf_kptr_xchg``'s result: a program-local pointee's are MEM_ALLOC."""
    if kptr_kernel_type(field.target) is not None:
        return 0
    return MEM_ALLOC | (MEM_PERCPU if field.kind is FieldKind.KPTR_PERCPU else 0)


def rcu_unlock(state: State) -> None:
    """Leaving the RCU section: RCU pointers become untrusted (and no longer maybe-NULL)."""
    def untrust(reg: RegState) -> RegState | None:
        if not reg.type_flags & MEM_RCU:
            return None
        return RegState(reg.type, reg.var_off, reg.off, False, reg.id, reg.ref_obj_id, reg.map_uid, reg.mem_size,
                        reg.range, reg.frameno, reg.dynptr_type, reg.dynptr_first, reg.dynptr_id, reg.btf_type,
                        reg.rdonly, (reg.type_flags & ~MEM_RCU) | PTR_UNTRUSTED)

    state.update_registers(untrust)


__all__ = [
    "VIA_ATOMIC",
    "VIA_HELPER",
    "VIA_MEM",
    "VIA_ST_IMM",
    "in_rcu_section",
    "is_kernel_type",
    "is_rcu",
    "is_trusted",
    "loaded_flags",
    "match_type",
    "rcu_unlock",
    "special_field_access",
    "xchg_destination",
    "xchg_result_flags",
    "xchg_source",
]
