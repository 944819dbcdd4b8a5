/* User-space tracepoints (pybpf.hooks.tracepoints): a tracepoint program copies the event's
 * fields into ring buffer records; a raw_tracepoint program sums its first u64 argument and
 * reads the string its third argument points to. */
#include "hooks_helpers.h"

/* The record of app/request: the 8-byte common header, then the declared fields. */
struct request_record {
	__u16 common_type;
	__u8 common_flags;
	__u8 common_preempt_count;
	__s32 common_pid;
	__u32 id;
	__u16 status;
	char path[32];
	__u64 bytes;
};

struct request_event {
	__u32 id;
	__u32 status;
	__u64 bytes;
	__u32 pid;
	__u32 type;
	char path[32];
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 64 * 1024);
} requests SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} raw_totals SEC(".maps");

struct path_buf {
	char text[32];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct path_buf);
} raw_path SEC(".maps");

SEC("tracepoint/app/request")
int on_request(struct request_record *ctx)
{
	struct request_event *event;

	/* Skip server errors: only 2xx-4xx requests are reported. */
	if (ctx->status >= 500)
		return 0;
	event = bpf_ringbuf_reserve(&requests, sizeof(*event), 0);
	if (!event)
		return 0;
	event->id = ctx->id;
	event->status = ctx->status;
	event->bytes = ctx->bytes;
	/* The kernel refuses reads of the common header (tp_prog_is_valid_access: off < 8). */
	event->pid = bpf_get_current_pid_tgid();
	event->type = 0;
	__builtin_memcpy(event->path, ctx->path, sizeof(event->path));
	bpf_ringbuf_submit(event, 0);
	return 0;
}

SEC("raw_tp/request")
int on_raw_request(__u64 *ctx)
{
	__u32 key = 0;
	__u64 *total = bpf_map_lookup_elem(&raw_totals, &key);
	struct path_buf *path;

	if (total)
		__sync_fetch_and_add(total, ctx[0]);
	key = 1;
	total = bpf_map_lookup_elem(&raw_totals, &key);
	if (total)
		__sync_fetch_and_add(total, 1);
	key = 0;
	path = bpf_map_lookup_elem(&raw_path, &key);
	if (path)
		bpf_probe_read_kernel_str(path->text, sizeof(path->text), (const void *)ctx[2]);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
