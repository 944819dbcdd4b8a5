"""Load-time instruction patching: CO-RE relocations, and the ``lddw`` pseudo sources.

CO-RE follows libbpf's ``bpf_core_patch_insn``: an ALU immediate, a load/store offset or an
``lddw`` constant takes the relocated value; a relocation that found no target poisons its
instruction into a call of the invalid helper ``0xbad2310`` (it fails only if executed).
Map references become a :class:`MapResolver`, the ``PseudoResolver`` the interpreter asks for
the value of each ``lddw`` with a map source.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

from pybpf.btf import Btf, CoreRelo, CoreResolver
from pybpf.errors import LoadError, VmError
from pybpf.isa.insn import Bin, Call, Imm, LabeledInsn, Load, LoadImm64, Store
from pybpf.isa.opcodes import SIZE_FOR_BYTES, PseudoSrc
from pybpf.obj import MapReference, ProgramSpec

POISON_HELPER = 0xBAD2310
"""libbpf's poison: a call to this helper id marks an instruction whose relocation failed."""


def apply_core(
    program: ProgramSpec, insns: Sequence[LabeledInsn], local: Btf | None, target: Btf | None,
    model: Btf | None = None,
) -> tuple[LabeledInsn, ...]:
    """``insns`` with every CO-RE relocation of ``program`` applied against ``target``; without
    one, against ``model`` (the kernel types pybpf lays out itself) for the types it defines,
    and against ``local`` for the rest."""
    if not program.core_relocations:
        return tuple(insns)
    if local is None:
        raise LoadError("CO-RE relocations without BTF in the object", symbol=program.name)
    resolver = CoreResolver(target if target is not None else local)
    modelled = CoreResolver(model) if target is None and model is not None else None
    by_pc = {item.pc: index for index, item in enumerate(insns)}
    out = list(insns)
    for record in program.core_relocations:
        index = by_pc.get(record.pc)
        if index is None:
            raise LoadError(f"CO-RE relocation at pc {record.pc}: no instruction starts there", symbol=program.name)
        relo = CoreRelo(record.pc * 8, record.type_id, record.access, record.kind)
        chosen = resolver
        if modelled is not None and modelled.candidates(local, record.type_id):
            chosen = modelled  # a kernel struct pybpf models: its layout is pybpf's, not the object's
        result = chosen.resolve(local, relo)
        item = out[index]
        if result.poison:
            out[index] = replace(item, insn=Call(POISON_HELPER))
            continue
        out[index] = replace(item, insn=_patch(item, result.value, result.field_size, program.name))
    return tuple(out)


def _patch(item: LabeledInsn, value: int, field_size: int | None, program: str) -> Bin | Load | Store | LoadImm64:
    insn = item.insn
    match insn:
        case Bin(src=Imm()):
            return replace(insn, src=Imm(_s32(value)))
        case Load():
            size = SIZE_FOR_BYTES.get(field_size, insn.size) if field_size else insn.size
            return replace(insn, off=value, size=size)
        case Store():
            return replace(insn, off=value)
        case LoadImm64():
            return LoadImm64.constant(insn.dst, value)
        case _:
            reason = f"pc {item.pc}: CO-RE relocation on an instruction it cannot patch ({insn!r})"
            raise LoadError(reason, symbol=program)


def _s32(value: int) -> int:
    value &= 0xFFFF_FFFF
    return value - (1 << 32) if value >= 1 << 31 else value


class MapResolver:
    """Resolves a program's map ``lddw`` instructions through its ``map_references``.

    ``pointer(name)`` gives a map's pointer value (what helpers find it by); ``value_address(name)``
    the address of a global data map's value (its only element).
    """

    def __init__(
        self,
        program: str,
        references: Sequence[MapReference],
        pointer: Callable[[str], int],
        value_address: Callable[[str], int],
    ) -> None:
        self.program = program
        self.by_pc: Mapping[int, MapReference] = {ref.pc: ref for ref in references}
        self.pointer = pointer
        self.value_address = value_address

    def resolve(self, insn: LoadImm64, pc: int) -> int:
        ref = self.by_pc.get(pc)
        if ref is None:
            raise VmError(f"lddw with pseudo source {insn.src.name} has no map relocation", pc)
        if ref.src is PseudoSrc.MAP_FD:
            return self.pointer(ref.map_name)
        if ref.src is PseudoSrc.MAP_VALUE:
            return self.value_address(ref.map_name) + ref.offset
        raise VmError(f"lddw pseudo source {ref.src.name} is not supported in user space", pc)
