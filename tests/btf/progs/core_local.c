/* A program compiled against its own, partial and flavoured view of kernel types:
 * CO-RE relocations make its accesses follow the target's real layout. */
#define __pai __attribute__((preserve_access_index))

struct mm_struct___local {
	unsigned long start_code;
} __pai;

struct task_struct___local {
	int pid;
	int tgid;
	char comm[16];
	struct mm_struct___local *mm;
	unsigned int __state;
	unsigned int sched_reset_on_fork:1;
	unsigned int in_execve:1;
	unsigned int init_private_fork_class:4;
	struct task_struct___local *real_parent;
	long no_such_field___really;
} __pai;

struct net_device___local;
struct sk_buff___local {
	unsigned int len;
	struct net_device___local *dev;
	unsigned short protocol;
	unsigned int mark;
} __pai;

enum pid_type___local { PIDTYPE_PID___local, PIDTYPE_TGID___local = 1, PIDTYPE_NOT_THERE___local = 77 };

struct not_in_kernel___x { int a; } __pai;

/* The target has two flavours of this struct that disagree on y's offset: an ambiguity error. */
struct dup___local { int y; } __pai;

#define FIELD_BYTE_OFFSET 0
#define FIELD_BYTE_SIZE 1
#define FIELD_EXISTS 2
#define FIELD_SIGNED 3
#define FIELD_LSHIFT_U64 4
#define FIELD_RSHIFT_U64 5

unsigned long out[64];

__attribute__((section("kprobe/x"), used))
int probe(struct task_struct___local *t, struct sk_buff___local *skb)
{
	out[0] = t->pid;
	out[1] = t->tgid;
	out[2] = (unsigned long)&t->comm[3];
	out[3] = t->mm->start_code;
	out[4] = t->__state;
	out[5] = (unsigned long)t->real_parent;
	out[6] = __builtin_preserve_field_info(t->sched_reset_on_fork, FIELD_BYTE_OFFSET);
	out[7] = __builtin_preserve_field_info(t->sched_reset_on_fork, FIELD_BYTE_SIZE);
	out[8] = __builtin_preserve_field_info(t->init_private_fork_class, FIELD_LSHIFT_U64);
	out[9] = __builtin_preserve_field_info(t->init_private_fork_class, FIELD_RSHIFT_U64);
	out[10] = __builtin_preserve_field_info(t->pid, FIELD_SIGNED);
	out[11] = __builtin_preserve_field_info(t->__state, FIELD_SIGNED);
	out[12] = __builtin_preserve_field_info(t->no_such_field___really, FIELD_EXISTS);
	out[13] = __builtin_preserve_field_info(t->comm, FIELD_BYTE_SIZE);
	out[14] = skb->len;
	out[15] = (unsigned long)skb->dev;
	out[16] = skb->protocol;
	out[17] = skb->mark;
	out[18] = __builtin_preserve_type_info(*(struct task_struct___local *)0, 0);  /* TYPE_EXISTS */
	out[19] = __builtin_preserve_type_info(*(struct task_struct___local *)0, 1);  /* TYPE_SIZE */
	out[20] = __builtin_preserve_type_info(*(struct not_in_kernel___x *)0, 0);
	out[21] = __builtin_btf_type_id(*(struct task_struct___local *)0, 0);  /* TYPE_ID_LOCAL */
	out[22] = __builtin_btf_type_id(*(struct task_struct___local *)0, 1);  /* TYPE_ID_TARGET */
	out[23] = __builtin_preserve_enum_value(*(enum pid_type___local *)PIDTYPE_TGID___local, 0);  /* EXISTS */
	out[24] = __builtin_preserve_enum_value(*(enum pid_type___local *)PIDTYPE_TGID___local, 1);  /* VALUE */
	out[25] = __builtin_preserve_enum_value(*(enum pid_type___local *)PIDTYPE_NOT_THERE___local, 0);
	out[26] = __builtin_preserve_field_info(t->no_such_field___really, FIELD_BYTE_OFFSET);
	out[27] = __builtin_preserve_field_info(t->in_execve, FIELD_LSHIFT_U64);
	out[28] = __builtin_preserve_type_info(*(struct mm_struct___local *)0, 2);  /* TYPE_MATCHES */
	return 0;
}

__attribute__((section("kprobe/dup"), used))
int dup(struct dup___local *d)
{
	return d->y;
}

char _license[] __attribute__((section("license"), used)) = "GPL";
