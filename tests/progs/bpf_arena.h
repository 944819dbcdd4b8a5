/* BPF arenas for pybpf's test programs (after the kernel selftests' bpf_arena_common.h).
 *
 * An arena is a BPF_MAP_TYPE_ARENA map (33; Debian's <linux/bpf.h> predates it): max_entries
 * pages shared by programs and user space, which maps it. `__arena` pointers live in address
 * space 1 (their value is the user-space address); clang (with __BPF_FEATURE_ADDR_SPACE_CAST)
 * emits `addr_space_cast` before every access through one, and global `__arena` variables go to
 * the ELF section ".addr_space.1", which the loader places in the object's arena. */
#ifndef PYBPF_TEST_ARENA_H
#define PYBPF_TEST_ARENA_H

#define BPF_MAP_TYPE_ARENA 33
#ifndef BPF_F_MMAPABLE
#define BPF_F_MMAPABLE 1024
#endif
#define ARENA_PAGE_SIZE 4096
#define NUMA_NO_NODE (-1)

#ifndef __BPF_FEATURE_ADDR_SPACE_CAST
#error "arena programs need clang's address space casts (clang 19, -target bpf)"
#endif
#define __arena __attribute__((address_space(1)))
/* libbpf's 64-bit map attribute: map_extra is an arena's user address (0: chosen at mmap). */
#define __arena_concat(a, b) a##b
#define __arena_unique(a, b) __arena_concat(a, b)
#define __ulong(name, val) enum { __arena_unique(__unique_value, __COUNTER__) = val } name
#define __arg_arena __attribute__((btf_decl_tag("arg:arena")))

extern void __arena *bpf_arena_alloc_pages(void *map, void __arena *addr__ign, __u32 page_cnt, int node_id,
					   __u64 flags) __ksym;
extern void bpf_arena_free_pages(void *map, void __arena *ptr__ign, __u32 page_cnt) __ksym;
extern int bpf_arena_reserve_pages(void *map, void __arena *ptr__ign, __u32 page_cnt) __ksym;

#endif
