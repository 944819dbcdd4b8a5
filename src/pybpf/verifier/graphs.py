"""Program-allocated objects and the linked lists and rb-trees they form, checked as the kernel checks them.

``bpf_obj_new(T)`` allocates an object of a struct ``T`` of the *program's* BTF and returns an
owning reference: a ``PTR_TO_BTF_ID | MEM_ALLOC`` (``MEM_ALLOC``) with a reference
the program must give away before it exits, by ``bpf_obj_drop`` (the object is freed) or by
pushing it into a ``struct bpf_list_head`` / adding it to a ``struct bpf_rb_root`` (the graph
owns it from then on). Pushing turns every copy of the owning reference into a *non-owning*
one (``ref_set_non_owning``: ``NON_OWN_REF``, no reference), still usable to read
and write the object until the lock protecting the graph is released, when every non-owning
reference becomes unusable (``invalidate_non_owning_refs``). Popping or removing a node gives an
owning reference back (pointing at the node member: ``container_of`` finds the object).

A list head or rb-tree root lives in a map value (global data included) or in an allocated
object, with a ``contains:<struct>:<node>`` tag naming what it holds
(:func:`pybpf.btf.record.special_fields`), and every operation on it needs the value's
``struct bpf_spin_lock`` held (``check_reg_allocation_locked``: the lock taken through the same
map value, the kernel's same allocation). ``bpf_rbtree_add``'s ``less`` callback is verified as
a synchronous callback (:mod:`.callbacks`) with two non-owning node pointers.

Field accesses through an allocated object are checked against its program-BTF struct
(:func:`object_access`): inside the struct, never touching a special field; writes allowed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pybpf.btf.btf import Btf
from pybpf.btf.record import GRAPH_NODE_OF, FieldKind, SpecialField, special_fields
from pybpf.btf.types import Array, BtfKind, Enum, Enum64, Int, Ptr, Struct, Union
from pybpf.errors import BtfError
from pybpf.platform.kfunc_types import KfuncArgKind, KfuncProto
from pybpf.verifier import callbacks
from pybpf.verifier.machine import Env, State, reject, tnum_text, type_name
from pybpf.verifier.state import MEM_ALLOC, MEM_RCU, NON_OWN_REF, PTR_UNTRUSTED, TRUSTED_MODIFIERS, RegState, RegType

_ALLOC = MEM_ALLOC
_NON_OWN = NON_OWN_REF
_BTF_ID = RegType.PTR_TO_BTF_ID
_MAP_VALUE = RegType.PTR_TO_MAP_VALUE

# The kfuncs that may run while a bpf_spin_lock is held (kfunc_spin_allowed): the graph API
# (and bpf_refcount_acquire), besides the numeric iterator's.
LOCK_ALLOWED = frozenset({
    "bpf_refcount_acquire_impl", "bpf_list_push_front_impl", "bpf_list_push_back_impl", "bpf_list_pop_front",
    "bpf_list_pop_back", "bpf_list_front", "bpf_list_back", "bpf_rbtree_remove", "bpf_rbtree_add_impl",
    "bpf_rbtree_first", "bpf_rbtree_root", "bpf_rbtree_left", "bpf_rbtree_right",
    "bpf_iter_num_new", "bpf_iter_num_next", "bpf_iter_num_destroy",
})
_INSERTS = frozenset({"bpf_list_push_front_impl", "bpf_list_push_back_impl", "bpf_rbtree_add_impl"})
RBTREE_ADD = "bpf_rbtree_add_impl"
_OBJ_NEW = "bpf_obj_new_impl"
_OBJ_DROP = "bpf_obj_drop_impl"
_REFCOUNT_ACQUIRE = "bpf_refcount_acquire_impl"
_ROOT_KINDS = {KfuncArgKind.LIST_HEAD: FieldKind.LIST_HEAD, KfuncArgKind.RB_ROOT: FieldKind.RB_ROOT}
_NODE_KINDS = {KfuncArgKind.LIST_NODE: FieldKind.LIST_NODE, KfuncArgKind.RB_NODE: FieldKind.RB_NODE}
GRAPH_ARG_KINDS = frozenset({KfuncArgKind.ALLOC_OBJ, KfuncArgKind.REFCOUNTED_KPTR, KfuncArgKind.CALLBACK,
                             *_ROOT_KINDS, *_NODE_KINDS})
"""The kfunc argument kinds :func:`check_arg` checks."""


@dataclass(frozen=True, slots=True)
class LocalType:
    """A struct of the program's BTF that objects are allocated as: its id, size and special fields."""

    name: str
    type_id: int
    size: int
    fields: tuple[SpecialField, ...]

    def field_at(self, offset: int, kind: FieldKind) -> SpecialField | None:
        return next((found for found in self.fields if found.offset == offset and found.kind is kind), None)

    def has(self, kind: FieldKind) -> bool:
        return any(found.kind is kind for found in self.fields)


@dataclass(slots=True)
class GraphCall:
    """What one graph kfunc call's arguments established (the kernel's ``bpf_kfunc_call_arg_meta``)."""

    proto: KfuncProto
    root: SpecialField | None = None  # the list head / rb-tree root argument's field
    node: RegState | None = None  # the node (or object) argument
    arg_type: LocalType | None = None  # the object argument's type (obj_drop, refcount_acquire)
    callback: int | None = None  # bpf_rbtree_add's less(): its first pc
    insert_ref: int = 0  # the owning reference an insertion gives away
    owning_arg: bool = False  # bpf_refcount_acquire of an owning reference
    extras: dict[str, int] = field(default_factory=dict)


def local_type(env: Env, name: str = "", type_id: int = 0) -> LocalType:
    """The program-BTF struct named ``name`` (or of id ``type_id``), its fields found once per verification."""
    btf = env.btf
    if btf is None:
        raise reject("bpf_obj_new/bpf_percpu_obj_new requires prog BTF")
    key = name or f"#{type_id}"
    found = env.local_types.get(key)
    if found is not None:
        return found
    if not type_id:
        type_id = btf.find(name, BtfKind.STRUCT) or 0
    struct = btf[type_id] if 0 < type_id < len(btf) else None
    if not isinstance(struct, Struct):
        raise reject("bpf_obj_new/bpf_percpu_obj_new type ID argument must be of a struct")
    try:
        fields = special_fields(btf, type_id)
    except BtfError as error:
        raise reject(f"struct {struct.name}: {error}") from None
    found = LocalType(struct.name, type_id, struct.size, fields)
    env.local_types[key] = found
    env.local_types[struct.name] = found
    return found


def is_alloc(reg: RegState) -> bool:
    """``type_is_ptr_alloc_obj``: an owning or non-owning reference to an allocated object."""
    return reg.type is _BTF_ID and bool(reg.type_flags & _ALLOC) and not reg.maybe_null


def _owning(reg: RegState) -> bool:
    # PTR_TO_BTF_ID | MEM_ALLOC exactly (no NON_OWN_REF, no MEM_RCU, not maybe NULL).
    return reg.type is _BTF_ID and reg.type_flags == _ALLOC and not reg.maybe_null


_TRUSTED_TYPES = frozenset({RegType.PTR_TO_SOCKET, RegType.PTR_TO_SOCK_COMMON, RegType.PTR_TO_TCP_SOCK,
                            RegType.PTR_TO_XDP_SOCK})


def _trusted(reg: RegState) -> bool:
    """``is_trusted_reg`` without a reference: a socket, or a BTF pointer with a trusted modifier."""
    if reg.type in _TRUSTED_TYPES:
        return True
    return reg.type is _BTF_ID and bool(reg.type_flags & TRUSTED_MODIFIERS) and not reg.type_flags & PTR_UNTRUSTED


def _check_off(regno: int, reg: RegState, *, release: bool) -> None:
    """``check_func_arg_reg_off`` for an allocated object: zero offset when released, else a
    constant one."""
    if release and reg.off:
        raise reject(f"R{regno} must have zero offset when passed to release func or trusted arg to kfunc")
    name = type_name(reg)
    if reg.off < 0:
        raise reject(f"negative offset {name} ptr R{regno} off={reg.off} disallowed")
    if not reg.var_off.is_const() or reg.var_off.const_value():
        raise reject(f"variable {name} access var_off={tnum_text(reg.var_off)} disallowed")


def check_arg(env: Env, state: State, call: GraphCall, index: int, reg: RegState) -> None:
    """``check_kfunc_args`` for one argument of the graph kinds (:data:`GRAPH_ARG_KINDS`)."""
    regno = index + 1
    kind = call.proto.args[index].kind
    name = call.proto.name
    if kind is KfuncArgKind.CALLBACK:
        if reg.type is not RegType.PTR_TO_FUNC:
            raise reject(f"arg{index} expected pointer to func")
        call.callback = reg.off
        return
    if kind is KfuncArgKind.REFCOUNTED_KPTR and (reg.maybe_null or reg.type is RegType.SCALAR_VALUE):
        # KF_RCU: a NULL pointer is refused before the argument's kind is looked at.
        raise reject(f"Possibly NULL pointer passed to trusted arg{index}")
    if (reg.type is _BTF_ID or reg.type is _MAP_VALUE) and not reg.maybe_null:
        _check_off(regno, reg, release=kind is KfuncArgKind.ALLOC_OBJ and bool(reg.ref_obj_id))
    match kind:
        case KfuncArgKind.ALLOC_OBJ:
            if not reg.ref_obj_id and not _trusted(reg):
                raise reject(f"R{regno} must be referenced or trusted")
            if not _owning(reg):
                raise reject(f"arg#{index} expected pointer to allocated object")
            if name != _OBJ_DROP:
                raise reject(f"arg#{index} expected for bpf_obj_drop()")
            if not reg.ref_obj_id:
                raise reject("allocated object must be referenced")
            call.arg_type = local_type(env, reg.btf_type)
        case KfuncArgKind.REFCOUNTED_KPTR:
            if not is_alloc(reg):
                raise reject(f"arg#{index} is neither owning or non-owning ref")
            call.owning_arg = not reg.type_flags & _NON_OWN
            call.arg_type = local_type(env, reg.btf_type)
            if not call.arg_type.has(FieldKind.REFCOUNT):
                raise reject(f"arg#{index} doesn't point to a type with bpf_refcount field")
        case KfuncArgKind.LIST_HEAD | KfuncArgKind.RB_ROOT:
            if (reg.type is not _MAP_VALUE or reg.maybe_null) and not _owning(reg):
                raise reject(f"arg#{index} expected pointer to map value or allocated object")
            if reg.type is _BTF_ID and not reg.ref_obj_id:
                raise reject("allocated object must be referenced")
            _graph_root(env, state, call, regno, reg, _ROOT_KINDS[kind])
        case KfuncArgKind.LIST_NODE | KfuncArgKind.RB_NODE:
            if kind is KfuncArgKind.LIST_NODE or name == RBTREE_ADD:
                if not _owning(reg):
                    raise reject(f"arg#{index} expected pointer to allocated object")
                if not reg.ref_obj_id:
                    raise reject("allocated object must be referenced")
            elif not reg.type_flags & _NON_OWN and not reg.ref_obj_id:
                raise reject(f"{name} can only take non-owning or refcounted bpf_rb_node pointer")
            _graph_node(env, call, regno, reg, _NODE_KINDS[kind])
            if name in _INSERTS:
                call.insert_ref = reg.ref_obj_id
        case _:
            raise reject(f"verifier internal error: {kind} is not a graph argument")


def _fields_of(env: Env, reg: RegState) -> tuple[SpecialField, ...]:
    """``reg_btf_record``: the special fields of what ``reg`` points into."""
    if reg.type is _MAP_VALUE:
        return env.map_of(reg).fields or ()
    return local_type(env, reg.btf_type).fields


def _graph_root(env: Env, state: State, call: GraphCall, regno: int, reg: RegState,  # noqa: PLR0917
                kind: FieldKind) -> None:
    """``__process_kf_arg_ptr_to_graph_root``: a root at a constant offset, protected by the
    held lock of the same allocation."""
    if not reg.var_off.is_const():
        raise reject(f"R{regno} doesn't have constant offset. {kind.value} has to be at the constant offset")
    offset = reg.off + (reg.var_off.const_value() or 0)
    fields = _fields_of(env, reg)
    found = next((f for f in fields if f.offset == offset and f.kind is kind), None)
    if found is None:
        raise reject(f"{kind.value} not found at offset={offset}")
    lock = next((f for f in fields if f.kind is FieldKind.SPIN_LOCK), None)
    held = state.lock is not None and reg.type is _MAP_VALUE and state.lock == (reg.map_uid, reg.id)
    if not held:
        lock_off = lock.offset if lock is not None else -1
        raise reject(f"bpf_spin_lock at off={lock_off} must be held for {kind.value}")
    call.root = found


def _graph_node(env: Env, call: GraphCall, regno: int, reg: RegState, kind: FieldKind) -> None:
    """``__process_kf_arg_ptr_to_graph_node``: the node member the root's ``contains:`` names."""
    if not reg.var_off.is_const():
        raise reject(f"R{regno} doesn't have constant offset. {kind.value} has to be at the constant offset")
    offset = reg.off + (reg.var_off.const_value() or 0)
    obj = local_type(env, reg.btf_type)
    if obj.field_at(offset, kind) is None:
        raise reject(f"{kind.value} not found at offset={offset}")
    root = call.root.root if call.root is not None else None
    if root is None:
        raise reject("verifier internal error: no graph root argument before the node")
    head = next(k for k, v in GRAPH_NODE_OF.items() if v is kind).value
    if root.value_type != obj.name:
        raise reject(f"operation on {head} expects arg#1 {kind.value} at offset={root.node_offset} in struct "
                     f"{root.value_type}, but arg is at offset={offset} in struct {obj.name}")
    if offset != root.node_offset:
        raise reject(f"arg#1 offset={offset}, but expected {kind.value} at offset={root.node_offset} in struct "
                     f"{root.value_type}")
    call.node = reg


def check_lock_allowed(name: str) -> None:
    """``kfunc_spin_allowed``: only the graph API may be called with a spin lock held."""
    if name not in LOCK_ALLOWED:
        raise reject("function calls are not allowed while holding a lock")


def after_args(env: Env, state: State, call: GraphCall) -> None:
    """An insertion's owning reference becomes non-owning in every copy, then is released
    (``ref_convert_owning_non_owning`` + ``release_reference``)."""
    ref = call.insert_ref
    if not ref:
        return
    if ref not in state.refs:
        raise reject(f"kfunc {call.proto.name}#{call.proto.id} reference has not been acquired before")
    refcounted = call.node is not None and local_type(env, call.node.btf_type).has(FieldKind.REFCOUNT)
    flags = _ALLOC | _NON_OWN | (MEM_RCU if refcounted else 0)
    state.update_registers(lambda reg: _non_owning(reg, flags) if reg.ref_obj_id == ref else None)
    del state.refs[ref]


def _non_owning(reg: RegState, flags: int) -> RegState:
    return RegState(reg.type, reg.var_off, reg.off, reg.maybe_null, reg.id, 0, reg.map_uid, reg.mem_size, reg.range,
                    reg.frameno, reg.dynptr_type, reg.dynptr_first, reg.dynptr_id, reg.btf_type, reg.rdonly, flags,
                    reg.precise)


def return_value(env: Env, call: GraphCall) -> tuple[str, int]:
    """The struct an ALLOC_OBJ return points into and the pointer's offset (``mark_reg_graph_node``:
    a node pointer for the list and rb-tree kfuncs)."""
    name = call.proto.name
    if name == _OBJ_NEW:
        type_id = call.extras.get("type_id", 0)
        if type_id < 0 or type_id > 0xFFFFFFFF:
            raise reject("local type ID argument must be in range [0, U32_MAX]")
        return local_type(env, type_id=type_id).name, 0
    if name == _REFCOUNT_ACQUIRE:
        if call.arg_type is None:
            raise reject("verifier internal error: no object argument")
        return call.arg_type.name, 0
    if call.root is None or call.root.root is None:
        raise reject("verifier internal error: no graph root argument")
    return call.root.root.value_type, call.root.root.node_offset


def result_register(env: Env, call: GraphCall, *, maybe_null: bool, id: int, ref: int) -> RegState:
    """r0 of an ALLOC_OBJ kfunc: an owning reference when acquired, else non-owning."""
    struct, offset = return_value(env, call)
    flags = _ALLOC if ref else _ALLOC | _NON_OWN
    return RegState.pointer(_BTF_ID, offset, maybe_null=maybe_null, id=id, ref_obj_id=ref, btf_type=struct,
                            type_flags=flags)


def invalidate_non_owning(state: State, privileged: bool) -> None:
    """``invalidate_non_owning_refs`` at bpf_spin_unlock: non-owning references die with the lock."""
    gone = RegState.scalar() if privileged else RegState.not_init()
    state.update_registers(lambda reg: gone if reg.type_flags & _NON_OWN else None)


def rbtree_callback(state: State, pc: int, call: GraphCall) -> callbacks.CallbackEntry | None:
    """``set_rbtree_add_callback_state``: less(a, b) gets two non-owning node pointers."""
    if call.callback is None or call.root is None or call.root.root is None:
        return None
    root = call.root.root
    node = RegState.pointer(_BTF_ID, root.node_offset, btf_type=root.value_type, type_flags=_ALLOC | _NON_OWN)
    entry = callbacks.enter_sync(state, pc, call.callback, {1: node, 2: node})
    callbacks.after_callback(state)
    return entry


# -- field accesses ------------------------------------------------------------------------------


def object_access(env: Env, regno: int, reg: RegState, *, off: int, size: int) -> RegState | None:
    """``check_ptr_to_btf_access`` for an allocated object: the struct's BTF walked
    (``btf_struct_access``), special fields untouchable. The loaded value (None for a store)."""
    obj = local_type(env, reg.btf_type)
    off += reg.off
    if off < 0:
        raise reject(f"R{regno} is ptr_{obj.name} invalid negative access: off={off}")
    if not reg.var_off.is_const() or reg.var_off.const_value():
        raise reject(f"R{regno} is ptr_{obj.name} invalid variable offset: off={off}, "
                     f"var_off={tnum_text(reg.var_off)}")
    for special in obj.fields:
        if off < special.offset + special.size and special.offset < off + size:
            raise reject(f"direct access to {special.kind.value} is disallowed")
    btf = env.btf
    if btf is None:
        raise reject("verifier internal error: no program BTF")
    _walk(btf, obj.type_id, off, size)
    return None


def _walk(btf: Btf, type_id: int, off: int, size: int) -> None:
    """``btf_struct_walk`` for a scalar access: inside the struct and inside one member."""
    struct = btf.resolved(type_id)
    name = getattr(struct, "name", "")
    for _ in range(32):
        if not isinstance(struct, Struct | Union):
            break
        if off + size > struct.size:
            raise reject(f"access beyond struct {name} at off {off} size {size}")
        member = next((m for m in struct.members if m.bit_offset // 8 <= off < m.bit_offset // 8
                       + btf.size_of(m.type_id)), None)
        if member is None:
            return  # padding: the kernel's walk lets a scalar read of a hole through
        moff = member.bit_offset // 8
        member_type = btf.resolved(member.type_id)
        off -= moff
        if isinstance(member_type, Struct | Union):
            struct, name = member_type, member_type.name
            continue
        msize = btf.size_of(member.type_id)
        if isinstance(member_type, Array):
            element = btf.resolved(member_type.type_id)
            if isinstance(element, Struct | Union):
                esize = element.size or 1
                off %= esize
                struct, name = element, element.name
                continue
        if isinstance(member_type, Ptr):
            if size != 8 or off:
                raise reject(f"cannot access ptr member {member.name} with moff {moff} in struct {name} "
                             f"with off {off + moff} size {size}")
            return
        if isinstance(member_type, Int | Enum | Enum64 | Array) and off + size > msize:
            raise reject(f"access beyond the end of member {member.name} (mend:{moff + msize}) in struct {name} "
                         f"with off {off + moff} size {size}")
        return


__all__ = [
    "GRAPH_ARG_KINDS",
    "LOCK_ALLOWED",
    "RBTREE_ADD",
    "GraphCall",
    "LocalType",
    "after_args",
    "check_arg",
    "check_lock_allowed",
    "invalidate_non_owning",
    "is_alloc",
    "local_type",
    "object_access",
    "rbtree_callback",
    "result_register",
]
