/* kptrs in map values and the kfuncs that hand out referenced kernel objects (libbpf's
 * bpf_helpers.h spells the tags the same way). A kptr field is a pointer to a struct whose
 * pointee carries a BTF type tag: `kptr` (referenced: the map owns the object; changed only
 * through bpf_kptr_xchg), `kptr_untrusted` (a plain pointer), `percpu_kptr`. The structs are the
 * kernel's, as far as the programs use them. They carry no preserve_access_index attribute:
 * clang would then describe one only used through pointers as a forward declaration, and the
 * kernel refuses a kptr to anything but a struct; a field read goes through CO-RE with
 * kernel_read() instead (relocated against vmlinux). */
#ifndef PYBPF_KPTR_H
#define PYBPF_KPTR_H

#include "bpf_helpers.h"

#define __kptr_untrusted __attribute__((btf_type_tag("kptr_untrusted")))
#define __kptr __attribute__((btf_type_tag("kptr")))
#define __percpu_kptr __attribute__((btf_type_tag("percpu_kptr")))

struct task_struct {
	int pid;
	int tgid;
};

struct cgroup {
	int level;
};

struct cpumask {
	unsigned long bits[1];
};

struct bpf_cpumask {
	struct cpumask cpumask;
};

/* A CO-RE relocated read of a kernel struct's field (libbpf's BPF_CORE_READ for one level). */
#define kernel_read(ptr, field) (*__builtin_preserve_access_index(&(ptr)->field))

static void *(*bpf_kptr_xchg)(void *dst, void *ptr) = (void *)BPF_FUNC_kptr_xchg;
static struct task_struct *(*bpf_get_current_task_btf)(void) = (void *)BPF_FUNC_get_current_task_btf;

extern struct task_struct *bpf_task_from_pid(int pid) __ksym;
extern struct task_struct *bpf_task_acquire(struct task_struct *p) __ksym;
extern void bpf_task_release(struct task_struct *p) __ksym;
extern struct cgroup *bpf_cgroup_from_id(__u64 cgid) __ksym;
extern void bpf_cgroup_release(struct cgroup *cgrp) __ksym;
extern struct bpf_cpumask *bpf_cpumask_create(void) __ksym;
extern void bpf_cpumask_release(struct bpf_cpumask *cpumask) __ksym;
extern struct bpf_cpumask *bpf_cpumask_acquire(struct bpf_cpumask *cpumask) __ksym;
extern void bpf_cpumask_set_cpu(__u32 cpu, struct bpf_cpumask *cpumask) __ksym;
extern void bpf_cpumask_clear_cpu(__u32 cpu, struct bpf_cpumask *cpumask) __ksym;
extern int bpf_cpumask_test_cpu(__u32 cpu, const struct cpumask *cpumask) __ksym;
extern __u32 bpf_cpumask_first(const struct cpumask *cpumask) __ksym;
extern __u32 bpf_cpumask_weight(const struct cpumask *cpumask) __ksym;

#endif
