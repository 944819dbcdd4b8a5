"""pybpf.vm.jit: eBPF compiled to native code with LLVM (llvmlite).

- :mod:`pybpf.vm.jit.program`: :class:`JitProgram`, run like an :class:`~pybpf.vm.Interpreter`;
  :mod:`~pybpf.vm.jit.sessions` (pooled state blocks and stacks, one per run in progress) and
  :mod:`~pybpf.vm.jit.outcome` (a run's status as the interpreter's errors);
- :mod:`pybpf.vm.jit.plan`: functions, blocks, loop headers and register origins of a program;
- :mod:`pybpf.vm.jit.codegen`, :mod:`~pybpf.vm.jit.alu_ir` and :mod:`~pybpf.vm.jit.memory_ir`: the
  translation to LLVM IR;
- :mod:`pybpf.vm.jit.entries` and :mod:`~pybpf.vm.jit.batch`: the repeat and batch entry points (many
  runs in one native call);
- helpers served natively: :mod:`~pybpf.vm.jit.native_helpers` and :mod:`~pybpf.vm.jit.natives` (maps
  through :mod:`pybpf.vm.native_maps`, system and tracing helpers, ring buffers),
  :mod:`~pybpf.vm.jit.native_packet`, :mod:`~pybpf.vm.jit.native_skb`, :mod:`~pybpf.vm.jit.native_xdp`;
- :mod:`pybpf.vm.jit.cache`: compilations by program bytes, options and host CPU;
- :mod:`pybpf.vm.jit.state`: the run-state block native code and Python share;
- :mod:`pybpf.vm.jit.llvm`: loading llvmlite, compiling with MCJIT (one compile at a time);
- :mod:`pybpf.vm.jit.conformance`: the ``jit`` engine of the conformance plugin.
"""

from __future__ import annotations

from pybpf.vm.jit.program import JitProgram

__all__ = ["JitProgram"]
