"""pybpf.asm"""
