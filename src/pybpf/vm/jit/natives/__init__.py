"""IR for the helpers native code serves itself (see :mod:`pybpf.vm.jit.native_helpers`).

* :mod:`.hash_ir`: the key hash (the same steps as :mod:`pybpf.vm.native_maps.hashing`), key
  comparison and the index-table probe, as internal functions of the module.
* :mod:`.map_ir`: ``bpf_map_lookup_elem``/``bpf_map_update_elem`` call sites and the function
  that finds a value's address through a map's native descriptor.
* :mod:`.system_ir`: ``bpf_get_smp_processor_id`` and ``bpf_ktime_get_ns``.
* :mod:`.tracing`: ``bpf_get_current_pid_tgid/uid_gid/comm``, ``bpf_get_prandom_u32``, and the
  dispatch of the ring buffer helpers to :mod:`.ringbuf_ir` (reserve/submit/discard/output).
"""
