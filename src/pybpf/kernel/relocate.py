"""Instruction patching for the kernel: CO-RE against the kernel's BTF, map ``lddw`` with real fds.

CO-RE follows libbpf's ``bpf_core_patch_insn`` (and the runtime's copy of it, which this layer may
not import): an ALU immediate, a load/store offset or an ``lddw`` constant takes the relocated
value, and a relocation without a target turns its instruction into a call of the invalid helper
``0xbad2310``, which the verifier rejects only if it is reachable.

Map references follow the uapi's ``BPF_PSEUDO_MAP_FD`` (``imm`` = map fd) and
``BPF_PSEUDO_MAP_VALUE`` (``imm`` = map fd, ``next_imm`` = offset into the value); kfunc calls
take the vmlinux BTF id of the function they name (:func:`apply_kfuncs`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from pybpf.btf import Btf, BtfKind, CoreRelo, CoreResolver
from pybpf.errors import LoadError, MissingMapError, UnknownKfuncError
from pybpf.isa import Bin, Call, CallKfunc, Imm, LabeledInsn, Load, LoadImm64, PseudoSrc, Store
from pybpf.isa.insn import Instruction
from pybpf.isa.opcodes import SIZE_FOR_BYTES
from pybpf.obj import ProgramSpec
from pybpf.obj.ksyms import POISON_CALL_KFUNC_BASE

POISON_HELPER = 0xBAD2310
"""libbpf's poison helper id for an instruction whose CO-RE relocation found no target."""


def _s32(value: int) -> int:
    value &= 0xFFFF_FFFF
    return value - (1 << 32) if value >= 1 << 31 else value


def apply_core(
    program: ProgramSpec, insns: Sequence[LabeledInsn], local: Btf | None, resolver: CoreResolver | None
) -> list[LabeledInsn]:
    """``insns`` with ``program``'s CO-RE relocations applied through ``resolver`` (the target BTF)."""
    out = list(insns)
    if not program.core_relocations:
        return out
    if local is None or resolver is None:
        raise LoadError("CO-RE relocations need the object's BTF and a target BTF", symbol=program.name)
    by_pc = {item.pc: index for index, item in enumerate(out)}
    for record in program.core_relocations:
        index = by_pc.get(record.pc)
        if index is None:
            raise LoadError(f"CO-RE relocation at pc {record.pc}: no instruction starts there", symbol=program.name)
        result = resolver.resolve(local, CoreRelo(record.pc * 8, record.type_id, record.access, record.kind))
        item = out[index]
        if result.poison:
            out[index] = replace(item, insn=Call(POISON_HELPER))
            continue
        insn = item.insn
        match insn:
            case Bin(src=Imm()):
                patched: Bin | Load | Store | LoadImm64 = replace(insn, src=Imm(_s32(result.value)))
            case Load():
                size = SIZE_FOR_BYTES.get(result.field_size, insn.size) if result.field_size else insn.size
                patched = replace(insn, off=result.value, size=size)
            case Store():
                patched = replace(insn, off=result.value)
            case LoadImm64():
                patched = LoadImm64.constant(insn.dst, result.value)
            case _:
                raise LoadError(
                    f"pc {item.pc}: CO-RE relocation on an instruction it cannot patch ({insn!r})", symbol=program.name
                )
        out[index] = replace(item, insn=patched)
    return out


def apply_map_fds(program: ProgramSpec, insns: list[LabeledInsn], fds: Mapping[str, int]) -> list[LabeledInsn]:
    """Patch every map ``lddw`` of ``program`` with the fd of the map it names."""
    by_pc = {item.pc: index for index, item in enumerate(insns)}
    for ref in program.map_references:
        index = by_pc.get(ref.pc)
        item = insns[index] if index is not None else None
        if item is None or not isinstance(item.insn, LoadImm64):
            raise LoadError(f"pc {ref.pc}: map relocation on something other than lddw", symbol=program.name)
        fd = fds.get(ref.map_name)
        if fd is None:
            raise MissingMapError(f"pc {ref.pc}: program refers to unknown map {ref.map_name!r}", symbol=program.name)
        offset = ref.offset if ref.src is PseudoSrc.MAP_VALUE else 0
        insns[by_pc[ref.pc]] = replace(item, insn=replace(item.insn, imm=fd, next_imm=offset, src=ref.src))
    return insns


def apply_kfuncs(program: ProgramSpec, insns: list[LabeledInsn], target: Btf) -> list[LabeledInsn]:
    """Resolve ``program``'s kfunc sites by name in the kernel's BTF (libbpf's
    ``bpf_object__resolve_ksym_func_btf_id``): a call gets the FUNC's vmlinux BTF id (``off`` 0:
    vmlinux, not a module), an address an ``lddw`` of that id (``BPF_PSEUDO_BTF_ID``).

    A missing ``__weak`` kfunc's call becomes libbpf's poison call, its address 0; a missing
    non-weak one is a LoadError naming it."""
    if not program.kfunc_references:
        return insns
    by_pc = {item.pc: index for index, item in enumerate(insns)}
    poison: dict[str, int] = {}
    for ref in program.kfunc_references:
        index = by_pc.get(ref.pc)
        if index is None:
            raise LoadError(f"pc {ref.pc}: kfunc relocation where no instruction starts", symbol=program.name)
        item = insns[index]
        btf_id = target.find(ref.name, BtfKind.FUNC)
        if btf_id is None and not ref.weak:
            raise UnknownKfuncError(f"the kernel's BTF has no kfunc {ref.name!r}", symbol=ref.name)
        if isinstance(item.insn, LoadImm64):
            patched: Instruction = (LoadImm64(item.insn.dst, btf_id, 0, PseudoSrc.BTF_ID) if btf_id is not None
                                    else LoadImm64.constant(item.insn.dst, 0))
        elif btf_id is not None:
            patched = CallKfunc(btf_id, 0)
        else:
            patched = Call(POISON_CALL_KFUNC_BASE + poison.setdefault(ref.name, len(poison)))
        insns[index] = replace(item, insn=patched)
    return insns
