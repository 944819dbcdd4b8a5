/* Program-allocated objects in linked lists and rb-trees, run by BPF_PROG_TEST_RUN: the same
 * return values and results under pybpf's interpreter and JIT and in the kernel. */
#include "bpf_graphs.h"

char LICENSE[] SEC("license") = "GPL";

struct item { long key; struct bpf_list_node node; };
struct tnode { long key; struct bpf_rb_node rb; };
struct rc { long key; struct bpf_refcount ref; struct bpf_list_node l; struct bpf_rb_node r; };

private(L) struct bpf_spin_lock llock;
private(L) struct bpf_list_head items __contains(item, node);
private(K) struct bpf_spin_lock klock;
private(K) struct bpf_list_head kept __contains(item, node);
private(T) struct bpf_spin_lock tlock;
private(T) struct bpf_rb_root tree __contains(tnode, rb);
private(R) struct bpf_spin_lock rlock;
private(R) struct bpf_list_head rlist __contains(rc, l);
private(R) struct bpf_rb_root rtree __contains(rc, r);

#define __kptr __attribute__((btf_type_tag("kptr")))
static void *(*bpf_kptr_xchg)(void *dst, void *ptr) = (void *)BPF_FUNC_kptr_xchg;

/* A program-allocated object stashed in a map value's kptr (a local kptr). */
struct slot {
	struct item __kptr *it;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct slot);
} stash SEC(".maps");

/* A list in a hash map's value, beside its lock. */
struct hval {
	struct bpf_spin_lock lock;
	struct bpf_list_head head __contains(item, node);
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, struct hval);
} lists SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 16);
	__type(key, __u32);
	__type(value, __s64);
} results SEC(".maps");

static void put(__u32 index, __s64 value)
{
	__s64 *slot = bpf_map_lookup_elem(&results, &index);

	if (slot)
		*slot = value;
}

static int push_item(long key, int front)
{
	struct item *it = bpf_obj_new(typeof(*it));

	if (!it)
		return -1;
	it->key = key;
	bpf_spin_lock(&llock);
	if (front)
		bpf_list_push_front(&items, &it->node);
	else
		bpf_list_push_back(&items, &it->node);
	bpf_spin_unlock(&llock);
	return 0;
}

static long pop_item(int front)
{
	struct bpf_list_node *n;
	struct item *it;
	long key;

	bpf_spin_lock(&llock);
	n = front ? bpf_list_pop_front(&items) : bpf_list_pop_back(&items);
	bpf_spin_unlock(&llock);
	if (!n)
		return -1;
	it = container_of(n, struct item, node);
	key = it->key;
	bpf_obj_drop(it);
	return key;
}

/* Push 8 keys at the back (odd ones at the front), pop them all from the front: the order in results. */
SEC("tc")
int list_order(struct __sk_buff *skb)
{
	int i;

#pragma unroll
	for (i = 0; i < 8; i++)
		if (push_item((i * 7) % 11, i & 1))
			return 1;
#pragma unroll
	for (i = 0; i < 9; i++)
		put(i, pop_item(i & 2));
	return 0;
}

/* One item kept in a global list per run; the next run sees it (the list outlives the run). */
SEC("tc")
int keep(struct __sk_buff *skb)
{
	struct item *it = bpf_obj_new(typeof(*it));
	struct bpf_list_node *n;
	long seen = -1;

	if (!it)
		return 1;
	bpf_spin_lock(&klock);
	n = bpf_list_back(&kept);
	if (n)
		seen = container_of(n, struct item, node)->key;
	it->key = seen + 2;
	bpf_list_push_back(&kept, &it->node);
	bpf_spin_unlock(&klock);
	put(0, seen);
	return seen + 2;
}

static int less(struct bpf_rb_node *a, const struct bpf_rb_node *b)
{
	struct tnode *x = container_of(a, struct tnode, rb);
	struct tnode *y = container_of(b, struct tnode, rb);

	return x->key < y->key;
}

static long key_of(struct bpf_rb_node *n)
{
	return n ? container_of(n, struct tnode, rb)->key : -1;
}

/* Add 10 keys in a scrambled order; the root and its children (the tree's shape), then the
 * keys in order as first()+remove() drain the tree. */
SEC("tc")
int tree_order(struct __sk_buff *skb)
{
	const long keys[10] = {5, 3, 8, 1, 4, 7, 9, 2, 6, 0};
	struct bpf_rb_node *n, *l, *r;
	struct tnode *t;
	long shape;
	int i;

#pragma unroll
	for (i = 0; i < 10; i++) {
		t = bpf_obj_new(typeof(*t));
		if (!t)
			return 1;
		t->key = keys[i];
		bpf_spin_lock(&tlock);
		bpf_rbtree_add(&tree, &t->rb, less);
		bpf_spin_unlock(&tlock);
	}
	bpf_spin_lock(&tlock);
	n = bpf_rbtree_root(&tree);
	if (!n) {
		bpf_spin_unlock(&tlock);
		return 2;
	}
	l = bpf_rbtree_left(&tree, n);
	r = bpf_rbtree_right(&tree, n);
	shape = key_of(n) * 100 + key_of(l) * 10 + key_of(r);
	bpf_spin_unlock(&tlock);
	put(0, shape);
#pragma unroll
	for (i = 0; i < 11; i++) {
		bpf_spin_lock(&tlock);
		n = bpf_rbtree_first(&tree);
		if (n)
			n = bpf_rbtree_remove(&tree, n);
		bpf_spin_unlock(&tlock);
		if (!n) {
			put(i + 1, -1);
			continue;
		}
		t = container_of(n, struct tnode, rb);
		put(i + 1, t->key);
		bpf_obj_drop(t);
	}
	return 0;
}

static int rc_less(struct bpf_rb_node *a, const struct bpf_rb_node *b)
{
	return container_of(a, struct rc, r)->key < container_of(b, struct rc, r)->key;
}

/* One refcounted object in a list and a tree at once: removed from the tree (and that reference
 * dropped), it still lives in the list; added to the tree again, popped from the list, removed. */
SEC("tc")
int shared(struct __sk_buff *skb)
{
	struct rc *r = bpf_obj_new(typeof(*r)), *m;
	struct bpf_rb_node *n;
	struct bpf_list_node *ln;
	long ret;

	if (!r)
		return 1;
	r->key = 42;
	m = bpf_refcount_acquire(r);
	if (!m) {
		bpf_obj_drop(r);
		return 2;
	}
	bpf_spin_lock(&rlock);
	bpf_rbtree_add(&rtree, &r->r, rc_less);
	bpf_list_push_back(&rlist, &m->l);
	bpf_spin_unlock(&rlock);

	bpf_spin_lock(&rlock);
	n = bpf_rbtree_first(&rtree);
	if (n)
		n = bpf_rbtree_remove(&rtree, n);
	bpf_spin_unlock(&rlock);
	if (!n)
		return 3;
	r = container_of(n, struct rc, r);
	m = bpf_refcount_acquire(r);
	bpf_obj_drop(r);
	if (!m)
		return 4;
	bpf_spin_lock(&rlock);
	ret = bpf_rbtree_add(&rtree, &m->r, rc_less);
	ln = bpf_list_pop_front(&rlist);
	bpf_spin_unlock(&rlock);
	put(0, ret);
	if (!ln)
		return 5;
	r = container_of(ln, struct rc, l);
	put(1, r->key);
	bpf_obj_drop(r);
	bpf_spin_lock(&rlock);
	n = bpf_rbtree_first(&rtree);
	if (n)
		n = bpf_rbtree_remove(&rtree, n);
	bpf_spin_unlock(&rlock);
	if (!n)
		return 6;
	r = container_of(n, struct rc, r);
	put(2, r->key);
	bpf_obj_drop(r);
	bpf_spin_lock(&rlock);
	n = bpf_rbtree_first(&rtree);
	bpf_spin_unlock(&rlock);
	put(3, n ? 1 : 0);
	return 0;
}

/* Stash a new item (key: the previous one's + 5) in the map, dropping the one it replaces. */
SEC("tc")
int stash_item(struct __sk_buff *skb)
{
	struct item *it = bpf_obj_new(typeof(*it)), *old;
	struct slot *s;
	__u32 zero = 0;
	long seen = -1;

	if (!it)
		return 1;
	s = bpf_map_lookup_elem(&stash, &zero);
	if (!s) {
		bpf_obj_drop(it);
		return 2;
	}
	it->key = 0;
	old = bpf_kptr_xchg(&s->it, it);
	if (old) {
		seen = old->key;
		bpf_obj_drop(old);
	}
	/* the stashed object is the map's now: set its key through a second exchange */
	it = bpf_kptr_xchg(&s->it, (void *)0);
	if (!it)
		return 3;
	it->key = seen + 5;
	old = bpf_kptr_xchg(&s->it, it);
	if (old)
		bpf_obj_drop(old);
	put(0, seen);
	return seen + 5;
}

/* Replace the item in the list of lists[7] (made on first use) by one whose key is one more. */
SEC("tc")
int map_list(struct __sk_buff *skb)
{
	struct hval zero = {}, *v;
	struct bpf_list_node *n;
	struct item *it;
	__u32 key = 7;
	long prev = -1;

	v = bpf_map_lookup_elem(&lists, &key);
	if (!v) {
		bpf_map_update_elem(&lists, &key, &zero, 0);
		v = bpf_map_lookup_elem(&lists, &key);
		if (!v)
			return 1;
	}
	it = bpf_obj_new(typeof(*it));
	if (!it)
		return 2;
	bpf_spin_lock(&v->lock);
	n = bpf_list_pop_front(&v->head);
	bpf_spin_unlock(&v->lock);
	if (n) {
		struct item *old = container_of(n, struct item, node);

		prev = old->key;
		bpf_obj_drop(old);
	}
	it->key = prev + 1;
	bpf_spin_lock(&v->lock);
	bpf_list_push_back(&v->head, &it->node);
	bpf_spin_unlock(&v->lock);
	put(0, prev);
	return prev + 1;
}
