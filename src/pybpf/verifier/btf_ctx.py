"""The context of BTF tracing programs, typed from the attach target's BTF (``btf_ctx_access``).

An fentry/fexit/fmod_ret, tp_btf or LSM program's context is the target's arguments as an array
of u64 (``ctx[0]`` is the first). The kernel types each 8-byte load of ``ctx[i]`` from the
target's BTF prototype: a pointer to a struct becomes a ``PTR_TO_BTF_ID`` of that struct, the
rest a number. Those pointers are *trusted* (``PTR_TRUSTED``) for tp_btf, iterators, struct_ops
and LSM hooks (``prog_args_trusted``; a few LSM hooks that run on half-built or dying objects
excepted); an fentry/fexit argument is the old, untrusted-but-readable kind (no modifier).
fexit and fmod_ret programs also see the return value after the arguments.

The target's prototype comes from vmlinux BTF, which the verifier does not read itself: the
caller hands it in (:func:`tracing_ctx_args` on a parsed vmlinux :class:`~pybpf.btf.Btf`), and
without it every context slot stays a number (a known difference).
"""

from __future__ import annotations

from dataclasses import dataclass

from pybpf.btf.btf import Btf
from pybpf.btf.types import BtfKind, Func, FuncProto, Ptr, Struct, Typedef
from pybpf.platform.uapi_generated import BpfAttachType

_A = BpfAttachType
# bpf_lsm.c untrusted_lsm_hooks: hooks whose objects are not fully built or already dying.
_UNTRUSTED_LSM_HOOKS = frozenset({
    "bpf_map_free", "bpf_prog_free", "file_alloc_security", "file_free_security", "sk_alloc_security",
    "sk_free_security", "task_free",
})


@dataclass(frozen=True, slots=True)
class TracingArgs:
    """Per 8-byte context slot, the struct a pointer argument points to ("" for anything
    else), and whether those pointers are trusted."""

    structs: tuple[str, ...]
    trusted: bool


def _pointee_struct(btf: Btf, type_id: int) -> str:
    resolved = btf.resolved(type_id) if type_id else None
    if not isinstance(resolved, Ptr):
        return ""
    target = btf.resolved(resolved.type_id) if resolved.type_id else None
    return target.name if isinstance(target, Struct) and target.name else ""


def _proto(btf: Btf, type_id: int | None) -> FuncProto | None:
    if type_id is None:
        return None
    found = btf[type_id]
    if isinstance(found, Func):
        found = btf[found.type_id]
    elif isinstance(found, Typedef):  # btf_trace_<tp>: a pointer to the probe's prototype
        pointer = btf.resolved(found.type_id)
        found = btf.resolved(pointer.type_id) if isinstance(pointer, Ptr) else pointer
    return found if isinstance(found, FuncProto) else None


def tracing_ctx_args(btf: Btf, attach_type: int | None, attach_to: str) -> TracingArgs | None:
    """The typed context slots of a tracing program attached as ``attach_type`` to ``attach_to``
    (a function, a raw tracepoint or an LSM hook name), from ``btf`` (vmlinux); None when the
    target is not there or the attach type has no BTF-typed context modelled here."""
    if not attach_to:
        return None
    if attach_type == _A.TRACE_RAW_TP:
        proto = _proto(btf, btf.find("btf_trace_" + attach_to, BtfKind.TYPEDEF))
        params = proto.params[1:] if proto is not None else ()  # the first is the probe's void *data
        trusted = True
    elif attach_type in (_A.TRACE_FENTRY, _A.TRACE_FEXIT, _A.MODIFY_RETURN):
        proto = _proto(btf, btf.find(attach_to, BtfKind.FUNC))
        params = proto.params if proto is not None else ()
        trusted = False
    elif attach_type == _A.LSM_MAC:
        proto = _proto(btf, btf.find("bpf_lsm_" + attach_to, BtfKind.FUNC))
        params = proto.params if proto is not None else ()
        trusted = attach_to not in _UNTRUSTED_LSM_HOOKS
    else:
        return None
    if proto is None:
        return None
    structs = [_pointee_struct(btf, param.type_id) for param in params]
    if attach_type in (_A.TRACE_FEXIT, _A.MODIFY_RETURN):
        structs.append(_pointee_struct(btf, proto.return_type_id))
    return TracingArgs(tuple(structs), trusted)


__all__ = ["TracingArgs", "tracing_ctx_args"]
