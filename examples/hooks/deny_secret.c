/* An LSM-style program on Python's `open` audit event (pybpf.hooks.lsm): deny opening any path
 * whose file name starts with "secret", count what was checked and denied. In the kernel it
 * would sit on the file_open hook; in pybpf args[0] points to the path being opened.
 *   clang-19 -O2 -g -target bpf -I examples -I /usr/include/$(uname -m)-linux-gnu \
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

SEC("lsm/file_open")
int deny_secret(__u64 *ctx)
{
	static const char prefix[] = "secret";
	char path[PATH_LEN] = {};
	long length;
	int start = 0, i;

	count(0);
	length = bpf_probe_read_kernel_str(path, sizeof(path), (const void *)ctx[0]);
	if (length <= 0)
		return 0;
	for (i = 0; i < PATH_LEN; i++) { /* the file name starts after the last '/' */
		if (!path[i])
			break;
		if (path[i] == '/')
			start = i + 1;
	}
	for (i = 0; i < (int)sizeof(prefix) - 1; i++) {
		if (start + i >= PATH_LEN || path[start + i] != prefix[i])
			return 0;
	}
	count(1);
	return -EPERM;
}

char LICENSE[] SEC("license") = "GPL";
