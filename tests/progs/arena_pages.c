/* Arena page semantics, each result stored in a global __arena array user space reads back:
 * allocation order (page 0 holds the globals), accesses to pages that are not allocated (reads
 * give 0, writes are dropped: the kernel's exception table), freeing, allocating at an address,
 * reserving pages, the casts between address spaces and arena arithmetic on 32 bits. */
#include "bpf_helpers.h"
#include "bpf_arena.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARENA);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 32);
	__ulong(map_extra, 0x100000000000ULL); /* user space maps it there, programs see these addresses */
} arena SEC(".maps");

__u64 __arena results[28];
char __arena *__arena first; /* where the pages went, for user space */

#define PAGE ARENA_PAGE_SIZE

SEC("syscall")
int pages(void *ctx)
{
	char __arena *p = bpf_arena_alloc_pages(&arena, NULL, 3, NUMA_NO_NODE, 0);
	char __arena *q, *r;

	if (!p)
		return 1;
	first = p;
	results[0] = (unsigned long)p & (PAGE - 1);     /* page aligned */
	p[0] = 5;
	p[PAGE + 8] = 6;
	p[2 * PAGE + 100] = 7;
	bpf_arena_free_pages(&arena, p + PAGE, 1);      /* the middle page */
	results[1] = p[PAGE + 8];                       /* freed: reads 0 */
	p[PAGE + 16] = 9;                               /* dropped */
	results[2] = *(volatile char __arena *)(p + PAGE + 16); /* (volatile: not forwarded by clang) */
	results[3] = p[0] + p[2 * PAGE + 100];          /* 12: the others stay */
	results[4] = p[20 * PAGE];                      /* never allocated */
	*(__u64 __arena *)(p + 3 * PAGE - 4) = ~0ULL;   /* straddles into a page not allocated: dropped */
	results[5] = *(volatile __u32 __arena *)(p + 3 * PAGE - 4);
	q = bpf_arena_alloc_pages(&arena, p + PAGE, 1, NUMA_NO_NODE, 0); /* the freed page again */
	results[6] = q == p + PAGE;
	results[7] = q ? q[8] : 99;                     /* zeroed */
	results[8] = bpf_arena_alloc_pages(&arena, p, 1, NUMA_NO_NODE, 0) == NULL; /* taken */
	results[9] = bpf_arena_reserve_pages(&arena, p + 8 * PAGE, 2);           /* 0 */
	results[10] = bpf_arena_reserve_pages(&arena, p, 1);                      /* -EBUSY */
	results[11] = bpf_arena_alloc_pages(&arena, p + 8 * PAGE, 1, NUMA_NO_NODE, 0) == NULL;
	results[12] = bpf_arena_alloc_pages(&arena, NULL, 100, NUMA_NO_NODE, 0) == NULL;
	results[13] = bpf_arena_alloc_pages(&arena, NULL, 1, NUMA_NO_NODE, 1) == NULL; /* flags */
	bpf_arena_free_pages(&arena, p + 2 * PAGE, 1);
	r = bpf_arena_alloc_pages(&arena, NULL, 1, NUMA_NO_NODE, 0);             /* best fit: the hole */
	results[14] = r ? (unsigned long)(r - p) / PAGE : 99;
	r = bpf_arena_alloc_pages(&arena, NULL, 2, NUMA_NO_NODE, 0);
	results[15] = r ? (unsigned long)(r - p) / PAGE : 99;
	results[16] = bpf_arena_reserve_pages(&arena, p + 40 * PAGE, 1);         /* -EINVAL */
	results[17] = (unsigned long)p >> 32 == (unsigned long)&results[0] >> 32; /* one upper half */
	{
		/* The casts spelled out (clang emits only 1 -> 0 by itself): 0 -> 1 puts the arena's
		 * upper half back on a non-zero low half, and leaves 0 alone. */
		unsigned long user = (unsigned long)p + 5, back = user & 0xffffffff, zero = 0;

		asm volatile("%0 = addr_space_cast(%0, 1, 0)" : "+r"(back));
		asm volatile("%0 = addr_space_cast(%0, 1, 0)" : "+r"(zero));
		results[18] = back == user;
		results[19] = zero;
	}
	{
		/* 64-bit arithmetic on an arena pointer is done on 32 bits: + 2^32 changes nothing. */
		unsigned long big = 1UL << 32, got;
		char __arena *at = p;

		asm volatile("%[at] = addr_space_cast(%[at], 0, 1); %[at] += %[big]; %[got] = *(u8 *)(%[at] + 0)"
			     : [at] "+r"(at), [got] "=r"(got) : [big] "r"(big));
		results[20] = got;
	}
	{
		/* Atomics: on allocated memory as anywhere; on a page that is not allocated the
		 * write is dropped and a fetched value is 0. */
		__u64 __arena *here = (__u64 __arena *)(p + 64), *gone = (__u64 __arena *)(p + 20 * PAGE);

		*here = 40;
		results[21] = __sync_fetch_and_add(here, 2);
		__sync_fetch_and_or(here, 0x100);
		results[22] = __sync_val_compare_and_swap(here, 0x12a, 7);
		results[23] = *here;
		results[24] = __sync_fetch_and_add(gone, 5);
		results[25] = __sync_val_compare_and_swap(gone, 0, 9);
		results[26] = __sync_lock_test_and_set(gone, 3);
		__sync_fetch_and_add(gone, 1);
		results[27] = *(volatile __u64 __arena *)gone;
	}
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
