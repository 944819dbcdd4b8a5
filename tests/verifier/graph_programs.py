"""C programs using program-allocated objects, linked lists and rb-trees, with the kernel's verdicts.

Shared by the verifier tests (verdicts and messages compared with the kernel's) and the runtime
tests (the accepted ones that return something are run by BPF_PROG_TEST_RUN in the kernel and
under pybpf's interpreter and JIT).
"""

from __future__ import annotations

HEADER = r"""
#include "bpf_graphs.h"
char LICENSE[] SEC("license") = "GPL";
"""
# Each program declares only what it uses, and a global pointer to each struct keeps it in the BTF:
# clang leaves structs only local variables use out of the BTF, and a list head whose contained
# struct is missing makes the map's BTF invalid.
LIST = r"""
struct foo { int key; struct bpf_list_node node; int data; };
struct foo *foo_btf;  /* keeps struct foo in the BTF even where nothing allocates one */
private(A) struct bpf_spin_lock glock;
private(A) struct bpf_list_head ghead __contains(foo, node);
"""
LIST_B = LIST + r"""
private(B) struct bpf_spin_lock block;
private(B) struct bpf_list_head bhead __contains(foo, node);
"""
BAR = r"""
struct bar { long x; struct bpf_list_node node; };
struct bar *bar_btf;
"""
TWO = r"""
struct two { int key; struct bpf_list_node a; struct bpf_list_node b; };
struct two *two_btf;
private(E) struct bpf_spin_lock elock;
private(E) struct bpf_list_head ehead __contains(two, b);
"""
TREE = r"""
struct tnode { long key; struct bpf_rb_node rb; long value; };
struct tnode *tnode_btf;
private(C) struct bpf_spin_lock tlock;
private(C) struct bpf_rb_root troot __contains(tnode, rb);
static int less(struct bpf_rb_node *a, const struct bpf_rb_node *b)
{
    struct tnode *x = container_of(a, struct tnode, rb);
    struct tnode *y = container_of(b, struct tnode, rb);
    return x->key < y->key;
}
"""
RC = r"""
struct rc { int key; struct bpf_refcount ref; struct bpf_list_node l; struct bpf_rb_node r; };
struct rc *rc_btf;
private(D) struct bpf_spin_lock rlock;
private(D) struct bpf_list_head rlist __contains(rc, l);
private(D) struct bpf_rb_root rtree __contains(rc, r);
static int rc_less(struct bpf_rb_node *a, const struct bpf_rb_node *b)
{
    struct rc *x = container_of(a, struct rc, r);
    struct rc *y = container_of(b, struct rc, r);
    return x->key < y->key;
}
"""
STASH = r"""
#define __kptr __attribute__((btf_type_tag("kptr")))
static void *(*bpf_kptr_xchg)(void *dst, void *ptr) = (void *)BPF_FUNC_kptr_xchg;
struct sval { struct foo __kptr *f; };
struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 1); __type(key, __u32);
    __type(value, struct sval); } stash SEC(".maps");
"""
MAP = r"""
struct mval { struct bpf_spin_lock lock; struct bpf_list_head head __contains(foo, node); };
struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(max_entries, 4); __type(key, __u32);
    __type(value, struct mval); } hmap SEC(".maps");
"""


def tc(body: str, decls: str = LIST) -> str:
    return HEADER + decls + 'SEC("tc") int prog(struct __sk_buff *skb) {\n' + body + "\n}"


NEW = "struct foo *f = bpf_obj_new(typeof(*f)); if (!f) return 0;\n"

PROGRAMS: dict[str, str] = {
    # --- accepted ---
    "list-push-pop": tc(NEW + r"""
    f->key = 5;
    bpf_spin_lock(&glock); bpf_list_push_front(&ghead, &f->node); bpf_spin_unlock(&glock);
    bpf_spin_lock(&glock); struct bpf_list_node *n = bpf_list_pop_front(&ghead); bpf_spin_unlock(&glock);
    if (!n) return 1;
    f = container_of(n, struct foo, node);
    int k = f->key; bpf_obj_drop(f); return k;"""),
    "obj-new-drop": tc(NEW + "f->key = 1; f->data = f->key + 1; bpf_obj_drop(f); return 0;"),
    "non-owning-under-lock": tc(NEW + r"""
    bpf_spin_lock(&glock); bpf_list_push_back(&ghead, &f->node); f->data = 7; bpf_spin_unlock(&glock);
    return 0;"""),
    "list-front-peek": tc(NEW + r"""
    f->key = 3;
    bpf_spin_lock(&glock); bpf_list_push_back(&ghead, &f->node);
    struct bpf_list_node *n = bpf_list_front(&ghead);
    int k = n ? container_of(n, struct foo, node)->key : -1;
    bpf_spin_unlock(&glock); return k;"""),
    "map-value-list": tc(r"""
    __u32 key = 0; struct mval *v = bpf_map_lookup_elem(&hmap, &key); if (!v) return 0;
    """ + NEW + r"""
    bpf_spin_lock(&v->lock); bpf_list_push_front(&v->head, &f->node); bpf_spin_unlock(&v->lock);
    return 0;""", LIST + MAP),
    "rbtree-add-first-remove": tc(r"""
    struct tnode *t = bpf_obj_new(typeof(*t)); if (!t) return 0;
    t->key = 4;
    bpf_spin_lock(&tlock); bpf_rbtree_add(&troot, &t->rb, less);
    struct bpf_rb_node *n = bpf_rbtree_first(&troot);
    if (!n) { bpf_spin_unlock(&tlock); return 1; }
    n = bpf_rbtree_remove(&troot, n);
    bpf_spin_unlock(&tlock);
    if (!n) return 2;
    t = container_of(n, struct tnode, rb);
    long k = t->key; bpf_obj_drop(t); return k;""", TREE),
    "refcount-two-graphs": tc(r"""
    struct rc *r = bpf_obj_new(typeof(*r)); if (!r) return 0;
    struct rc *m = bpf_refcount_acquire(r);
    if (!m) { bpf_obj_drop(r); return 1; }
    bpf_spin_lock(&rlock);
    bpf_rbtree_add(&rtree, &r->r, rc_less);
    bpf_list_push_back(&rlist, &m->l);
    bpf_spin_unlock(&rlock);
    return 0;""", RC),
    # --- rejected ---
    "leak": tc(NEW + "f->key = 1; return 0;"),
    "push-no-lock": tc(NEW + "bpf_list_push_front(&ghead, &f->node); return 0;"),
    "push-other-lock": tc(NEW + r"""
    bpf_spin_lock(&block); bpf_list_push_front(&ghead, &f->node); bpf_spin_unlock(&block); return 0;""", LIST_B),
    "use-after-drop": tc(NEW + "bpf_obj_drop(f); return f->key;"),
    "use-after-unlock": tc(NEW + r"""
    bpf_spin_lock(&glock); bpf_list_push_front(&ghead, &f->node); bpf_spin_unlock(&glock);
    return f->key;"""),
    "push-twice": tc(NEW + r"""
    bpf_spin_lock(&glock); bpf_list_push_front(&ghead, &f->node); bpf_list_push_front(&ghead, &f->node);
    bpf_spin_unlock(&glock); return 0;"""),
    "drop-non-owning": tc(NEW + r"""
    bpf_spin_lock(&glock); bpf_list_push_front(&ghead, &f->node); bpf_spin_unlock(&glock);
    bpf_obj_drop(f); return 0;"""),
    "wrong-node-type": tc(r"""
    struct bar *b = bpf_obj_new(typeof(*b)); if (!b) return 0;
    bpf_spin_lock(&glock); bpf_list_push_front(&ghead, &b->node); bpf_spin_unlock(&glock); return 0;""", LIST + BAR),
    "wrong-node-member": tc(r"""
    struct two *t = bpf_obj_new(typeof(*t)); if (!t) return 0;
    bpf_spin_lock(&elock); bpf_list_push_front(&ehead, &t->a); bpf_spin_unlock(&elock); return 0;""", TWO),
    "direct-node-access": tc(NEW + "int x = *(volatile int *)&f->node; bpf_obj_drop(f); return x;"),
    "pop-unchecked": tc(r"""
    bpf_spin_lock(&glock); struct bpf_list_node *n = bpf_list_pop_front(&ghead); bpf_spin_unlock(&glock);
    struct foo *f = container_of(n, struct foo, node); int k = f->key; bpf_obj_drop(f); return k;"""),
    "new-under-lock": tc(r"""
    bpf_spin_lock(&glock); struct foo *f = bpf_obj_new(typeof(*f));
    if (f) bpf_list_push_front(&ghead, &f->node); bpf_spin_unlock(&glock); return 0;"""),
    "drop-inner-pointer": tc(NEW + "bpf_obj_drop(&f->node); return 0;"),
    "refcount-no-field": tc(NEW + r"""
    struct foo *g = bpf_refcount_acquire(f); if (g) bpf_obj_drop(g); bpf_obj_drop(f); return 0;"""),
    "pop-leak": tc(r"""
    bpf_spin_lock(&glock); struct bpf_list_node *n = bpf_list_pop_front(&ghead); bpf_spin_unlock(&glock);
    return n != 0;"""),
    "map-value-other-lock": tc(r"""
    __u32 key = 0; struct mval *v = bpf_map_lookup_elem(&hmap, &key); if (!v) return 0;
    struct mval *w = bpf_map_lookup_elem(&hmap, &key); if (!w) return 0;
    """ + NEW + r"""
    bpf_spin_lock(&v->lock); bpf_list_push_front(&w->head, &f->node); bpf_spin_unlock(&v->lock);
    return 0;""", LIST + MAP),
    "rbtree-remove-owning-unlocked": tc(r"""
    struct tnode *t = bpf_obj_new(typeof(*t)); if (!t) return 0;
    bpf_spin_lock(&tlock); bpf_rbtree_add(&troot, &t->rb, less); bpf_spin_unlock(&tlock);
    bpf_spin_lock(&tlock); struct bpf_rb_node *n = bpf_rbtree_remove(&troot, &t->rb); bpf_spin_unlock(&tlock);
    if (n) bpf_obj_drop(container_of(n, struct tnode, rb)); return 0;""", TREE),
    "object-out-of-bounds": tc(NEW + "int x = *(volatile int *)((char *)f + 40); bpf_obj_drop(f); return x;"),
    "rbtree-callback-range": tc(r"""
    struct tnode *t = bpf_obj_new(typeof(*t)); if (!t) return 0;
    bpf_spin_lock(&tlock); bpf_rbtree_add(&troot, &t->rb, bad_less); bpf_spin_unlock(&tlock); return 0;""",
        TREE + r"""
static int bad_less(struct bpf_rb_node *a, const struct bpf_rb_node *b) { return 2; }
"""),
    "rbtree-first-no-lock": tc("struct bpf_rb_node *n = bpf_rbtree_first(&troot); return n != 0;", TREE),
    "owning-survives-unlock": tc(NEW + r"""
    bpf_spin_lock(&glock); bpf_list_push_front(&ghead, &f->node);
    struct bpf_list_node *n = bpf_list_pop_back(&ghead); bpf_spin_unlock(&glock);
    if (!n) return 0;
    struct foo *g = container_of(n, struct foo, node); g->data = 3; int d = g->data; bpf_obj_drop(g); return d;"""),
    "refcount-from-non-owning": tc(r"""
    struct rc *r = bpf_obj_new(typeof(*r)); if (!r) return 0;
    r->key = 9;
    bpf_spin_lock(&rlock); bpf_list_push_back(&rlist, &r->l);
    struct rc *m = bpf_refcount_acquire(r);
    bpf_spin_unlock(&rlock);
    if (!m) return 0;
    int k = m->key; bpf_obj_drop(m); return k;""", RC),
    "obj-new-not-struct": tc(r"""
    int *p = bpf_obj_new_impl(bpf_core_type_id_local(long), (void *)0); if (p) bpf_obj_drop(p); return 0;"""),
    "helper-under-lock": tc(NEW + r"""
    bpf_spin_lock(&glock); bpf_list_push_front(&ghead, &f->node); f->data = bpf_get_prandom_u32();
    bpf_spin_unlock(&glock); return 0;"""),
    "rbtree-root-left-right": tc(r"""
    struct tnode *t = bpf_obj_new(typeof(*t)); if (!t) return 0;
    t->key = 1;
    bpf_spin_lock(&tlock); bpf_rbtree_add(&troot, &t->rb, less);
    long sum = 0;
    struct bpf_rb_node *n = bpf_rbtree_root(&troot);
    if (n) {
        sum += container_of(n, struct tnode, rb)->key;
        struct bpf_rb_node *l = bpf_rbtree_left(&troot, n);
        if (l) sum += 10 * container_of(l, struct tnode, rb)->key;
        struct bpf_rb_node *r = bpf_rbtree_right(&troot, n);
        if (r) sum += 100 * container_of(r, struct tnode, rb)->key;
    }
    bpf_spin_unlock(&tlock); return sum;""", TREE),
    "write-after-drop-in-tree-unlock": tc(r"""
    struct tnode *t = bpf_obj_new(typeof(*t)); if (!t) return 0;
    bpf_spin_lock(&tlock); bpf_rbtree_add(&troot, &t->rb, less); bpf_spin_unlock(&tlock);
    t->value = 1; return 0;""", TREE),
    "stash-local-kptr": tc(NEW + r"""
    __u32 key = 0; struct sval *v = bpf_map_lookup_elem(&stash, &key);
    if (!v) { bpf_obj_drop(f); return 0; }
    f->key = 11;
    struct foo *old = bpf_kptr_xchg(&v->f, f);
    if (old) bpf_obj_drop(old);
    return 0;""", LIST + STASH),
    "stash-local-kptr-leak": tc(NEW + r"""
    __u32 key = 0; struct sval *v = bpf_map_lookup_elem(&stash, &key);
    if (!v) { bpf_obj_drop(f); return 0; }
    bpf_kptr_xchg(&v->f, f);
    return 0;""", LIST + STASH),
    "rbtree-kfunc-in-callback": tc(r"""
    struct tnode *t = bpf_obj_new(typeof(*t)); if (!t) return 0;
    bpf_spin_lock(&tlock); bpf_rbtree_add(&troot, &t->rb, peek_less); bpf_spin_unlock(&tlock); return 0;""",
        TREE + r"""
static int peek_less(struct bpf_rb_node *a, const struct bpf_rb_node *b)
{
    struct bpf_rb_node *n = bpf_rbtree_first(&troot);
    return n == a;
}
"""),
}
