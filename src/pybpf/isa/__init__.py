"""pybpf.isa"""
