"""pybpf.runtime: BPF objects running in user space.

:func:`~pybpf.runtime.loader.load` instantiates an object file (maps, relocations, context
conversion, helpers, interpreters) as an :class:`~pybpf.runtime.object.Object`, whose
:class:`~pybpf.runtime.program.Program` objects test-run like BPF_PROG_TEST_RUN. The map
implementations live in :mod:`pybpf.runtime.maps`, the helpers in :mod:`pybpf.runtime.helpers`.
"""
