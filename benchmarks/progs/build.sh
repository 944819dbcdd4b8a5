#!/bin/sh
# Rebuild the benchmark objects (committed, so the benchmark runs without clang).
set -eu
cd "$(dirname "$0")"
for source in *.c; do
	clang-19 -O2 -target bpf -mcpu=v3 -fno-unroll-loops -fno-builtin -c "$source" -o "${source%.c}.o"
done
