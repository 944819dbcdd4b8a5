#!/bin/sh
# Load every test object into the running kernel's verifier with bpftool (never attaching
# anything), on a private bpffs mounted under a temporary directory and unmounted afterwards.
# Needs root, bpftool and a kernel with BTF. Exit status: number of objects that failed.
set -u
cd "$(dirname "$0")"
pin=$(mktemp -d /tmp/pybpf-progs-XXXXXX)
mount -t bpf bpf "$pin" || exit 1
failed=0
for obj in *.o; do
	case "$obj" in
	# libbpf >= 1.0 (and so bpftool) refuses SEC("maps") outright; pybpf's own loader checks it.
	legacy_maps.o) echo "skip $obj (legacy maps: libbpf 1.x cannot open it)"; continue ;;
	# Debian's bpftool (libbpf 1.1) predates arenas (.addr_space.1, map_extra as __ulong); pybpf's
	# kernel backend loads these (tests/runtime/test_runtime_arena.py runs them in the kernel).
	arena_*.o) echo "skip $obj (arenas: this bpftool's libbpf predates them)"; continue ;;
	# The same libbpf skips the private .bss.<name> sections that hold graph roots and their
	# locks (libbpf 1.2+ reads them); tests/runtime/test_runtime_graphs.py loads it through
	# pybpf's kernel backend.
	graphs.o) echo "skip $obj (private .bss.* sections: this bpftool's libbpf predates them)"; continue ;;
	esac
	dir="$pin/$(echo "${obj%.o}" | tr . _)"
	if bpftool prog loadall "$obj" "$dir" >"$pin.log" 2>&1; then
		echo "ok   $obj"
	else
		echo "FAIL $obj"; tail -5 "$pin.log"; failed=$((failed + 1))
	fi
	rm -rf "$dir"
done
umount "$pin"; rmdir "$pin"; rm -f "$pin.log"
exit "$failed"
