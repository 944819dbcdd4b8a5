"""pybpf.btf"""
