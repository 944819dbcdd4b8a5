"""pybpf.hooks: programs attached to real user-space events (packets, Python probes, tracepoints, audit events), through links."""
