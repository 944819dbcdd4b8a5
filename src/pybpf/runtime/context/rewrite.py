"""Check every context access and rewrite it into an access of the internal context image.

This is the runtime's version of what the kernel does *after* verification in
``convert_ctx_access()``: each load or store whose base register holds the context pointer is
checked against the program type's layout (offset, width, read or write: the kernel's
``*_is_valid_access()``) and, for pointer fields, turned into an 8-byte load of the field's slot
in the internal image (see :mod:`pybpf.runtime.context.layout`). Plain fields keep their uapi
offsets, so their accesses are only checked. The verifier (a separate stage) is what proves a
program safe; this pass rejects what it cannot convert with a :class:`ContextAccessError`
naming the pc and the C source line.

Rewriting is in place, one instruction for one instruction, so every pc (jump offsets, line
info, relocation records) stays valid.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from pybpf.errors import ContextAccessError
from pybpf.isa.insn import Atomic, Imm, LabeledInsn, Load, Store
from pybpf.isa.opcodes import Size
from pybpf.platform.context import ContextLayout, Conversion
from pybpf.runtime.context.dataflow import MAYBE_CTX, CtxPtr, State, Value, track_context
from pybpf.runtime.context.layout import InternalLayout


@dataclass(frozen=True, slots=True)
class ContextAccess:
    """One converted access: at ``pc``, ``width`` bytes of ``field`` (uapi ``offset``), now at ``internal``."""

    pc: int
    field: str
    offset: int
    width: int
    write: bool
    internal: int


@dataclass(frozen=True, slots=True)
class RewriteResult:
    """The rewritten program and the accesses it converted, by pc."""

    insns: tuple[LabeledInsn, ...]
    accesses: tuple[ContextAccess, ...]
    layout: InternalLayout


def _source(item: LabeledInsn) -> str | None:
    line = item.line
    if line is None:
        return None
    return f"{line.file}:{line.line}: {line.text.strip()}"


def _fail(item: LabeledInsn, reason: str) -> ContextAccessError:
    return ContextAccessError(item.pc, reason, _source(item))


def _describe(layout: ContextLayout, offset: int, width: int, write: bool) -> str:
    kind = "write" if write else "read"
    field = layout.field_at(offset, 1)
    if field is None:
        return f"invalid {width}-byte {kind} of {layout.name} at offset {offset} (no field there)"
    allowed = sorted(field.write_sizes if write else field.read_sizes)
    if not allowed:
        why = "is read-only" if write and field.read_sizes else "is not accessible"
        return f"invalid {width}-byte {kind} of {layout.name}.{field.name} (offset {offset}): the field {why} here"
    return (
        f"invalid {width}-byte {kind} of {layout.name}.{field.name} (offset {offset}): "
        f"allowed widths {allowed}, aligned, within the field"
        + ("" if field.conversion is Conversion.PLAIN else ", and a pointer field only whole")
    )


def _check(
    item: LabeledInsn, layout: InternalLayout, base: Value, off: int, width: int, *, write: bool
) -> ContextAccess | None:
    """The conversion of an access through ``base`` (None when ``base`` is not the context)."""
    if base is MAYBE_CTX:
        raise _fail(item, "access through a register that holds the context pointer on some paths only")
    if not isinstance(base, CtxPtr):
        return None
    offset = base.offset + off
    field = layout.uapi.check_access(offset, width, write)
    if field is None:
        raise _fail(item, _describe(layout.uapi, offset, width, write))
    return ContextAccess(item.pc, field.name, offset, width, write, layout.internal_offset(field, offset))


def convert_ctx_access(
    insns: Sequence[LabeledInsn], context: ContextLayout, *, entries: Iterable[int] = ()
) -> RewriteResult:
    """Check and rewrite ``insns``' context accesses for a program whose context is ``context``.

    ``entries`` are extra function entries to analyse with unknown arguments (see
    :func:`~pybpf.runtime.context.dataflow.track_context`).
    """
    layout = InternalLayout.of(context)
    states = track_context(insns, entries)
    out: list[LabeledInsn] = []
    accesses: list[ContextAccess] = []
    for item in insns:
        state = states.get(item.pc)
        converted = item if state is None else _convert_one(item, state, layout, accesses)
        out.append(converted)
    return RewriteResult(tuple(out), tuple(accesses), layout)


def _convert_one(item: LabeledInsn, state: State, layout: InternalLayout, accesses: list[ContextAccess]) -> LabeledInsn:
    insn = item.insn
    match insn:
        case Load():
            access = _check(item, layout, state.reg(insn.src), insn.off, insn.size.nbytes, write=False)
            if access is None:
                return item
            accesses.append(access)
            base = state.reg(insn.src)
            base_offset = base.offset if isinstance(base, CtxPtr) else 0
            if access.field in layout.pointer_slots:
                if insn.sign_extend:
                    raise _fail(item, f"sign-extending load of the pointer field {layout.uapi.name}.{access.field}")
                # A 4-byte load of a pointer field becomes an 8-byte load of its slot: one slot, same pc.
                return replace(item, insn=Load(Size.DW, insn.dst, insn.src, access.internal - base_offset))
            return item
        case Store():
            base = state.reg(insn.dst)
            if isinstance(insn.src, Imm) and (base is MAYBE_CTX or isinstance(base, CtxPtr)):
                # The kernel refuses BPF_ST into the context (only BPF_STX is converted).
                raise _fail(item, f"immediate store (BPF_ST) into the context {layout.uapi.name}")
            access = _check(item, layout, base, insn.off, insn.size.nbytes, write=True)
            if access is not None:
                accesses.append(access)
            return item
        case Atomic():
            base = state.reg(insn.src) if insn.op.name == "LOAD_ACQ" else state.reg(insn.dst)
            if base is MAYBE_CTX or isinstance(base, CtxPtr):
                raise _fail(item, f"atomic operation on the context {layout.uapi.name}")
            return item
        case _:
            return item
