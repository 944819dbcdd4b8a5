"""Kernel-symbol externs: ``extern ... __ksym`` functions (kfuncs), as libbpf collects them.

clang lists every ``__ksym`` extern in the ``.ksyms`` DATASEC of the object's BTF: a kfunc as a
FUNC with ``extern`` linkage, a kernel variable as a VAR. A call of a kfunc is a
``call -1`` (``src_reg = 1``) with an ``R_BPF_64_32`` relocation against the undefined symbol;
taking its address (``bpf_ksym_exists()``) an ``lddw`` with ``R_BPF_64_64``.

The object loader resolves kfuncs by name against pybpf's kfunc table
(:mod:`pybpf.platform.kfuncs`): a call becomes ``call`` ``src_reg = 2`` with the table's id as
``imm`` (0 when the name is unknown), an address a non-zero constant. A missing ``__weak`` kfunc
resolves to 0, and a call of it to libbpf's poison call (``POISON_CALL_KFUNC_BASE`` + the
extern's index), which only a verifier reaching it refuses. Every site is recorded as a
:class:`~pybpf.obj.spec.KfuncReference`, so the kernel backend can resolve the same names
against the kernel's BTF instead. Kernel variables (typed or typeless ``__ksym`` data) are
refused, naming the symbol.
"""

from __future__ import annotations

from pybpf.btf import Btf
from pybpf.btf.types import Datasec, Func, Var
from pybpf.errors import BtfError, LoadError, UnsupportedExternError
from pybpf.obj.elf import SHN_UNDEF, ElfObject
from pybpf.obj.spec import KSYMS_SECTION, KsymExtern
from pybpf.platform.kfuncs import kfunc_by_name

POISON_CALL_KFUNC_BASE = 2002000000
"""libbpf's helper id base for a call of a missing ``__weak`` kfunc (plus the extern's index)."""


def collect_ksyms(elf: ElfObject, btf: Btf | None) -> dict[str, KsymExtern]:
    """The object's kfunc externs by name (empty without a ``.ksyms`` DATASEC)."""
    datasec_id = btf.find(KSYMS_SECTION) if btf is not None else None
    if btf is None or datasec_id is None:
        if elf.section_by_name(KSYMS_SECTION) is not None:
            raise UnsupportedExternError("kernel symbols need the object's BTF (compile with -g)",
                                         file=elf.file, section=KSYMS_SECTION)
        return {}
    datasec = btf[datasec_id]
    if not isinstance(datasec, Datasec):
        raise LoadError("the .ksyms BTF type is not a DATASEC", file=elf.file, section=KSYMS_SECTION)
    weak = {s.name for s in elf.symbols if s.shndx == SHN_UNDEF and s.bind == "STB_WEAK"}
    externs: dict[str, KsymExtern] = {}
    try:
        for secinfo in datasec.vars:
            record = btf[secinfo.type_id]
            if isinstance(record, Var):
                raise UnsupportedExternError(
                    "kernel variables (__ksym data symbols) are not supported; only kfuncs (__ksym functions) are",
                    file=elf.file, symbol=record.name)
            if not isinstance(record, Func):
                raise LoadError("a .ksyms DATASEC entry is neither a FUNC nor a VAR", file=elf.file,
                                section=KSYMS_SECTION)
            proto = kfunc_by_name(record.name)
            externs[record.name] = KsymExtern(record.name, len(externs), record.name in weak,
                                              proto.id if proto is not None else 0, secinfo.type_id)
    except BtfError as error:
        raise LoadError(f"kernel symbol externs: {error}", file=elf.file, section=KSYMS_SECTION) from error
    return externs
