"""pybpf.obj"""
