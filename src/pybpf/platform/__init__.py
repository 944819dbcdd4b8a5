"""pybpf.platform"""
