/* An LSM-style program on Python's `open` audit event (pybpf.hooks.lsm): deny opening any path
 * whose file name starts with "secret", count what was checked and denied. In the kernel it
 * would sit on the file_open hook; in pybpf args[0] points to the path being opened.
 *   clang-19 -O2 -g -target bpf -I tests/progs -I /usr/include/$(uname -m)-linux-gnu \
 *       -c examples/hooks/deny_secret.c -o examples/hooks/deny_secret.o */
#include "bpf_helpers.h"

#define PATH_LEN 128
#define EPERM 1

static long (*bpf_probe_read_kernel_str)(void *dst, __u32 size, const void *src) =
	(void *)BPF_FUNC_probe_read_kernel_str;

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} open_counts SEC(".maps"); /* [0] checked, [1] denied */

static __always_inline void count(__u32 slot)
{
	__u64 *value = bpf_map_lookup_elem(&open_counts, &slot);

	if (value)
		__sync_fetch_and_add(value, 1);
}

/* Whether the file name at `name` starts with "secret" (unrolled: no loop for the verifier). */
static __always_inline int is_secret(const char *name)
{
	return name[0] == 's' && name[1] == 'e' && name[2] == 'c' && name[3] == 'r' && name[4] == 'e' &&
	       name[5] == 't';
}

SEC("lsm/file_open")
int deny_secret(__u64 *ctx)
{
	char path[PATH_LEN + 8] = {}; /* room to look 6 bytes past any position */
	int i;

	count(0);
	if (bpf_probe_read_kernel_str(path, PATH_LEN, (const void *)ctx[0]) <= 0)
		return 0;
	/* A file name starts at 0 or after a '/'. Nothing is carried from one iteration to the
	 * next but i, so the verifier's states at the loop head prune well. */
	for (i = 0; i < PATH_LEN; i++) {
		if (!path[i])
			break;
		if ((i == 0 || path[i - 1] == '/') && is_secret(&path[i])) {
			count(1);
			return -EPERM;
		}
	}
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
