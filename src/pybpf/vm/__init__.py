"""pybpf.vm"""
