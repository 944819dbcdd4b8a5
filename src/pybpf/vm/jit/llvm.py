"""The llvmlite boundary: load the library, optimise a module, compile it to native code.

llvmlite is a core dependency, but its shared library can fail to load on an unusual platform:
then :func:`require_llvmlite` raises :class:`~pybpf.errors.NotSupportedError` naming it. Nothing
falls back to the interpreter silently; callers choose their engine.
"""

from __future__ import annotations

import threading
from types import ModuleType
from typing import Any

from pybpf.errors import NotSupportedError

_LLVM_LOCK = threading.RLock()
"""LLVM's global context, target registry and MCJIT are not thread-safe: two threads compiling
at once produced invalid IR ("Instruction does not dominate all uses"). The lock guards that
process-wide resource, so it is process-wide too (reentrant: a compilation asks for the host CPU)."""


def compile_lock() -> threading.RLock:
    """The lock every use of LLVM here holds: parsing, optimising, compiling, querying the host."""
    return _LLVM_LOCK


def require_llvmlite() -> tuple[ModuleType, ModuleType]:
    """``(llvmlite.ir, llvmlite.binding)``, or NotSupportedError saying why they cannot load."""
    try:
        from llvmlite import binding, ir
    except (ImportError, OSError) as error:
        raise NotSupportedError(f"the JIT needs llvmlite, which cannot be loaded here: {error}") from error
    return ir, binding


def host_cpu() -> tuple[str, str]:
    """The host CPU's name and feature string as LLVM sees them (``"znver3"``, ``"+avx2,-avx512f,..."``).

    Code is built for exactly these, so a compilation may only be reused where both are equal.
    """
    _, binding = require_llvmlite()
    with _LLVM_LOCK:
        binding.initialize_native_target()
        return str(binding.get_host_cpu_name()), str(binding.get_host_cpu_features().flatten())


class NativeCode:
    """A module compiled to native code by MCJIT; keep it alive as long as its functions are used."""

    __slots__ = ("_engine", "_module", "_target_machine")

    def __init__(self, module_ir: str, opt_level: int = 2) -> None:
        _, binding = require_llvmlite()
        with _LLVM_LOCK:
            self._compile(binding, module_ir, opt_level)

    def _compile(self, binding: Any, module_ir: str, opt_level: int) -> None:
        try:
            binding.initialize_native_target()
            binding.initialize_native_asmprinter()
            target = binding.Target.from_default_triple()
            cpu, features = host_cpu()
            self._target_machine: Any = target.create_target_machine(
                cpu=cpu, features=features, opt=opt_level, jit=True
            )
            module = binding.parse_assembly(module_ir)
            module.triple = self._target_machine.triple
            module.data_layout = str(self._target_machine.target_data)
            module.verify()
            if opt_level > 0:
                tuning = binding.create_pipeline_tuning_options(speed_level=opt_level)
                builder = binding.create_pass_builder(self._target_machine, tuning)
                builder.getModulePassManager().run(module, builder)
            self._engine: Any = binding.create_mcjit_compiler(module, self._target_machine)
            self._module: Any = module
            self._engine.finalize_object()
        except RuntimeError as error:  # llvmlite reports parse, verify and codegen failures as RuntimeError
            raise NotSupportedError(f"LLVM could not compile the program: {error}") from error

    def optimized_ir(self) -> str:
        """The module's IR after optimisation (for tests and for reading what the JIT made)."""
        with _LLVM_LOCK:
            return str(self._module)

    def address(self, name: str) -> int:
        """The native address of the function ``name``."""
        with _LLVM_LOCK:
            address: int = self._engine.get_function_address(name)
        if not address:
            raise NotSupportedError(f"LLVM produced no function {name!r}")
        return address
