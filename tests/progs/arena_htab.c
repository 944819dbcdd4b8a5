/* An open-addressing hash table in a BPF arena (after the kernel selftests' arena_htab.c): its
 * buckets on a page the first update allocates, found through a global __arena pointer; user
 * space reads the table through its mapping of the arena. */
#include "bpf_helpers.h"
#include "bpf_arena.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARENA);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 4);
} arena SEC(".maps");

#define BUCKETS 32

struct bucket {
	__u32 key;
	__u32 used;
	__u64 value;
};

struct request {
	__u32 key;
	__u32 pad;
	__u64 value;
};

struct bucket __arena *__arena table;
__u32 __arena entries;
__u64 __arena found;

static __u32 hash(__u32 key)
{
	return (key * 2654435761u) >> 27; /* 5 bits: 0..31 */
}

/* Insert or replace; the probe distance, -1 without memory, -2 when full. */
SEC("syscall")
int htab_update(struct request *req)
{
	struct bucket __arena *t = table;
	__u32 h = hash(req->key);

	if (!t) {
		t = bpf_arena_alloc_pages(&arena, NULL, 1, NUMA_NO_NODE, 0);
		if (!t)
			return -1;
		table = t;
	}
	for (int i = 0; i < BUCKETS; i++) {
		struct bucket __arena *b = &t[(h + i) & (BUCKETS - 1)];

		if (b->used && b->key != req->key)
			continue;
		if (!b->used)
			entries++;
		b->used = 1;
		b->key = req->key;
		b->value = req->value;
		return i;
	}
	return -2;
}

/* 1 and the value in `found` when the key is there, else 0. */
SEC("syscall")
int htab_lookup(struct request *req)
{
	struct bucket __arena *t = table;
	__u32 h = hash(req->key);

	if (!t)
		return 0;
	for (int i = 0; i < BUCKETS; i++) {
		struct bucket __arena *b = &t[(h + i) & (BUCKETS - 1)];

		if (!b->used)
			return 0;
		if (b->key == req->key) {
			found = b->value;
			return 1;
		}
	}
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
