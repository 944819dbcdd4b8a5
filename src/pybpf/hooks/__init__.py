"""pybpf.hooks: programs attached to real user-space events through links.

Packets (pcap replay, live AF_PACKET), Python probes, tracepoints and audit events.
"""
