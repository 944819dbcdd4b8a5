"""pybpf.runtime: BPF objects running in user space.

:func:`~pybpf.runtime.loader.load` instantiates an object file (maps, relocations, context
conversion, helpers, interpreters) as an :class:`~pybpf.runtime.object.Object`, whose
:class:`~pybpf.runtime.program.Program` objects test-run like BPF_PROG_TEST_RUN. The map
implementations live in :mod:`pybpf.runtime.maps` (every map of an object, prog arrays and maps
of maps included, comes from its ``create_map``), the helpers in :mod:`pybpf.runtime.helpers`.
What programs print with bpf_trace_printk is on ``Object.trace_pipe``; where a run redirected
its packet is on its :class:`~pybpf.runtime.program.RuntimeTestRunResult`.
"""
