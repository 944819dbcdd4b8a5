"""pybpf.runtime"""
