"""A global function's argument kinds, from its BTF prototype (the kernel's ``btf_prepare_func_args``).

Each parameter gets a kind from its type and its ``arg:<tag>`` decl tags (libbpf's ``__arg_ctx``,
``__arg_nonnull``, ``__arg_nullable``, ``__arg_trusted``, ``__arg_untrusted``, ``__arg_arena``):

* an int or enum is any scalar (a tag on it is an error);
* a pointer is the program's context when tagged ``arg:ctx`` (its type then validated for the
  program type, ``btf_validate_prog_ctx_type``) or when it points to the struct the kernel names
  as that type's context (``btf_is_prog_ctx_type``: ``struct __sk_buff *`` or its projection
  ``struct sk_buff *``, ``struct xdp_md *``/``struct xdp_buff *``, ``struct pt_regs *`` or
  ``bpf_user_pt_regs_t *`` for kprobes...; a type whose context is ``void *`` — tracing, LSM,
  struct_ops, ext, syscall — or ``__u64`` — tracepoints — only by the tag);
* ``struct bpf_dynptr *`` is an initialised dynptr;
* ``arg:trusted`` makes a named struct pointer a trusted kernel object (``PTR_TO_BTF_ID``, NULL
  allowed with ``arg:nullable``), ``arg:untrusted`` an untrusted one (for a struct);
* ``arg:arena`` (alone) makes it an arena pointer: the callee gets a ``PTR_TO_ARENA``, a caller
  may pass one or any scalar (:mod:`pybpf.verifier.arena`);
* any other pointer is memory of the pointee's size, possibly NULL unless ``arg:nonnull``.

Not supported here, refused with the reason: ``arg:untrusted`` on a ``void``/scalar pointee
(untrusted memory read through probe loads).
Kernel struct names are not checked against vmlinux (there is none in user space): a trusted
pointer to a struct pybpf does not model is read without a layout check (see
:mod:`pybpf.verifier.btf_access`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from pybpf.btf import Btf
from pybpf.btf.types import (
    BtfType,
    Const,
    Enum,
    Enum64,
    FuncProto,
    Fwd,
    Int,
    Ptr,
    Restrict,
    Struct,
    Typedef,
    TypeTag,
    Union,
    Void,
    Volatile,
)
from pybpf.errors import PybpfError
from pybpf.platform import BpfAttachType, BpfProgType, ProgTypeSpec

_KNOWN_TAGS = frozenset({"ctx", "trusted", "untrusted", "nonnull", "nullable", "arena"})
# btf_is_projection_of: the kernel struct a uapi context struct stands for.
_PROJECTIONS = {"__sk_buff": "sk_buff", "xdp_md": "xdp_buff"}
_USER_PT_REGS = "bpf_user_pt_regs_t"
_MODIFIERS = (Typedef, Volatile, Const, Restrict, TypeTag)


class GlobalArgKind(IntEnum):
    """The kernel's ``bpf_subprog_arg_info.arg_type`` kinds we model."""

    ARG_ANYTHING = 0  # an int or enum: any scalar
    ARG_PTR_TO_CTX = 1  # the program's context, unmodified
    ARG_PTR_TO_MEM = 2  # mem_size bytes the callee may read and write
    ARG_PTR_TO_DYNPTR = 3  # ``struct bpf_dynptr *``: an initialised dynptr the callee may not release
    ARG_PTR_TO_BTF_ID = 4  # a kernel object of struct ``btf_type`` (arg:trusted / arg:untrusted)
    ARG_PTR_TO_ARENA = 5  # ``arg:arena``: an arena pointer (or any scalar: a user address)


@dataclass(frozen=True, slots=True)
class GlobalArg:
    kind: GlobalArgKind
    mem_size: int = 0
    maybe_null: bool = False
    btf_type: str = ""  # ARG_PTR_TO_BTF_ID: the struct's name
    trusted: bool = True  # ARG_PTR_TO_BTF_ID: arg:trusted (else arg:untrusted)


def _skip_modifiers(btf: Btf, type_id: int, *, keep_typedef: bool = False) -> BtfType:
    record = btf[type_id]
    for _ in range(64):  # BTF chains are short; a cycle is malformed
        if not isinstance(record, _MODIFIERS) or (keep_typedef and isinstance(record, Typedef)):
            return record
        record = btf[record.type_id]
    return record


def _is_user_pt_regs(btf: Btf, ptr: Ptr) -> bool:
    """A ``bpf_user_pt_regs_t *`` (the typedef itself, before it resolves to the struct)."""
    pointee = _skip_modifiers(btf, ptr.type_id, keep_typedef=True)
    return isinstance(pointee, Typedef) and pointee.name == _USER_PT_REGS


def is_prog_ctx_type(btf: Btf, ptr: Ptr, prog: ProgTypeSpec) -> bool:
    """``btf_is_prog_ctx_type``: whether an untagged pointer argument is the context."""
    if prog.prog_type == BpfProgType.KPROBE and _is_user_pt_regs(btf, ptr):
        return True
    pointee = _skip_modifiers(btf, ptr.type_id)
    if not isinstance(pointee, Struct) or not pointee.name:
        return False
    ctx_name = prog.btf_ctx_struct
    if ctx_name is None:
        return False  # program types without a named context work only with arg:ctx
    return pointee.name in (ctx_name, _PROJECTIONS.get(ctx_name))


def validate_ctx_tag(btf: Btf, ptr: Ptr, index: int, prog: ProgTypeSpec, attach_type: int | None) -> str | None:
    """``btf_validate_prog_ctx_type`` for an ``arg:ctx`` pointer: None when its type is one the
    program type accepts as its context, else the kernel's complaint."""
    prog_type = prog.prog_type
    if prog_type in (BpfProgType.KPROBE, BpfProgType.PERF_EVENT) and _is_user_pt_regs(btf, ptr):
        return None
    pointee = _skip_modifiers(btf, ptr.type_id)
    if isinstance(pointee, Void):
        return None  # `void *ctx __arg_ctx` is always valid
    name = pointee.name
    if not name:
        return f"arg#{index} type doesn't have a name"
    is_struct = isinstance(pointee, Struct)
    is_u64 = isinstance(pointee, Int) and pointee.size == 8
    match prog_type:
        case BpfProgType.KPROBE | BpfProgType.PERF_EVENT if is_struct and name == "pt_regs":
            return None
        case BpfProgType.RAW_TRACEPOINT | BpfProgType.RAW_TRACEPOINT_WRITABLE if is_u64:
            return None
        case BpfProgType.TRACING:
            if attach_type == BpfAttachType.TRACE_RAW_TP and (
                    is_u64 or (is_struct and name == "bpf_raw_tracepoint_args")):
                return None
            if attach_type == BpfAttachType.TRACE_ITER and is_struct and name.startswith("bpf_iter__"):
                return None
            if attach_type in (BpfAttachType.TRACE_FENTRY, BpfAttachType.TRACE_FEXIT,
                               BpfAttachType.MODIFY_RETURN) and is_u64:
                return None
        case BpfProgType.LSM | BpfProgType.STRUCT_OPS if is_u64:
            return None
        case BpfProgType.TRACEPOINT | BpfProgType.SYSCALL | BpfProgType.EXT:
            return None  # anything goes
        case _:
            pass
    ctx_name = prog.btf_ctx_struct
    if ctx_name is None:
        return f"arg#{index} should be void pointer"
    if not is_struct or name != ctx_name:
        return f"arg#{index} should be `struct {ctx_name} *`"
    return None


def prepare_arg(btf: Btf, type_id: int, tags: set[str], *, index: int, prog: ProgTypeSpec,
                attach_type: int | None, func_name: str) -> GlobalArg | str:
    """One parameter's kind, or why the prototype is refused (the kernel's words where it has them)."""
    if tags - _KNOWN_TAGS:
        return f"arg#{index} has unsupported set of tags"
    kind = _skip_modifiers(btf, type_id)
    if not isinstance(kind, Ptr):
        if tags:
            return f"arg#{index} has pointer tag, but is not a pointer type"
        if isinstance(kind, Int | Enum | Enum64):
            return GlobalArg(GlobalArgKind.ARG_ANYTHING)
        return f"Arg#{index} type {kind.KIND.name} in {func_name}() is not supported yet."
    pointee = _skip_modifiers(btf, kind.type_id)
    if "ctx" in tags or is_prog_ctx_type(btf, kind, prog):
        if tags - {"ctx"}:
            return f"arg#{index} has invalid combination of tags"
        if "ctx" in tags:
            invalid = validate_ctx_tag(btf, kind, index, prog, attach_type)
            if invalid is not None:
                return invalid
        return GlobalArg(GlobalArgKind.ARG_PTR_TO_CTX)
    if isinstance(pointee, Struct) and pointee.name == "bpf_dynptr":
        # ARG_PTR_TO_DYNPTR | MEM_RDONLY: the callee sees a const struct bpf_dynptr *.
        if tags:
            return f"arg#{index} has invalid combination of tags"
        return GlobalArg(GlobalArgKind.ARG_PTR_TO_DYNPTR)
    if "trusted" in tags:
        if "nonnull" in tags:
            return f"arg#{index} has invalid combination of tags"
        return _kernel_object(btf, pointee, index, trusted=True, nullable="nullable" in tags)
    if "untrusted" in tags:
        if tags - {"untrusted"}:
            return f"arg#{index} untrusted cannot be combined with any other tags"
        if isinstance(pointee, Void | Int | Enum | Enum64):
            return (f"arg#{index} tag arg:untrusted on a pointer to {pointee.KIND.name.lower()} (untrusted memory, "
                    "read through probe loads) is not supported by this verifier")
        return _kernel_object(btf, pointee, index, trusted=False, nullable=False)
    if "arena" in tags:
        if tags - {"arena"}:
            return f"arg#{index} arena cannot be combined with any other tags"
        return GlobalArg(GlobalArgKind.ARG_PTR_TO_ARENA)
    if "nullable" in tags:
        return f"arg#{index} has invalid combination of tags"
    try:
        size = btf.size_of(kind.type_id)
    except PybpfError:
        size = -1
    if size < 0 or isinstance(pointee, Void | FuncProto) or (isinstance(pointee, Struct | Union)
                                                              and pointee.size == 0):
        kind_name = "UNKNOWN" if isinstance(pointee, Void) else pointee.KIND.name
        return f"arg#{index} reference type('{kind_name} {pointee.name}') size cannot be determined: -22"
    return GlobalArg(GlobalArgKind.ARG_PTR_TO_MEM, size, "nonnull" not in tags)


def _kernel_object(btf: Btf, pointee: BtfType, index: int, *, trusted: bool, nullable: bool) -> GlobalArg | str:
    """``btf_get_ptr_to_btf_id``: a pointer to a kernel struct, found by its name."""
    if not pointee.name:
        return f"arg#{index} struct doesn't have a name"
    if isinstance(pointee, Fwd):
        # Looked up in vmlinux by name and kind: a forward declaration matches no kernel struct.
        return f"arg#{index} reference type('FWD {pointee.name}') has no matches"
    if not isinstance(pointee, Struct):
        tag = "trusted" if trusted else "untrusted"
        return (f"arg#{index} has type {pointee.KIND.name} '{pointee.name}', but only struct types are supported "
                f"by this verifier for arg:{tag}")
    return GlobalArg(GlobalArgKind.ARG_PTR_TO_BTF_ID, maybe_null=nullable, btf_type=pointee.name, trusted=trusted)


__all__ = ["GlobalArg", "GlobalArgKind", "is_prog_ctx_type", "prepare_arg", "validate_ctx_tag"]
