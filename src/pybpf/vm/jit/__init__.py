"""pybpf.vm.jit: eBPF compiled to native code with LLVM (llvmlite).

- :mod:`pybpf.vm.jit.program`: :class:`JitProgram`, run like an :class:`~pybpf.vm.Interpreter`;
- :mod:`pybpf.vm.jit.plan`: functions, blocks and loop headers of a program;
- :mod:`pybpf.vm.jit.codegen` and :mod:`pybpf.vm.jit.alu_ir`: the translation to LLVM IR;
- :mod:`pybpf.vm.jit.entries`: the repeat and batch entry points (many runs in one native call);
- :mod:`pybpf.vm.jit.cache`: compilations by program bytes, options and host CPU;
- :mod:`pybpf.vm.jit.state`: the run-state block native code and Python share;
- :mod:`pybpf.vm.jit.llvm`: loading llvmlite and compiling with MCJIT;
- :mod:`pybpf.vm.jit.conformance`: the ``jit`` engine of the conformance plugin.
"""

from __future__ import annotations

from pybpf.vm.jit.program import JitProgram

__all__ = ["JitProgram"]
