/* A "target kernel" whose types share names with the kernel's but not its layout.
 * Its .rodata records clang's own offsetof/sizeof for tests to check CO-RE results against. */
struct mm_struct {
	long pad[3];
	unsigned long start_code;
};

struct task_struct {
	long other[5];
	union {
		struct {
			int tgid;
			int pid;
		};
		long both;
	};
	unsigned short flags;
	unsigned int __state;
	unsigned int in_execve:1, pad_bits:9, init_private_fork_class:4, sched_reset_on_fork:1;
	char comm[32];
	struct mm_struct *mm;
	struct task_struct *real_parent;
};

struct net_device {
	int ifindex;
};

struct sk_buff {
	struct net_device *dev;
	unsigned short protocol;
	unsigned int len;
	union {
		unsigned int mark;
		unsigned int reserved;
	};
};

enum pid_type { PIDTYPE_PID, PIDTYPE_MAX = 9, PIDTYPE_TGID = 5 };

struct dup___a { int x; int y; } g_dup_a;
struct dup___b { int y; } g_dup_b;

struct task_struct g_task = { .in_execve = 1, .init_private_fork_class = 0xA, .sched_reset_on_fork = 1 };
struct sk_buff g_skb;
struct mm_struct g_mm; /* pointers alone only emit FWDs */
struct net_device g_dev;
enum pid_type g_pid_type;

#define LAYOUT(name, value) const volatile unsigned long layout_##name __attribute__((used)) = (value)
LAYOUT(pid, __builtin_offsetof(struct task_struct, pid));
LAYOUT(tgid, __builtin_offsetof(struct task_struct, tgid));
LAYOUT(comm, __builtin_offsetof(struct task_struct, comm));
LAYOUT(mm, __builtin_offsetof(struct task_struct, mm));
LAYOUT(state, __builtin_offsetof(struct task_struct, __state));
LAYOUT(real_parent, __builtin_offsetof(struct task_struct, real_parent));
LAYOUT(start_code, __builtin_offsetof(struct mm_struct, start_code));
LAYOUT(skb_len, __builtin_offsetof(struct sk_buff, len));
LAYOUT(skb_dev, __builtin_offsetof(struct sk_buff, dev));
LAYOUT(skb_protocol, __builtin_offsetof(struct sk_buff, protocol));
LAYOUT(skb_mark, __builtin_offsetof(struct sk_buff, mark));
LAYOUT(sizeof_task, sizeof(struct task_struct));
LAYOUT(sizeof_comm, sizeof(((struct task_struct *)0)->comm));
LAYOUT(pidtype_tgid, PIDTYPE_TGID);
