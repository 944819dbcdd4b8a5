"""pybpf.cli"""
