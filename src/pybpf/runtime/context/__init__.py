"""Context access conversion: the runtime's counterpart of the kernel's ``convert_ctx_access``.

Programs read their context through the uapi struct (``struct xdp_md``, ``struct __sk_buff``...),
where packet pointers are 32-bit fields. In the kernel, after verification, every such access is
rewritten into an access of the real kernel object. We do the same against an *internal context
image* (:class:`InternalLayout`): the uapi struct followed by one 8-byte slot per pointer field,
so ``(void *)(long)ctx->data`` yields a real 64-bit address.

- :mod:`.layout`: the internal image's layout and a typed view of one image (:class:`ContextImage`);
- :mod:`.dataflow`: which registers hold the context pointer at every pc (for programs the
  verifier did not see; a verified program's accesses come from the verifier's per-pc pointer
  types, ``VerifierReport.ptr_types``, as the kernel's come from ``insn_aux_data[].ptr_type``);
- :mod:`.rewrite`: check every context access against the program type and rewrite it in place.
"""

from __future__ import annotations

from pybpf.runtime.context.dataflow import CtxPtr, Other, StackPtr, track_context
from pybpf.runtime.context.layout import ContextImage, InternalLayout
from pybpf.runtime.context.rewrite import ContextAccess, RewriteResult, convert_ctx_access, moved_ptr_types

__all__ = [
    "ContextAccess",
    "ContextImage",
    "CtxPtr",
    "InternalLayout",
    "Other",
    "RewriteResult",
    "StackPtr",
    "convert_ctx_access",
    "moved_ptr_types",
    "track_context",
]
