/* bpf_find_vma on the current task: the callback copies the vm_area_struct holding `vmas[0].addr`
 * (read through CO-RE, as programs read the kernel's vmas) to the stack, then into `vmas[0]`. */
#include "bpf_helpers.h"

struct task_struct;

struct vm_area_struct {
	unsigned long vm_start;
	unsigned long vm_end;
	unsigned long vm_flags;
	unsigned long vm_pgoff;
} __attribute__((preserve_access_index));

static struct task_struct *(*bpf_get_current_task_btf)(void) = (void *)BPF_FUNC_get_current_task_btf;
static long (*bpf_find_vma)(struct task_struct *task, __u64 addr, void *callback_fn, void *callback_ctx,
			    __u64 flags) = (void *)BPF_FUNC_find_vma;

struct area {
	__u64 start, end, flags, pgoff;
	__u64 calls;
};

struct found {
	__u64 addr; /* in: the address to look up */
	__s64 ret;  /* out: bpf_find_vma's result, and what the callback saw */
	struct area area;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct found);
} vmas SEC(".maps");

static long record_vma(struct task_struct *task, struct vm_area_struct *vma, struct area *area)
{
	area->start = vma->vm_start;
	area->end = vma->vm_end;
	area->flags = vma->vm_flags;
	area->pgoff = vma->vm_pgoff;
	area->calls++;
	return 0;
}

SEC("raw_tp/sys_enter")
int find_vma_of(void *ctx)
{
	struct area area = {};
	__u32 key = 0;
	struct found *found = bpf_map_lookup_elem(&vmas, &key);

	if (!found)
		return 0;
	found->ret = bpf_find_vma(bpf_get_current_task_btf(), found->addr, record_vma, &area, 0);
	found->area = area;
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
