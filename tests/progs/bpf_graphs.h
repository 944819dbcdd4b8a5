/* Program-allocated objects, linked lists and rb-trees: the kernel's uapi structs (newer than
 * this machine's /usr/include/linux/bpf.h), the kfuncs, and the C macros libbpf's selftests keep
 * in bpf_experimental.h (bpf_obj_new, bpf_obj_drop, bpf_list_push_front...). */
#ifndef PYBPF_TEST_GRAPHS_H
#define PYBPF_TEST_GRAPHS_H

#include "bpf_helpers.h"

struct bpf_list_head {
	__u64 __opaque[2];
} __attribute__((aligned(8)));

struct bpf_list_node {
	__u64 __opaque[3];
} __attribute__((aligned(8)));

struct bpf_rb_root {
	__u64 __opaque[2];
} __attribute__((aligned(8)));

struct bpf_rb_node {
	__u64 __opaque[4];
} __attribute__((aligned(8)));

struct bpf_refcount {
	__u32 __opaque[1];
} __attribute__((aligned(4)));

/* A list head / rb-tree root holds objects of struct `name`, linked through their member `node`. */
#define __contains(name, node) __attribute__((btf_decl_tag("contains:" #name ":" #node)))
/* Global data in a section of its own (one map per section): a lock and the roots it protects. */
#define private(name) SEC(".bss." #name) __attribute__((visibility("hidden"), aligned(8)))
#define container_of(ptr, type, member) ((type *)((void *)(ptr) - __builtin_offsetof(type, member)))
#define bpf_core_type_id_local(type) __builtin_btf_type_id(*(typeof(type) *)0, 0)

extern void *bpf_obj_new_impl(__u64 local_type_id__k, void *meta__ign) __ksym;
extern void bpf_obj_drop_impl(void *kptr, void *meta__ign) __ksym;
extern void *bpf_refcount_acquire_impl(void *kptr, void *meta__ign) __ksym;
extern int bpf_list_push_front_impl(struct bpf_list_head *head, struct bpf_list_node *node, void *meta__ign,
				    __u64 off) __ksym;
extern int bpf_list_push_back_impl(struct bpf_list_head *head, struct bpf_list_node *node, void *meta__ign,
				   __u64 off) __ksym;
extern struct bpf_list_node *bpf_list_pop_front(struct bpf_list_head *head) __ksym;
extern struct bpf_list_node *bpf_list_pop_back(struct bpf_list_head *head) __ksym;
extern struct bpf_list_node *bpf_list_front(struct bpf_list_head *head) __ksym;
extern struct bpf_list_node *bpf_list_back(struct bpf_list_head *head) __ksym;
extern struct bpf_rb_node *bpf_rbtree_remove(struct bpf_rb_root *root, struct bpf_rb_node *node) __ksym;
extern int bpf_rbtree_add_impl(struct bpf_rb_root *root, struct bpf_rb_node *node,
			       int (less)(struct bpf_rb_node *a, const struct bpf_rb_node *b), void *meta__ign,
			       __u64 off) __ksym;
extern struct bpf_rb_node *bpf_rbtree_first(struct bpf_rb_root *root) __ksym;
extern struct bpf_rb_node *bpf_rbtree_root(struct bpf_rb_root *root) __ksym;
extern struct bpf_rb_node *bpf_rbtree_left(struct bpf_rb_root *root, struct bpf_rb_node *node) __ksym;
extern struct bpf_rb_node *bpf_rbtree_right(struct bpf_rb_root *root, struct bpf_rb_node *node) __ksym;

#define bpf_obj_new(type) ((type *)bpf_obj_new_impl(bpf_core_type_id_local(type), (void *)0))
#define bpf_obj_drop(kptr) bpf_obj_drop_impl(kptr, (void *)0)
#define bpf_refcount_acquire(kptr) bpf_refcount_acquire_impl(kptr, (void *)0)
#define bpf_list_push_front(head, node) bpf_list_push_front_impl(head, node, (void *)0, 0)
#define bpf_list_push_back(head, node) bpf_list_push_back_impl(head, node, (void *)0, 0)
#define bpf_rbtree_add(root, node, less) bpf_rbtree_add_impl(root, node, less, (void *)0, 0)

static long (*bpf_spin_lock)(struct bpf_spin_lock *lock) = (void *)BPF_FUNC_spin_lock;
static long (*bpf_spin_unlock)(struct bpf_spin_lock *lock) = (void *)BPF_FUNC_spin_unlock;

#endif
