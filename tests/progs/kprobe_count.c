/* kprobe: count calls per process in a per-CPU hash and emit an event to a ring buffer. */
#include "bpf_helpers.h"

struct event {
	__u32 pid;
	__u32 tgid;
	__u64 ts;
	char comm[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u64);
} calls SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} events SEC(".maps");

SEC("kprobe/do_sys_openat2")
int count_openat(void *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32;
	__u64 one = 1, *val;
	struct event *ev;

	val = bpf_map_lookup_elem(&calls, &tgid);
	if (val)
		*val += 1;
	else
		bpf_map_update_elem(&calls, &tgid, &one, BPF_NOEXIST);

	ev = bpf_ringbuf_reserve(&events, sizeof(*ev), 0);
	if (!ev)
		return 0;
	ev->pid = (__u32)id;
	ev->tgid = tgid;
	ev->ts = bpf_ktime_get_ns();
	bpf_get_current_comm(ev->comm, sizeof(ev->comm));
	bpf_ringbuf_submit(ev, 0);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
