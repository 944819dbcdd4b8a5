"""Programs in an object: functions by symbol, relocations, and linking of ``.text`` subprograms.

Each code section is decoded once; each FUNC symbol cuts a function out of it. A program is a
function in a non-``.text`` section; every function it reaches through bpf-to-bpf calls or
function addresses (``bpf_loop`` callbacks) is appended after it, breadth-first in first-use
order, as libbpf's ``bpf_object__reloc_code`` does, and the pc-relative offsets are recomputed
for the new layout. Map and global-data references become :class:`MapReference` records, kfunc
calls and addresses (:mod:`pybpf.obj.ksyms`) :class:`KfuncReference` records.

Relocation semantics (libbpf ``bpf_program__record_reloc`` and Documentation/bpf/llvm_reloc.rst):
- ``R_BPF_64_32`` on a call: callee slot = symbol value / 8 + imm + 1 (imm is -1 for a call
  through a function symbol, the slot offset minus one through a section symbol);
- ``R_BPF_64_64`` on an lddw: to a code section it is a function address, slot =
  (symbol value + imm) / 8 (imm is a byte offset); to a map definition it is the map; to a data
  section it is ``&value[symbol value + imm]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from pybpf.btf import Btf, Func
from pybpf.btf.ext import BtfExt
from pybpf.errors import (
    InvalidInstructionError,
    LoadError,
    MalformedObjectError,
    MissingMapError,
    UndefinedSymbolError,
    UnknownRelocationError,
)
from pybpf.isa import Call, CallKfunc, CallLocal, LabeledInsn, LoadImm64, PseudoSrc, SourceLine, decode_program
from pybpf.isa.codec import check_jump_targets
from pybpf.isa.insn import Instruction
from pybpf.obj.elf import SHN_UNDEF, ElfObject, ElfRelocation, ElfSection, ElfSymbol
from pybpf.obj.ksyms import POISON_CALL_KFUNC_BASE
from pybpf.obj.maps import MapTable, arena_size
from pybpf.obj.spec import (
    KCONFIG_SECTION,
    CoreRelocation,
    FuncInfo,
    KfuncReference,
    KsymExtern,
    LineInfo,
    MapReference,
    SubprogramRange,
)
from pybpf.platform.uapi_generated import BpfMapType

TEXT_SECTION = ".text"
INSN_SIZE = 8
R_BPF_NONE = 0
R_BPF_64_64 = 1
R_BPF_64_32 = 10


@dataclass(frozen=True, slots=True)
class _CodeRef:
    """A call or function address at ``pc`` (function-relative) to slot ``target`` of a section."""

    pc: int
    section: int
    target: int


@dataclass(slots=True)
class Function:
    """One FUNC symbol's code: instructions with function-relative pcs, plus what they refer to."""

    name: str
    section: ElfSection
    start: int  # slot index in the section
    end: int
    insns: list[LabeledInsn]
    code_refs: list[_CodeRef] = field(default_factory=list)
    map_refs: list[MapReference] = field(default_factory=list)
    kfunc_refs: list[KfuncReference] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class LinkedProgram:
    """A program's final instructions and records (all pcs relative to its first slot)."""

    instructions: tuple[LabeledInsn, ...]
    map_references: tuple[MapReference, ...]
    func_info: tuple[FuncInfo, ...]
    line_info: tuple[LineInfo, ...]
    core_relocations: tuple[CoreRelocation, ...]
    subprograms: tuple[SubprogramRange, ...]
    kfunc_references: tuple[KfuncReference, ...] = ()


class _SectionReader:
    """Cuts one code section into functions and classifies its relocations."""

    def __init__(self, elf: ElfObject, section: ElfSection, maps: MapTable, code_sections: set[int],
                 ksyms: dict[str, KsymExtern]) -> None:
        self.elf = elf
        self.section = section
        self.maps = maps
        self.code_sections = code_sections
        self.ksyms = ksyms

    def fail(self, error_type: type[LoadError], reason: str, symbol: str | None = None) -> LoadError:
        return error_type(reason, file=self.elf.file, section=self.section.name, symbol=symbol)

    def decode(self) -> list[LabeledInsn]:
        try:
            return decode_program(self.section.data, check_jumps=False)
        except InvalidInstructionError as error:
            raise self.fail(MalformedObjectError, f"cannot decode the code: {error}") from error

    def functions(self) -> list[Function]:
        insns = self.decode()
        symbols = sorted(
            (s for s in self.elf.symbols if s.shndx == self.section.index and s.type == "STT_FUNC"),
            key=lambda s: s.value,
        )
        slots = len(self.section.data) // INSN_SIZE
        relocations = self.relocations_by_pc(insns)
        out = []
        for position, symbol in enumerate(symbols):
            if symbol.value % INSN_SIZE or symbol.size % INSN_SIZE:
                raise self.fail(MalformedObjectError, "function is not aligned to 8-byte slots", symbol.name)
            start = symbol.value // INSN_SIZE
            end = (symbol.value + symbol.size) // INSN_SIZE
            if symbol.size == 0:  # hand-written assembly: runs to the next function
                end = symbols[position + 1].value // INSN_SIZE if position + 1 < len(symbols) else slots
            if not 0 <= start < end <= slots:
                raise self.fail(
                    MalformedObjectError, f"function slots [{start}, {end}) lie outside the section", symbol.name
                )
            body = [item for item in insns if start <= item.pc < end]
            if not body or body[0].pc != start or body[-1].pc + _slots(body[-1].insn) != end:
                raise self.fail(MalformedObjectError, "function boundary splits an lddw instruction", symbol.name)
            out.append(self.function(symbol.name, start, end, body, relocations))
        return out

    def relocations_by_pc(self, insns: Sequence[LabeledInsn]) -> dict[int, ElfRelocation]:
        starts = {item.pc for item in insns}
        out: dict[int, ElfRelocation] = {}
        for relocation in self.elf.relocations.get(self.section.index, ()):
            if relocation.type == R_BPF_NONE:
                continue
            pc, misaligned = divmod(relocation.offset, INSN_SIZE)
            if misaligned or pc not in starts:
                raise self.fail(
                    MalformedObjectError, f"relocation at offset {relocation.offset} is not at an instruction"
                )
            out[pc] = relocation
        return out

    def function(
        self, name: str, start: int, end: int, body: list[LabeledInsn], relocations: dict[int, ElfRelocation]
    ) -> Function:
        function = Function(name, self.section, start, end, [])
        for item in body:
            local = item.pc - start
            insn = item.insn
            relocation = relocations.get(item.pc)
            if relocation is not None:
                insn = self.relocate(function, local, insn, relocation)
            elif isinstance(insn, CallLocal) and not start <= item.pc + 1 + insn.off < end:
                # A call resolved by the compiler to another function of this same section.
                function.code_refs.append(_CodeRef(local, self.section.index, item.pc + 1 + insn.off))
            function.insns.append(LabeledInsn(local, insn))
        return function

    def symbol(self, relocation: ElfRelocation) -> ElfSymbol:
        symbol = self.elf.symbol(relocation.symbol, section=self.section.name)
        if symbol.shndx == SHN_UNDEF:
            what = f"symbol '{symbol.name}'" if symbol.name else f"symbol #{relocation.symbol}"
            raise self.fail(UndefinedSymbolError, f"relocation to {what}, which is not defined", symbol.name or None)
        return symbol

    def relocate(self, function: Function, local: int, insn: Instruction, relocation: ElfRelocation) -> Instruction:
        if relocation.type == R_BPF_64_32:
            if not isinstance(insn, CallLocal):
                raise self.fail(UnknownRelocationError, f"R_BPF_64_32 on instruction {local} of a non-call")
            extern = self.elf.symbol(relocation.symbol, section=self.section.name)
            ksym = self.ksyms.get(extern.name) if extern.shndx == SHN_UNDEF else None
            if ksym is not None:
                function.kfunc_refs.append(KfuncReference(local, ksym.name, ksym.weak))
                if ksym.kfunc_id == 0 and ksym.weak:
                    return Call(POISON_CALL_KFUNC_BASE + ksym.index)  # as libbpf: refused only if reached
                return CallKfunc(ksym.kfunc_id)
            symbol = self.symbol(relocation)
            if symbol.shndx not in self.code_sections:
                raise self.fail(UnknownRelocationError, "call to a symbol outside code sections", symbol.name)
            target = symbol.value // INSN_SIZE + insn.off + 1
            function.code_refs.append(_CodeRef(local, symbol.shndx, target))
            return insn
        if relocation.type != R_BPF_64_64:
            raise self.fail(UnknownRelocationError, f"unknown relocation type {relocation.type} in code")
        if not isinstance(insn, LoadImm64):
            raise self.fail(UnknownRelocationError, "R_BPF_64_64 on an instruction that is not lddw")
        extern = self.elf.symbol(relocation.symbol, section=self.section.name)
        if extern.shndx == SHN_UNDEF and extern.name in self.maps.externs:
            # A Kconfig extern reads its slot of the ".kconfig" map, as .rodata variables do.
            offset = self.maps.externs[extern.name] + insn.imm
            function.map_refs.append(MapReference(local, KCONFIG_SECTION, PseudoSrc.MAP_VALUE, offset, extern.name))
            return LoadImm64(insn.dst, 0, offset, PseudoSrc.MAP_VALUE)
        ksym = self.ksyms.get(extern.name) if extern.shndx == SHN_UNDEF else None
        if ksym is not None:
            # A kfunc's address only says whether it exists (bpf_ksym_exists): its id, or 0.
            function.kfunc_refs.append(KfuncReference(local, ksym.name, ksym.weak, address=True))
            return LoadImm64.constant(insn.dst, ksym.kfunc_id)
        symbol = self.symbol(relocation)
        if symbol.shndx in self.code_sections:
            byte_offset = symbol.value + insn.imm
            if byte_offset % INSN_SIZE:
                raise self.fail(MalformedObjectError, "function address is not slot-aligned", symbol.name)
            function.code_refs.append(_CodeRef(local, symbol.shndx, byte_offset // INSN_SIZE))
            return LoadImm64(insn.dst, insn.imm, 0, PseudoSrc.FUNC)
        map_name = self.maps.by_location.get((symbol.shndx, symbol.value))
        if map_name is not None:
            function.map_refs.append(MapReference(local, map_name, PseudoSrc.MAP_FD, 0, symbol.name))
            return LoadImm64(insn.dst, 0, 0, PseudoSrc.MAP_FD)
        data_name = self.maps.by_location.get((symbol.shndx, -1))
        if data_name is not None:
            offset = symbol.value + insn.imm
            data_map = self.maps.maps[data_name]
            limit = arena_size(data_map) if data_map.type == BpfMapType.ARENA else data_map.value_size
            if not 0 <= offset <= limit:
                raise self.fail(MalformedObjectError, f"offset {offset} is outside {data_name}", symbol.name)
            function.map_refs.append(MapReference(local, data_name, PseudoSrc.MAP_VALUE, offset, symbol.name))
            return LoadImm64(insn.dst, 0, offset, PseudoSrc.MAP_VALUE)
        where = self.elf.section_name(symbol.shndx)
        name = symbol.name or where
        raise self.fail(MissingMapError, f"reference to '{name}' in section {where}, which is not a map", name)


def _slots(insn: Instruction) -> int:
    return 2 if isinstance(insn, LoadImm64) else 1


def read_functions(elf: ElfObject, maps: MapTable, ksyms: dict[str, KsymExtern] | None = None) -> list[Function]:
    """Every function of every code section, in section then address order."""
    code = [s for s in elf.sections if s.is_code and s.size]
    indices = {s.index for s in code}
    out: list[Function] = []
    for section in code:
        if section.size % INSN_SIZE:
            raise MalformedObjectError(
                f"code size {section.size} is not a multiple of 8", file=elf.file, section=section.name
            )
        out.extend(_SectionReader(elf, section, maps, indices, ksyms or {}).functions())
    return out


@dataclass(slots=True)
class Linker:
    """Lays out one program and its reachable functions; rewrites cross-function offsets."""

    file: str
    functions: list[Function]
    btf: Btf | None
    btf_ext: BtfExt | None

    def find(self, owner: Function, ref: _CodeRef) -> Function:
        for function in self.functions:
            if function.section.index == ref.section and function.start <= ref.target < function.end:
                if function.section.name != TEXT_SECTION and function is not owner:
                    raise LoadError(
                        f"calls into another program ('{function.name}') are not supported; "
                        "only .text functions can be called",
                        file=self.file,
                        section=owner.section.name,
                        symbol=owner.name,
                    )
                if ref.target != function.start:
                    raise MalformedObjectError(
                        f"call into the middle of '{function.name}'",
                        file=self.file,
                        section=owner.section.name,
                        symbol=owner.name,
                    )
                return function
        raise MalformedObjectError(
            f"call or function address to slot {ref.target} of section {ref.section}, where no function starts",
            file=self.file,
            section=owner.section.name,
            symbol=owner.name,
        )

    def layout(self, main: Function) -> list[tuple[Function, int]]:
        placed: list[tuple[Function, int]] = [(main, 0)]
        seen = {id(main)}
        end = main.end - main.start
        index = 0
        while index < len(placed):
            function, _ = placed[index]
            for ref in function.code_refs:
                callee = self.find(function, ref)
                if id(callee) not in seen:
                    seen.add(id(callee))
                    placed.append((callee, end))
                    end += callee.end - callee.start
            index += 1
        return placed

    def link(self, main: Function) -> LinkedProgram:
        placed = self.layout(main)
        base_of = {id(function): base for function, base in placed}
        insns: list[LabeledInsn] = []
        map_refs: list[MapReference] = []
        kfunc_refs: list[KfuncReference] = []
        for function, base in placed:
            lines = self.btf_ext.line_table(function.section.name) if self.btf_ext else {}
            targets = {ref.pc: ref for ref in function.code_refs}
            for item in function.insns:
                insn = item.insn
                ref = targets.get(item.pc)
                if ref is not None:
                    callee = self.find(function, ref)
                    offset = base_of[id(callee)] + ref.target - callee.start - (base + item.pc) - 1
                    if isinstance(insn, LoadImm64):
                        insn = LoadImm64(insn.dst, offset, 0, PseudoSrc.FUNC)
                    else:
                        insn = CallLocal(offset)
                line = lines.get(function.start + item.pc)
                source = SourceLine(line.file, line.line, line.column, line.text) if line else None
                insns.append(LabeledInsn(base + item.pc, insn, source))
            map_refs.extend(MapReference(base + r.pc, r.map_name, r.src, r.offset, r.symbol) for r in function.map_refs)
            kfunc_refs.extend(KfuncReference(base + r.pc, r.name, r.weak, r.address) for r in function.kfunc_refs)
        try:
            check_jump_targets(insns, sum(f.end - f.start for f, _ in placed))
        except InvalidInstructionError as error:
            where = {"file": self.file, "section": main.section.name, "symbol": main.name}
            raise MalformedObjectError(str(error), **where) from error
        return LinkedProgram(
            instructions=tuple(insns),
            map_references=tuple(map_refs),
            func_info=self.func_info(placed),
            line_info=tuple(LineInfo(item.pc, item.line) for item in insns if item.line is not None),
            core_relocations=self.core_relocations(placed),
            subprograms=tuple(SubprogramRange(f.name, b, b + f.end - f.start) for f, b in placed[1:]),
            kfunc_references=tuple(kfunc_refs),
        )

    def func_info(self, placed: list[tuple[Function, int]]) -> tuple[FuncInfo, ...]:
        if self.btf_ext is None:
            return ()
        out = []
        for function, base in placed:
            for pc, type_id in self.btf_ext.func_table(function.section.name).items():
                if function.start <= pc < function.end:
                    name = ""
                    if self.btf is not None and 0 < type_id < len(self.btf):
                        record = self.btf[type_id]
                        name = record.name if isinstance(record, Func) else ""
                    out.append(FuncInfo(base + pc - function.start, type_id, name))
        return tuple(out)

    def core_relocations(self, placed: list[tuple[Function, int]]) -> tuple[CoreRelocation, ...]:
        if self.btf_ext is None:
            return ()
        out = []
        for function, base in placed:
            for relo in self.btf_ext.core_relos.get(function.section.name, ()):
                if function.start <= relo.pc < function.end:
                    pc = base + relo.pc - function.start
                    out.append(CoreRelocation(pc, relo.type_id, relo.access_str, relo.kind))
        return tuple(out)
