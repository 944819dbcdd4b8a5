"""Check every context access and rewrite it into an access of the internal context image.

This is the runtime's version of what the kernel does *after* verification in
``convert_ctx_access()``: each load or store whose base register holds the context pointer is
checked against the program type's layout (offset, width, read or write: the kernel's
``*_is_valid_access()``) and, for pointer fields, turned into an 8-byte load of the field's slot
in the internal image (see :mod:`pybpf.runtime.context.layout`). Plain fields keep their uapi
offsets, so their accesses are only checked. The verifier (a separate stage) is what proves a
program safe; this pass rejects what it cannot convert with a :class:`ContextAccessError`
naming the pc and the C source line.

Which accesses go through the context comes, for a verified program, from the verifier's record
of each memory instruction's pointer type (``ptr_types``: the kernel's ``insn_aux_data[].ptr_type``,
exact on every path it explored); without it, from this package's own dataflow
(:mod:`pybpf.runtime.context.dataflow`). Either way an instruction that accesses the context on
one path and other memory on another is refused, as the kernel refuses it.

Rewriting is in place, one instruction for one instruction, so every pc (jump offsets, line
info, relocation records) stays valid.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from pybpf.errors import ContextAccessError
from pybpf.isa.insn import Atomic, Imm, LabeledInsn, Load, Reg, Store
from pybpf.isa.opcodes import AtomicCode, Size
from pybpf.platform.context import ContextLayout, Conversion
from pybpf.runtime.context.dataflow import MAYBE_CTX, OTHER, CtxPtr, Value, track_context
from pybpf.runtime.context.layout import InternalLayout
from pybpf.verifier.state import RegType


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
    """The rewritten program and the accesses it converted, by pc.

    ``by_verifier``: the accesses were found by the verifier's per-pc pointer types, so they are
    exactly the ones it checked as context accesses (not the dataflow's approximation)."""

    insns: tuple[LabeledInsn, ...]
    accesses: tuple[ContextAccess, ...]
    layout: InternalLayout
    by_verifier: bool = False


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
    insns: Sequence[LabeledInsn],
    context: ContextLayout,
    *,
    entries: Iterable[int] = (),
    ptr_types: Mapping[int, RegType] | None = None,
) -> RewriteResult:
    """Check and rewrite ``insns``' context accesses for a program whose context is ``context``.

    ``ptr_types`` is the verifier's record for these very instructions
    (:attr:`~pybpf.verifier.VerifierReport.ptr_types`): the pcs it maps to ``PTR_TO_CTX`` are
    the context accesses (at the instruction's offset: the verifier allows no offset on the
    context pointer), and a pc it never reached is left alone, as the kernel leaves it. Without
    it the dataflow decides, ``entries`` being extra function entries to analyse with unknown
    arguments (see :func:`~pybpf.runtime.context.dataflow.track_chains`).
    """
    layout = InternalLayout.of(context)
    bases = _bases_from_verifier(insns, ptr_types) if ptr_types is not None else _bases_from_dataflow(insns, entries)
    out: list[LabeledInsn] = []
    accesses: list[ContextAccess] = []
    for item in insns:
        base = bases.get(item.pc)
        out.append(item if base is None else _convert_one(item, base, layout, accesses))
    return RewriteResult(tuple(out), tuple(accesses), layout, by_verifier=ptr_types is not None)


def moved_ptr_types(ptr_types: Mapping[int, RegType], pc_map: Mapping[int, int]) -> dict[int, RegType]:
    """The verifier's ``ptr_types`` after a rewrite that moved instructions (old pc -> new pc in
    ``pc_map``, as :class:`pybpf.verifier.rewrite.DeadCodeResult` gives it); deleted pcs drop out."""
    return {pc_map[pc]: kind for pc, kind in ptr_types.items() if pc in pc_map}


def _base_reg(insn: Load | Store | Atomic) -> Reg:
    """The register holding the address a memory instruction accesses."""
    if isinstance(insn, Load) or (isinstance(insn, Atomic) and insn.op is AtomicCode.LOAD_ACQ):
        return insn.src
    return insn.dst


def _bases_from_dataflow(insns: Sequence[LabeledInsn], entries: Iterable[int]) -> dict[int, Value]:
    """What each reachable memory instruction's base register holds, by the dataflow."""
    states = track_context(insns, entries)
    bases: dict[int, Value] = {}
    for item in insns:
        state = states.get(item.pc)
        if state is not None and isinstance(item.insn, Load | Store | Atomic):
            bases[item.pc] = state.reg(_base_reg(item.insn))
    return bases


def _bases_from_verifier(insns: Sequence[LabeledInsn], ptr_types: Mapping[int, RegType]) -> dict[int, Value]:
    """The same, by the verifier's record: the context itself (offset 0) or something else."""
    bases: dict[int, Value] = {}
    for item in insns:
        kind = ptr_types.get(item.pc)
        if kind is not None and isinstance(item.insn, Load | Store | Atomic):
            bases[item.pc] = CtxPtr(0) if kind is RegType.PTR_TO_CTX else OTHER
    return bases


def _convert_one(item: LabeledInsn, base: Value, layout: InternalLayout, accesses: list[ContextAccess]) -> LabeledInsn:
    insn = item.insn
    match insn:
        case Load():
            access = _check(item, layout, base, insn.off, insn.size.nbytes, write=False)
            if access is None:
                return item
            accesses.append(access)
            base_offset = base.offset if isinstance(base, CtxPtr) else 0
            if access.field in layout.pointer_slots:
                if insn.sign_extend:
                    raise _fail(item, f"sign-extending load of the pointer field {layout.uapi.name}.{access.field}")
                # A 4-byte load of a pointer field becomes an 8-byte load of its slot: one slot, same pc.
                return replace(item, insn=Load(Size.DW, insn.dst, insn.src, access.internal - base_offset))
            return item
        case Store():
            if isinstance(insn.src, Imm) and (base is MAYBE_CTX or isinstance(base, CtxPtr)):
                # The kernel refuses BPF_ST into the context (only BPF_STX is converted).
                raise _fail(item, f"immediate store (BPF_ST) into the context {layout.uapi.name}")
            access = _check(item, layout, base, insn.off, insn.size.nbytes, write=True)
            if access is not None:
                accesses.append(access)
            return item
        case Atomic():
            if base is MAYBE_CTX or isinstance(base, CtxPtr):
                raise _fail(item, f"atomic operation on the context {layout.uapi.name}")
            return item
        case _:
            return item
