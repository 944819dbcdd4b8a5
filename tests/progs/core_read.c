/* CO-RE: field reads through a locally declared, relocatable task_struct. The offsets in the
 * object are clang's guesses; the loader records a CO-RE relocation for each access. */
#include "bpf_helpers.h"

struct task_struct {
	int pid;
	int tgid;
	struct task_struct *real_parent;
} __attribute__((preserve_access_index));

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u32);
} parent_of SEC(".maps");

SEC("kprobe/do_exit")
int record_parent(void *ctx)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct task_struct *parent;
	__u32 pid = 0, ppid = 0;

	bpf_probe_read_kernel(&pid, sizeof(pid), __builtin_preserve_access_index(&task->tgid));
	bpf_probe_read_kernel(&parent, sizeof(parent), __builtin_preserve_access_index(&task->real_parent));
	bpf_probe_read_kernel(&ppid, sizeof(ppid), __builtin_preserve_access_index(&parent->tgid));
	bpf_map_update_elem(&parent_of, &pid, &ppid, BPF_ANY);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
