"""kptrs in map values and the trust of kernel-object pointers, verified as the kernel verifies them.

Each C program is compiled here, verified by us and, where bpf() works, loaded into the kernel:
the verdict in the table is the kernel's (the first test is the differential), the fragment our
reason must hold is the kernel's message (the second test). They cover the kernel's
``check_map_kptr_access`` (loads give untrusted or RCU pointers, stores only NULL or a matching
pointer into an unreferenced slot, exact 8-byte BPF_MEM accesses only, no helper access),
``bpf_kptr_xchg`` (a referenced slot, a referenced pointer of the slot's type in, the old one out
as a reference to release), and the trust rules of KF_TRUSTED_ARGS / KF_RCU / release kfuncs
(RCU pointers untrusted after bpf_rcu_read_unlock, or in a sleepable program).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pybpf.btf import Btf
from pybpf.btf.parse import StringTable
from pybpf.btf.record import FieldKind, SpecialField, special_fields
from pybpf.btf.types import Array, Int, IntEncoding, Member, Ptr, Struct, TypeTag
from pybpf.errors import BtfFieldError
from pybpf.obj import load_spec
from pybpf.verifier import verify_program

from .c_objects import KERNEL_AVAILABLE, KERNEL_REASON, compile_c, kernel_verdict, our_verdict

HEADER = r"""
#include "bpf_kptr.h"
struct map_value {
    __u64 plain;
    struct task_struct __kptr_untrusted *unref;
    struct task_struct __kptr *ref;
    struct bpf_cpumask __kptr *mask;
    /* Zero-length: no bytes, no field; makes clang describe the structs in full (a struct only
     * reached through a member pointer gets a forward declaration, which no kptr may name). */
    struct task_struct btf_task[0];
    struct bpf_cpumask btf_mask[0];
};
struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 2); __type(key, int); __type(value, struct map_value); }
    values SEC(".maps");
char LICENSE[] SEC("license") = "GPL";
static __always_inline struct map_value *value_at(int key) { return bpf_map_lookup_elem(&values, &key); }
"""

# name -> (C source after the header, the kernel's verdict, a fragment of our reason when rejected)
PROGRAMS: dict[str, tuple[str, bool, str]] = {
    "xchg-in-release-old": (r"""
SEC("tc") int p(struct __sk_buff *s) {
    struct map_value *v = value_at(0); struct task_struct *t;
    if (!v) return 0;
    t = bpf_task_from_pid(1);
    if (!t) return 0;
    t = bpf_kptr_xchg(&v->ref, t);
    if (t) bpf_task_release(t);
    return 0;
}""", True, ""),
    "xchg-out-release": (r"""
SEC("tc") int p(struct __sk_buff *s) {
    struct map_value *v = value_at(0); struct task_struct *t;
    if (!v) return 0;
    t = bpf_kptr_xchg(&v->ref, NULL);
    if (t) bpf_task_release(t);
    return 0;
}""", True, ""),
    "xchg-old-leaked": (r"""
SEC("tc") int p(struct __sk_buff *s) {
    struct map_value *v = value_at(0); struct task_struct *t;
    if (!v) return 0;
    t = bpf_kptr_xchg(&v->ref, NULL);
    return t != 0;
}""", False, "Unreleased reference"),
    "rcu-load-acquire": (r"""
SEC("tc") int p(struct __sk_buff *s) {
    struct map_value *v = value_at(0); struct task_struct *t, *a; int pid = 0;
    if (!v) return 0;
    t = v->ref;
    if (!t) return 0;
    a = bpf_task_acquire(t);
    if (!a) return 0;
    pid = kernel_read(a, pid);
    bpf_task_release(a);
    return pid;
}""", True, ""),
    "rcu-pointer-after-unlock": (r"""
SEC("tc") int p(struct __sk_buff *s) {
    struct map_value *v = value_at(0); struct task_struct *t, *a;
    if (!v) return 0;
    bpf_rcu_read_lock();
    t = v->ref;
    bpf_rcu_read_unlock();
    if (!t) return 0;
    a = bpf_task_acquire(t);
    if (a) bpf_task_release(a);
    return 0;
}""", False, "R1 must be a rcu pointer"),
    "untrusted-load-acquire": (r"""
SEC("tc") int p(struct __sk_buff *s) {
    struct map_value *v = value_at(0); struct task_struct *t, *a;
    if (!v) return 0;
    t = v->unref;
    if (!t) return 0;
    a = bpf_task_acquire(t);
    if (a) bpf_task_release(a);
    return 0;
}""", False, "R1 must be a rcu pointer"),
    "untrusted-load-read": (r"""
SEC("tc") int p(struct __sk_buff *s) {
    struct map_value *v = value_at(0); struct task_struct *t;
    if (!v) return 0;
    t = v->unref;
    return t ? kernel_read(t, pid) : 0;
}""", True, ""),
    "untrusted-load-unchecked": (r"""
SEC("tc") int p(struct __sk_buff *s) {
    struct map_value *v = value_at(0);
    if (!v) return 0;
    return v->unref->tgid;
}""", False, "invalid mem access 'untrusted_ptr_or_null_'"),
    "store-unref-null": (r"""
SEC("tc") int p(struct __sk_buff *s) {
    struct map_value *v = value_at(0);
    if (!v) return 0;
    v->unref = NULL;
    return 0;
}""", True, ""),
    "store-unref-acquired": (r"""
SEC("tc") int p(struct __sk_buff *s) {
    struct map_value *v = value_at(0); struct task_struct *t;
    if (!v) return 0;
    t = bpf_task_from_pid(1);
    if (!t) return 0;
    v->unref = t;
    bpf_task_release(t);
    return 0;
}""", True, ""),
    "store-unref-wrong-type": (r"""
SEC("tc") int p(struct __sk_buff *s) {
    struct map_value *v = value_at(0); struct cgroup *c;
    if (!v) return 0;
    c = bpf_cgroup_from_id(1);
    if (!c) return 0;
    v->unref = (struct task_struct *)c;
    bpf_cgroup_release(c);
    return 0;
}""", False, "invalid kptr access, R"),
    "store-to-referenced": (r"""
SEC("tc") int p(struct __sk_buff *s) {
    struct map_value *v = value_at(0); struct task_struct *t;
    if (!v) return 0;
    t = bpf_task_from_pid(1);
    if (!t) return 0;
    v->ref = t;
    bpf_task_release(t);
    return 0;
}""", False, "store to referenced kptr disallowed"),
    "narrow-read": (r"""
SEC("tc") int p(struct __sk_buff *s) {
    struct map_value *v = value_at(0);
    if (!v) return 0;
    return *(volatile __u32 *)&v->ref;
}""", False, "kptr access size must be BPF_DW"),
    "misaligned-read": (r"""
SEC("tc") int p(struct __sk_buff *s) {
    struct map_value *v = value_at(0);
    if (!v) return 0;
    return *(volatile __u64 *)((char *)&v->ref + 4) != 0;
}""", False, "kptr access misaligned expected=16 off=20"),
    "helper-reads-kptr": (r"""
SEC("tc") int p(struct __sk_buff *s) {
    struct map_value *v = value_at(0); int k = 1;
    if (!v) return 0;
    return bpf_map_update_elem(&values, &k, v, 0);
}""", False, "kptr cannot be accessed indirectly by helper"),
    "atomic-on-kptr": (r"""
SEC("tc") int p(struct __sk_buff *s) {
    struct map_value *v = value_at(0);
    if (!v) return 0;
    __sync_fetch_and_add((__u64 *)&v->unref, 1);
    return 0;
}""", False, "kptr in map can only be accessed using BPF_MEM instruction mode"),
    "xchg-unreferenced-slot": (r"""
SEC("tc") int p(struct __sk_buff *s) {
    struct map_value *v = value_at(0); struct task_struct *t;
    if (!v) return 0;
    t = bpf_kptr_xchg(&v->unref, NULL);
    if (t) bpf_task_release(t);
    return 0;
}""", False, "off=8 kptr isn't referenced kptr"),
    "xchg-not-a-kptr": (r"""
SEC("tc") int p(struct __sk_buff *s) {
    struct map_value *v = value_at(0); struct task_struct *t;
    if (!v) return 0;
    t = bpf_kptr_xchg(&v->plain, NULL);
    if (t) bpf_task_release(t);
    return 0;
}""", False, "off=0 doesn't point to kptr"),
    "xchg-unreferenced-source": (r"""
SEC("tc") int p(struct __sk_buff *s) {
    struct map_value *v = value_at(0); struct task_struct *t;
    if (!v) return 0;
    t = bpf_kptr_xchg(&v->ref, bpf_get_current_task_btf());
    if (t) bpf_task_release(t);
    return 0;
}""", False, "R2 must be referenced when passed to release function"),
    "xchg-maybe-null-source": (r"""
SEC("tc") int p(struct __sk_buff *s) {
    struct map_value *v = value_at(0); struct task_struct *t;
    if (!v) return 0;
    t = bpf_kptr_xchg(&v->ref, bpf_task_from_pid(1));
    if (t) bpf_task_release(t);
    return 0;
}""", False, "Possibly NULL pointer passed to helper arg2"),
    "xchg-wrong-type": (r"""
SEC("tc") int p(struct __sk_buff *s) {
    struct map_value *v = value_at(0); struct cgroup *c;
    if (!v) return 0;
    c = bpf_cgroup_from_id(1);
    if (!c) return 0;
    c = bpf_kptr_xchg(&v->ref, c);
    if (c) bpf_cgroup_release(c);
    return 0;
}""", False, "invalid kptr access, R2 type=ptr_cgroup expected=ptr_task_struct"),
    "xchg-value-maybe-null": (r"""
SEC("tc") int p(struct __sk_buff *s) {
    struct map_value *v = value_at(s->len & 1); struct task_struct *t;
    t = bpf_kptr_xchg(&v->ref, NULL);
    if (t) bpf_task_release(t);
    return 0;
}""", False, "null-check it first"),
    "current-task-acquire": (r"""
SEC("tc") int p(struct __sk_buff *s) {
    struct task_struct *a = bpf_task_acquire(bpf_get_current_task_btf());
    if (a) bpf_task_release(a);
    return 0;
}""", True, ""),
    "release-unreferenced": (r"""
SEC("tc") int p(struct __sk_buff *s) {
    bpf_task_release(bpf_get_current_task_btf());
    return 0;
}""", False, "release kernel function bpf_task_release expects refcounted PTR_TO_BTF_ID"),
    "cpumask-in-tc": (r"""
SEC("tc") int p(struct __sk_buff *s) {
    struct bpf_cpumask *m = bpf_cpumask_create();
    if (m) bpf_cpumask_release(m);
    return 0;
}""", False, "calling kernel function bpf_cpumask_create is not allowed"),
    "cpumask-stash": (r"""
SEC("syscall") int p(void *ctx) {
    struct map_value *v = value_at(0); struct bpf_cpumask *m; int w;
    if (!v) return 0;
    m = bpf_cpumask_create();
    if (!m) return -1;
    bpf_cpumask_set_cpu(1, m);
    bpf_cpumask_set_cpu(3, m);
    w = bpf_cpumask_weight(&m->cpumask);
    m = bpf_kptr_xchg(&v->mask, m);
    if (m) bpf_cpumask_release(m);
    return w;
}""", True, ""),
    "cpumask-acquire-rcu": (r"""
SEC("syscall") int p(void *ctx) {
    struct map_value *v = value_at(0); struct bpf_cpumask *m;
    if (!v) return 0;
    m = v->mask;
    if (!m) return 0;
    m = bpf_cpumask_acquire(m);
    bpf_cpumask_release(m);
    return 0;
}""", False, "R1 must be referenced or trusted"),
    "cpumask-rcu-test": (r"""
SEC("syscall") int p(void *ctx) {
    struct map_value *v = value_at(0); struct bpf_cpumask *m; int r;
    if (!v) return 0;
    bpf_rcu_read_lock();
    m = v->mask;
    r = m ? bpf_cpumask_test_cpu(3, &m->cpumask) : -1;
    bpf_rcu_read_unlock();
    return r;
}""", True, ""),
    "cpumask-sleepable-load-untrusted": (r"""
SEC("syscall") int p(void *ctx) {
    struct map_value *v = value_at(0); struct bpf_cpumask *m;
    if (!v) return 0;
    m = v->mask;
    return m ? bpf_cpumask_test_cpu(3, &m->cpumask) : -1;
}""", False, "R2 must be a rcu pointer"),
}


@pytest.fixture(scope="module")
def objects(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("kptrs")
    return {name: compile_c(root, name.replace("-", "_"), HEADER + source) for name, (source, _, _) in PROGRAMS.items()}


@pytest.mark.kernel
@pytest.mark.parametrize("name", PROGRAMS)
def test_the_table_holds_the_kernels_verdict(name: str, objects: dict[str, Path]) -> None:
    if not KERNEL_AVAILABLE:
        pytest.skip(f"bpf() unavailable: {KERNEL_REASON}")
    accepted, log = kernel_verdict(objects[name])
    assert accepted == PROGRAMS[name][1], log[-2000:]
    if not accepted:
        assert PROGRAMS[name][2] in log, log[-2000:]


@pytest.mark.parametrize("name", PROGRAMS)
def test_our_verdict_and_reason(name: str, objects: dict[str, Path]) -> None:
    _, expected, fragment = PROGRAMS[name]
    accepted, reason = our_verdict(objects[name])
    assert accepted == expected, reason
    assert fragment in reason


# -- the value's record -------------------------------------------------------------------------


def _btf(*types: object) -> Btf:
    return Btf(types, StringTable(b"\0"))  # type: ignore[arg-type]


_U64 = Int("u64", 8, IntEncoding(0), 0, 64)
_TASK = Struct("task_struct", 8, (Member("pid", 1, 0),))
# 1 u64, 2 task_struct, 3 kptr tag -> 2, 4 pointer -> 3, 5 untrusted tag -> 2, 6 pointer -> 5
_TYPES = (_U64, _TASK, TypeTag("kptr", 2), Ptr("", 3), TypeTag("kptr_untrusted", 2), Ptr("", 5))


def test_kptrs_are_found_with_their_kind_and_target() -> None:
    value = Struct("v", 24, (Member("a", 1, 0), Member("ref", 4, 64), Member("unref", 6, 128)))
    assert special_fields(_btf(*_TYPES, value), 7) == (
        SpecialField(FieldKind.KPTR_REF, 8, 8, "task_struct", 2),
        SpecialField(FieldKind.KPTR_UNREF, 16, 8, "task_struct", 2),
    )


def test_an_array_of_kptrs_is_one_kptr_per_element() -> None:
    array = Array("", 4, 1, 3)
    value = Struct("v", 24, (Member("refs", 7, 0),))
    fields = special_fields(_btf(*_TYPES, array, value), 8)
    assert [(field.kind, field.offset) for field in fields] == [(FieldKind.KPTR_REF, 0), (FieldKind.KPTR_REF, 8),
                                                                (FieldKind.KPTR_REF, 16)]


def test_a_misaligned_kptr_is_an_ordinary_pointer() -> None:
    """btf_find_field_one ignores a field at an offset its alignment does not divide."""
    value = Struct("v", 12, (Member("a", 1, 0), Member("ref", 4, 32)))
    assert special_fields(_btf(*_TYPES, value), 7) == ()


@pytest.mark.parametrize("tags", [("kptr_weird",), ("kptr", "kptr_untrusted")])
def test_an_unknown_or_second_tag_is_refused(tags: tuple[str, ...]) -> None:
    types: list[object] = [_U64, _TASK]
    target = 2
    for tag in reversed(tags):
        types.append(TypeTag(tag, target))
        target = len(types)
    types.append(Ptr("", target))
    types.append(Struct("v", 8, (Member("p", len(types), 0),)))
    with pytest.raises(BtfFieldError):
        special_fields(_btf(*types), len(types))


def test_a_kptr_to_a_non_struct_is_refused() -> None:
    value = Struct("v", 8, (Member("p", 3, 0),))
    with pytest.raises(BtfFieldError):
        special_fields(_btf(_U64, TypeTag("kptr", 1), Ptr("", 2), value), 4)


# -- trusted context arguments of BTF tracing programs --------------------------------------------

VMLINUX = Path("/sys/kernel/btf/vmlinux")

# name -> (C source after the header, the kernel's verdict, a fragment of our reason when rejected).
# tp_btf arguments are trusted, fentry ones are not (the old PTR_TO_BTF_ID): neither kind is a
# reference. The verifier types them from vmlinux BTF, handed in as target_btf.
TRACING: dict[str, tuple[str, bool, str]] = {
    "tp-btf-arg-acquire": (r"""
SEC("tp_btf/task_newtask") int p(__u64 *ctx) {
    struct task_struct *a = bpf_task_acquire((struct task_struct *)ctx[0]);
    if (a) bpf_task_release(a);
    return 0;
}""", True, ""),
    "tp-btf-second-arg-acquire": (r"""
SEC("tp_btf/sched_switch") int p(__u64 *ctx) {
    struct task_struct *a = bpf_task_acquire((struct task_struct *)ctx[2]);
    if (a) bpf_task_release(a);
    return 0;
}""", True, ""),
    "tp-btf-arg-released": (r"""
SEC("tp_btf/task_newtask") int p(__u64 *ctx) {
    bpf_task_release((struct task_struct *)ctx[0]);
    return 0;
}""", False, "release kernel function bpf_task_release expects refcounted PTR_TO_BTF_ID"),
    "tp-btf-arg-into-referenced-kptr": (r"""
SEC("tp_btf/task_newtask") int p(__u64 *ctx) {
    struct map_value *v = value_at(0); struct task_struct *t;
    if (!v) return 0;
    t = bpf_kptr_xchg(&v->ref, (struct task_struct *)ctx[0]);
    if (t) bpf_task_release(t);
    return 0;
}""", False, "R2 must be referenced when passed to release function"),
    "tp-btf-arg-into-untrusted-kptr": (r"""
SEC("tp_btf/task_newtask") int p(__u64 *ctx) {
    struct map_value *v = value_at(0);
    if (!v) return 0;
    v->unref = (struct task_struct *)ctx[0];
    return 0;
}""", True, ""),
    "fentry-arg-acquire": (r"""
SEC("fentry/wake_up_new_task") int p(__u64 *ctx) {
    struct task_struct *a = bpf_task_acquire((struct task_struct *)ctx[0]);
    if (a) bpf_task_release(a);
    return 0;
}""", False, "R1 must be a rcu pointer"),
    "fentry-arg-into-untrusted-kptr": (r"""
SEC("fentry/wake_up_new_task") int p(__u64 *ctx) {
    struct map_value *v = value_at(0);
    if (!v) return 0;
    v->unref = (struct task_struct *)ctx[0];
    return 0;
}""", True, ""),
    "lsm-arg-acquire": (r"""
SEC("lsm/task_alloc") int p(__u64 *ctx) {
    struct task_struct *a = bpf_task_acquire((struct task_struct *)ctx[0]);
    if (a) bpf_task_release(a);
    return 0;
}""", True, ""),
}


@pytest.fixture(scope="module")
def vmlinux() -> Btf:
    if not VMLINUX.exists():
        pytest.skip("no /sys/kernel/btf/vmlinux to type the tracing programs' arguments from")
    return Btf.from_bytes(VMLINUX.read_bytes())


@pytest.fixture(scope="module")
def tracing_objects(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("kptr_tracing")
    return {name: compile_c(root, name.replace("-", "_"), HEADER + source) for name, (source, _, _) in TRACING.items()}


@pytest.mark.kernel
@pytest.mark.parametrize("name", TRACING)
def test_tracing_table_holds_the_kernels_verdict(name: str, tracing_objects: dict[str, Path]) -> None:
    if not KERNEL_AVAILABLE:
        pytest.skip(f"bpf() unavailable: {KERNEL_REASON}")
    accepted, log = kernel_verdict(tracing_objects[name])
    assert accepted == TRACING[name][1], log[-2000:]
    if not accepted:
        assert TRACING[name][2] in log, log[-2000:]


@pytest.mark.parametrize("name", TRACING)
def test_tracing_arguments_trusted_as_the_kernel_trusts_them(name: str, tracing_objects: dict[str, Path],
                                                            vmlinux: Btf) -> None:
    _, expected, fragment = TRACING[name]
    spec = load_spec(tracing_objects[name])
    report = verify_program(spec.programs["p"], spec, target_btf=vmlinux)
    reason = report.diagnostics[0].reason if report.diagnostics else ""
    assert report.accepted == expected, reason
    assert fragment in reason


# -- program-allocated objects in kptrs (bpf_obj_new; the pointee is a type of the program) ------

# The struct's name must not be a vmlinux struct's: the kernel looks it up there first (a
# "struct node" would be the kernel's, which has no destructor, and the BTF would not load).
LOCAL_HEADER = r"""
#include "bpf_kptr.h"
#include "bpf_graphs.h"
struct pybpf_node { __u64 data; };
struct map_value {
    struct pybpf_node __kptr *local;
    struct task_struct __kptr *ref;
    struct task_struct btf_task[0];
    struct pybpf_node btf_node[0];
};
struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 2); __type(key, int); __type(value, struct map_value); }
    values SEC(".maps");
char LICENSE[] SEC("license") = "GPL";
static __always_inline struct map_value *value_at(int key) { return bpf_map_lookup_elem(&values, &key); }
"""

# name -> (C source after LOCAL_HEADER, the kernel's verdict, a fragment of our reason when rejected)
LOCAL: dict[str, tuple[str, bool, str]] = {
    "local-stash": (r"""
SEC("tc") int p(struct __sk_buff *s) {
    struct map_value *v = value_at(0); struct pybpf_node *n;
    if (!v) return 0;
    n = bpf_obj_new(struct pybpf_node);
    if (!n) return 0;
    n->data = 5;
    n = bpf_kptr_xchg(&v->local, n);
    if (n) bpf_obj_drop(n);
    return 0;
}""", True, ""),
    "local-out-leaked": (r"""
SEC("tc") int p(struct __sk_buff *s) {
    struct map_value *v = value_at(0); struct pybpf_node *n;
    if (!v) return 0;
    n = bpf_kptr_xchg(&v->local, NULL);
    return n ? n->data : 0;
}""", False, "Unreleased reference"),
    "local-load-read": (r"""
SEC("tc") int p(struct __sk_buff *s) {
    struct map_value *v = value_at(0); struct pybpf_node *n;
    if (!v) return 0;
    n = v->local;
    return n ? n->data : 0;
}""", True, ""),
    "local-into-task-kptr": (r"""
SEC("tc") int p(struct __sk_buff *s) {
    struct map_value *v = value_at(0); struct task_struct *t; struct pybpf_node *n;
    if (!v) return 0;
    n = bpf_obj_new(struct pybpf_node);
    if (!n) return 0;
    t = bpf_kptr_xchg(&v->ref, n);
    if (t) bpf_task_release(t);
    return 0;
}""", False, "invalid kptr access, R2 type=ptr_pybpf_node expected=ptr_task_struct"),
    "local-drop-after-xchg": (r"""
SEC("tc") int p(struct __sk_buff *s) {
    struct map_value *v = value_at(0); struct pybpf_node *n, *old;
    if (!v) return 0;
    n = bpf_obj_new(struct pybpf_node);
    if (!n) return 0;
    old = bpf_kptr_xchg(&v->local, n);
    if (old) bpf_obj_drop(old);
    bpf_obj_drop(n);
    return 0;
}""", False, "R1 must be referenced or trusted"),
}


@pytest.fixture(scope="module")
def local_objects(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("kptr_local")
    return {name: compile_c(root, name.replace("-", "_"), LOCAL_HEADER + source)
            for name, (source, _, _) in LOCAL.items()}


@pytest.mark.kernel
@pytest.mark.parametrize("name", LOCAL)
def test_local_table_holds_the_kernels_verdict(name: str, local_objects: dict[str, Path]) -> None:
    if not KERNEL_AVAILABLE:
        pytest.skip(f"bpf() unavailable: {KERNEL_REASON}")
    accepted, log = kernel_verdict(local_objects[name])
    assert accepted == LOCAL[name][1], log[-2000:]
    if not accepted:
        assert LOCAL[name][2] in log, log[-2000:]


@pytest.mark.parametrize("name", LOCAL)
def test_local_kptrs_as_the_kernel_checks_them(name: str, local_objects: dict[str, Path]) -> None:
    _, expected, fragment = LOCAL[name]
    accepted, reason = our_verdict(local_objects[name])
    assert accepted == expected, reason
    assert fragment in reason
