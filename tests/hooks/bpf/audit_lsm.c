/* Audit-event LSM hook (pybpf.hooks.lsm): deny opening one path, configured from user space in
 * the `denied` map; count what was checked and what was denied. In the kernel the same program
 * would sit on the file_open LSM hook; in pybpf it receives the `open` audit event's arguments
 * (args[0] points to the path, args[1] to the mode string, args[2] is the flags).
 * Built at test time, not in tests/progs: the kernel here refuses to load BTF-attached programs
 * (lsm, fentry) with EPERM before verification, and tests/progs objects must all load. */
#include "hooks_helpers.h" /* from tests/progs */

#define PATH_LEN 128
#define EPERM 1

struct path_value {
	char text[PATH_LEN];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct path_value);
} denied SEC(".maps");

enum { CHECKED = 0, DENIED = 1 };

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} audit_counts SEC(".maps");

static __always_inline void count(__u32 slot)
{
	__u64 *value = bpf_map_lookup_elem(&audit_counts, &slot);

	if (value)
		__sync_fetch_and_add(value, 1);
}

SEC("lsm/file_open")
int deny_open(__u64 *ctx)
{
	struct path_value path = {};
	struct path_value *rule;
	__u32 zero = 0;
	int i;

	count(CHECKED);
	rule = bpf_map_lookup_elem(&denied, &zero);
	if (!rule || !rule->text[0])
		return 0;
	if (bpf_probe_read_kernel_str(path.text, sizeof(path.text), (const void *)ctx[0]) < 0)
		return 0;
	for (i = 0; i < PATH_LEN; i++) {
		if (path.text[i] != rule->text[i])
			return 0;
		if (!path.text[i])
			break;
	}
	count(DENIED);
	return -EPERM;
}

char LICENSE[] SEC("license") = "GPL";
