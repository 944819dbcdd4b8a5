#!/bin/sh
# Rebuild the committed test objects: tests/progs/*.c -> tests/progs/*.o (and *.v4.o for a few).
# The objects are committed so the test suite runs where clang is missing; rebuilding with the
# same clang must give identical bytes (the loader tests read the .o files, never the .c files).
set -eu
cd "$(dirname "$0")"
CLANG=${CLANG:-clang-19}
# -I for <asm/types.h>, which Debian keeps under the multiarch directory.
ARCH_INC=/usr/include/$(uname -m)-linux-gnu
CFLAGS="-O2 -g -target bpf -Wall -Werror -I. -I$ARCH_INC -fdebug-prefix-map=$(pwd)=."
for src in *.c; do
	obj=${src%.c}.o
	"$CLANG" $CFLAGS -mcpu=v3 -c "$src" -o "$obj"
done
# -mcpu=v4 variants (sign-extending loads, 32-bit jumps, gotol...) for the loader's codec paths.
for base in bpf2bpf; do
	"$CLANG" $CFLAGS -mcpu=v4 -c "$base.c" -o "$base.v4.o"
done
