/* A singly linked list in a BPF arena (after the kernel selftests' arena_list.c): nodes come
 * from arena pages (one per push), the list head is a global, the counters global __arena
 * variables, and user space walks the list through its mapping of the arena. */
#include "bpf_helpers.h"
#include "bpf_arena.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARENA);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 16);
} arena SEC(".maps");

struct node {
	struct node __arena *next;
	__u64 value;
};

struct push_args {
	__u32 start;
	__u32 count;
};

/* Global __arena variables: in ".addr_space.1", placed at the start of the arena. */
__u64 __arena magic = 0x6172656e61; /* "arena": initialised data travels with the object */
struct node __arena *__arena head; /* the variable itself lives in the arena too */
__u32 __arena pages;
__u64 __arena sum;
__u32 __arena length;

SEC("syscall")
int list_push(struct push_args *args)
{
	/* One page per call holds the new nodes (at most 64 of 16 bytes). */
	struct node __arena *nodes = bpf_arena_alloc_pages(&arena, NULL, 1, NUMA_NO_NODE, 0);
	__u32 count = args->count;

	if (!nodes)
		return -1;
	pages++;
	for (__u32 i = 0; i < 64 && i < count; i++) {
		nodes[i].value = args->start + i;
		nodes[i].next = head;
		head = &nodes[i];
	}
	return 0;
}

SEC("syscall")
int list_sum(void *ctx)
{
	__u64 total = 0;
	__u32 n = 0;
	struct node __arena *it = head;

	for (int i = 0; i < 128 && it; i++) {
		total += it->value;
		n++;
		it = it->next;
	}
	sum = total;
	length = n;
	return n;
}

char LICENSE[] SEC("license") = "GPL";
